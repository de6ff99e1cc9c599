"""``backchannel witness ...``: mount with ``app.add_typer(witness_app, name="witness")``."""

from __future__ import annotations

from backchannel.witness.cli import witness_app

__all__ = ["witness_app"]
