"""The ``backchannel`` command: a thin Typer adapter over the client library's ``Client``.

Every failure is handled here, in :func:`main`: a :class:`BackchannelError`
becomes one line on stderr (``error: ...``; with ``--json`` also
``{"error": ...}`` on stdout) and exit status 2 for a configuration or usage
error, 1 for any other. ``sync`` exits 3 when the relay could not be reached
(the cells wait on the device). Nothing here prints a traceback for an
expected error, and no message holds a passphrase, a key or plaintext.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from backchannel import __version__
from backchannel.cli import (
    audit_cmd,
    channel,
    demo_cmd,
    evidence,
    inbox,
    intake,
    messages,
    mission,
    officer,
    peer,
    policy_cmd,
    recovery_cmd,
    roster_cmd,
    rounds,
    ui_cmd,
)
from backchannel.cli.context import ENV_HOME, Session, resolve_settings
from backchannel.cli.output import error
from backchannel.cli.relay_cmd import relay_app
from backchannel.cli.witness_cmd import witness_app
from backchannel.errors import BackchannelError, ConfigError

#: Set to re-raise unexpected exceptions with their traceback (development only).
ENV_DEBUG = "BACKCHANNEL_DEBUG"

app = typer.Typer(
    name="backchannel",
    help="Secure mailbox between two missions, under the two-person rule.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"backchannel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            envvar=ENV_HOME,
            help="The officer's home directory.",
            show_default="~/.local/share/backchannel/officer",
            show_envvar=True,
        ),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            help="Read the passphrase from this file (else $BACKCHANNEL_PASSPHRASE, else ask).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document and nothing else on stdout.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Secure mailbox between two missions, under the two-person rule."""
    session = ctx.ensure_object(Session)
    session.settings = resolve_settings(
        home, passphrase_file, as_json, os.environ, ctx.invoked_subcommand
    )


app.add_typer(officer.app, name="officer")
mission.app.add_typer(roster_cmd.app, name="change")
mission.app.add_typer(policy_cmd.app, name="policy")
app.add_typer(mission.app, name="mission")
app.add_typer(peer.app, name="peer")
app.add_typer(channel.app, name="channel")
app.command()(messages.compose)
app.command()(messages.send)
app.command()(messages.drafts)
app.add_typer(messages.cosign_app, name="cosign")
app.command()(inbox.inbox)
app.command("open")(inbox.open_message)
app.command()(inbox.read)
app.command()(inbox.forget)
app.add_typer(inbox.share_app, name="share")
app.command()(rounds.sync)
app.command("run")(rounds.run_daemon)
app.command()(rounds.status)
app.add_typer(evidence.app, name="evidence")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(recovery_cmd.app, name="recovery")
app.add_typer(intake.app, name="intake")
app.add_typer(relay_app, name="relay")
app.add_typer(witness_app, name="witness")
app.command()(demo_cmd.demo)
app.command()(ui_cmd.ui)


def exit_code(exc: BackchannelError) -> int:
    return 2 if isinstance(exc, ConfigError) else 1


def _run(argv: list[str] | None, session: Session) -> None:
    # Standalone mode: the argument parser reports usage errors itself (exit 2)
    # and turns typer.Exit(n) into SystemExit(n); everything else comes here.
    command = typer.main.get_command(app)
    command.main(args=argv, prog_name="backchannel", obj=session, standalone_mode=True)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; the one place where errors become messages and exit codes."""
    session = Session()
    code = 0
    try:
        _run(argv, session)
    except BackchannelError as exc:
        error(str(exc), session.json)
        code = exit_code(exc)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # a bug: say so in one line, without the message's data
        if os.environ.get(ENV_DEBUG):
            raise
        error(
            f"unexpected internal error ({type(exc).__name__}); "
            f"please report it (set {ENV_DEBUG}=1 to see the details)",
            session.json,
        )
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
