"""The database: one engine per app, sessions per request, migrations applied on start.

SQLite (the default, a file in the instance folder) runs in WAL mode with foreign keys on and
a busy timeout.  Python's sqlite3 module would open its own deferred transactions; here the
driver is put in autocommit mode and SQLAlchemy's ``begin`` emits ``BEGIN`` itself, or
``BEGIN IMMEDIATE`` for a :func:`write_session` (../shared/spec/security.md: deferred
check-then-insert lost rows to "database is locked", ``BEGIN IMMEDIATE`` stored them all).
PostgreSQL runs the same code; there a write session locks the rows it changes instead.

Connections: a request keeps its session's connection until it ends, and an upload takes a
second one while it stores (``server/ingest.py``), so the pool allows two per server thread
(``nearmiss serve --threads``, at most 64).  With SQLAlchemy's default (5 + 10 overflow), 20
uploads at once to 24 threads waited 30 s for a connection and failed with HTTP 500
(tests/server/test_concurrent_uploads.py).  PostgreSQL's own limit (``max_connections``, 100 by
default) keeps that pool at 64.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from flask import Flask, current_app, g
from sqlalchemy import Engine, Table, create_engine, event, insert, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
IMMEDIATE = "nearmiss_begin_immediate"  # connection execution option read by the SQLite begin hook
SQLITE_BUSY_TIMEOUT_S = 30
POOL_SIZE = 8  # connections kept open
MAX_CONNECTIONS = {"sqlite": 2 * 64, "postgresql": 64}  # per server process (see the module docstring)


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def dispose(self) -> None:
        self.engine.dispose()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        pool = {} if ":memory:" in url or url.rstrip("/") == "sqlite:" else {
            "pool_size": POOL_SIZE, "max_overflow": MAX_CONNECTIONS["sqlite"] - POOL_SIZE}
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
                               **pool)
        _sqlite_hooks(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE,
                         max_overflow=MAX_CONNECTIONS["postgresql"] - POOL_SIZE)


def _sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI objects
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # noqa: ANN001
        immediate = connection.get_execution_options().get(IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def init_app(app: Flask) -> Database:
    """Make the app's engine, bring the schema up to date and close sessions after each request."""
    engine = make_engine(app.config["DATABASE_URL"])
    db = Database(engine=engine, sessions=sessionmaker(bind=engine, expire_on_commit=False))
    upgrade(engine)
    app.extensions["nearmiss_db"] = db
    app.teardown_appcontext(_close_session)
    return db


def get_db(app: Flask | None = None) -> Database:
    return (app or current_app).extensions["nearmiss_db"]


def get_session() -> Session:
    """The request's session (made on first use, closed when the request ends)."""
    if "db_session" not in g:
        g.db_session = get_db().sessions()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def end_read_transaction() -> None:
    """End the request session's read transaction before slow work (reading an upload takes seconds).

    Left open, it sits "idle in transaction" on PostgreSQL and holds back SQLite's WAL checkpoint.
    Loaded objects stay usable (``expire_on_commit=False``); a later query starts a new transaction.
    """
    if "db_session" in g:
        g.db_session.commit()


@contextmanager
def write_session(db: Database) -> Iterator[Session]:
    """A session whose transaction takes the write lock at once on SQLite (``BEGIN IMMEDIATE``).

    Commits when the block ends, rolls back on any exception: storing is all-or-nothing.
    """
    with db.sessions() as session:
        session.connection(execution_options={IMMEDIATE: True})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def insert_columns(session: Session, table: Table, columns: Mapping[str, list | pa.Array], **constant: Any) -> None:
    """INSERT rows given column by column (a list of values, or an Arrow array, per column), plus ``constant``
    columns.

    The same statement and the same bound values as ``session.execute(insert(table), rows)``: each
    column's values go through its SQLAlchemy type's own bind processor (dates as text on SQLite,
    JSON serialised...).  But the driver's executemany gets the rows as they are, without SQLAlchemy
    building every row's parameters one by one, which was most of the cost of storing an upload.
    An Arrow date column whose processor writes ISO dates (SQLite's) is written as text by Arrow at once.
    """
    names = [*columns, *constant]
    n = len(next(iter(columns.values()), []))
    if not n:
        return
    connection = session.connection()
    dialect = connection.dialect
    compiled = insert(table).compile(dialect=dialect, column_keys=names, for_executemany=True)
    defaults = set(compiled.params) - set(names)
    if defaults:  # SQLAlchemy would work out these columns' Python-side defaults; the driver cannot
        raise ValueError(f"insert_columns into {table.name} needs every column with a default: {sorted(defaults)}")
    values: dict[str, list] = {}
    for name in names:
        given = columns[name] if name in columns else [constant[name]] * n
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if isinstance(given, pa.Array):
            if process is not None and pa.types.is_date32(given.type) and _writes_iso_dates(process):
                values[name] = python_values(given.cast(pa.string()))
                continue
            given = python_values(given)
        values[name] = given if process is None else [None if v is None else process(v) for v in given]
    if compiled.positiontup is not None:  # qmark (SQLite): tuples in the statement's order
        rows: list = list(zip(*(values[name] for name in compiled.positiontup)))
    else:  # named (psycopg's pyformat)
        rows = [dict(zip(values, row)) for row in zip(*values.values())]
    connection.exec_driver_sql(compiled.string, rows)


_DATE_PROBES = (dt.date(1, 1, 1), dt.date(999, 12, 31), dt.date(1900, 3, 1), dt.date(2026, 2, 28), dt.date(9999, 12, 31))


def _writes_iso_dates(process: Callable[[Any], Any]) -> bool:
    """Whether a bind processor turns a date into its ISO text (as Arrow's cast to string writes it)."""
    try:
        return all(process(day) == day.isoformat() for day in _DATE_PROBES)
    except (TypeError, ValueError):
        return False


def python_values(array: pa.Array) -> list[Any]:
    """An Arrow array as plain Python values (None for null), as ``to_pylist`` gives them; dates without
    Arrow's slow path (a Python call per date, ~1.5 us each)."""
    if pa.types.is_date32(array.type):
        return array.to_numpy(zero_copy_only=False).astype(object).tolist()  # datetime.date; NaT -> None
    return array.to_pylist()


def alembic_config(connection=None) -> Config:  # noqa: ANN001
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """``alembic upgrade head`` on ``engine`` (run by create_app and so by ``nearmiss serve``)."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Two processes starting at once must not both create the tables.
            connection.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
        command.upgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def ping(db: Database) -> None:
    """``SELECT 1``: raises when the database cannot be reached."""
    with db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
