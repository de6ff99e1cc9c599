"""Changing a mission's roster: add or remove officers, change the threshold.

A change is the next roster version. It takes effect only with the signatures
of ``k`` officers of the *current* roster and of every officer it adds
(:func:`backchannel.protocol.roster.verify_update`). Officers it adds receive,
sealed to their own epoch keys, what a device of the mission needs: the
mission's relay credential and internal secret, the peers' cards, and the
receiving state of each channel. Peers learn of the change from the next
mission card, which they verify from the mission id they pinned; the senders
on the other side then open a new key epoch that includes the new officers.

A change that removes the officer whose device runs the rounds (the runner)
names the first officer of the new roster who stays as the new runner: his
device takes over sending on each channel (``protocol-v1.md`` §7.8) and the
peers learn of it from the mission card it writes next.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, replace
from typing import Any

from backchannel.client import roster_fork, statecodec
from backchannel.client.cards import CardError, OfficerCard
from backchannel.client.device import ANNOUNCEMENTS, ROSTERS, endpoint_data
from backchannel.client.mission import MissionState
from backchannel.client.officer_alarms import MAX_DETAIL, AlarmKind
from backchannel.client.records import ChannelRecord, PeerRecord
from backchannel.client.service import Client, _EndpointData
from backchannel.client.transcripts import TRANSCRIPT_PARTS, TRANSCRIPTS
from backchannel.crypto import labels
from backchannel.crypto.primitives import equal, sha256
from backchannel.errors import (
    AuthenticationError,
    ConfigError,
    LocalProtocolError,
    RemoteProtocolError,
    RosterError,
    SignatureError,
)
from backchannel.protocol import policy as mp
from backchannel.protocol import rekey as rk
from backchannel.protocol import rekeying as rkg
from backchannel.protocol import roster as rs
from backchannel.protocol import tenant_credential
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.codec import Reader
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.identity import EpochKeyCert, newest_certs

PREFIX = "BACKCHANNEL-ROSTER-CHANGE-1:"


@dataclass(frozen=True, slots=True)
class RosterChange:
    mission_id: bytes
    new: rs.Roster
    signatures: tuple[tuple[bytes, bytes], ...]
    certs: tuple[EpochKeyCert, ...]
    boxes: tuple[tuple[bytes, bytes], ...]  # added officers: the sealed welcome
    #: A change that removes an officer: the mission's new secret, sealed to
    #: each officer who stays, and the commitment every box must open to.
    rekey: tuple[tuple[bytes, bytes], ...] = ()
    rekey_commitment: bytes = b""
    #: A change that removes an officer: the signatures of the officers who
    #: stay on the relay rotation to the credential the new secret gives
    #: (``protocol/tenant_credential.py``), so that the relay refuses the old one.
    credential_signatures: tuple[tuple[bytes, bytes], ...] = ()
    #: A change that removes an officer: per channel, the signatures of the
    #: officers who stay on the seed of its new slot chain (``protocol/rekey.py``),
    #: as (channel id, officer id, signature).
    channel_signatures: tuple[tuple[bytes, bytes, bytes], ...] = ()

    def encode(self) -> str:
        d: dict[str, object] = {
            "mission_id": self.mission_id.hex(),
            "new": self.new.encode().hex(),
            "signatures": [[o.hex(), s.hex()] for o, s in self.signatures],
            "certs": [c.encode().hex() for c in self.certs],
            "boxes": [[o.hex(), b.hex()] for o, b in self.boxes],
        }
        if self.rekey_commitment:
            d["rekey"] = [[o.hex(), b.hex()] for o, b in self.rekey]
            d["rekey_commitment"] = self.rekey_commitment.hex()
            d["credential_signatures"] = [[o.hex(), g.hex()] for o, g in self.credential_signatures]
            d["channel_signatures"] = [
                [c.hex(), o.hex(), g.hex()] for c, o, g in self.channel_signatures
            ]
        raw = json.dumps(d, separators=(",", ":")).encode()
        return PREFIX + base64.urlsafe_b64encode(raw).decode() + "\n"

    @classmethod
    def decode(cls, text: str) -> RosterChange:
        text = text.strip()
        if not text.startswith(PREFIX):
            raise CardError("this is not a roster change; check you passed the right file")
        try:
            d = json.loads(base64.urlsafe_b64decode(text[len(PREFIX) :]))
            r = Reader(bytes.fromhex(d["new"]))
            new = rs.Roster.read(r)
            r.end()
            return cls(
                bytes.fromhex(d["mission_id"]),
                new,
                tuple((bytes.fromhex(o), bytes.fromhex(s)) for o, s in d["signatures"]),
                tuple(EpochKeyCert.decode(bytes.fromhex(c)) for c in d["certs"]),
                tuple((bytes.fromhex(o), bytes.fromhex(b)) for o, b in d["boxes"]),
                tuple((bytes.fromhex(o), bytes.fromhex(b)) for o, b in d.get("rekey", [])),
                bytes.fromhex(d.get("rekey_commitment", "")),
                tuple(
                    (bytes.fromhex(o), bytes.fromhex(g))
                    for o, g in d.get("credential_signatures", [])
                ),
                tuple(
                    (bytes.fromhex(c), bytes.fromhex(o), bytes.fromhex(g))
                    for c, o, g in d.get("channel_signatures", [])
                ),
            )
        except (ValueError, KeyError, TypeError, binascii.Error, RemoteProtocolError):
            raise CardError("the roster change is damaged; ask for a fresh copy") from None

    def describe(self) -> str:
        names = ", ".join(o.name for o in self.new.officers)
        return f"version {self.new.version}: {names}; {self.new.threshold} must act together"


def _welcome_info(mission_id: bytes, officer_id: bytes) -> bytes:
    return labels.MISSION_SECRET + b"/welcome" + mission_id + officer_id


def _rekey_info(mission_id: bytes, officer_id: bytes, version: int) -> bytes:
    return labels.NEW_MISSION_SECRET + mission_id + officer_id + version.to_bytes(4, "big")


def _commitment(mission_id: bytes, version: int, secret: bytes) -> bytes:
    return sha256(labels.MISSION_SECRET_COMMIT, mission_id, version.to_bytes(4, "big"), secret)


def propose(
    client: Client, add: list[OfficerCard], remove: list[bytes], threshold: int
) -> RosterChange:
    m = client.mission()
    current = m.roster
    for r in remove:
        if not current.contains(r):
            raise ConfigError("an officer to remove is not on the roster")
    if any(equal(r, client.officer.officer_id) for r in remove):
        # The proposer draws the new mission secret, and would keep it.
        raise ConfigError(
            "a change that removes you is proposed by an officer who stays: it gives the "
            "mission a new secret, and whoever proposes it draws that secret"
        )
    kept = [o for o in current.officers if not any(equal(o.officer_id, r) for r in remove)]
    try:
        new = rs.propose_update(current, [*kept, *(c.officer for c in add)], threshold)
    except RosterError as exc:
        raise ConfigError(str(exc)) from None
    certs = tuple(
        [c for c in m.epoch_certs() if new.contains(c.officer_id)] + [c.cert for c in add]
    )
    rekey: tuple[tuple[bytes, bytes], ...] = ()
    commitment = b""
    if remove:
        # Whoever leaves keeps what his device held: the mission moves to a new
        # secret (the mailbox's lanes, the intake's key) that only those who
        # stay receive.
        fresh = secrets.token_bytes(32)
        commitment = _commitment(m.mission_id, new.version, fresh)
        rekey = tuple(
            (c.officer_id, c.public_key.seal(fresh, _rekey_info(m.mission_id, c.officer_id,
                                                               new.version)))
            for c in m.epoch_certs()
            if new.contains(c.officer_id)
        )  # fmt: skip
        m = m.with_new_secret(fresh)  # what newcomers are welcomed with
    welcome = _welcome(client, m)
    boxes = tuple(
        (
            c.officer.officer_id,
            c.cert.public_key.seal(welcome, _welcome_info(m.mission_id, c.officer.officer_id)),
        )
        for c in add
    )
    change = RosterChange(m.mission_id, new, (), certs, boxes, rekey, commitment)
    signed = _sign(client, change, drew=True)
    client._audit(AuditKind.ROSTER_PROPOSED, _version(new), signed.describe())
    client._tell_colleagues(AlarmKind.ROSTER_PROPOSED, signed.describe().encode()[:MAX_DETAIL])
    return signed


def _welcome(client: Client, m: MissionState) -> bytes:
    channels = []
    for rec in client.channels():
        ep = client._endpoint(rec.channel_id)
        data = replace(endpoint_data(ep), outbox=[], receipt_due=None, sends=False)
        channels.append(
            {
                "record": statecodec.to_jsonable(
                    replace(
                        rec,
                        send_epoch=None,
                        alarms=(),
                        takeover=b"",
                        announcements=(*rec.announcements, *client._announcements(rec.channel_id)),
                    )
                ),
                "endpoint": statecodec.to_jsonable(data),
            }
        )
    payload = {
        "state": statecodec.to_jsonable(m),
        "peers": [statecodec.to_jsonable(p) for p in client.peers()],
        "channels": channels,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def sign(client: Client, change: RosterChange) -> RosterChange:
    """Sign ``change``: its roster and, for a removal, the relay's and the channels'
    move to the new mission secret it carries, once an officer who stays vouches
    for that secret (:func:`_vouched`)."""
    return _sign(client, change, drew=False)


def _sign(client: Client, change: RosterChange, *, drew: bool) -> RosterChange:
    """``drew``: this device drew the change's new mission secret (it proposes it)."""
    me = client.officer.officer_id
    m = client.mission_or_none()
    if m is not None and not equal(m.mission_id, change.mission_id):
        raise ConfigError("that change is for another mission")
    if not change.new.contains(me) and (m is None or not m.roster.contains(me)):
        raise ConfigError("you are on neither the current nor the proposed roster")
    if m is not None and m.roster.contains(me) and not roster_fork.follows(m.roster, change.new):
        raise RosterError(
            f"this change does not follow the roster this device holds (version "
            f"{m.roster.version}): signing it could fork the mission's roster; adopt the "
            "changes before it first, or propose it again"
        )
    _check_certs(change)
    sig = rs.sign_roster(change.new, client.officer)
    others = tuple(s for s in change.signatures if not equal(s[0], me))
    signed = replace(change, signatures=(*others, sig))
    fresh, channel_ids = _removal_secret(client, change)
    if fresh:
        # A removal: we also sign the relay's move to the credential the new
        # secret gives, once our box opens to the secret the change commits to.
        credential = tenant_credential.credential_for(fresh)
        tenant = (
            m.tenant_id if m is not None else tenant_credential.tenant_id_for(change.mission_id)
        )
        if not drew and not _vouched(change, tenant, credential):
            raise RosterError(
                "no officer who stays has signed the move to this removal's new mission "
                "secret: whoever drew it may be an officer it removes, and would keep it; "
                "have an officer who stays propose the change, or sign it first"
            )
        statement = tenant_credential.sign(
            client.officer, tenant, change.new, 0, tenant_credential.credential_hash(credential)
        )
        kept = tuple(s for s in change.credential_signatures if not equal(s[0], me))
        # And, channel by channel, the seed of the slot chain each moves to.
        v = change.new.version
        mine = tuple(
            (cid, *rk.sign_statement(
                client.officer, cid, change.mission_id, v,
                rk.seed_for(fresh, change.mission_id, v, cid),
            ))
            for cid in channel_ids
        )  # fmt: skip
        others_ch = tuple(s for s in change.channel_signatures if not equal(s[1], me))
        signed = replace(
            signed, credential_signatures=(*kept, statement), channel_signatures=(*others_ch, *mine)
        )
    client._audit(AuditKind.ROSTER_SIGNED, _version(change.new), change.describe())
    return signed


