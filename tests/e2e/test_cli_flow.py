"""The whole flow through the ``backchannel`` command, four homes, one relay process.

New York (Officer Ri, founder and desk device; Officer Han) and Washington
(Officer Smith, founder and desk device; Officer Jones) found their missions by
passing proposal files, exchange mission cards, confirm the safety number, pair
with offers signed by both officers of each mission, and send one message under
the two-person rule: refused alone, co-signed after the co-signer read the
plaintext, opened jointly, acknowledged by a receipt. The relay runs on SQLite
and on PostgreSQL. docs/cli.md walks through the same steps.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.e2e.conftest import Officer, assert_one_line_error, in_parallel
from tests.relay.procs import RelayProcess


def found(founder: Officer, colleague: Officer, mission: str, relay_url: str, tmp: Path) -> None:
    card = tmp / f"{colleague.home.name}.officer"
    proposal = tmp / f"{mission}.proposal"
    colleague.ok("officer", "card", "--out", card)
    made = founder.json(
        "mission", "create", "--name", mission, "--threshold", "2",
        "--officer", card, "--relay", relay_url, "--out", proposal,
    )  # fmt: skip
    assert (made["signatures"], made["complete"]) == (1, False)
    assert [o["name"] for o in made["officers"]] == [founder.name, colleague.name]
    signed = colleague.json("mission", "sign", proposal)
    assert signed["complete"] is True
    assert founder.json("mission", "adopt", proposal)["registered"] is True
    assert colleague.json("mission", "adopt", proposal)["runner"] is False


def test_two_missions_pair_and_exchange_a_message(tmp_path: Path, relay: RelayProcess) -> None:
    homes = tmp_path / "homes"
    everyone = [
        Officer(homes / h, n)
        for h, n in (
            ("ri", "Officer Ri"),
            ("han", "Officer Han"),
            ("smith", "Officer Smith"),
            ("jones", "Officer Jones"),
        )
    ]
    ri, han, smith, jones = everyone
    # Independent officers' commands run side by side, as on four separate devices.
    created = in_parallel(lambda o: o.json("officer", "create", "--name", o.name), everyone)
    assert [c["officer"] for c in created] == [o.name for o in everyone]

    # Founding: the proposal file goes from the founder to the colleague and back.
    in_parallel(
        lambda args: found(*args, relay.base_url, tmp_path),
        [(ri, han, "New York"), (smith, jones, "Washington")],
    )
    assert ri.json("mission", "show")["threshold"] == 2

    # Cards, safety numbers compared "in person", offers signed by k = 2 officers each.
    ri.ok("mission", "card", "--out", tmp_path / "ny.card")
    smith.ok("mission", "card", "--out", tmp_path / "dc.card")

    def pin(o: Officer, card: str, peer: str) -> str:
        added = o.json("peer", "add", tmp_path / card)
        assert (added["peer"], added["confirmed"], added["released"]) == (peer, False, 0)
        number = added["safety_number"]
        assert o.json("peer", "confirm", peer, "--safety-number", number)["confirmed"]
        return str(number)

    numbers = set(
        in_parallel(
            lambda args: pin(*args),
            [
                (ri, "dc.card", "Washington"),
                (han, "dc.card", "Washington"),
                (smith, "ny.card", "New York"),
                (jones, "ny.card", "New York"),
            ],
        )
    )
    assert len(numbers) == 1  # both missions compute the same number
    ny_offer, dc_offer = tmp_path / "ny.offer", tmp_path / "dc.offer"
    assert ri.json("channel", "offer", "Washington", "--out", ny_offer)["signatures"] == 1
    assert han.json("channel", "sign", ny_offer)["signatures"] == 2
    assert smith.json("channel", "offer", "New York", "--out", dc_offer)["signatures"] == 1
    assert jones.json("channel", "sign", dc_offer)["signatures"] == 2
    channel_ids = set(
        in_parallel(
            lambda args: args[0].json("channel", "accept", *args[1:])["channel_id"],
            [(ri, ny_offer, dc_offer), (han, ny_offer, dc_offer),
             (smith, dc_offer, ny_offer), (jones, dc_offer, ny_offer)],
        )
    )  # fmt: skip
    assert len(channel_ids) == 1

    # Sending: Ri drafts on the desk device; alone, the send is refused.
    text = f"Meet in Geneva on the 2nd. {secrets.token_hex(4)}"
    draft = ri.json("compose", "Washington", "--text", text)
    assert draft["state"] == "sealed" and draft["cosigners_asked"] == 1
    refused = ri.run("send", draft["draft_id"][:8])
    assert_one_line_error(refused, "co-sign")
    assert ri.json("drafts")["drafts"][0]["state"] == "sealed"

    # Han fetches the request, reads the plaintext on his own device, approves.
    ri.settle()
    # Three objects: the co-sign request, the card Ri confirmed (the officers
    # cross-check it), and the alarm of Ri's refused solo send.
    assert han.settle()["joint_objects"] == 3
    [alarm] = han.json("status")["officer_alarms"]
    assert (
        alarm["officer"] == "Officer Ri" and "without a colleague's co-signature" in alarm["text"]
    )
    assert text not in alarm["text"]
    [request] = han.json("cosign", "list")["requests"]
    assert request["from"] == "Officer Ri"
    shown = han.ok("cosign", "show", request["request_id"][:8])
    assert text in shown.out
    assert han.json("cosign", "approve", request["request_id"][:8])["approved"] is True
    han.settle()
    ri.settle()  # the co-signature arrives, the message is queued and goes out
    assert ri.json("drafts")["drafts"][0]["state"] in ("queued", "delivered")

    # Washington receives; Smith alone cannot read.
    in_parallel(lambda o: o.settle(), [smith, jones])
    [item] = smith.json("inbox")["messages"]
    assert item["peer"] == "New York" and item["state"] == "sealed"
    mid = item["message_id"][:8]
    assert jones.json("inbox")["messages"][0]["message_id"] == item["message_id"]
    assert smith.json("open", mid)["asked"] == 1
    assert_one_line_error(smith.run("read", mid), "colleague")

    # Jones approves the share request; together they open it.
    smith.settle()
    jones.settle()
    [share] = jones.json("share", "list")["requests"]
    assert share["from"] == "Officer Smith" and share["message_id"] == item["message_id"]
    jones.ok("share", "approve", share["request_id"][:8])
    jones.settle()
    smith.settle()
    read = smith.json("read", mid)
    assert (read["text"], read["kind"], read["peer"]) == (text, "note", "New York")
    assert text in smith.ok("read", mid).out

    # The receipt rides in Washington's next cell; New York sees it delivered.
    smith.settle()
    assert ri.settle()["delivered"] == [1]
    [status] = ri.json("status")["channels"]
    assert (status["peer"], status["sent"], status["delivered"]) == ("Washington", 1, 1)
    assert status["alarms"] == []
    assert ri.json("drafts")["drafts"][0]["state"] == "delivered"
    # Sending it again is nothing to do, and tells no colleague of anything.
    assert ri.json("send", draft["draft_id"][:8])["state"] == "delivered"
    assert "already delivered" in ri.ok("send", draft["draft_id"][:8]).out
    ri.settle()
    han.settle()
    assert len(han.json("status")["officer_alarms"]) == 1
