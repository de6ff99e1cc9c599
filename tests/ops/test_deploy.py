"""The systemd units verify and are hardened; the container image builds, runs and keeps its data.

``systemd-analyze verify`` needs the commands the units run to exist: the
units are checked with ``/opt/backchannel/bin/backchannel`` replaced by this
environment's ``backchannel``, and nothing else changed. The container test
needs a usable Docker daemon and a Debian 12 base image (``debian:bookworm-slim``
or one made by ``deploy/container/make-base.sh``); each test says why it skips.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.relay.procs import REPO, free_port

UNITS = REPO / "deploy" / "systemd"
INSTALLED = "/opt/backchannel/bin/backchannel"
HERE = str(Path(sys.executable).parent / "backchannel")


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    return tool


def _copy_unit(tmp_path: Path, name: str, as_name: str | None = None, extra: str = "") -> Path:
    text = (UNITS / name).read_text().replace(INSTALLED, HERE)
    if extra:
        text = text.replace("[Install]", extra + "\n[Install]")
    path = tmp_path / (as_name or name)
    path.write_text(text)
    return path


UNIT_FILES = [
    ("backchannel-relay.service", None),
    ("backchannel-device@.service", "backchannel-device@alice.service"),
]


@pytest.mark.parametrize(("name", "instance"), UNIT_FILES)
def test_units_verify_cleanly(tmp_path: Path, name: str, instance: str | None) -> None:
    tool = _analyze()
    unit = _copy_unit(tmp_path, name, instance)
    result = subprocess.run(
        [tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stderr
    # The check can fail: a misspelt directive is reported.
    (tmp_path / "bad").mkdir()
    bad = _copy_unit(tmp_path / "bad", name, instance, extra="ProtectSystm=strict")
    result = subprocess.run(
        [tool, "verify", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Unknown key" in result.stderr and "ProtectSystm" in result.stderr


@pytest.mark.parametrize(("name", "instance"), UNIT_FILES)
def test_units_are_hardened(tmp_path: Path, name: str, instance: str | None) -> None:
    text = (UNITS / name).read_text()
    for directive in (
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "UMask=0077",
        "LoadCredential=",
    ):
        assert directive in text, directive
    assert re.search(r"^StateDirectory=backchannel-", text, re.M)
    tool = _analyze()
    unit = _copy_unit(tmp_path, name, instance)
    result = subprocess.run(
        [tool, "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if match is None:
        pytest.skip(f"systemd-analyze security --offline is not supported: {result.stderr[-300:]}")
    # 0 is a fully locked-down unit, 10 an unprotected one; what remains is the
    # network access a relay and a device need.
    assert float(match[1]) <= 1.5, result.stdout


def test_no_secret_reaches_a_units_command_line() -> None:
    for unit in UNITS.glob("*.service"):
        for line in unit.read_text().splitlines():
            if line.startswith(("ExecStart", "Environment=")):
                assert "TOKEN" not in line.upper() and "PASSPHRASE=" not in line.upper(), line


# -- the container --------------------------------------------------------------


def _docker_or_skip() -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        pytest.skip(f"the Docker daemon is not usable: {reason}")
    return docker


def _base_image(docker: str) -> str:
    for image in ("backchannel-base:bookworm", "debian:bookworm-slim"):
        probe = subprocess.run(
            [docker, "image", "inspect", image], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return image
    made = subprocess.run(
        ["sh", str(REPO / "deploy" / "container" / "make-base.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"no Debian 12 base image and make-base.sh failed: {made.stderr[-300:]}")
    return "backchannel-base:bookworm"


@pytest.mark.slow
def test_container_builds_runs_read_only_as_non_root_and_keeps_its_volume(tmp_path: Path) -> None:
    docker = _docker_or_skip()
    base = _base_image(docker)
    context = tmp_path / "context"
    (context / "dist").mkdir(parents=True)
    shutil.copy(REPO / "requirements.lock", context)
    # A TLS-intercepting proxy's CA, when this machine's pip needs one (PIP_CERT).
    cert = os.environ.get("PIP_CERT")
    if cert and Path(cert).is_file():
        shutil.copy(cert, context / "extra-ca.crt")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(context / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    tag = f"backchannel-relay-test:{secrets.token_hex(4)}"
    volume = f"backchannel-test-{secrets.token_hex(4)}"
    name = f"backchannel-test-{secrets.token_hex(4)}"
    port = free_port()
    built = subprocess.run(
        [
            docker,
            "build",
            "-f",
            str(REPO / "deploy" / "container" / "Containerfile"),
            "--build-arg",
            f"BASE={base}",
            "-t",
            tag,
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]

    def run_relay() -> None:
        subprocess.run(
            [
                docker,
                "run",
                "-d",
                "--name",
                name,
                "--read-only",
                "--tmpfs",
                "/tmp",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
                "-e",
                "BACKCHANNEL_RELAY_OPEN_REGISTRATION=true",
                "-v",
                f"{volume}:/var/lib/backchannel",
                "-p",
                f"127.0.0.1:{port}:8470",
                tag,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        logs = subprocess.run([docker, "logs", name], capture_output=True, text=True, check=False)
        raise AssertionError(
            f"the relay in the container never became ready: {logs.stderr[-2000:]}"
        )

    def remove() -> None:
        subprocess.run([docker, "rm", "-f", name], capture_output=True, timeout=60, check=False)

    try:
        run_relay()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        uid = subprocess.run(
            [docker, "exec", name, "id", "-u"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert uid == "10001"
        write = subprocess.run(
            [docker, "exec", name, "touch", "/opt/backchannel/x"], capture_output=True, check=False
        )
        assert write.returncode != 0  # the root file system is read-only
        credential = secrets.token_urlsafe(32)
        base_url = f"http://127.0.0.1:{port}"
        r = httpx.post(
            base_url + "/v1/tenants", json={"tenant_id": "mission-c", "credential": credential}
        )
        assert r.status_code == 201, r.text
        slot, cell = secrets.token_bytes(32), secrets.token_bytes(4096)
        r = httpx.put(
            f"{base_url}/v1/tenants/mission-c/slots/{slot.hex()}",
            content=cell,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201
        key = httpx.get(base_url + "/v1/log/key").json()["fingerprint"]
        subprocess.run([docker, "stop", "-t", "40", name], check=True, capture_output=True)
        remove()
        run_relay()  # a new container on the same volume: same key, same cell
        assert httpx.get(base_url + "/v1/log/key").json()["fingerprint"] == key
        r = httpx.get(
            f"{base_url}/v1/tenants/mission-c/slots/{slot.hex()}",
            headers={"Authorization": f"Bearer {credential}"},
        )
        assert r.status_code == 200 and r.content == cell
    finally:
        remove()
        subprocess.run([docker, "volume", "rm", "-f", volume], capture_output=True, check=False)
        subprocess.run([docker, "image", "rm", "-f", tag], capture_output=True, check=False)
