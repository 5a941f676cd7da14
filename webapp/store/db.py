"""Engines, sessions and start-up migrations for the ratings store.

`DATABASE_URL` picks the database; without it the store is a SQLite file in the app's data
folder (`DIFFBGM_DATA_DIR`, default `./data`). SQLite runs in WAL mode with foreign keys on
and every transaction begun IMMEDIATE, so concurrent writers queue on the busy timeout
instead of failing; PostgreSQL is for several app replicas.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session

REPO_ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_INI = REPO_ROOT / "alembic.ini"
MIGRATIONS_DIR = REPO_ROOT / "migrations"
DATABASE_FILE_NAME = "diffbgm.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
WAL_ATTEMPTS = 20  # switching a new file to WAL: tries 50 ms, 100 ms, ... apart (9.5 s in all)
# Any fixed 64-bit number; replicas starting together take this lock so one migrates at a time.
POSTGRES_MIGRATION_LOCK_ID = 0x44494646_42474D31


def data_dir() -> Path:
    """The app's data folder (database file, study media): `DIFFBGM_DATA_DIR` or `./data`."""
    return Path(os.environ.get("DIFFBGM_DATA_DIR", "data")).resolve()


def normalise_url(url: str) -> str:
    """Points bare PostgreSQL URLs at psycopg 3, the driver the project installs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def database_url() -> str:
    """`DATABASE_URL`, or a SQLite file in the data folder (the folder is created)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return normalise_url(url)
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / DATABASE_FILE_NAME}"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own BEGIN is deferred: a transaction that reads and then writes can
        # hit SQLITE_BUSY without waiting. Turning it off lets `on_begin` issue IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _use_wal(cursor: Any) -> None:
    """Put the database file in WAL mode, which stays with the file once set.

    Switching takes an exclusive lock, and SQLite may answer "database is locked" there at
    once, without waiting out busy_timeout, when several replicas open a new file together
    (seen in CI: one of three starting replicas failed). So a replica that finds the file
    already in WAL leaves it, and a busy switch is tried again after a short wait.
    """
    for attempt in range(1, WAL_ATTEMPTS + 1):
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)


def make_engine(url: str | None = None) -> Engine:
    """An engine for `url` (default: `database_url()`), with SQLite tuned for concurrency."""
    resolved = normalise_url(url) if url else database_url()
    is_sqlite = resolved.startswith("sqlite")
    options: dict[str, Any] = {"pool_pre_ping": not is_sqlite}
    if is_sqlite:
        options["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(resolved, **options)
    if is_sqlite:
        _configure_sqlite(engine)
    return engine


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration with absolute paths, so it works from any working directory."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # configparser treats '%' as interpolation; URLs may carry percent-escapes.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine_or_url: Engine | str | None = None, revision: str = "head") -> None:
    """Brings the database schema up to `revision` (default: the newest migration).

    Safe when several app processes start together (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
    advisory lock). Alembic keeps its context in process-global state, so within one process
    call it once, at start-up, not from several threads.
    """
    engine = engine_or_url if isinstance(engine_or_url, Engine) else make_engine(engine_or_url)
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until commit; SQLite needs none (its migration runs under BEGIN IMMEDIATE).
            connection.exec_driver_sql(
                f"SELECT pg_advisory_xact_lock({POSTGRES_MIGRATION_LOCK_ID})"
            )
        # env.py reuses this connection and leaves the app's logging configuration alone.
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    if not isinstance(engine_or_url, Engine):
        engine.dispose()


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Takes the schema back to `revision` (default: empty); for tests and maintenance."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back if it raises."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
