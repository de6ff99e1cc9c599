"""A private PostgreSQL cluster (initdb in a temporary directory) that a trial may restart.

The machine's own server is never touched: restarts, crashes and a full disk
happen to a cluster of the harness's own, on a port of its own. PostgreSQL
refuses to run as root; as root the cluster runs as the ``postgres`` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from tests.relay.procs import free_port


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    root = Path("/usr/lib/postgresql")
    versions = sorted(root.iterdir(), reverse=True) if root.is_dir() else []
    for v in versions:
        if (v / "bin" / "pg_ctl").exists():
            return v / "bin"
    return None


def unavailable() -> str | None:
    """Why no private cluster can be made here (None when one can)."""
    if _bindir() is None:
        return "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root with no 'postgres' user to run a cluster as"
    return None


class PrivateCluster:
    def __init__(self, root: Path) -> None:
        bindir = _bindir()
        assert bindir is not None, unavailable()
        self.bin = bindir
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.logfile = root / "server.log"
        self._user = "postgres" if os.geteuid() == 0 else None

    def _run(self, shell: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["bash", "-c", shell]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{shell!r} failed: {done.stderr[-1500:]}{done.stdout[-500:]}")
        return done

    def init(self) -> PrivateCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            user = pwd.getpwnam(self._user)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(
            f"{self.bin}/initdb -D {self.data} -A trust -U postgres --no-sync -E UTF8 >/dev/null"
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nfsync = on\n"
                "max_connections = 60\nshared_buffers = 16MB\n"
            )
        return self

    def start(self, file_limit_kib: int | None = None, wait: int = 60) -> None:
        """Start the server; with ``file_limit_kib`` no file of it grows past that (a full disk)."""
        limit = f"ulimit -f {file_limit_kib}; " if file_limit_kib else ""
        self._run(
            f"{limit}{self.bin}/pg_ctl -D {self.data} -l {self.logfile} -w -t {wait} start "
            ">/dev/null"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(
            f"{self.bin}/pg_ctl -D {self.data} -m {mode} -w -t 60 stop >/dev/null", check=False
        )

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
