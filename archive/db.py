"""Opening an archive: the engine, SQLite pragmas, and migration to the current schema.

SQLite (the embedded default) runs in WAL mode so readers (`scientist status`, the web
page) never block the campaign writing, and every transaction takes the write lock at BEGIN,
so writers are serialised. PostgreSQL (`postgresql://...`, through psycopg 3: the
`[postgres]` extra) runs transactions at READ COMMITTED, side by side; the few
read-then-write steps whose outcome depends on rows other writers may be adding take a
lock first (archive.writes.lock_campaign), and the schema is migrated under an advisory
lock, so several campaigns and processes can share one database.

Commands that only read open the archive with open_reader: read-only (SQLite opens the file
with mode=ro, PostgreSQL sessions are READ ONLY), never creating nor migrating it. Whatever
says the archive itself is unusable (missing, empty, damaged, not ours, at another schema)
becomes one ArchiveError whose message names the archive and what to do.
"""

import contextlib
import enum
import fcntl
import json
import os
from functools import partial
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, func, inspect, select
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlmodel import Session

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DEFAULT_URL = "sqlite:///scientist-runs/archive.db"
# Keys of PostgreSQL advisory locks: (ADVISORY_NAMESPACE, campaign id) for one campaign's
# deduplication (archive.writes.lock_campaign), (ADVISORY_NAMESPACE, 0) for migrations
# (campaign ids start at 1).
ADVISORY_NAMESPACE = 0x524C5343  # "RLSC"
MIGRATION_LOCK = 0
SQLITE_CONNECT_ARGS = {"timeout": 60, "check_same_thread": False}
IN_MEMORY = ":memory:"
# SQLite's primary result codes, and PostgreSQL's SQLSTATEs, that say the archive itself is
# unusable rather than that one statement failed (a constraint, a write on a reader).
SQLITE_DAMAGED = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
SQLITE_UNREACHABLE = frozenset({"SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM"})
SQLITE_MISSING_OBJECT = ("no such table", "no such column")
POSTGRES_MISSING_OBJECT = frozenset({"42P01", "42703"})  # undefined_table, undefined_column
CAUSE_CHARS = 200  # of a driver's message quoted in an ArchiveError
VALUE_CHARS = 40  # of a malformed stored value quoted in an ArchiveError

ANOTHER_ARCHIVE = "pass --db with the campaign's archive (or set $SCIENTIST_DB)"
RESTORE = f"restore it from a backup, or {ANOTHER_ARCHIVE}"


class Failure(enum.Enum):
    """What can be wrong with an archive: (what is wrong, what to do)."""

    BAD_URL = ("not a database URL", "give sqlite:///PATH or postgresql://USER@HOST/DB")
    NO_DRIVER = ("a PostgreSQL archive needs psycopg", "pip install 'rl-scientist[postgres]'")
    IN_MEMORY = (
        "an in-memory SQLite archive cannot be read from another process",
        "give the path of an archive file",
    )
    MISSING = ("no archive there (no such file)", f"run a campaign first, or {ANOTHER_ARCHIVE}")
    EMPTY = ("an empty file (0 bytes), not an rl-scientist archive", ANOTHER_ARCHIVE)
    UNSTAMPED = ("not an rl-scientist archive (it has no schema revision)", ANOTHER_ARCHIVE)
    FOREIGN = (
        "not an rl-scientist archive (it has tables but no schema revision)",
        f"nothing was written to it; {ANOTHER_ARCHIVE}",
    )
    OLDER = (
        "its schema is older than this version's",
        "`scientist archive upgrade` migrates it (commands that only read never do)",
    )
    NEWER = ("it was written by a newer rl-scientist", "use that version")
    DAMAGED = ("damaged, or not an SQLite database", RESTORE)
    MISMATCHED = ("its tables do not match its schema revision", RESTORE)
    MALFORMED = ("it holds a value that is not JSON where JSON belongs", RESTORE)
    UNREACHABLE = (
        "cannot be opened",
        "check the path and its permissions, or that the database server runs",
    )


class ArchiveError(RuntimeError):
    """An archive that cannot be used as asked; the message is one line."""


class MalformedValue(ArchiveError, ValueError):
    """A stored JSON value that does not decode (a ValueError still, as json's own error)."""


def failed(
    failure: Failure, url: URL | str, detail: str | None = None, kind=ArchiveError
) -> ArchiveError:
    problem, remedy = failure.value
    return kind(
        f"archive {where(url)}: {problem}" + (f" ({detail})" if detail else "") + f"; {remedy}"
    )


def where(url: URL | str) -> str:
    """The archive as its user names it: the SQLite file, or the URL without its password."""
    if isinstance(url, str):
        return url
    if url.get_backend_name() == "sqlite" and url.database:
        return url.database
    return url.render_as_string(hide_password=True)


