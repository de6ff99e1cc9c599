"""``backchannel`` in a process that SIGKILLs itself at a chosen commit of its vault.

    python -m tests.e2e.faulty_cli K before|after ARGS...

runs ``backchannel ARGS...`` and dies at the K-th COMMIT of the vault it
opens, just before SQLite runs it or just after (``tests.client.faulty_vault``),
as a device does that loses its power or is killed in the middle of a round.
"""

from __future__ import annotations

import sys

from backchannel.cli.main import main
from tests.client.faulty_vault import FaultyConnection, patch_open


def run(argv: list[str]) -> None:
    commit, when, args = int(argv[0]), argv[1], argv[2:]

    def setup(faulty: FaultyConnection) -> None:
        faulty.kill_at_commit = commit
        faulty.kill_after = when == "after"

    with patch_open(setup):
        main(args)


if __name__ == "__main__":
    run(sys.argv[1:])
