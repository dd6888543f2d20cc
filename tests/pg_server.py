"""A throwaway PostgreSQL server for the tests, started from the machine's own binaries.

pytest-postgresql's process fixture runs initdb and pg_ctl as the current user inside pytest's
temp dir (mode 0700). CI runs as root, and PostgreSQL refuses to run as root, so this module
starts the server itself: as the `postgres` system user when we are root (`runuser`), in a temp
dir that user owns, on a free 127.0.0.1 port, with durability off since the data is thrown away.
Each test gets its own database, copied from a template that is migrated once.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SERVER_USER = "postgres"
TEMPLATE = "cortex_template"


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    if os.environ.get("CORTEX_PG_BINDIR"):
        candidates.append(Path(os.environ["CORTEX_PG_BINDIR"]))
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True).stdout
            candidates.append(Path(out.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    candidates.extend(Path(p) for p in reversed(versions))
    if shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl")).parent)
    for bindir in candidates:
        if (bindir / "pg_ctl").is_file() and (bindir / "initdb").is_file():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One PostgreSQL cluster in a temp dir: start(), database(), drop(), stop()."""

    def __init__(self, bindir: Path, *, durable: bool = False):
        self.bindir = bindir
        self.durable = durable  # False: fsync, synchronous commit and full-page writes off (tests; what is lost on a crash is only test data)
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="cortex-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._names = itertools.count()
        if self.as_root:
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise RuntimeError(f"running as root, but there is no {SERVER_USER!r} user to run PostgreSQL as; install postgresql with apt") from None
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o700)

    def _run(self, *args: str) -> str:
        """Run a server binary (as the postgres user when we are root); its output, or RuntimeError with it."""
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        env.pop("PGDATA", None)
        proc = subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.is_file() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}\n{log}")
        return proc.stdout

    def start(self) -> "PgServer":
        self._run("initdb", "-D", str(self.data), "-U", SERVER_USER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        for attempt in range(3):  # the free port may be taken between probing and binding
            self.port = _free_port()
            try:
                self.resume()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self._admin(f'CREATE DATABASE "{TEMPLATE}"')
        return self

    def halt(self) -> None:
        """Stop the server at once, as a crash or an operator would; its data stay for `resume`."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")

    def resume(self) -> None:
        """(Re)start the server on its port."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} -c max_connections=200"
                   + ("" if self.durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"))
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options)

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/{dbname}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=SERVER_USER, dbname="postgres", autocommit=True) as conn:
            conn.execute(sql)

    def database(self, *, empty: bool = False) -> str:
        """A new database, a copy of the (migrated) template or, if `empty`, without any table; its URL."""
        name = f"test_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}"' + ("" if empty else f' TEMPLATE "{TEMPLATE}"'))
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop a database made by `database`, closing connections a test left open."""
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        try:
            if self.port and (self.data / "postmaster.pid").exists():  # not already halted
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