def cause(error: BaseException) -> str:
    """The driver's own message, on one line (SQLAlchemy's adds the statement and a link)."""
    original = getattr(error, "orig", None) or error
    return " ".join(str(original).split())[:CAUSE_CHARS]


def classify(error: BaseException, connecting: bool) -> Failure | None:
    """The Failure a database error reveals, or None when it is about one statement."""
    code = "_".join(getattr(error, "sqlite_errorname", "").split("_")[:2])  # the primary code
    if code in SQLITE_DAMAGED:
        return Failure.DAMAGED
    if str(error).startswith(SQLITE_MISSING_OBJECT) or (
        getattr(error, "sqlstate", None) in POSTGRES_MISSING_OBJECT
    ):
        return Failure.MISMATCHED
    if connecting or code in SQLITE_UNREACHABLE:
        return Failure.UNREACHABLE
    return None


def _translate(name: URL, context: ExceptionContext) -> None:
    """handle_error listener: an error that says the archive is unusable is raised as an
    ArchiveError in its place, wherever the statement ran; any other is left as it is."""
    if context.is_pre_ping:  # a stale pooled connection: the pool replaces it by itself
        return
    failure = classify(context.original_exception, connecting=context.connection is None)
    if failure is not None:
        raise failed(failure, name, cause(context.original_exception))


def _decode_json(name: URL, text: str):
    """The archive's JSON columns' decoder: a value no writer stored is a MalformedValue."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: absurd nesting
        detail = f"{type(error).__name__}: {error}; stored {text[:VALUE_CHARS]!r}"
        raise failed(Failure.MALFORMED, name, detail, kind=MalformedValue) from None


def _archive_engine(url: URL, name: URL, **options) -> Engine:
    """Every engine on an archive: its errors and malformed JSON values name it as `name`
    (the URL its user gave, where `url` may be a read-only rewriting of it)."""
    engine = create_engine(url, json_deserializer=partial(_decode_json, name), **options)
    event.listen(engine, "handle_error", partial(_translate, name))
    return engine


def default_url() -> str:
    return os.environ.get("SCIENTIST_DB", DEFAULT_URL)


def normalised_url(url: str | URL) -> URL:
    """postgresql:// and postgres:// mean psycopg 3 (the `[postgres]` extra), not
    SQLAlchemy's default psycopg2."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise failed(Failure.BAD_URL, str(url)) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def require_driver(url: URL) -> None:
    if url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg":
        try:
            import psycopg  # noqa: F401
        except ImportError as error:
            raise failed(Failure.NO_DRIVER, url) from error


def _sqlite_file(url: URL) -> Path | None:
    """The archive's file, None for an in-memory SQLite database or another backend."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", IN_MEMORY):
        return None
    return Path(url.database)


def require_existing(url: URL) -> None:
    """An SQLite archive must be a non-empty file before it is opened (SQLite would make one)."""
    path = _sqlite_file(url)
    if path is None:
        return
    if not path.is_file():
        raise failed(Failure.MISSING, url)
    if path.stat().st_size == 0:
        raise failed(Failure.EMPTY, url)


def make_engine(url: str | URL) -> Engine:
    """An engine that writes (the SQLite file and its folder are made when missing)."""
    parsed = normalised_url(url)
    require_driver(parsed)
    if parsed.get_backend_name() == "sqlite":
        _make_folder(parsed)
        engine = _archive_engine(parsed, parsed, connect_args=SQLITE_CONNECT_ARGS)
        event.listen(engine, "connect", _sqlite_pragmas)
        # Writes take the lock at BEGIN, so a read-then-write transaction cannot be
        # overtaken by another writer between its read and its write.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    else:
        # READ COMMITTED (PostgreSQL's default, made explicit): each statement sees what was
        # committed before it began, so a read made after taking lock_campaign sees every row
        # the lock's previous holder wrote. At REPEATABLE READ the snapshot could predate the
        # lock.
        engine = _archive_engine(
            parsed, parsed, pool_pre_ping=True, isolation_level="READ COMMITTED"
        )
    return engine


def _make_folder(url: URL) -> None:
    path = _sqlite_file(url)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise failed(Failure.UNREACHABLE, url, str(error)) from None


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """Per connection (the journal mode, stored in the file, is set by open_engine)."""
    dbapi_connection.isolation_level = None  # transactions are begun explicitly (see make_engine)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def alembic_config(engine: Engine | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except CommandError as error:  # e.g. several rows in alembic_version
        raise failed(Failure.MISMATCHED, engine.url, str(error)) from error


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()


def known_revisions() -> set[str]:
    return {s.revision for s in ScriptDirectory.from_config(alembic_config(None)).walk_revisions()}


def upgrade(engine: Engine, *, create: bool = True) -> None:
    """Bring the archive to the newest schema; a no-op when it is there already. With
    create=False an archive without a schema revision is refused rather than created."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is not None and current not in known_revisions():
        raise failed(Failure.NEWER, engine.url, f"schema revision {current}")
    if current is None and not create:
        raise failed(Failure.UNSTAMPED, engine.url)
    with _migration_lock(engine):
        # Read again under the lock: another process may have created the archive meanwhile.
        current = current_revision(engine)
        if current is None and inspect(engine).get_table_names():
            raise failed(Failure.FOREIGN, engine.url)
        try:
            command.upgrade(alembic_config(engine), "head")
        except (SQLAlchemyError, CommandError) as error:
            detail = f"migrating revision {current} to {head}: {cause(error)}"
            raise failed(Failure.MISMATCHED, engine.url, detail) from error


