"""A channel's move to new slot chains, as one device follows it (spec §7.5).

The wire objects and their cryptography are in :mod:`.rekey`; this module is
the state machine an :class:`~backchannel.protocol.endpoint.Endpoint` keeps
while a move is under way (:class:`Rekeying`), and what each event does to it:
the peer's re-key read (:func:`take_rekey`), the peer's answer read
(:func:`take_ack`), the last piece of a control object of ours sent
(:func:`sent`), and the rounds behind both directions (:func:`settle`).

Each direction moves at a round its sender names by sending. Usually one
side re-keys and the other answers: both directions end on the initiator's
chain. When both missions remove officers at once, the two re-keys cross
(each side's own re-key is unanswered when the other's comes): each
direction first moves to its sender's chain (the *via* chain; the peer's
removed officer had that seed sealed to him, since his mission had not told
the sender yet), then both move to a chain from the two seeds combined, which
neither removed officer can derive. Both sides see the same crossing: a
side's answer to the other's re-key always precedes, in its stream, a re-key
it starts later.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backchannel.errors import AuthenticationError, RemoteProtocolError
from backchannel.protocol import rekey as rk
from backchannel.protocol.channel import SlotChain
from backchannel.protocol.identity import EpochKeyCert
from backchannel.protocol.roster import Roster


@dataclass(frozen=True, slots=True)
class Rekeying:
    """A channel's move to a new slot chain, in progress on one device."""

    #: The seed both directions end on: ours while the peer has not answered,
    #: the peer's when we follow it, or both combined when two re-keys crossed.
    seed: bytes
    #: The first round of the new chain; 0 (with no chain) on a device of the
    #: initiating mission that does not send, until the peer's acknowledgement names it.
    base: int = 0
    chain: SlotChain | None = None
    #: The first round this side sends on the new chain (0: not known yet).
    out_switch: int = 0
    #: The first round the peer sends on the new chain (0: not known yet).
    in_switch: int = 0
    #: Crossed re-keys: the chain a direction is on from its first move (round
    #: ``*_from``; 0: not yet known) until it moves to :attr:`chain`.
    via_out: SlotChain | None = None
    via_out_from: int = 0
    via_in: SlotChain | None = None
    via_in_from: int = 0
    #: On a device of ours that does not send, waiting for the peer's answer:
    #: the part (:func:`~.rekey.seed_part`) of the latest re-key of the peer it
    #: followed (an answer "both" combines it with ours).
    peer_part: bytes = b""
    #: The answer must be "both": two re-keys crossed.
    both: bool = False

    def __repr__(self) -> str:
        return f"Rekeying(out={self.out_switch}, in={self.in_switch}, <secret>)"

    def switch_after(self, round_no: int) -> int:
        """The first round on the new chain of a direction whose last piece of
        re-key (or acknowledgement) went in ``round_no``."""
        return max(round_no + 1, self.base)

    @property
    def awaiting(self) -> bool:
        """Our re-key (or the crossing of two) is unanswered by the peer."""
        return self.in_switch == 0

    def uses_new(self, round_no: int, outgoing: bool) -> bool:
        """Whether that round of that direction is on the new chain."""
        switch = self.out_switch if outgoing else self.in_switch
        return self.chain is not None and switch > 0 and round_no >= switch

    def chain_at(self, round_no: int, outgoing: bool) -> SlotChain | None:
        """The chain that round of that direction is on, or ``None``: the
        endpoint's own (the one before any move)."""
        if self.uses_new(round_no, outgoing):
            return self.chain
        via, start = (
            (self.via_out, self.via_out_from) if outgoing else (self.via_in, self.via_in_from)
        )
        if via is not None and start > 0 and round_no >= start:
            return via
        return None

    def advanced(self, floor: int) -> Rekeying:
        """Every chain forward to ``floor`` (no later use is before it)."""

        def fwd(c: SlotChain | None) -> SlotChain | None:
            return None if c is None else c.advance(max(floor, c.round))

        return replace(
            self, chain=fwd(self.chain), via_out=fwd(self.via_out), via_in=fwd(self.via_in)
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a control object does to an endpoint, applied once the round checks out."""

    rekeying: Rekeying | None
    #: Our answer to send (encoded; its last piece moves our direction), or empty.
    answer: bytes = b""
    held: bytes = b""
    text: str = ""
    #: The peer's roster its re-key was made under, once checked.
    peer_roster: Roster | None = None
    #: On a device that does not send: the part of the peer's seed it followed,
    #: kept until a removal of our own (:attr:`Rekeying.peer_part`).
    peer_part: bytes = b""
    #: The peer's answer to our takeover, checked (``rk.ChannelResume``).
    resume: rk.ChannelResume | None = None
    #: Epoch keys of the peer's officers it announced, each checked (:mod:`.key_announce`).
    certs: tuple[EpochKeyCert, ...] = ()
    #: The peer's signed anchor of its audit log, checked (:mod:`.audit_anchor`), encoded.
    anchor: bytes = b""


def take_rekey(
    k: Rekeying | None,
    rekey: rk.ChannelRekey,
    seed: bytes,
    ep: tuple[bytes, int, bool],
    round_no: int,
) -> Outcome:
    """What the peer's re-key (its seed opened and vouched for), read in
    ``round_no``, does. ``ep``: the channel id, the direction we send in, and
    whether this device sends (and so answers).

    The peer's rounds after this one are on its new chain. With nothing of
    ours under way we follow it. If our own re-key is unanswered, the two
    crossed: both directions go on to the combined chain.
    """
    channel_id, out_direction, sends = ep
    base = rekey.base_round
    theirs = rk.chain_for(seed, channel_id, base)
    move = max(round_no + 1, base)
    text = (
        f"the peer's roster changed (version {rekey.version}) and it moved the "
        "channel to new keys; this device follows"
    )
    part = rk.seed_part(seed, channel_id)
    if k is None:
        k = Rekeying(seed, base, theirs, in_switch=move)
        if not sends:
            # Our own mission may have re-keyed too, the change not yet
            # adopted here: its answer may combine the two.
            return Outcome(k, text=text, peer_part=part)
        return Outcome(k, rk.make_ack(seed, channel_id, base).encode(), text=text)
    if not k.awaiting or k.both:
        raise RemoteProtocolError("a second re-key of the peer while one is under way")
    if k.chain is None:
        # A device of ours that does not send, waiting for the answer to ours:
        # it reads the peer on its chain; the answer says whether they crossed.
        return Outcome(replace(k, via_in=theirs, via_in_from=move, peer_part=part), text=text)
    own = rk.seed_part(k.seed, channel_id)
    both = rk.combined_seed(own, part, out_direction, channel_id)
    base_both = max(k.base, base)
    crossed = Rekeying(
        both,
        base_both,
        rk.chain_for(both, channel_id, base_both),
        via_out=k.chain,
        via_out_from=k.out_switch,
        via_in=theirs,
        via_in_from=move,
        both=True,
    )
    ack = rk.make_ack(both, channel_id, base_both, both=True)
    return Outcome(
        crossed,
        ack.encode(),
        text=(
            f"the peer's roster changed too (version {rekey.version}) while our re-key was "
            "under way: the channel moves to keys from both re-keys"
        ),
    )


def take_ack(
    k: Rekeying | None, ack: rk.RekeyAck, channel_id: bytes, round_no: int, out_direction: int
) -> Outcome:
    """What the peer's acknowledgement, read in ``round_no``, does to our re-key."""
    if k is None or not k.awaiting:
        raise AuthenticationError("an acknowledgement of a re-key this side never sent")
    if k.chain is not None:
        if ack.both != k.both:
            raise AuthenticationError("an acknowledgement that does not fit the re-keys under way")
        seed = k.seed
    elif ack.both:  # crossed, as a device of ours that does not send sees it
        if not k.peer_part:
            raise AuthenticationError("an acknowledgement of crossed re-keys, with one seen")
        own = rk.seed_part(k.seed, channel_id)
        seed = rk.combined_seed(own, k.peer_part, out_direction, channel_id)
    else:
        seed = k.seed
    rk.verify_ack(ack, seed, channel_id)
    if k.chain is None:  # a device of ours that does not send learns the base
        base = ack.base_round
        k = replace(k, seed=seed, base=base, chain=rk.chain_for(seed, channel_id, base))
    elif ack.base_round != k.base:
        raise AuthenticationError("a re-key acknowledgement names another base round")
    return Outcome(
        replace(k, in_switch=k.switch_after(round_no), peer_part=b""),
        text="the peer moved to the channel's new keys"
        + (", from both re-keys" if ack.both else ""),
    )


def sent(k: Rekeying, round_no: int) -> Rekeying:
    """The last piece of a control object of ours went in ``round_no``: the
    direction we send in moves after it (to the via chain first if our
    re-key crossed the peer's before it was all sent)."""
    if k.via_out is not None and k.via_out_from == 0:
        return replace(k, via_out_from=max(round_no + 1, k.via_out.round))
    return replace(k, out_switch=k.switch_after(round_no))


def settle(
    chain: SlotChain, k: Rekeying | None, next_send: int | None, next_recv: int
) -> tuple[SlotChain, Rekeying | None]:
    """Erase what no later round needs. ``next_send`` is ``None`` on a device
    that does not send. Returns the endpoint's chain (the one before any move)
    and what remains of the move."""
    nexts = [(next_recv, False)] if next_send is None else [(next_recv, False), (next_send, True)]
    old = [r for r, out in nexts if k is None or k.chain_at(r, out) is None]
    if old:
        chain = chain.advance(max(min(old), chain.round))
    if k is None:
        return chain, None
    k = k.advanced(min(r for r, _ in nexts))
    if old:
        return chain, k
    if all(k.uses_new(r, out) for r, out in nexts) and k.chain is not None:
        return k.chain, None  # both directions moved: the old chains are gone for good
    # Nothing is read or sent before the first move any more: a via chain
    # takes the place of the old one (erasing it).
    if k.via_in is not None and not k.uses_new(next_recv, False):
        return k.via_in, replace(k, via_in=None, via_in_from=0)
    if k.via_out is not None:
        return k.via_out, replace(k, via_out=None, via_out_from=0)
    return chain, k
