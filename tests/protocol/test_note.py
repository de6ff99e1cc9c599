"""Signed notes, checkpoints and cosignatures in the C2SP formats."""

from __future__ import annotations

import base64
import hashlib

import pytest

from backchannel.crypto.notesig import Ed25519NoteKey, MLDSA44NoteKey
from backchannel.errors import DecodeError, SignatureError
from backchannel.protocol import note as nt

# The example of golang.org/x/mod/sumdb/note (its package documentation and
# note_test.go): a signer key, its verifier key, a text and the signed note Go
# produces. An implementation written elsewhere, so agreeing with it byte for
# byte shows that ours speaks the format, not a dialect of it.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + (
        "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSN"
        "XgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    ).encode()
)


def _go_key() -> Ed25519NoteKey:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert raw[0] == nt.TYPE_ED25519
    return Ed25519NoteKey(raw[1:])


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def test_go_example_is_reproduced_byte_for_byte() -> None:
    key = _go_key()
    v = nt.Verifier("PeterNeumann", nt.TYPE_ED25519, key.public)
    assert v.vkey() == GO_VKEY
    assert nt.Verifier.from_vkey(GO_VKEY) == v
    sig = nt.sign_note(GO_TEXT, "PeterNeumann", key)
    assert nt.Note(GO_TEXT, (sig,)).encode() == GO_NOTE
    note = nt.Note.decode(GO_NOTE)
    assert note.text == GO_TEXT
    assert nt.verify_note(note, [v]) == [v]


def test_tampered_note_and_wrong_key_are_refused() -> None:
    v = nt.Verifier.from_vkey(GO_VKEY)
    tampered = GO_NOTE.replace(b"answer", b"ANSWER")
    with pytest.raises(SignatureError):
        nt.verify_note(nt.Note.decode(tampered), [v])
    other = nt.Verifier("PeterNeumann", nt.TYPE_ED25519, Ed25519NoteKey(_seed("x")).public)
    with pytest.raises(SignatureError, match="no signature from a known key"):
        nt.verify_note(nt.Note.decode(GO_NOTE), [other])
    # Same name and key ID as a known key, but a signature that fails: the note is refused.
    sig = nt.Note.decode(GO_NOTE).signatures[0]
    forged = nt.NoteSignature(sig.name, sig.key_id, bytes(64))
    with pytest.raises(SignatureError):
        nt.verify_note(nt.Note(GO_TEXT, (forged,)), [v])


def test_unknown_signatures_are_ignored() -> None:
    stranger = nt.sign_note(GO_TEXT, "stranger.example/k", Ed25519NoteKey(_seed("s")))
    note = nt.Note.decode(GO_NOTE).with_signatures([stranger])
    again = nt.Note.decode(note.encode())
    assert len(again.signatures) == 2
    assert nt.verify_note(again, [nt.Verifier.from_vkey(GO_VKEY)])


