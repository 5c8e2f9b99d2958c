"""A read-only engine on an existing archive.

archive.db.make_engine begins every transaction with BEGIN IMMEDIATE, which takes SQLite's
write lock: right for writers, wrong for a web page that reads while a campaign writes. The
browser's engine begins deferred transactions (a consistent snapshot per request, no lock)
and sets query_only, so a write would fail rather than happen. On PostgreSQL its sessions
set default_transaction_read_only (every transaction is READ ONLY: a write fails with
"cannot execute ... in a read-only transaction") and run at REPEATABLE READ, the same one
snapshot per request, which read-only transactions get without serialisation failures.
It neither creates nor migrates the archive: that is left to the commands that write.
"""

from pathlib import Path

from sqlalchemy import Engine, create_engine, event

from archive.db import current_revision, default_url, head_revision, normalised_url, require_driver


class ArchiveUnreadable(RuntimeError):
    pass


def reader_engine(url: str | None = None) -> Engine:
    parsed = normalised_url(url or default_url())
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ArchiveUnreadable(
                "an in-memory SQLite archive cannot be browsed from another process"
            )
        if not Path(parsed.database).is_file():
            raise ArchiveUnreadable(
                f"no archive at {parsed.database} (run a campaign first, or pass --db)"
            )
        engine = create_engine(parsed, connect_args={"timeout": 60, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_read_only)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
    else:
        require_driver(parsed)
        engine = create_engine(parsed, pool_pre_ping=True, isolation_level="REPEATABLE READ")
        if parsed.get_backend_name() == "postgresql":
            event.listen(engine, "connect", _postgres_read_only)
    check_revision(engine)
    return engine


def _sqlite_read_only(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun explicitly (above)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
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


def check_revision(engine: Engine) -> None:
    """The archive must be at this version's schema: reading an older or newer one could
    misread it, and upgrading it would be a write."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is None:
        raise ArchiveUnreadable(
            "this database is not an rl-scientist archive (it has no schema revision)"
        )
    raise ArchiveUnreadable(
        f"the archive has schema revision {current}, not this version's {head}: if it is older, "
        "any command that writes (e.g. `scientist status NAME`) upgrades it; if newer, use the "
        "newer rl-scientist"
    )
