"""``python -m backchannel.witness ...``: the same commands as ``backchannel witness``."""

from __future__ import annotations

from backchannel.witness.cli import witness_app

if __name__ == "__main__":
    witness_app(prog_name="backchannel witness")
