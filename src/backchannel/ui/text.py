"""Text that others wrote, on the desk's pages: isolated, its invisible controls shown.

Names of missions and officers, message text, what the public writes to the
intake: any of it may carry Unicode's invisible direction controls (the
embeddings and overrides U+202A-U+202E, the isolates U+2066-U+2069, the marks
U+200E, U+200F and U+061C) or other control characters. Shown raw, a
right-to-left override in a peer's name reverses the desk's own sentence
around it ("cancel the conference" reads backwards, the safety check's advice
turns round). The desk therefore does two things, as the command line does
(``backchannel.cli.output``):

* **Every** ``{{ … }}`` of every template passes through :func:`finalize`
  (the Jinja environment's ``finalize`` hook, before autoescaping): each such
  character is shown as a visible stand-in instead, ``\\u202e`` for a
  direction control, a Control Picture (``␀``) for a C0 control. No template
  can forget it. The officer's own words coming back into a form he is
  correcting (``kept``) are marked safe and reach the form as he wrote them.
* Text from anyone but the desk is rendered with the ``untrusted`` filter,
  which also **isolates** it: in ``<bdi>`` (the browser isolates its
  direction, ``unicode-bidi: isolate``, and takes it from its first letter),
  or, where no markup may stand (a ``<title>``, an ``<option>``),
  ``untrusted(tags=False)`` between the isolate characters FSI and PDI that
  mean the same. A sentence of the desk's that names a peer or an officer
  (a note, an alarm) is built with :func:`said`. Right-to-left letters
  (Arabic, Hebrew) are kept as they are: only the invisible controls are
  neutralised.
"""

from __future__ import annotations

import re
from typing import Any

import jinja2
from markupsafe import Markup, escape

#: What reorders or hides the text around it: C0 controls but for tab, newline and
#: carriage return, DEL, C1 controls, the line and paragraph separators, and the
#: direction marks, embeddings, overrides and isolates.
_CONTROLS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
#: First Strong Isolate and Pop Directional Isolate: ``<bdi>`` in plain text.
_FSI, _PDI = "\u2068", "\u2069"


def _visible(match: re.Match[str]) -> str:
    c = ord(match.group())
    if c < 0x20:
        return chr(0x2400 + c)  # the Control Pictures: NUL shows as "␀"
    if c == 0x7F:
        return "\u2421"  # ␡
    return f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}"


def shown(text: str) -> str:
    """``text`` with each invisible control shown as a visible stand-in (``\\u202e``)."""
    return _CONTROLS.sub(_visible, text)


def finalize(value: Any) -> Any:
    """The hook every ``{{ … }}`` passes through: strings get their controls shown.

    Markup is the desk's own (a macro's output, this module's filter, the
    officer's own words back in his form): what others wrote in it passed here
    or through :func:`untrusted` already.
    """
    if isinstance(value, str) and not isinstance(value, Markup):
        return shown(value)
    return value


def untrusted(value: Any, tags: bool = True) -> Markup:
    """Text from others, its controls shown, isolated from the desk's text around it."""
    text = "" if value is None else shown(str(value))
    if not text:
        return Markup("")
    if tags:
        return Markup("<bdi>{}</bdi>").format(text)
    return Markup(_FSI + "{}" + _PDI).format(text)  # noqa: S704 (a constant; format escapes)


def said(sentence: str, *others: object) -> Markup:
    """The desk's ``sentence`` with what others wrote in its ``{}``, each isolated."""
    isolated = (untrusted(o) for o in others)
    return Markup(escape(sentence)).format(*isolated)  # noqa: S704 (escaped; format escapes)


def environment(directory: Any) -> jinja2.Environment:
    """The desk's templates: autoescaped, every value through :func:`finalize`."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory), autoescape=True, finalize=finalize
    )
    env.filters["untrusted"] = untrusted
    return env
