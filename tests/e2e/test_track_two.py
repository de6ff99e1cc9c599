"""Track II through the CLI and a real relay process: a private contact, with a
home of his own and a roster of one, pairs with a mission on a deniable
channel; they exchange messages both ways; what arrives carries no signature
and the reader is told so; the mission's side still needs two officers."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import OPEN_REGISTRATION, Officer, assert_one_line_error, found_by_cli
from tests.relay.procs import RelayProcess


def test_a_contact_and_a_mission_talk_deniably_through_the_cli(tmp_path: Path) -> None:
    with RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}", OPEN_REGISTRATION) as relay:
        homes = tmp_path / "homes"
        ri, han, kim = (Officer(homes / h, n) for h, n in
                        (("ri", "Officer Ri"), ("han", "Officer Han"), ("kim", "Kim")))  # fmt: skip
        for o in (ri, han, kim):
            o.ok("officer", "create", "--name", o.name)
        # The mission: two officers, two signatures.
        found_by_cli(tmp_path, relay.base_url, ri, han)
        # The contact: a roster of one, on the same relay.
        mine = tmp_path / "kim.proposal"
        made = kim.json("mission", "create", "--name", "Kim", "--threshold", "1",
                        "--relay", relay.base_url, "--out", mine)  # fmt: skip
        assert made["complete"] is True
        kim.ok("mission", "adopt", mine)
        # Cards both ways, numbers compared, offers: deniable, or refused.
        ri.ok("mission", "card", "--out", tmp_path / "ny.card")
        kim.ok("mission", "card", "--out", tmp_path / "kim.card")
        for o, card, peer in ((ri, "kim.card", "Kim"), (han, "kim.card", "Kim"),
                              (kim, "ny.card", "New York")):  # fmt: skip
            added = o.json("peer", "add", tmp_path / card)
            o.ok("peer", "confirm", peer, "--safety-number", added["safety_number"])
        ny_offer, kim_offer = tmp_path / "ny.offer", tmp_path / "kim.offer"
        assert_one_line_error(ri.run("channel", "offer", "Kim", "--out", ny_offer), "deniable")
        ri.ok("channel", "offer", "Kim", "--policy", "deniable", "--out", ny_offer)
        assert han.json("channel", "sign", ny_offer)["policy"] == "deniable"
        made = kim.json("channel", "offer", "New York", "--policy", "deniable", "--out", kim_offer)
        assert made["signatures"] == 1  # his alone is enough: k = 1
        for o, own, theirs in ((ri, ny_offer, kim_offer), (han, ny_offer, kim_offer),
                               (kim, kim_offer, ny_offer)):  # fmt: skip
            assert o.json("channel", "accept", own, theirs)["policy"] == "deniable"

        # The mission writes (two officers), the contact reads alone.
        ri.json("compose", "Kim", "--text", "Could we meet on Thursday?")
        ri.settle()
        han.settle()
        [request] = han.json("cosign", "list")["requests"]
        han.ok("cosign", "approve", request["request_id"][:8])
        han.settle()
        ri.settle()
        kim.settle()
        [item] = kim.json("inbox")["messages"]
        assert item["deniable"] is True
        kim.ok("open", item["message_id"][:8])
        read = kim.json("read", item["message_id"][:8])
        assert read["text"] == "Could we meet on Thursday?" and read["deniable"] is True
        assert "proves nothing to anyone else" in kim.ok("read", item["message_id"][:8]).out

        # He answers; in New York two officers open it together.
        kim.json("compose", "New York", "--text", "Thursday suits me.")
        kim.settle()
        for o in (ri, han):
            o.settle()
        [back] = ri.json("inbox")["messages"]
        assert back["deniable"] is True and back["peer"] == "Kim"
        ri.ok("open", back["message_id"][:8])
        ri.settle()
        han.settle()
        [share] = han.json("share", "list")["requests"]
        han.ok("share", "approve", share["request_id"][:8])
        han.settle()
        ri.settle()
        assert ri.json("read", back["message_id"][:8])["text"] == "Thursday suits me."

        # The mission decides, two officers of two, that one may speak to a contact
        # alone: proposed on one device, signed on the other, the rounds carry it.
        assert ri.json("mission", "policy", "show")["track2_k"] == 0
        r = ri.run("mission", "policy", "propose", "--official", "record", "--epoch-hours", "0")
        assert r.code != 0 and "--epoch-hours is 1 to 168" in r.err
        made = ri.json("mission", "policy", "propose", "--official", "record",
                       "--track2-k", "1", "--epoch-hours", "6", "--unseen-hours", "48")  # fmt: skip
        assert made["adopted"] is False and made["signed_by"] == ["Officer Ri"]
        assert made["epoch_seconds"] == 6 * 3600 and made["unseen_seconds"] == 48 * 3600
        ri.settle()
        han.settle()
        [pending] = han.json("mission", "policy", "show")["pending"]
        assert pending["track2_k"] == 1 and pending["ref"] == made["ref"]
        assert "proposed a policy change" in han.ok("status").out
        assert han.json("mission", "policy", "sign", made["ref"])["adopted"] is True
        han.settle()
        ri.settle()
        assert ri.json("mission", "policy", "show") == han.json("mission", "policy", "show")
        assert ri.json("mission", "policy", "show")["track2_k"] == 1
        assert ri.json("mission", "policy", "show")["epoch_seconds"] == 6 * 3600
        alone = ri.json("compose", "Kim", "--text", "Confirmed, on my word alone.")
        assert alone["state"] == "queued" and alone["cosigners_asked"] == 0
        ri.settle()
        kim.settle()
        assert han.json("cosign", "list")["requests"] == []
        last = kim.json("inbox")["messages"][-1]
        kim.ok("open", last["message_id"][:8])
        assert kim.json("read", last["message_id"][:8])["text"] == "Confirmed, on my word alone."
