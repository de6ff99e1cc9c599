"""The intake page in Debian's Chromium, against a real relay process.

A package of its own: Playwright's sync API keeps an event loop running in
the test thread while the browser is up, which the async tests beside it in
tests/intake/ must not meet. Skips, and says why, without Chromium.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from backchannel.protocol import intake as pi
from tests.relay.procs import OPERATOR, RelayProcess
from tests.ui.conftest import chromium_browser

TENANT = "intake-mission"


@dataclass
class Mission:
    relay: RelayProcess
    card: pi.IntakeCard
    seed: bytes
    key: Any
    credential: str

    def fetch(self, after: int = 0) -> list[tuple[int, bytes]]:
        answer = httpx.post(
            f"{self.relay.base_url}/v1/tenants/{TENANT}/intake/fetch",
            json={"after": after, "limit": 64, "open": True},
            headers={"Authorization": f"Bearer {self.credential}"},
        )
        answer.raise_for_status()
        return [(r["seq"], base64.b64decode(r["cell"])) for r in answer.json()["requests"]]

    def answer(self, code: bytes, text: str) -> None:
        """Deposit an answer as the mission's runner would: a cell at the reply slot."""
        slot = pi.answer_slot(pi.reply_id(self.card, code)).hex()
        cell = pi.seal_answer(self.card, code, text, secrets.token_bytes)
        put = httpx.put(
            f"{self.relay.base_url}/v1/tenants/{TENANT}/slots/{slot}",
            content=cell,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert put.status_code in (200, 201), put.text


@pytest.fixture(scope="package")
def mission(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mission]:
    db = Path(tmp_path_factory.mktemp("intake-relay")) / "relay.db"
    relay = RelayProcess(
        str(db),
        {"BACKCHANNEL_RELAY_INTAKE_POW_BITS": "14", "BACKCHANNEL_RELAY_INTAKE_IP_RATE": "0"},
    ).start()
    try:
        credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        made = httpx.post(
            f"{relay.base_url}/v1/tenants",
            json={"tenant_id": TENANT, "credential": credential},
            headers={"Authorization": f"Bearer {OPERATOR}"},
        )
        assert made.status_code == 201, made.text
        secret, mission_id = secrets.token_bytes(32), secrets.token_bytes(32)
        seed = pi.intake_seed(secret, mission_id)
        key = pi.intake_private_key(secret, mission_id)
        card = pi.IntakeCard(
            "Mission of Testland", mission_id, relay.base_url, TENANT, key.public_key, 14
        )
        m = Mission(relay, card, seed, key, credential)
        m.fetch()  # the round request that opens the intake
        yield m
    finally:
        relay.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    with chromium_browser() as b:
        yield b
