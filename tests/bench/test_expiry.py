"""The short form of ``python -m bench.expiry``: behaviour, not speed.

Expiry run under a stream of deposits removes every cell past the retention
(the acknowledged ones, spent slots, included) and none of those deposited
meanwhile, on each backend. Its figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from backchannel.store import _common
from backchannel.store.sqlite import SQLiteRelayStore
from bench import expiry


async def test_expiry_under_deposits_removes_the_old_and_keeps_the_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(expiry, "RATE", 200)
    monkeypatch.setattr(expiry, "WINDOW_S", 0.5)
    monkeypatch.setattr(_common, "EXPIRE_STEP_ROWS", 16)  # many steps, deposits between them
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteRelayStore(Path(tmp) / "relay.db")
        await store.open()
        try:
            pair = await expiry._measure(store, old=300)
            # Nothing of the old cells or the quiet window is left, all of the new.
            assert pair["cells_left"] == pair["cells_left_expected"] == 100
            # An acknowledged slot stays closed until the retention; expired, it is free.
            again = await store.deposit(expiry.TENANT, expiry._slot(b"old", 0), bytes(4096), 0)
            assert again.created
            assert len(await store.fetch(
                expiry.TENANT, [expiry._slot(b"expiring", i) for i in range(100)]
            )) == 100  # fmt: skip
        finally:
            await store.close()