@pytest.mark.parametrize(
    "raw",
    [
        GO_TEXT + b"\n",  # no signature line
        GO_TEXT + b"\n- PeterNeumann abc=\n",  # ASCII hyphen, not an em dash
        GO_TEXT.replace(b"\n", b"\r\n") + GO_NOTE[len(GO_TEXT) :],  # a control character
        b"\xff\xfe" + GO_NOTE,  # not UTF-8
        GO_NOTE[:-1],  # no final newline
        GO_NOTE.replace(b"PeterNeumann x08", b"Peter+Neumann x08"),  # '+' in a name
        GO_NOTE.replace(b"x08go", b"x08g!"),  # not base64
        GO_TEXT + b"\n" + b"".join([GO_NOTE[len(GO_TEXT) + 1 :]] * (nt.MAX_SIGNATURES + 1)),
    ],
)
def test_malformed_notes_are_refused(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        nt.Note.decode(raw)


def test_checkpoint_text_and_round_trip() -> None:
    cp = nt.Checkpoint("example.com/behind-the-sofa", 20852163, bytes(range(32)))
    assert cp.text() == (
        b"example.com/behind-the-sofa\n20852163\n" + base64.b64encode(bytes(range(32))) + b"\n"
    )
    key = Ed25519NoteKey(_seed("log"))
    log = nt.Verifier(cp.origin, nt.TYPE_ED25519, key.public)
    raw = nt.sign_checkpoint(cp, cp.origin, key).encode()
    got, _ = nt.open_checkpoint(raw, log)
    assert got == cp


@pytest.mark.parametrize(
    "text",
    [
        b"origin\n012\n" + base64.b64encode(bytes(32)) + b"\n",  # leading zero
        b"origin\n12\n" + base64.b64encode(bytes(31)) + b"\n",  # short root
        b"origin\n12\n",  # no root
        b"\n12\n" + base64.b64encode(bytes(32)) + b"\n",  # empty origin
        b"origin\n-1\n" + base64.b64encode(bytes(32)) + b"\n",
        b"origin\n99999999999999999999\n" + base64.b64encode(bytes(32)) + b"\n",
    ],
)
def test_malformed_checkpoints_are_refused(text: bytes) -> None:
    with pytest.raises(DecodeError):
        nt.Checkpoint.parse(text)


def test_a_checkpoint_for_another_origin_is_refused() -> None:
    key = Ed25519NoteKey(_seed("log"))
    cp = nt.Checkpoint("relay.example/other", 5, bytes(32))
    raw = nt.sign_checkpoint(cp, "relay.example/a", key).encode()
    with pytest.raises(SignatureError, match="origin"):
        nt.open_checkpoint(raw, nt.Verifier("relay.example/a", nt.TYPE_ED25519, key.public))


@pytest.mark.parametrize("kind", ["ed25519", "mldsa44"])
def test_cosignatures_verify_and_bind_the_checkpoint(kind: str) -> None:
    cp = nt.Checkpoint("relay.example/log", 42, _seed("root"))
    log_key = Ed25519NoteKey(_seed("log"))
    note = nt.sign_checkpoint(cp, cp.origin, log_key)
    if kind == "ed25519":
        wkey: Ed25519NoteKey | MLDSA44NoteKey = Ed25519NoteKey(_seed("witness"))
        w = nt.Verifier("witness.example/w1", nt.TYPE_COSIGNATURE_ED25519, wkey.public)
    else:
        wkey = MLDSA44NoteKey(_seed("witness"))
        w = nt.Verifier("witness.example/w1", nt.TYPE_COSIGNATURE_MLDSA44, wkey.public)
    sig = nt.cosign(cp, w.name, wkey, 1_700_000_000)
    cosigned = nt.Note.decode(note.with_signatures([sig]).encode())
    assert nt.verify_cosignature(cosigned, w) == 1_700_000_000
    assert nt.Verifier.from_vkey(w.vkey()) == w
    # The log's own signature still verifies beside the cosignature.
    assert nt.verify_note(cosigned, [nt.Verifier(cp.origin, nt.TYPE_ED25519, log_key.public)])
    # Moved onto another head, the cosignature no longer verifies.
    fork = nt.Checkpoint(cp.origin, 42, _seed("other root"))
    moved = nt.Note(fork.text(), (sig,))
    with pytest.raises(SignatureError):
        nt.verify_cosignature(moved, w)
    # A changed timestamp breaks it too.
    later = nt.NoteSignature(
        sig.name, sig.key_id, (1_700_000_001).to_bytes(8, "big") + sig.data[8:]
    )
    with pytest.raises(SignatureError):
        nt.verify_cosignature(nt.Note(cp.text(), (later,)), w)
    with pytest.raises(SignatureError, match="no cosignature"):
        nt.verify_cosignature(note, w)


def test_cosignature_message_follows_the_specification() -> None:
    # tlog-cosignature's example of the Ed25519 signed message.
    cp = nt.Checkpoint(
        "example.com/behind-the-sofa",
        20852163,
        base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="),
    )
    key = Ed25519NoteKey(_seed("w"))
    sig = nt.cosign(cp, "witness.example/w", key, 1679315147)
    message = (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    assert sig.data == (1679315147).to_bytes(8, "big") + key.sign(message)
    assert sig.key_id == hashlib.sha256(b"witness.example/w\n\x04" + key.public).digest()[:4]


def test_add_checkpoint_body_round_trip_and_limits() -> None:
    body = nt.AddCheckpoint(7, (bytes(32), bytes(range(32))), GO_NOTE)
    raw = body.encode()
    assert raw.startswith(b"old 7\nAAAA")
    assert nt.AddCheckpoint.decode(raw) == body
    assert nt.AddCheckpoint.decode(b"old 0\n\n" + GO_NOTE).proof == ()
    for bad in (
        b"old 07\n\n" + GO_NOTE,
        b"new 7\n\n" + GO_NOTE,
        b"old 7\n" + base64.b64encode(bytes(31)) + b"\n\n" + GO_NOTE,
        b"old 7\n" + b"".join([base64.b64encode(bytes(32)) + b"\n"] * 64) + b"\n" + GO_NOTE,
        b"old 7\n" + GO_NOTE,
    ):
        with pytest.raises(DecodeError):
            nt.AddCheckpoint.decode(bad)


def test_vkeys_that_do_not_add_up_are_refused() -> None:
    name, hint, material = GO_VKEY.split("+")
    for bad in (
        f"{name}+00000000+{material}",
        f"{name}+{hint}",
        f"Other+{hint}+{material}",
        f"{name}+{hint}+" + base64.b64encode(b"\x01" + bytes(31)).decode(),
        f"{name}+{hint}+" + base64.b64encode(b"\x09" + bytes(32)).decode(),
    ):
        with pytest.raises(DecodeError):
            nt.Verifier.from_vkey(bad)
