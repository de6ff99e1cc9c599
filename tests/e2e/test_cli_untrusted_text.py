"""What a submitter, a peer or a colleague wrote reaches the officer's terminal
as text to read, never as control sequences: an anonymous submitter must not
erase or hide lines on the officer's screen, nor set its window title.

The homes are set up with the client library against an in-process relay
(the commands run here work on the home alone); the commands run as the
``backchannel`` subprocess.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from rich.text import Text

from backchannel.cli.output import emit_json, safe_rich, safe_text
from backchannel.client import intake_public as public
from backchannel.errors import ConfigError
from backchannel.protocol import intake as pi
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.payload import note
from tests.client.conftest import InProcessRelay
from tests.client.test_audit import settle
from tests.client.test_client_flow import two_missions
from tests.e2e.conftest import Result, assert_one_line_error, backchannel, base_env

#: Erase the line, move up, hide what follows, set the window title (OSC ... BEL),
#: a C1 CSI, a right-to-left override.
HOSTILE = "\x1b[2K\x1b[1A\x1b[8mhidden\x1b]0;owned\x07 \x9b31mred\x7f \u202etxt.exe"
RAW = ("\x1b", "\x9b", "\x7f", "\x07", "\u202e")


def _clean(out: str) -> None:
    for ch in RAW:
        assert ch not in out, f"{ch!r} reached the terminal: {out!r}"


async def _set_up(tmp: Path) -> tuple[Path, Path, str]:
    relay = InProcessRelay(tmp / "relay")
    async with relay.app.router.lifespan_context(relay.app):
        (ri, han), (smith, jones) = await two_missions(tmp, relay)
        ri.intake_set_open(True)
        await settle(ri, han)
        card = public.read_card(ri.intake_card().to_text())
        transport = httpx.ASGITransport(app=relay.app, client=("203.0.113.7", 40000))
        with pytest.MonkeyPatch.context() as mp:  # both under one reply code
            mp.setattr(pi, "new_reply_code", lambda rng: bytes(16))
            await public.submit(
                card, public.Kind.parse("interview"), f"Subject {HOSTILE}", f"Body {HOSTILE}",
                f"contact {HOSTILE}", transport=transport,
            )  # fmt: skip
            await public.submit(card, public.Kind.parse("other"), "Again", "Me again", "",
                                transport=transport)  # fmt: skip
        await settle(ri, han)
        with pytest.raises(ConfigError, match="control character"):
            han.intake_note("1", f"note {HOSTILE}")  # refused now, as it is written
        # As a device that did not refuse it yet wrote it: still printed safely.
        rid = han.intake_item("1").request_id
        han._audit(AuditKind.INTAKE_NOTED, rid, f"note {HOSTILE}")
        ri.compose(ri.channel_for("Washington").channel_id, note(f"Text {HOSTILE}"))
        await settle(ri, han)
        [req] = han.cosign_requests()
        han.approve_cosign(req.request_id)
        await settle(han, ri, smith, jones, ri, han)
        [item] = smith.inbox()
        smith.request_open(item.message_id)
        await settle(smith, jones)
        [share] = jones.share_requests()
        jones.approve_share(share.request_id)
        await settle(jones, smith)
        assert smith.read(item.message_id).text == f"Text {HOSTILE}"
        assert [n for _, n in ri.intake_item("1").notes] == [f"note {HOSTILE}"]
        for c in (ri, han, smith, jones):
            c.home.close()
    return ri.home.path, smith.home.path, item.message_id.hex()[:8]


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    return asyncio.run(_set_up(tmp_path_factory.mktemp("untrusted")))


def _run(home: Path, *args: str) -> Result:
    r = backchannel("--home", home, *args, env=base_env(BACKCHANNEL_PASSPHRASE="pw"))
    assert r.code == 0, r.err
    return r


def test_intake_list_and_show_print_no_control_sequences(homes: tuple[Path, Path, str]) -> None:
    ri, _, _ = homes
    listed = _run(ri, "intake", "list")
    _clean(listed.out)
    # (Rich drops BEL, BS, VT, FF and CR from a Text itself.)
    assert "Subject ␛[2K␛[1A␛[8mhidden␛]0;owned \\x9b31mred␡ \\u202etxt.exe" in listed.out
    shown = _run(ri, "intake", "show", "1")
    _clean(shown.out)
    for what in ("Subject ␛[2K", "Body ␛[2K", "contact: contact ␛[2K", "note ␛[2K"):
        assert what in shown.out, shown.out


def test_a_request_under_an_earlier_ones_reply_code_is_shown_and_refused_as_a_duplicate(
    homes: tuple[Path, Path, str], tmp_path: Path
) -> None:
    ri, _, _ = homes
    listed = _run(ri, "intake", "list").out.splitlines()
    assert listed[1].startswith("#2 ") and " duplicate " in listed[1], listed
    assert listed[1].endswith("(same reply code as #1)"), listed
    # Listed by state: the duplicate alone, or every other request.
    only = _run(ri, "--json", "intake", "list", "--state", "duplicate").json["requests"]
    assert [r["number"] for r in only] == [2]
    rest = _run(ri, "--json", "intake", "list", "--state", "new", "--state", "assigned")
    assert 2 not in [r["number"] for r in rest.json["requests"]]
    assert 1 in [r["number"] for r in rest.json["requests"]]
    wrong = backchannel("--home", ri, "intake", "list", "--state", "open",
                        env=base_env(BACKCHANNEL_PASSPHRASE="pw"))  # fmt: skip
    assert wrong.code == 2 and "'open' is not one of" in wrong.err, wrong.err
    assert "duplicate of #1" in _run(ri, "intake", "show", "2").out
    assert _run(ri, "--json", "intake", "show", "2").json["duplicate_of"] == 1
    answer = tmp_path / "answer.txt"
    answer.write_text("On Friday.")
    refused = backchannel("--home", ri, "intake", "answer", "2", "--file", answer,
                          env=base_env(BACKCHANNEL_PASSPHRASE="pw"))  # fmt: skip
    assert_one_line_error(refused, "answer #1 instead")


def test_reading_a_peers_message_prints_no_control_sequences(
    homes: tuple[Path, Path, str],
) -> None:
    _, smith, message = homes
    inbox = _run(smith, "inbox")
    _clean(inbox.out)
    read = _run(smith, "read", message)
    _clean(read.out)
    assert "Text ␛[2K␛[1A␛[8mhidden" in read.out


def test_json_output_escapes_every_control_and_decodes_to_what_was_written(
    homes: tuple[Path, Path, str],
) -> None:
    ri, smith, message = homes
    shown = _run(ri, "--json", "intake", "show", "1")
    _clean(shown.out)
    doc = shown.json
    assert (doc["subject"], doc["text"]) == (f"Subject {HOSTILE}", f"Body {HOSTILE}")
    assert doc["notes"][0]["note"] == f"note {HOSTILE}"
    read = _run(smith, "--json", "read", message)
    _clean(read.out)
    assert read.json["text"] == f"Text {HOSTILE}"


def test_safe_text_keeps_tabs_newlines_and_styles(capsys: pytest.CaptureFixture[str]) -> None:
    assert safe_text("a\tb\nc\r\nd\re\x00\x1b\x85\u2066") == "a\tb\nc\nd␍e␀␛\\x85\\u2066"
    styled = Text.assemble("from ", (f"{HOSTILE}!", "bold"), " end")
    safe = safe_rich(styled)
    shown = safe_text(HOSTILE.replace("\x07", ""))  # Text itself drops the BEL
    assert safe.plain == f"from {shown}! end"
    [span] = safe.spans
    assert safe.plain[span.start : span.end] == f"{shown}!"
    console = Console(force_terminal=True, color_system="standard", width=200)
    with console.capture() as captured:
        console.print(safe)
    assert "\x1b]" not in captured.get() and "\x1b[2K" not in captured.get()
    emit_json({"x": HOSTILE})
    out = capsys.readouterr().out
    _clean(out)
    assert json.loads(out) == {"x": HOSTILE}
