"""Opening an archive: the engine, SQLite pragmas, and migration to the current schema.

SQLite (the embedded default) runs in WAL mode so readers (`scientist status`, the web
page) never block the campaign writing, and every transaction takes the write lock at BEGIN,
so writers are serialised. PostgreSQL (`postgresql://...`, through psycopg 3: the
`[postgres]` extra) runs transactions at READ COMMITTED, side by side; the few
read-then-write steps whose outcome depends on rows other writers may be adding take a
lock first (archive.writes.lock_campaign), and the schema is migrated under an advisory
lock, so several campaigns and processes can share one database.
"""

import contextlib
import fcntl
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DEFAULT_URL = "sqlite:///scientist-runs/archive.db"
# Keys of PostgreSQL advisory locks: (ADVISORY_NAMESPACE, campaign id) for one campaign's
# deduplication (archive.writes.lock_campaign), (ADVISORY_NAMESPACE, 0) for migrations
# (campaign ids start at 1).
ADVISORY_NAMESPACE = 0x524C5343  # "RLSC"
MIGRATION_LOCK = 0


class ArchiveError(RuntimeError):
    pass


def default_url() -> str:
    return os.environ.get("SCIENTIST_DB", DEFAULT_URL)


def normalised_url(url: str | URL) -> URL:
    """postgresql:// and postgres:// mean psycopg 3 (the `[postgres]` extra), not
    SQLAlchemy's default psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def require_driver(url: URL) -> None:
    if url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg":
        try:
            import psycopg  # noqa: F401
        except ImportError as error:
            raise ArchiveError(
                "a PostgreSQL archive needs psycopg: pip install 'rl-scientist[postgres]'"
            ) from error


def make_engine(url: str | URL) -> Engine:
    parsed = normalised_url(url)
    require_driver(parsed)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 60, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        # Writes take the lock at BEGIN, so a read-then-write transaction cannot be
        # overtaken by another writer between its read and its write.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    # READ COMMITTED (PostgreSQL's default, made explicit): each statement sees what was
    # committed before it began, so a read made after taking lock_campaign sees every row
    # the lock's previous holder wrote. At REPEATABLE READ the snapshot could predate the lock.
    return create_engine(parsed, pool_pre_ping=True, isolation_level="READ COMMITTED")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun explicitly (see make_engine)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()


def upgrade(engine: Engine) -> None:
    """Bring the archive to the newest schema; a no-op when it is there already."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    known = {
        script.revision
        for script in ScriptDirectory.from_config(alembic_config(engine)).walk_revisions()
    }
    if current is not None and current not in known:
        raise ArchiveError(
            f"the archive has schema revision {current}, which this version does not know: "
            "it was written by a newer rl-scientist"
        )
    with _migration_lock(engine):
        command.upgrade(alembic_config(engine), "head")


@contextlib.contextmanager
def _migration_lock(engine: Engine):
    """Two processes opening a new archive at once must not both create it (alembic reads
    the current revision again once the lock is held, so the second one does nothing)."""
    if engine.url.get_backend_name() == "postgresql":
        with _postgres_migration_lock(engine):
            yield
        return
    database = engine.url.database
    if engine.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _postgres_migration_lock(engine: Engine):
    """A session-level advisory lock, on a connection of its own, held while alembic
    migrates on another."""
    connection = engine.connect()
    try:
        connection.execute(select(func.pg_advisory_lock(ADVISORY_NAMESPACE, MIGRATION_LOCK)))
        connection.commit()
        yield
    finally:
        try:
            connection.execute(select(func.pg_advisory_unlock(ADVISORY_NAMESPACE, MIGRATION_LOCK)))
            connection.commit()
        except Exception:
            connection.invalidate()  # closes it, and a closed session holds no lock
        connection.close()


def open_engine(url: str | None = None) -> Engine:
    engine = make_engine(url or default_url())
    upgrade(engine)
    return engine


@contextlib.contextmanager
def transaction(engine: Engine):
    """One unit of work: committed whole at the end, rolled back whole on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
