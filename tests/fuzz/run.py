"""One decoder under atheris: ``python -m tests.fuzz.run TARGET [libFuzzer flags] DIRS``.

Fuzzes ``tests.fuzz.targets.TARGETS[TARGET]`` with every ``backchannel``
module instrumented for coverage; the flags and corpus folders are
libFuzzer's (``-runs=N``, ``-max_len=N``, ``-merge=1 OUT IN...``). An input
that breaks the contract (a stray exception, a wrong round trip) stops the
run and is written where ``-artifact_prefix`` says. ``tests/fuzz/campaign.py``
runs every target and keeps the corpus minimized.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["backchannel"]):
        import backchannel.client.cards
        import backchannel.protocol.batch
        import backchannel.relay.requests  # noqa: F401 - instrumented before the targets load
        from tests.fuzz.targets import TARGETS

    target = TARGETS[sys.argv[1]]
    target.check(b"")  # builds the target's lazy context before the clock starts

    def one_input(data: bytes) -> None:
        target.check(data)

    # libFuzzer's -merge re-runs argv[0]: FUZZ_SELF names an executable that runs this target.
    atheris.Setup([os.environ.get("FUZZ_SELF", sys.argv[0]), *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
