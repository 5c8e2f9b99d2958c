"""A real, throwaway PostgreSQL server for tests.

initdb makes a cluster in a temporary directory, and `postgres` serves it on a free TCP port
of 127.0.0.1 (and a unix socket in the same directory), with trust authentication and
durability off (fsync, synchronous_commit): fast, and gone when stop() removes the
directory. The binaries come from the Debian package `postgresql`
(/usr/lib/postgresql/<version>/bin, found by glob; scripts/install-system-deps.sh installs
it) or from PATH.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user when
there is one, else as nobody (uid 65534), in a directory owned by that user. It is started
under `setpriv --pdeathsig SIGINT` where setpriv exists, so a test run killed outright does
not leave a server behind: its death asks the server for a fast shutdown.

Each test that needs isolation makes its own database: create_database(admin_url).
"""

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

SUPERUSER = "postgres"
START_TIMEOUT = 60.0


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (a reason to skip, not a failure)."""


def find_bin_dir() -> Path:
    """The directory of initdb and postgres: the newest Debian-installed version, else PATH."""
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parent.parent.name)] or [0],
    )
    if versions:
        return Path(versions[-1]).parent
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres and Path(initdb).parent == Path(postgres).parent:
        return Path(initdb).parent
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, postgres) in /usr/lib/postgresql/*/bin "
        "or on PATH; scripts/install-system-deps.sh installs the Debian package postgresql"
    )


def _unprivileged_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534  # nobody / nogroup


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    def __init__(self, bin_dir: Path | None = None):
        self.bin_dir = bin_dir or find_bin_dir()
        self.user = _unprivileged_user()
        self.root: Path | None = None
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "PostgresServer":
        remove_stale_directories()
        # As root, /tmp rather than $TMPDIR: the server's user must be able to reach the directory.
        self.root = Path(tempfile.mkdtemp(prefix="rlsci-pg-", dir="/tmp" if self.user else None))
        if self.user:
            os.chown(self.root, *self.user)
        self.data, self.sockets, self.log = (
            self.root / "data",
            self.root / "run",
            self.root / "server.log",
        )
        self.sockets.mkdir()
        if self.user:
            os.chown(self.sockets, *self.user)
        try:
            self._run(
                [
                    self.bin_dir / "initdb",
                    "--pgdata",
                    str(self.data),
                    "--username",
                    SUPERUSER,
                    "--auth",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                    "--no-sync",
                    "--no-instructions",
                ]
            )
            for _ in range(5):  # the free port can be taken between probing and binding it
                self.port = _free_port()
                if self._serve():
                    return self
            raise RuntimeError(f"PostgreSQL did not start; its log:\n{self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _serve(self) -> bool:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.sockets),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        command = [str(self.bin_dir / "postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self._as_user(command, pdeathsig=True),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                **self._popen_user(),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                # exited: most likely the port was taken (the caller retries with another)
                return False
            if self._accepts_connections():
                return True
            time.sleep(0.05)
        self._terminate()
        raise RuntimeError(
            f"PostgreSQL did not accept connections within {START_TIMEOUT:.0f} s; its log:\n"
            f"{self._log_tail()}"
        )

    def stop(self) -> None:
        self._terminate()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _terminate(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # fast shutdown: disconnects clients, rolls back
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGQUIT)  # immediate shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    # -- connections ----------------------------------------------------------------------------
    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _accepts_connections(self) -> bool:
        result = subprocess.run(
            [
                str(self.bin_dir / "pg_isready"),
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-t",
                "1",
            ],
            capture_output=True,
        )
        return result.returncode == 0

    # -- running as the unprivileged user ----------------------------------------------------------
    def _as_user(self, command: list, pdeathsig: bool = False) -> list[str]:
        command = [str(c) for c in command]
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            return command
        prefix = [setpriv]
        if self.user:
            uid, gid = self.user
            prefix += ["--reuid", str(uid), "--regid", str(gid), "--clear-groups"]
        if pdeathsig:
            prefix += ["--pdeathsig", "INT"]
        return prefix + ["--"] + command if len(prefix) > 1 else command

    def _popen_user(self) -> dict:
        """Without setpriv, subprocess switches user itself (no parent-death signal then)."""
        if self.user and shutil.which("setpriv") is None:
            uid, gid = self.user
            return {"user": uid, "group": gid, "extra_groups": []}
        return {}

    def _run(self, command: list) -> None:
        result = subprocess.run(
            self._as_user(command),
            capture_output=True,
            text=True,
            cwd=self.root,
            **self._popen_user(),
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(str(command[0])).name} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}"
            )

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"


def remove_stale_directories(older_than: float = 600.0) -> None:
    """Directories of servers whose test run was killed outright (the parent-death signal
    stopped the server, but nothing was left to remove its files)."""
    for root in glob.glob(os.path.join("/tmp", "rlsci-pg-*")) + glob.glob(
        os.path.join(tempfile.gettempdir(), "rlsci-pg-*")
    ):
        root = Path(root)
        try:
            if time.time() - root.stat().st_mtime < older_than:
                continue
            pid_file = root / "data" / "postmaster.pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text().split()[0]), 0)
                continue  # its server still runs
        except ProcessLookupError:
            pass
        except (OSError, ValueError, IndexError):
            continue
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_server(bin_dir: Path | None = None):
    server = PostgresServer(bin_dir).start()
    try:
        yield server
    finally:
        server.stop()


def create_database(admin_url: str, prefix: str = "test") -> str:
    """A new, empty database on the server of admin_url; returns its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = make_url(admin_url)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
    ) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)
