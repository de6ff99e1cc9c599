"""Shell completion of the installed command line works as docs/operations.md says."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BACKCHANNEL = str(Path(sys.executable).parent / "backchannel")


def complete(env: dict[str, str]) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith("_BACKCHANNEL")}
    full.update(env)
    result = subprocess.run(
        [BACKCHANNEL], env=full, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_bash_completes_commands_and_options() -> None:
    words = complete(
        {
            "_BACKCHANNEL_COMPLETE": "complete_bash",
            "COMP_WORDS": "backchannel rel",
            "COMP_CWORD": "1",
        }
    ).split()
    assert words == ["relay"]
    words = complete(
        {
            "_BACKCHANNEL_COMPLETE": "complete_bash",
            "COMP_WORDS": "backchannel relay ",
            "COMP_CWORD": "2",
        }
    ).split()
    assert {"serve", "init", "check-config", "backup", "restore"} <= set(words)
    words = complete(
        {
            "_BACKCHANNEL_COMPLETE": "complete_bash",
            "COMP_WORDS": "backchannel relay serve --log-f",
            "COMP_CWORD": "3",
        }
    ).split()
    assert words == ["--log-format"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_documented_scripts_are_printed(shell: str) -> None:
    script = complete({"_BACKCHANNEL_COMPLETE": f"source_{shell}"})
    assert "_BACKCHANNEL_COMPLETE=complete_" + shell in script


def test_the_bash_script_completes_in_bash(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    script = complete({"_BACKCHANNEL_COMPLETE": "source_bash"})
    (tmp_path / "completion.bash").write_text(script)
    probe = (
        f'PATH="{Path(BACKCHANNEL).parent}:$PATH"; source {tmp_path / "completion.bash"}; '
        "COMP_WORDS=(backchannel relay check); COMP_CWORD=2; "
        '_backchannel_completion backchannel; echo "${COMPREPLY[@]}"'
    )
    result = subprocess.run(
        [bash, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.split() == ["check-config"], result.stderr
