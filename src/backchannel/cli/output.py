"""How commands answer: Rich for people, one JSON document with ``--json``.

Every command builds its answer once, as a JSON-ready document and as lines
for a terminal, and hands both to :meth:`Output.done`, which prints one or the
other. Text that comes from users or peers (names, message text) is printed
as plain :class:`~rich.text.Text`, never parsed as Rich markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from backchannel.cli.context import settings

__all__ = ["Output", "Text", "escape", "fingerprint", "output", "short", "table"]


class Output:
    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        self.console = Console(highlight=False, soft_wrap=True)

    def done(self, doc: Mapping[str, Any], *lines: RenderableType) -> None:
        """Print ``doc`` as JSON, or ``lines`` for a person."""
        if self.json:
            emit_json(doc)
            return
        for line in lines:
            self.console.print(line)

    def hint(self, text: str) -> Text:
        return Text(text, style="dim")


def output(ctx: typer.Context) -> Output:
    return Output(settings(ctx).json)


def emit_json(doc: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def error(message: str, as_json: bool) -> None:
    """The one way a failure is shown: one line on stderr (and JSON on stdout)."""
    line = " ".join(message.split()) or "failed"
    if as_json:
        emit_json({"error": line})
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()


def short(raw: bytes) -> str:
    """The id prefix shown to people; any unique prefix of 8+ hex digits is accepted back."""
    return raw.hex()[:8]


def fingerprint(raw: bytes) -> str:
    """A whole id in groups of four hex digits, to compare aloud."""
    h = raw.hex()
    return " ".join(h[i : i + 4] for i in range(0, len(h), 4))


def table(*columns: str) -> Table:
    t = Table(box=None, pad_edge=False, show_edge=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    return t
