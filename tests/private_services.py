"""Private PostgreSQL and Redis instances that a fault test may stop, kill and restart.

The machine's own PostgreSQL and Redis serve every other test (and other people); they are
never touched. Each instance here lives in its own temporary folder on a free loopback port,
runs as a daemon described by that folder, and can be driven from any process that knows the
folder and port (the test that creates it, or the scenario it runs in a subprocess).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _wait(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found under /usr/lib/postgresql/*/bin")
    return found[-1]


class PrivatePostgres:
    """A cluster of its own, owned by the `postgres` OS user (initdb refuses root), trusting
    local connections."""

    def __init__(self, root: str | Path, port: int):
        self.root = Path(root)
        self.port = port
        self.data = self.root / "data"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/assay_faults"

    def _as_postgres(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*prefix, *argv],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    @classmethod
    def create(cls) -> PrivatePostgres:
        root = Path(tempfile.mkdtemp(prefix="assay-private-pg-"))
        root.chmod(0o755)
        pg = cls(root, free_port())
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        pg._as_postgres(
            _pg_bin("initdb"), "-D", str(pg.data), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        pg.start()
        return pg

    def copy_schema(self, source: dict, name: str) -> None:
        """Create database `name` here with the schema (and the migration history) of the
        already migrated database `source` (a Django DATABASES entry): the production schema,
        triggers included, in a second rather than a full `migrate`."""
        env = {**os.environ, "PGPASSWORD": source.get("PASSWORD") or ""}
        where = ["-h", source["HOST"] or "127.0.0.1", "-p", str(source["PORT"] or 5432)]
        where += ["-U", source["USER"] or "postgres"]
        here = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        subprocess.run(
            [_pg_bin("createdb"), *here, name], check=True, timeout=60, capture_output=True
        )
        for what in (["--schema-only"], ["--data-only", "--table=django_migrations"]):
            dump = subprocess.run(
                [_pg_bin("pg_dump"), *where, "--no-owner", "--no-privileges", *what],
                check=True,
                timeout=120,
                capture_output=True,
                env={**env, "PGDATABASE": source["NAME"]},
            )
            subprocess.run(
                [_pg_bin("psql"), *here, "-d", name, "-q", "-v", "ON_ERROR_STOP=1"],
                input=dump.stdout,
                check=True,
                timeout=120,
                capture_output=True,
            )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            # fsync off: only an operating-system crash would lose data. synchronous_commit
            # stays on: with it off, a crash of PostgreSQL itself forgets commits it has
            # already acknowledged, which a fault test must not confuse with the engine's.
            "-c fsync=off -c full_page_writes=off"
        )
        self._as_postgres(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "start",
        )
        _wait(lambda: answers(self.port), f"PostgreSQL on port {self.port}")

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects every client and stops; `immediate` is a crash."""
        self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        _wait(lambda: not answers(self.port), f"PostgreSQL on port {self.port} to stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """`redis-server` as the machine runs it (no RDB snapshots, no append-only file), so a
    restart loses everything: queued tasks, unacknowledged tasks and the judges' limits."""

    def __init__(self, root: str | Path, port: int):
        self.root = Path(root)
        self.port = port
        self.pidfile = self.root / "redis.pid"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def create(cls) -> PrivateRedis:
        redis = cls(tempfile.mkdtemp(prefix="assay-private-redis-"), free_port())
        redis.start()
        return redis

    def start(self) -> None:
        subprocess.run(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--dir",
                str(self.root),
                "--logfile",
                str(self.root / "redis.log"),
            ],
            check=True,
            timeout=30,
        )
        _wait(lambda: answers(self.port), f"Redis on port {self.port}")

    def kill(self) -> None:
        """kill -9, as a crash or an OOM kill would: nothing is saved."""
        pid = int(self.pidfile.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait(lambda: not answers(self.port), f"Redis on port {self.port} to stop")
        self.pidfile.unlink(missing_ok=True)

    def destroy(self) -> None:
        if self.pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError, RuntimeError):
                self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def from_env() -> tuple[PrivatePostgres, PrivateRedis]:
    """The instances a scenario subprocess was handed (see tests/test_service_faults.py)."""
    return (
        PrivatePostgres(os.environ["ASSAY_FAULT_PG_ROOT"], int(os.environ["ASSAY_FAULT_PG_PORT"])),
        PrivateRedis(
            os.environ["ASSAY_FAULT_REDIS_ROOT"], int(os.environ["ASSAY_FAULT_REDIS_PORT"])
        ),
    )


def to_env(pg: PrivatePostgres, redis: PrivateRedis) -> dict[str, str]:
    return {
        "DATABASE_URL": pg.url,
        "CELERY_BROKER_URL": redis.url,
        "ASSAY_REDIS_URL": redis.url,
        "ASSAY_FAULT_PG_ROOT": str(pg.root),
        "ASSAY_FAULT_PG_PORT": str(pg.port),
        "ASSAY_FAULT_REDIS_ROOT": str(redis.root),
        "ASSAY_FAULT_REDIS_PORT": str(redis.port),
    }