@contextlib.contextmanager
def _migration_lock(engine: Engine):
    """Two processes opening a new archive at once must not both create it (alembic reads
    the current revision again once the lock is held, so the second one does nothing)."""
    if engine.url.get_backend_name() == "postgresql":
        with _postgres_migration_lock(engine):
            yield
        return
    path = _sqlite_file(engine.url)
    if path is None:
        yield
        return
    with open(f"{path}.migrate-lock", "w") as handle:
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


def open_engine(url: str | None = None, *, create: bool = True) -> Engine:
    """An engine that writes, on an archive at the newest schema (migrated if older). With
    create=False the archive must exist already: nothing is made where there was none."""
    parsed = normalised_url(url or default_url())
    if not create:
        require_existing(parsed)
    engine = make_engine(parsed)
    upgrade(engine, create=create)
    _write_ahead(engine)
    return engine


def _write_ahead(engine: Engine) -> None:
    """WAL mode, so readers never block the writer. It is stored in the file, so it is set
    only once the file is known to be an archive: never on another program's database."""
    if engine.url.get_backend_name() != "sqlite":
        return
    connection = engine.raw_connection()  # outside a transaction, where the mode can change
    try:
        connection.cursor().execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def open_reader(url: str | None = None) -> Engine:
    """A read-only engine on an existing archive at this version's schema: for commands that
    only read. It neither creates nor migrates anything.

    make_engine begins every transaction with BEGIN IMMEDIATE, which takes SQLite's write
    lock: right for writers, wrong for a reader while a campaign writes. The reader opens the
    file read-only (mode=ro) and begins deferred transactions (a consistent snapshot each, no
    lock). On PostgreSQL its sessions set default_transaction_read_only (a write fails with
    "cannot execute ... in a read-only transaction") and run at REPEATABLE READ, one snapshot
    per transaction, which read-only transactions get without serialisation failures."""
    parsed = normalised_url(url or default_url())
    require_driver(parsed)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_reader(parsed)
    else:
        engine = _archive_engine(
            parsed, parsed, pool_pre_ping=True, isolation_level="REPEATABLE READ"
        )
        if parsed.get_backend_name() == "postgresql":
            event.listen(engine, "connect", _postgres_read_only)
    _check_revision(engine, parsed)
    return engine


def _sqlite_reader(url: URL) -> Engine:
    path = _sqlite_file(url)
    if path is None:
        raise failed(Failure.IN_MEMORY, url)
    require_existing(url)
    read_only = URL.create(
        "sqlite", database=path.resolve().as_uri(), query={"mode": "ro", "uri": "true"}
    )
    engine = _archive_engine(read_only, url, connect_args=SQLITE_CONNECT_ARGS)
    event.listen(engine, "connect", _sqlite_read_only)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
    return engine


def _sqlite_read_only(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun explicitly (above)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _postgres_read_only(dbapi_connection, _record) -> None:
    """For the connection's whole session, set before SQLAlchemy uses it (a pool reset rolls
    back transactions, not this committed setting)."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET default_transaction_read_only = on")
        cursor.close()
    finally:
        dbapi_connection.autocommit = autocommit


def _check_revision(engine: Engine, url: URL) -> None:
    """A reader needs this version's schema: reading an older or newer one could misread it,
    and upgrading it would be a write."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is None:
        raise failed(Failure.UNSTAMPED, url)
    failure = Failure.OLDER if current in known_revisions() else Failure.NEWER
    raise failed(failure, url, f"schema revision {current}, this version's is {head}")


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


@contextlib.contextmanager
def reading(engine: Engine):
    """A session that only reads: nothing is committed, its transaction is rolled back when
    it closes (the web pages')."""
    with Session(engine) as session:
        yield session
