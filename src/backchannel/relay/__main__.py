"""``python -m backchannel.relay serve ...``: the same commands as ``backchannel relay``."""

from __future__ import annotations

from backchannel.relay.cli import relay_app

if __name__ == "__main__":
    relay_app(prog_name="backchannel relay")