def _check_certs(change: RosterChange) -> None:
    """One epoch key for each officer of the change's roster, signed by him, and no
    other. Nothing else signs the list, and the mission's devices seal to it from
    then on (the mailbox, the next removal's secret, the card the peers seal to)."""
    ids = [c.officer_id for c in change.certs]
    if len(set(ids)) != len(ids) or not all(change.new.contains(i) for i in ids):
        raise CardError(
            "the change carries an epoch key of someone its roster does not name, or two "
            "of one officer; ask for a fresh copy"
        )
    by_id = dict(zip(ids, change.certs, strict=True))
    for o in change.new.officers:
        if o.officer_id not in by_id:
            raise CardError("the change lacks an officer's epoch key")
        try:
            by_id[o.officer_id].verify(o)
        except SignatureError:
            raise CardError(
                f"the epoch key the change gives for {o.name} is not signed by him; "
                "ask for a fresh copy"
            ) from None


def _vouched(change: RosterChange, tenant: str, credential: str) -> bool:
    """Whether an officer of the new roster signed the relay's move to ``credential``.

    The officer who proposes a removal draws its new secret; every other device
    signs the move to it only after one such signature, so the first of them is
    always the proposer's, and an officer the change removes (he is not on the
    new roster) can neither sign one nor have his own secret signed.
    """
    body = tenant_credential.statement(
        tenant, change.new, 0, tenant_credential.credential_hash(credential)
    )
    return bool(
        rs.signers(
            change.new,
            change.credential_signatures,
            lambda vk, sig: vk.verify_hybrid(sig, labels.SIG_TENANT_CREDENTIAL, body),
        )
    )


