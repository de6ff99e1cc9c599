"""How commands answer: Rich for people, one JSON document with ``--json``.

Every command builds its answer once, as a JSON-ready document and as lines
for a terminal, and hands both to :meth:`Output.done`, which prints one or the
other. Text that comes from users or peers (names, message text) is printed
as plain :class:`~rich.text.Text`, never parsed as Rich markup, and every
line, table cell and error passes through :func:`safe_text` on its way to the
terminal, so a submitter or a peer cannot send the officer's terminal control
sequences (rewriting lines, hiding text, setting the window's title). JSON
output escapes the same characters (:func:`emit_json`).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Span, Text

from backchannel.cli.context import settings

__all__ = [
    "Output",
    "Text",
    "escape",
    "fingerprint",
    "output",
    "safe_text",
    "short",
    "table",
]

#: What a terminal may act on rather than show: C0 controls but for tab and
#: newline (ESC among them), DEL, C1 controls, and the bidirectional embeddings,
#: overrides and isolates (which reorder what follows them on the line). A CR
#: right before a newline is dropped (a CRLF line end).
_UNSAFE = re.compile("(?P<crlf>\r(?=\n))|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: The JSON encoder escapes C0 controls itself; these it writes as they are.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    if match.group("crlf"):
        return ""
    c = ord(match.group())
    if c < 0x20:
        return chr(0x2400 + c)  # the Control Pictures: ESC shows as "␛"
    if c == 0x7F:
        return "\u2421"  # ␡
    return f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}"


def safe_text(text: str) -> str:
    """``text`` (from a submitter, a peer, a colleague) made safe to print on a terminal.

    Every character a terminal could act on shows as a visible stand-in instead:
    C0 controls as their Control Pictures (ESC as "␛", CR as "␍"), DEL as "␡", C1
    controls and bidirectional controls as ``\\x9b`` or ``\\u202e``. Tab and
    newline stay.
    """
    return _UNSAFE.sub(_visible, text)


def safe_rich(text: Text) -> Text:
    """A :class:`Text` made safe as :func:`safe_text` does, its styles kept in place."""
    plain = text.plain
    if not _UNSAFE.search(plain):
        return text
    where = [0] * (len(plain) + 1)  # each old offset's place in the new text
    parts: list[str] = []
    done = 0
    for m in _UNSAFE.finditer(plain):
        for i in range(done, m.start()):
            where[i + 1] = where[i] + 1
        parts += [plain[done : m.start()], _visible(m)]
        where[m.end()] = where[m.start()] + len(parts[-1])
        done = m.end()
    for i in range(done, len(plain)):
        where[i + 1] = where[i] + 1
    parts.append(plain[done:])
    out = text.blank_copy("".join(parts))
    out.spans = [
        Span(where[min(s.start, len(plain))], where[min(s.end, len(plain))], s.style)
        for s in text.spans
    ]
    return out


def _safe(renderable: Any) -> Any:
    if isinstance(renderable, Text):
        return safe_rich(renderable)
    if isinstance(renderable, str):
        return safe_text(renderable)
    return renderable  # a table makes its cells safe (:func:`table`)


class _SafeConsole(Console):
    """A console that prints strings and texts only through :func:`safe_text`."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(_safe(o) for o in objects), **kwargs)


class _SafeTable(Table):
    """A table whose cells pass through :func:`safe_text`."""

    def add_row(self, *renderables: RenderableType | None, **kwargs: Any) -> None:
        super().add_row(*(_safe(r) for r in renderables), **kwargs)


class Output:
    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        self.console: Console = _SafeConsole(highlight=False, soft_wrap=True)

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
    """``doc`` on stdout. The encoder escapes C0 controls (ESC as ``\\u001b``); DEL,
    C1 and bidirectional controls it would write raw are escaped here too (they
    occur only inside strings, so the document decodes the same)."""
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    text = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def error(message: str, as_json: bool) -> None:
    """The one way a failure is shown: one line on stderr (and JSON on stdout)."""
    line = " ".join(message.split()) or "failed"
    if as_json:
        emit_json({"error": line})
    sys.stderr.write(f"error: {safe_text(line)}\n")
    sys.stderr.flush()


def short(raw: bytes) -> str:
    """The id prefix shown to people; any unique prefix of 8+ hex digits is accepted back."""
    return raw.hex()[:8]


def fingerprint(raw: bytes) -> str:
    """A whole id in groups of four hex digits, to compare aloud."""
    h = raw.hex()
    return " ".join(h[i : i + 4] for i in range(0, len(h), 4))


def table(*columns: str) -> Table:
    t = _SafeTable(box=None, pad_edge=False, show_edge=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    return t
