"""Protocol core cost: seal + co-sign + open, per message, 2-of-2 and 2-of-3.

Per message: the author seals and signs, a second officer checks the
ciphertext and co-signs, the receiver verifies ``k`` signatures, ``k``
recipient officers decrypt their shares, and the content is opened. The
per-epoch HPKE cost (one ML-KEM-768 + X25519 box per recipient officer, sealed
and opened) is measured separately, since it is paid once per key epoch.
Primitive costs are measured in the same run, so the ratios hold on a noisy
machine.

``python -m bench.protocol [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

from backchannel.client.harness import MissionKit, Pair
from backchannel.crypto.kem import KemPrivateKey
from backchannel.crypto.primitives import aead_open, aead_seal
from backchannel.protocol.identity import Officer
from backchannel.protocol.incoming import Incoming
from backchannel.protocol.payload import note
from backchannel.protocol.sealing import decrypt_share, verify_signatures

TEXT = "x" * 3000  # a message that fills most of one cell


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Operations per second of ``fn`` over about ``seconds`` (after one warm-up call)."""
    fn()
    n = 0
    start = time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def _message_rate(k: int, n: int, seconds: float) -> dict[str, float]:
    rng = os.urandom
    ny = MissionKit.create("New York", [f"ny{i}" for i in range(n)], k, rng)
    dc = MissionKit.create("Washington", [f"dc{i}" for i in range(n)], k, rng)
    pair = Pair(ny, dc, rng=rng)
    side, peer = pair.a, pair.b
    # Open the epoch once (its HPKE cost is measured separately).
    first = pair.cosign(side, pair.compose(side, 0, note(TEXT)), 1)
    assert first.message is not None
    for j in range(k):
        pair.share(peer, first.message, j)

    def one() -> None:
        out = pair.cosign(side, pair.compose(side, 0, note(TEXT)), 1)
        msg = out.message
        assert msg is not None
        verify_signatures(msg, ny.roster)
        inc = Incoming.received(msg)
        for j in range(k):
            kit = dc.officers[j]
            eid = msg.header.epoch_id
            share, kit.recv_epochs[eid] = decrypt_share(msg, kit.recv_epochs[eid])
            inc = inc.add_share(share, dc.roster)
        assert inc.open(dc.roster).text == TEXT

    rate = _rate(one, seconds)
    return {"messages_per_s": rate, "ms_per_message": 1000.0 / rate}


def _primitives(seconds: float) -> dict[str, float]:
    officer = Officer.generate("bench", os.urandom)
    sk = officer.signing_key
    vk = sk.verify_key
    data = os.urandom(32)
    ed_sig = sk.sign_ed25519(b"ctx", data)
    hy_sig = sk.sign_hybrid(b"ctx", data)
    kem = KemPrivateKey(os.urandom(64), os.urandom(32))
    box = kem.public_key.seal(os.urandom(32), b"info")
    key, nonce, body = os.urandom(32), os.urandom(12), os.urandom(4068)
    ct = aead_seal(key, nonce, body, b"")
    ops: dict[str, Callable[[], object]] = {
        "ed25519_sign": lambda: sk.sign_ed25519(b"ctx", data),
        "ed25519_verify": lambda: vk.verify_ed25519(ed_sig, b"ctx", data),
        "hybrid_sign": lambda: sk.sign_hybrid(b"ctx", data),
        "hybrid_verify": lambda: vk.verify_hybrid(hy_sig, b"ctx", data),
        "hpke_seal": lambda: kem.public_key.seal(data, b"info"),
        "hpke_open": lambda: kem.open(box, b"info"),
        "chacha20poly1305_open_4k": lambda: aead_open(key, nonce, ct, b""),
    }
    return {f"{name}_per_s": _rate(fn, seconds) for name, fn in ops.items()}


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 0.5 if quick else 2.0
    result: dict[str, Any] = {
        "2of2": _message_rate(2, 2, seconds),
        "2of3": _message_rate(2, 3, seconds),
        "primitives": _primitives(seconds / 2),
    }
    p = result["primitives"]
    # Per-epoch cost for n recipient officers: n HPKE seals + n opens.
    for label, n in (("2of2", 2), ("2of3", 3)):
        result[label]["epoch_setup_ms"] = (
            1000.0 * n * (1 / p["hpke_seal_per_s"] + 1 / p["hpke_open_per_s"])
        )
        result[label]["ratio_to_ed25519_sign"] = (
            result[label]["messages_per_s"] / p["ed25519_sign_per_s"]
        )
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"{'figure':<36} {'value':>14}")
    for label in ("2of2", "2of3"):
        r = result[label]
        print(f"{label + ' messages/s':<36} {r['messages_per_s']:>14.1f}")
        print(f"{label + ' ms/message':<36} {r['ms_per_message']:>14.3f}")
        print(f"{label + ' epoch setup ms':<36} {r['epoch_setup_ms']:>14.3f}")
    for name, v in result["primitives"].items():
        print(f"{name:<36} {v:>14.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    result = run(args.quick)
    _print(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