def _removal_secret(client: Client, change: RosterChange) -> tuple[bytes, list[bytes]]:
    """For a change that removes an officer: the new mission secret it gives us
    and the ids of the mission's channels; empty when it gives us none.

    An officer who stays opens his box of the new secret; an officer the change
    adds opens his welcome, which holds it (and may be needed among the ``k``
    who sign the new credential: a 2-of-2 mission replacing a lost officer).
    """
    me = client.officer.officer_id
    if not change.rekey_commitment:
        return b"", []
    if any(equal(o, me) for o, _ in change.rekey):
        return _open_rekey(client, change), [rec.channel_id for rec in client.channels()]
    if client.mission_or_none() is None and any(equal(o, me) for o, _ in change.boxes):
        d = _open_welcome(client, change)
        state: MissionState = statecodec.from_jsonable(MissionState, d["state"])
        if not equal(
            _commitment(change.mission_id, change.new.version, state.secret),
            change.rekey_commitment,
        ):
            raise RosterError("the welcome's mission secret is not the one the change commits to")
        records = [statecodec.from_jsonable(ChannelRecord, c["record"]) for c in d["channels"]]
        return state.secret, [rec.channel_id for rec in records]
    return b"", []


def rotation_of(state: MissionState, change: RosterChange) -> tenant_credential.Rotation:
    """The relay rotation a removal's signatures make, for the state it leads to."""
    return tenant_credential.Rotation(
        tuple(state.signed_chain()),
        0,
        tenant_credential.credential_hash(state.credential),
        change.credential_signatures,
    )


