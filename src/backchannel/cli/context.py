"""What every command shares: the settings resolved once, the unlocked client, files.

The root callback resolves :class:`Settings` once from the global options and
the environment and leaves them in the :class:`Session` that ``main`` created,
so the single error handler in ``main`` knows whether to answer in JSON. The
passphrase is asked for only by the commands that open the home.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import typer

from backchannel.client.home import Home
from backchannel.client.keystore import (
    DEFAULT_PARAMS,
    KdfParams,
    Passphrase,
    resolve_passphrase,
)
from backchannel.client.service import Client
from backchannel.errors import ConfigError

ENV_HOME = "BACKCHANNEL_HOME"
#: ``fast`` selects cheap Argon2 parameters. For tests only: a keystore made so
#: falls to a guessing attack far sooner than one with the default parameters.
ENV_KDF = "BACKCHANNEL_KDF"
#: ``1`` marks a test suite's run: the only place, with ``demo``, where ENV_KDF=fast is taken.
ENV_TEST = "BACKCHANNEL_TEST"
#: The commands that make demo homes, which take ENV_KDF=fast without ENV_TEST.
DEMO_COMMANDS = frozenset({"demo"})
DEFAULT_HOME = Path("~/.local/share/backchannel/officer")
FAST_KDF = KdfParams(memory_kib=1024, time_cost=1, parallelism=1)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    passphrase_file: Path | None
    json: bool
    kdf: KdfParams
    env: Mapping[str, str] = field(repr=False)


@dataclass(slots=True)
class Session:
    """Filled in by the root callback; read by ``main`` when a command fails."""

    settings: Settings | None = None

    @property
    def json(self) -> bool:
        return self.settings is not None and self.settings.json


def kdf_params(env: Mapping[str, str], command: str | None = None) -> KdfParams:
    """The Argon2 parameters for new keystores; ``fast`` only in a test suite or a demo."""
    value = env.get(ENV_KDF, "").strip().lower()
    if value in ("", "default"):
        return DEFAULT_PARAMS
    if value != "fast":
        raise ConfigError(f"{ENV_KDF} must be 'fast' (tests only) or unset")
    if env.get(ENV_TEST) != "1" and command not in DEMO_COMMANDS:
        raise ConfigError(
            f"{ENV_KDF}=fast makes keystores whose passphrase is cheap to guess; it is taken "
            f"only by test suites ({ENV_TEST}=1) and `backchannel demo`: unset it"
        )
    return FAST_KDF


def resolve_settings(
    home: Path | None,
    passphrase_file: Path | None,
    as_json: bool,
    env: Mapping[str, str],
    command: str | None = None,
) -> Settings:
    return Settings(
        home=(home or DEFAULT_HOME).expanduser().absolute(),
        passphrase_file=passphrase_file,
        json=as_json,
        kdf=kdf_params(env, command),
        env=dict(env),
    )


def warn(text: str) -> None:
    """One line on stderr that does not stop the command."""
    sys.stderr.write(f"warning: {' '.join(text.split())}\n")
    sys.stderr.flush()


def warn_fast_kdf(s: Settings) -> None:
    """Said each time a keystore is made with the cheap parameters."""
    if s.kdf == FAST_KDF:
        warn(
            f"{ENV_KDF}=fast: this keystore's passphrase is cheap to guess "
            "(for tests and demos only)"
        )


def warn_argv(what: str, instead: str) -> None:
    """A secret given on the command line is visible to other users of this machine."""
    warn(
        f"{what} on the command line can be seen by other users of this machine "
        f"(in the process list and the shell history); {instead}"
    )


def read_secret_input(label: str, *, hide: bool) -> str:
    """From a prompt in a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        return _asked(label, hide=hide)
    return sys.stdin.readline()


def _asked(label: str, *, hide: bool, confirm: bool = False) -> str:
    """A prompt's answer; Ctrl-C (or Ctrl-D) at it exits 130, as it does anywhere else."""
    try:
        return str(typer.prompt(label, hide_input=hide, confirmation_prompt=confirm))
    except typer.Abort:  # what the prompt makes of the interrupt
        raise typer.Exit(130) from None


def settings(ctx: typer.Context) -> Settings:
    session = ctx.find_root().obj
    if not isinstance(session, Session) or session.settings is None:
        raise ConfigError("settings were not resolved; run through `backchannel`")
    return session.settings


def _prompt(confirm: bool) -> Callable[[str], str]:
    def ask(text: str) -> str:
        label = text.rstrip().rstrip(":")  # the prompt adds its own ": "
        return _asked(label, hide=True, confirm=confirm)

    return ask


def passphrase(s: Settings, *, confirm: bool = False) -> Passphrase:
    """From --passphrase-file, else the environment, else a hidden prompt in a terminal."""
    prompt = _prompt(confirm) if sys.stdin.isatty() else None
    return resolve_passphrase(s.passphrase_file, s.env, prompt)


@contextmanager
def open_client(ctx: typer.Context) -> Iterator[Client]:
    """Unlock the officer's home and close it again when the command is done."""
    s = settings(ctx)
    home = Home.unlock(s.home, passphrase(s))
    try:
        yield Client(home)
    finally:
        home.close()


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


# --- files --------------------------------------------------------------------


def read_file(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no such file {path}; check the path of {what}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not {what}; check you passed the right file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {_strerror(exc)}") from None


def write_file(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all (a temporary file renamed over ``path``)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {_strerror(exc)}") from None


def _strerror(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
