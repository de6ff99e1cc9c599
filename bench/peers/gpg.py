"""GnuPG peer: one ``gpg`` process to sign+encrypt, one to decrypt+verify.

This is how python-gnupg drives GnuPG (SecureDrop's model): every operation is
a fresh ``gpg`` process talking to ``gpg-agent``. Sender and recipient each have
their own temporary GNUPGHOME with an ed25519 signing key and a cv25519
encryption subkey, and know each other's public keys. A round trip is one 4 KiB
message signed and encrypted by the sender, then decrypted and verified by the
recipient; we count round trips per second, one at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.peers._common import MESSAGE_BYTES, is_root, latency_summary, say, tail

_BASE = ["--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""]


def _ensure_gpg() -> str | None:
    """Path of ``gpg``; installs GnuPG with apt-get when missing and we are root."""
    found = shutil.which("gpg")
    if found:
        return found
    if not is_root() or not shutil.which("apt-get"):
        say("gpg: not installed, and apt-get is not usable here (not root)")
        return None
    say("gpg: not installed; apt-get install -y gnupg")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "gnupg"]):
        proc = subprocess.run(cmd, capture_output=True, env=env, timeout=300, check=False)
        if proc.returncode != 0:
            say(f"gpg: {' '.join(cmd)} failed: {tail(proc.stderr, 2)}")
            return None
    return shutil.which("gpg")


class _Home:
    """One party's GNUPGHOME with a fresh ed25519 + cv25519 key."""

    def __init__(self, gpg: str, name: str) -> None:
        self.gpg = gpg
        self.path = Path(tempfile.mkdtemp(prefix=f"bcgpg-{name}-"))
        self.path.chmod(0o700)
        self.uid = f"Bench {name} <{name}@bench.invalid>"
        self.fpr = ""

    def cmd(self, *args: str) -> list[str]:
        return [self.gpg, "--homedir", str(self.path), *_BASE, *args]

    def run(self, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.cmd(*args), input=data, capture_output=True, timeout=60, check=False
        )

    def generate(self) -> None:
        proc = self.run("--quick-gen-key", self.uid, "ed25519", "sign", "never")
        if proc.returncode != 0:
            raise RuntimeError(f"--quick-gen-key failed: {tail(proc.stderr, 2)}")
        listing = self.run("--with-colons", "--list-secret-keys", self.uid).stdout.decode()
        fprs = [ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:")]
        if not fprs:
            raise RuntimeError("no fingerprint after key generation")
        self.fpr = fprs[0]
        proc = self.run("--quick-add-key", self.fpr, "cv25519", "encr", "never")
        if proc.returncode != 0:
            raise RuntimeError(f"--quick-add-key failed: {tail(proc.stderr, 2)}")

    def export_public(self) -> bytes:
        return self.run("--export", self.fpr).stdout

    def import_public(self, key: bytes) -> None:
        proc = self.run("--import", data=key)
        if proc.returncode != 0:
            raise RuntimeError(f"--import failed: {tail(proc.stderr, 2)}")

    def close(self) -> None:
        gpgconf = shutil.which("gpgconf")
        if gpgconf:
            subprocess.run(
                [gpgconf, "--homedir", str(self.path), "--kill", "gpg-agent"],
                capture_output=True,
                timeout=20,
                check=False,
            )
        shutil.rmtree(self.path, ignore_errors=True)


def _version(gpg: str) -> str:
    out = subprocess.run([gpg, "--version"], capture_output=True, timeout=20, check=False)
    return out.stdout.decode().splitlines()[0] if out.returncode == 0 else "?"


def run(quick: bool) -> dict[str, Any]:
    gpg = _ensure_gpg()
    if gpg is None:
        return {"skipped": "gpg is not installed and could not be installed"}
    max_ops, max_seconds = (300, 6.0) if quick else (1500, 20.0)
    sender, recipient = _Home(gpg, "sender"), _Home(gpg, "recipient")
    try:
        t0 = time.perf_counter()
        sender.generate()
        recipient.generate()
        sender.import_public(recipient.export_public())
        recipient.import_public(sender.export_public())
        setup_s = time.perf_counter() - t0

        seal = sender.cmd(
            "--trust-model", "always", "--local-user", sender.fpr,
            "--recipient", recipient.fpr, "--sign", "--encrypt",
        )  # fmt: skip
        open_ = recipient.cmd("--trust-model", "always", "--status-fd", "2", "--decrypt")

        def round_trip(message: bytes) -> tuple[float, float]:
            t_a = time.perf_counter()
            sealed = subprocess.run(seal, input=message, capture_output=True, timeout=60)
            t_b = time.perf_counter()
            if sealed.returncode != 0:
                raise RuntimeError(f"sign+encrypt failed: {tail(sealed.stderr, 2)}")
            opened = subprocess.run(open_, input=sealed.stdout, capture_output=True, timeout=60)
            t_c = time.perf_counter()
            status = opened.stderr.decode("utf-8", "replace")
            if opened.returncode != 0 or opened.stdout != message:
                raise RuntimeError(f"decrypt+verify failed: {tail(opened.stderr, 2)}")
            if "[GNUPG:] GOODSIG" not in status or "[GNUPG:] VALIDSIG" not in status:
                raise RuntimeError("signature did not verify")
            return t_b - t_a, t_c - t_b

        for _ in range(3):  # warm-up: agent start, key cache
            round_trip(os.urandom(MESSAGE_BYTES))

        seal_times: list[float] = []
        open_times: list[float] = []
        totals: list[float] = []
        deadline = time.perf_counter() + max_seconds
        t_start = time.perf_counter()
        while len(totals) < max_ops and time.perf_counter() < deadline:
            s, o = round_trip(os.urandom(MESSAGE_BYTES))
            seal_times.append(s)
            open_times.append(o)
            totals.append(s + o)
        elapsed = time.perf_counter() - t_start
        ciphertext_bytes = len(
            subprocess.run(seal, input=os.urandom(MESSAGE_BYTES), capture_output=True).stdout
        )
        summary = latency_summary(totals)
        return {
            "version": _version(gpg),
            "message_bytes": MESSAGE_BYTES,
            "ciphertext_bytes": ciphertext_bytes,
            "round_trips": len(totals),
            "seconds": round(elapsed, 3),
            "round_trips_per_s": round(len(totals) / elapsed, 2),
            "ms_per_round_trip": round(1000.0 * elapsed / len(totals), 3),
            "sign_encrypt_p50_ms": latency_summary(seal_times)["p50_ms"],
            "decrypt_verify_p50_ms": latency_summary(open_times)["p50_ms"],
            "p50_ms": summary["p50_ms"],
            "p99_ms": summary["p99_ms"],
            "latency_cdf_ms": summary["latency_cdf_ms"],
            "setup_s": round(setup_s, 3),
        }
    finally:
        sender.close()
        recipient.close()