def _version(roster: rs.Roster) -> bytes:
    return roster.version.to_bytes(4, "big")


def adopt(client: Client, change: RosterChange) -> MissionState | None:
    """Apply a fully signed change on this device; ``None`` if it removed us."""
    m = client.mission_or_none()
    me = client.officer.officer_id
    if m is None:
        return _adopt_as_newcomer(client, change)
    if m.roster.version >= change.new.version:
        roster_fork.refuse(client, m, change)
        return m
    signed = rs.SignedRoster(change.new, change.signatures)
    try:
        rs.verify_update(m.roster, signed)
    except RosterError:
        if len(change.signatures) < m.roster.threshold:
            client._tell_colleagues(AlarmKind.SOLO_ROSTER)
        raise
    if not change.new.contains(me):
        _forget_mission(client)
        return None
    _check_certs(change)
    # A colleague who rotated his key since the change was proposed told us his
    # newer certificate through the mailbox: it stays.
    certs = newest_certs(change.certs, m.epoch_certs())
    runner = runner_after(m.roster, m.runner_id, change.new)
    takes_over = equal(runner, me) and not equal(m.runner_id, me)
    state = replace(
        m,
        chain=(*m.chain, signed.encode()),
        certs=tuple(c.encode() for c in certs),
        runner_id=runner,
    )
    seeds: dict[bytes, bytes] = {}  # channel id -> its new seed (a removal re-keys)
    if any(not change.new.contains(o.officer_id) for o in m.roster.officers):
        fresh = _open_rekey(client, change)
        state = state.with_new_secret(fresh)
        rotation = rotation_of(state, change)
        try:
            tenant_credential.verify(state.tenant_id, rotation)
        except RosterError as exc:
            raise RosterError(
                "this change removes an officer but too few of the officers who stay "
                f"signed the mission's new relay credential ({exc}); have them sign it again"
            ) from None
        for rec in client.channels():
            seed = seeds[rec.channel_id] = rk.seed_for(
                fresh, m.mission_id, change.new.version, rec.channel_id
            )
            try:
                rk.verify_statement(
                    _channel_sigs(change, rec.channel_id), rec.channel_id, m.mission_id,
                    change.new, seed,
                )  # fmt: skip
            except SignatureError as exc:
                raise RosterError(
                    "this change removes an officer but too few of the officers who stay "
                    f"signed the new keys of a channel ({exc}); have them sign it again"
                ) from None
        # The next round hands it to the relay; until then the relay still
        # takes the old credential, and this device already uses the new one.
        handed = json.dumps(rotation.to_json()).encode()
        state = replace(state, pending_rotation=handed, last_rotation=handed)
    with client._tx():
        client._put("mission", b"state", state)
        client.mailbox.begin_generation(m, state)
        for rec in client.channels():
            ep = client._endpoint(rec.channel_id)
            ep.own_roster = change.new
            if seeds and takes_over:
                signed = rs.SignedRoster(change.new, change.signatures)
                sigs = _channel_sigs(change, rec.channel_id)
                client.take_over_channel(rec, ep, signed, sigs, seeds[rec.channel_id])
            elif seeds:
                _rekey_channel(client, rec, ep, change, seeds[rec.channel_id])
            client._save_endpoint(rec.channel_id, ep)
        client._audit(AuditKind.ROSTER_ADOPTED, _version(change.new), change.describe())
        # A draft waiting for co-signatures was signed under the old roster: it is
        # drafted again under the new one (the colleagues are asked again).
        client.reseal_stale_drafts()
    return state


