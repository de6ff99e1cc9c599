"""``backchannel relay ...``: mount with ``app.add_typer(relay_app, name="relay")``.

The commands are defined in :mod:`backchannel.relay.cli` so that
``python -m backchannel.relay`` can run the same app without the relay package
importing the CLI package.
"""

from __future__ import annotations

from backchannel.relay.cli import relay_app

__all__ = ["relay_app"]
