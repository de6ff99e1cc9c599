"""A hostile client against the per-address limits of a relay behind a reverse proxy.

The operator puts TLS in front of the relay with a proxy on the same machine
(docs/operations.md) and names it in ``trusted_proxies``. Each test plays one
attack: a client that is no proxy naming other addresses in X-Forwarded-For,
one client's flood through the proxy against another's requests, a client
behind the proxy writing its own entries into the header, a header the
relay cannot read; and a setting that would trust what it should not.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from starlette.applications import Starlette

from backchannel.errors import ConfigError
from backchannel.protocol.batch import FetchBatch
from backchannel.relay import config as cfg
from backchannel.relay.ratelimit import client_key, client_keyer
from backchannel.relay.settings import resolve_settings

from .conftest import AppFactory, Clock, Tenant, new_slot, register, running
from .test_batch import OCTET
from .test_isolation_attacks import POW_BITS, _client_at, _intake_body

#: The reverse proxy, on the relay's machine.
PROXY = "127.0.0.1"
ATTACKER = "203.0.113.9"
NEIGHBOUR = "198.51.100.7"


def _forwarded(client: str, claimed: str = "") -> dict[str, str]:
    """X-Forwarded-For as the proxy sends it: what the client wrote, then the client."""
    return {"X-Forwarded-For": f"{claimed}, {client}" if claimed else client}


async def _requests(app: Starlette, tenant: Tenant, headers: dict[str, str]) -> list[int]:
    """One request through each of the relay's entries: the gate, and both fast paths.

    Sent from the proxy's address with ``headers``; the statuses, in order.
    """
    fetch = FetchBatch(0, 0, (), ()).encode()
    async with _client_at(app, PROXY) as c:
        return [
            (await c.get("/healthz", headers=headers)).status_code,
            (await c.get(tenant.path(f"slots/{new_slot()}"), headers=headers)).status_code,
            (
                await c.post(
                    tenant.path("batch/fetch"), content=fetch, headers={**OCTET, **headers}
                )
            ).status_code,
        ]


async def _app_with_tenant(make_app: AppFactory, **changes: object) -> tuple[Starlette, Tenant]:
    """A relay with ``changes``, over a store where a tenant was registered unlimited."""
    async for http in running(make_app()):
        alpha = await register(http, "mission-alpha")
    return make_app(**changes), alpha


# -- a client that is no proxy ------------------------------------------------------------


async def test_a_client_that_is_no_proxy_names_fresh_addresses_and_still_spends_its_own_bucket(
    make_app: AppFactory,
) -> None:
    app, alpha = await _app_with_tenant(make_app, trusted_proxies=PROXY, ip_rate=0.001, ip_burst=3)
    fetch = FetchBatch(0, 0, (), ()).encode()
    fresh = (f"192.0.2.{i}" for i in range(1, 200))
    async with app.router.lifespan_context(app), _client_at(app, ATTACKER) as c:

        async def each_entry() -> list[int]:
            # A fresh address every request, the proxy's own, several header lines.
            claims: list[list[tuple[str, str]]] = [
                [("X-Forwarded-For", next(fresh))],
                [("X-Forwarded-For", f"{next(fresh)}, {PROXY}")],
                [("X-Forwarded-For", next(fresh)), ("X-Forwarded-For", next(fresh))],
            ]
            return [
                (await c.get("/healthz", headers=claims[0])).status_code,
                (await c.get(alpha.path(f"slots/{new_slot()}"), headers=claims[1])).status_code,
                (
                    await c.post(
                        alpha.path("batch/fetch"),
                        content=fetch,
                        headers=[*OCTET.items(), *claims[2]],
                    )
                ).status_code,
            ]

        first = await each_entry()
        assert 429 not in first
        # Its own address has spent its burst, whatever the header says.
        assert await each_entry() == [429] * 3
        # The neighbour it named in a header, through the proxy, kept every token.
        assert 429 not in await _requests(app, alpha, _forwarded(NEIGHBOUR))


async def test_a_relay_that_trusts_no_proxy_reads_no_header(make_app: AppFactory) -> None:
    # The default: every request from the proxy is the proxy's, whatever it forwards.
    app, alpha = await _app_with_tenant(make_app, ip_rate=0.001, ip_burst=3)
    assert app.state.service.client_key is client_key  # the fast paths pay nothing
    async with app.router.lifespan_context(app):
        assert 429 not in await _requests(app, alpha, _forwarded(ATTACKER))
        assert await _requests(app, alpha, _forwarded(NEIGHBOUR)) == [429] * 3


# -- clients behind the trusted proxy ----------------------------------------------------


async def test_through_the_proxy_one_clients_flood_does_not_refuse_another(
    make_app: AppFactory,
) -> None:
    # A building of devices behind one proxy: each has its own bucket, so a flood
    # from one device (or the building's total) does not refuse the others.
    app, alpha = await _app_with_tenant(make_app, trusted_proxies=PROXY, ip_rate=0.001, ip_burst=3)
    async with app.router.lifespan_context(app):
        assert 429 not in await _requests(app, alpha, _forwarded(ATTACKER))
        assert await _requests(app, alpha, _forwarded(ATTACKER)) == [429] * 3
        assert 429 not in await _requests(app, alpha, _forwarded(NEIGHBOUR))
        # An IPv6 client behind the proxy is still one /64, from any of its addresses.
        assert 429 not in await _requests(app, alpha, _forwarded("2001:db8:bad:1::1"))
        assert await _requests(app, alpha, _forwarded("2001:db8:bad:1::2")) == [429] * 3
        assert 429 not in await _requests(app, alpha, _forwarded("2001:db8:bad:2::1"))
        # The proxy's own requests (no header) have the proxy's bucket, apart.
        assert 429 not in await _requests(app, alpha, {})


async def test_through_the_proxy_the_intake_limit_is_per_client(
    make_app: AppFactory, clock: Clock
) -> None:
    async for http in running(make_app()):
        alpha = await register(http, "mission-alpha")
        opening = {"after": 0, "open": True}
        r = await http.post(alpha.path("intake/fetch"), json=opening, headers=alpha.auth)
        assert r.status_code == 200
    app = make_app(
        trusted_proxies=PROXY, intake_pow_bits=POW_BITS, intake_ip_rate=0.001, intake_ip_burst=2
    )
    async with app.router.lifespan_context(app):

        async def submit(headers: dict[str, str]) -> int:
            body = _intake_body(alpha.tenant_id, clock.now)
            async with _client_at(app, PROXY) as c:
                r = await c.post(
                    f"/v1/intake/{alpha.tenant_id}/requests", json=body, headers=headers
                )
            return r.status_code

        flood = [await submit(_forwarded(ATTACKER, f"192.0.2.{i}")) for i in range(4)]
        assert flood == [201, 201, 429, 429]
        assert await submit(_forwarded(NEIGHBOUR)) == 201


@pytest.mark.parametrize(
    "claimed",
    [
        NEIGHBOUR,  # the neighbour's address
        f"{NEIGHBOUR}, {PROXY}",  # ... followed by the trusted proxy, to be skipped
        f"{NEIGHBOUR}, ::1, ::ffff:127.0.0.1",  # the proxy in other notations
        "junk",  # nothing an address: the proxy's key
        "",
    ],
)
async def test_a_client_behind_the_proxy_cannot_choose_its_key_by_writing_entries(
    make_app: AppFactory, claimed: str
) -> None:
    app, alpha = await _app_with_tenant(
        make_app, trusted_proxies=f"{PROXY}, ::1", ip_rate=0.001, ip_burst=3
    )
    async with app.router.lifespan_context(app):
        # The proxy appends the address it saw: the client's entries stay on its left.
        assert 429 not in await _requests(app, alpha, _forwarded(ATTACKER, claimed))
        assert await _requests(app, alpha, _forwarded(ATTACKER, claimed)) == [429] * 3
        # Its own header line before the one the proxy adds: the same.
        lines = [("X-Forwarded-For", claimed or "junk"), ("X-Forwarded-For", ATTACKER)]
        async with _client_at(app, PROXY) as c:
            assert (await c.get("/healthz", headers=lines)).status_code == 429
        # Whatever it named kept its tokens: the neighbour and the proxy itself.
        assert 429 not in await _requests(app, alpha, _forwarded(NEIGHBOUR))
        assert 429 not in await _requests(app, alpha, {})


@pytest.mark.parametrize(
    "header",
    [
        "",
        "   ",
        ",",
        "junk",
        "unknown",
        f"{ATTACKER}:5000",
        "[2001:db8::1]",
        "[2001:db8::1]:443",
        "999.0.0.1",
        "fe80::1%eth0",
        f"{ATTACKER}, junk",  # the proxy's entry unreadable: not the one to its left
        f"{ATTACKER},",
        "1" * 10_000,
        PROXY,  # only trusted proxies: the peer
        f"{PROXY}, ::1",
    ],
)
def test_a_header_the_relay_cannot_read_keys_the_request_by_its_peer(header: str) -> None:
    key = client_keyer(f"{PROXY}, ::1")
    scope = {"client": (PROXY, 5000), "headers": [(b"x-forwarded-for", header.encode())]}
    assert key(scope) == PROXY


async def test_a_malformed_header_through_the_proxy_buys_no_bucket(make_app: AppFactory) -> None:
    app, alpha = await _app_with_tenant(make_app, trusted_proxies=PROXY, ip_rate=0.001, ip_burst=3)
    async with app.router.lifespan_context(app):
        headers = ["junk-1", "", f"{ATTACKER}:1"]
        assert 429 not in await _requests(app, alpha, {"X-Forwarded-For": headers[0]})
        for header in headers:
            assert await _requests(app, alpha, {"X-Forwarded-For": header}) == [429] * 3
        assert 429 not in await _requests(app, alpha, _forwarded(ATTACKER))


def test_a_chain_of_trusted_proxies_keys_the_client_the_outermost_one_saw() -> None:
    key = client_keyer("127.0.0.1, 10.8.0.0/16, ::ffff:10.9.0.0/112")
    chain = f"192.0.2.66, {ATTACKER}, 10.8.3.4, 10.9.0.1"
    scope = {
        "client": ("::ffff:127.0.0.1", 5000),
        "headers": [(b"x-forwarded-for", chain.encode())],
    }
    assert key(scope) == ATTACKER
    v6 = [(b"x-forwarded-for", b"2001:DB8:BAD:1::99 , 10.8.0.1")]
    assert key({"client": ("10.8.200.1", 5000), "headers": v6}) == "2001:db8:bad:1::/64"
    # A peer outside them: its header is not read.
    assert key({"client": ("10.7.0.1", 5000), "headers": v6}) == "10.7.0.1"


async def test_forwarded_addresses_are_not_logged(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app, alpha = await _app_with_tenant(make_app, trusted_proxies=PROXY, ip_rate=0.001, ip_burst=3)
    async with app.router.lifespan_context(app):
        for _ in range(2):
            await _requests(app, alpha, _forwarded(ATTACKER, NEIGHBOUR))
    logged = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    assert "healthz" in logged  # the access log did record the requests
    assert ATTACKER not in logged and NEIGHBOUR not in logged


# -- the setting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("localhost", "'localhost' is not an IP address or CIDR network"),
        ("127.0.0.1:8080", "'127.0.0.1:8080' is not an IP address"),
        ("10.0.0.1/8", "the network is 10.0.0.0/8"),
        ("127.0.0.1, 10.0.0.0/33", "'10.0.0.0/33' is not"),
        ("*", "'*' is not"),
        ("0.0.0.0/0", "trusts every address"),
        ("::/0", "trusts every address"),
        ("::ffff:0:0/96", "trusts every address"),
        ("fe80::1%eth0", "zone index"),
    ],
)
def test_a_malformed_trusted_proxy_is_refused_with_its_entry(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match="trusted_proxies") as raised:
        resolve_settings({"trusted_proxies": value}, env={})
    assert message in str(raised.value)


def test_trusted_proxies_from_a_file_the_environment_and_check_config(tmp_path: Path) -> None:
    toml = tmp_path / "relay.toml"
    toml.write_text('[relay]\ntrusted_proxies = ["127.0.0.1", "::1"]\n')
    assert resolve_settings(config_file=toml, env={}).trusted_proxies == "127.0.0.1, ::1"
    env = {"BACKCHANNEL_RELAY_TRUSTED_PROXIES": "10.8.0.0/16"}
    assert resolve_settings(env=env).trusted_proxies == "10.8.0.0/16"
    assert resolve_settings(env={}).trusted_proxies == ""
    report = cfg.check(config_file=toml, env={"BACKCHANNEL_RELAY_DATA": str(tmp_path)})
    assert report.ok, report.errors
    assert f"trusted_proxies = 127.0.0.1, ::1  [file {toml}]" in report.lines()
    toml.write_text('[relay]\ntrusted_proxies = ["127.0.0.1", "proxy.local"]\n')
    report = cfg.check(config_file=toml, env={"BACKCHANNEL_RELAY_DATA": str(tmp_path)})
    assert not report.ok
    assert any("'proxy.local' is not an IP address" in e for e in report.errors)
    toml.write_text("[relay]\ntrusted_proxies = [1]\n")
    with pytest.raises(ConfigError, match="trusted_proxies"):
        resolve_settings(config_file=toml, env={})