def runner_after(old: rs.Roster, runner_id: bytes, new: rs.Roster) -> bytes:
    """Who runs the rounds under ``new``: the same officer, or, if the change removed
    him, the first officer of ``new`` who was on ``old``."""
    if new.contains(runner_id):
        return runner_id
    return next(o.officer_id for o in new.officers if old.contains(o.officer_id))


def _rekey_channel(
    client: Client, rec: ChannelRecord, ep: Endpoint, change: RosterChange, seed: bytes
) -> None:
    """Move a channel to a slot chain the removed officer cannot derive: the
    runner sends the re-key; our other devices wait for the peer's answer."""
    try:
        if not ep.sends:
            ep.expect_rekey(seed)
            return
        rekey = _rekey_for(client, rec, ep, change, seed, ep.next_send_round)
        started = ep.start_rekey(rekey, seed)
    except (LocalProtocolError, ConfigError) as exc:  # a peer unconfirmed
        text = f"channel with {rec.peer_mission.hex()[:8]} keeps its keys: {exc}"
        client._audit(AuditKind.ALARM, b"", text[:MAX_DETAIL])
        return
    what = "re-key under way" if started else "re-key waits for the move under way to end"
    client._audit(AuditKind.CHANNEL_REKEYED, rec.channel_id, what)


def _rekey_for(
    client: Client, rec: ChannelRecord, ep: Endpoint, change: RosterChange, seed: bytes, base: int
) -> rk.ChannelRekey:
    peer = client._peer_card(rec.peer_mission)
    signed = rs.SignedRoster(change.new, change.signatures)
    certs = rk.recipients(peer.certs, peer.roster, ep.peer_rekey_roster)
    sigs = _channel_sigs(change, rec.channel_id)
    return rk.make_rekey(rec.channel_id, change.mission_id, signed, base, seed, certs, sigs)


