"""The desk's gate without a browser: the login link, the one session, the POST checks."""

from __future__ import annotations

import re

import pytest

from backchannel.ui.security import Gate, Refusal, private_host

ORIGIN = "http://mfrggzdfmztwq2lknnwg23tp.localhost:8471"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _gate(clock: Clock) -> Gate:
    return Gate(ORIGIN, clock, link_seconds=60, idle_seconds=600, max_seconds=3600)


def _token(gate: Gate) -> str:
    return gate.login_path.removeprefix("/login/")


def test_the_link_opens_one_session_once() -> None:
    gate = _gate(Clock())
    token = _token(gate)
    session = gate.login(token)
    assert gate.session({gate.cookie: session.token}) is session
    with pytest.raises(Refusal, match="already been used"):
        gate.login(token)
    with pytest.raises(Refusal, match="not signed in"):
        gate.session({})
    with pytest.raises(Refusal, match="not signed in"):
        gate.session({gate.cookie: "forged"})
    assert gate.cookie == "backchannel_desk_8471"


def test_each_desk_has_a_name_nobody_else_knows() -> None:
    names = {private_host() for _ in range(100)}
    assert len(names) == 100
    for name in names:  # a DNS label of 120 random bits under localhost
        assert re.fullmatch(r"[a-z2-7]{24}\.localhost", name), name


def test_spending_the_link_says_so_once() -> None:
    spent: list[str] = []
    used, guessed = _gate(Clock()), _gate(Clock())
    used.on_spent = lambda: spent.append("used")
    guessed.on_spent = lambda: spent.append("guessed")
    used.login(_token(used))
    with pytest.raises(Refusal):
        guessed.login("guess")
    for gate in (used, guessed):
        with pytest.raises(Refusal):
            gate.login("again")
    assert spent == ["used", "guessed"]


def test_a_wrong_token_spends_the_link() -> None:
    gate = _gate(Clock())
    token = _token(gate)
    with pytest.raises(Refusal):
        gate.login("guess")
    with pytest.raises(Refusal):
        gate.login(token)


def test_the_link_expires() -> None:
    clock = Clock()
    gate = _gate(clock)
    clock.t += 61
    with pytest.raises(Refusal, match="expired"):
        gate.login(_token(gate))


def test_an_idle_or_old_session_ends() -> None:
    clock = Clock()
    gate = _gate(clock)
    s = gate.login(_token(gate))
    for _ in range(5):  # kept alive by use, up to its total lifetime
        clock.t += 599
        gate.session({gate.cookie: s.token})
    clock.t += 601
    with pytest.raises(Refusal, match="ended"):
        gate.session({gate.cookie: s.token})
    with pytest.raises(Refusal, match="not signed in"):  # and it stays ended
        gate.session({gate.cookie: s.token})

    gate = _gate(clock)  # in use all along, it still ends after its total lifetime
    s = gate.login(_token(gate))
    for _ in range(6):
        clock.t += 599
        gate.session({gate.cookie: s.token})
    clock.t += 10
    with pytest.raises(Refusal, match="ended"):
        gate.session({gate.cookie: s.token})


def test_a_post_needs_the_desk_origin_and_the_csrf_token() -> None:
    gate = _gate(Clock())
    s = gate.login(_token(gate))
    gate.check_post(s, {"origin": ORIGIN}, s.csrf)
    gate.check_post(s, {"referer": ORIGIN + "/cosign"}, s.csrf)
    # A plain form whose browser still says Origin: null, from the desk's own page.
    gate.check_post(s, {"origin": "null", "sec-fetch-site": "same-origin"}, s.csrf)
    gate.check_post(s, {"sec-fetch-site": "same-origin"}, s.csrf)
    for headers in (
        {},
        {"origin": "null"},
        {"origin": "null", "sec-fetch-site": "cross-site"},  # a sandboxed page elsewhere
        {"origin": "null", "sec-fetch-site": "same-site"},  # another port of 127.0.0.1
        {"origin": "null", "sec-fetch-site": "none"},  # typed in, or a bookmark
        {"origin": "http://evil.example", "sec-fetch-site": "same-origin"},
        {"origin": "http://evil.example", "referer": ORIGIN + "/cosign"},
        {"origin": "http://127.0.0.1:8472"},  # another local program's page
        {"origin": "http://127.0.0.1:8471"},  # the desk's port under another name
        {"origin": "http://localhost:8471"},
        {"origin": "http://other.localhost:8471"},
        {"origin": ORIGIN.replace(".localhost", ".localhost.evil.example")},
        {"origin": "http://evil.example"},
        {"referer": ORIGIN + ".evil.example/"},
        {"origin": "http://evil.example", "referer": "http://evil.example/"},
    ):
        with pytest.raises(Refusal, match="did not come from the desk"):
            gate.check_post(s, headers, s.csrf)
    for token in ("", "x", s.csrf[:-1], s.token):
        with pytest.raises(Refusal, match="security token"):
            gate.check_post(s, {"origin": ORIGIN}, token)