def _channel_sigs(change: RosterChange, channel_id: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((o, g) for c, o, g in change.channel_signatures if equal(c, channel_id))


def _open_welcome(client: Client, change: RosterChange) -> dict[str, Any]:
    """What a change that adds us sealed to us: the mission as a device keeps it."""
    me = client.officer.officer_id
    box = next((b for o, b in change.boxes if equal(o, me)), None)
    if box is None:
        raise ConfigError("you have no mission yet and this change does not add you")
    for key in reversed(client.home.epoch_keys):
        try:
            raw = key.private_key.open(box, _welcome_info(change.mission_id, me))
        except AuthenticationError:
            continue
        d: dict[str, Any] = json.loads(raw)
        return d
    raise AuthenticationError("decryption failed")


def _adopt_as_newcomer(client: Client, change: RosterChange) -> MissionState:
    d = _open_welcome(client, change)
    state: MissionState = statecodec.from_jsonable(MissionState, d["state"])
    if not equal(state.mission_id, change.mission_id):
        raise RosterError("the welcome is for another mission")
    chain = [rs.SignedRoster.decode(c) for c in state.chain]
    rosters = rs.verify_chain(state.mission_id, chain)
    # The mission policy it is given, each change checked against its roster.
    mp.verify_chain(state.mission_id, [mp.SignedPolicy.decode(p) for p in state.policies], rosters)
    signed = rs.SignedRoster(change.new, change.signatures)
    rs.verify_update(chain[-1].roster, signed)
    _check_certs(change)
    if change.rekey_commitment and not equal(
        _commitment(state.mission_id, change.new.version, state.secret),
        change.rekey_commitment,
    ):
        raise RosterError("the welcome's mission secret is not the one the change commits to")
    state = replace(
        state,
        chain=(*state.chain, signed.encode()),
        certs=tuple(c.encode() for c in change.certs),
        runner_id=runner_after(chain[-1].roster, state.runner_id, change.new),
    )
    with client._tx():
        client._put("mission", b"state", state)
        for p in d["peers"]:
            rec: PeerRecord = statecodec.from_jsonable(PeerRecord, p)
            client._put("peers", rec.mission_id, rec)
        for c in d["channels"]:
            crec: ChannelRecord = statecodec.from_jsonable(ChannelRecord, c["record"])
            data: _EndpointData = statecodec.from_jsonable(_EndpointData, c["endpoint"])
            client._put("channels", crec.channel_id, crec)
            if change.rekey_commitment:
                # The removal re-keys the channel: the peer's answer names the round.
                v = change.new.version
                seed = rk.seed_for(state.secret, state.mission_id, v, crec.channel_id)
                data = replace(data, rekeying=rkg.Rekeying(seed))
            client.vault.put(
                "endpoints", crec.channel_id, statecodec.dumps(replace(data, own_roster=change.new))
            )
    return state


def _open_rekey(client: Client, change: RosterChange) -> bytes:
    """The new mission secret a change that removes an officer gives us; it must
    be the one the change commits to (so every officer who stays gets the same)."""
    me = client.officer.officer_id
    box = next((b for o, b in change.rekey if equal(o, me)), None)
    if box is None or not change.rekey_commitment:
        raise RosterError(
            "this change removes an officer but carries no new mission secret for you; "
            "ask for a change proposed again"
        )
    info = _rekey_info(change.mission_id, me, change.new.version)
    for key in reversed(client.home.epoch_keys):
        try:
            fresh = key.private_key.open(box, info)
        except AuthenticationError:
            continue
        if len(fresh) == 32 and equal(
            _commitment(change.mission_id, change.new.version, fresh), change.rekey_commitment
        ):
            return fresh
        break
    raise RosterError(
        "the change's new mission secret for you does not open, or is not the one it "
        "commits to; ask for a change proposed again"
    )


def _forget_mission(client: Client) -> None:
    """A removed officer's device drops the mission's secrets and channel state."""
    with client._tx():
        tables = ("channels", "endpoints", TRANSCRIPTS, TRANSCRIPT_PARTS, ROSTERS, ANNOUNCEMENTS,
                  "recv_epochs")  # fmt: skip
        for table in (*tables, "cosign_in", "share_in"):
            for key, _ in client.vault.items(table):
                client.vault.delete(table, key)
        client.vault.delete("mission", b"state")
