"""Each stored submission's rows, typed once and kept as Arrow tables, so summaries need not re-read them.

A submission never changes once stored, so the typed frames :mod:`server.queries` gives for it
(incidents, actions, exposure months) are worked out once from the database and then kept:

- in memory, by submission id, for the life of the app (a least-recently-used bound keeps it to
  about :data:`MEMORY_ROWS` rows);
- as Arrow IPC files in the instance folder (``snapshots/<id>.<table>.arrow``, readable by the
  server's user only), so a restarted server does not read every row again.

The database stays the only source of truth: a missing or unreadable file is made again from it,
and files of submissions that are no longer current are removed when a summary next looks.
Reading 200 sites' current rows this way takes tens of milliseconds, against seconds for the
row-by-row fetch of the same rows through SQLAlchemy.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

logger = logging.getLogger(__name__)
TABLES = ("incidents", "actions", "exposure")
MEMORY_ROWS = 2_000_000  # about 1 GB of typed rows at most; a provider of 200 sites x 2,000 rows uses 400,000
FOLDER = "snapshots"
FORMAT = 1  # bump when the stored columns or types change: files of another format are made again

Loader = Callable[[int], dict[str, pd.DataFrame | pa.Table]]  # submission id -> {table: typed frame or its table}
# A submission is named by its id AND its content hash: an instance folder kept while the database
# is replaced (a new SQLite file, a move to PostgreSQL) then never serves another database's rows.
Key = tuple[int, str]


class SnapshotStore:
    """Typed Arrow tables of submissions, by id: memory first, then the instance folder, then ``load``."""

    def __init__(self, folder: Path | None, *, memory_rows: int = MEMORY_ROWS) -> None:
        self.folder = folder
        self.memory_rows = memory_rows
        self._tables: OrderedDict[Key, dict[str, pa.Table]] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._warmer: threading.Thread | None = None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def tables(self, submissions: Sequence[Key], load: Loader) -> list[dict[str, pa.Table]]:
        """The tables of each (id, content hash), in order; ``load(id)`` is called for those not kept yet."""
        out = []
        for key in submissions:
            with self._lock:
                found = self._tables.get(key)
                if found is not None:
                    self._tables.move_to_end(key)
            if found is None:
                found = self._from_file(key)
                if found is None:
                    found = {k: made if isinstance(made, pa.Table) else _to_arrow(made)
                             for k, made in load(key[0]).items()}
                    self._to_file(key, found)
                self._keep(key, found)
            out.append(found)
        return out

    def warm_later(self, key: Key, load: Loader) -> None:
        """Make ``key``'s tables in a background thread (a new upload's), so the next summary finds them.

        One thread works through the queue; a failure only costs speed (the summary loads it then).
        """
        with self._lock:
            if key in self._tables:
                return
            self._queue.put((key, load))
            if self._warmer is None or not self._warmer.is_alive():
                self._warmer = threading.Thread(target=self._warm, name="nearmiss-snapshots", daemon=True)
                self._warmer.start()

    def _warm(self) -> None:
        while True:
            try:
                key, load = self._queue.get(timeout=5)
            except queue.Empty:
                with self._lock:  # nothing more to do: let the thread end (the next upload starts one)
                    if self._queue.empty():
                        self._warmer = None
                        return
                continue
            try:
                self.tables([key], load)
            except Exception:  # noqa: BLE001 - logged; the summary will load it from the database itself
                logger.exception("could not make the snapshot of submission %s", key[0])
            finally:
                self._queue.task_done()

    def wait_idle(self) -> None:
        """Wait until every snapshot asked for with :meth:`warm_later` is made (tests; an orderly stop)."""
        self._queue.join()

    def forget(self, submission_id: int) -> None:
        """Drop what is kept for one submission (superseded by a newer log), in memory and on disk."""
        with self._lock:
            for key in [k for k in self._tables if k[0] == submission_id]:
                self._rows -= _row_count(self._tables.pop(key))
        if self.folder is not None:
            for path in self.folder.glob(f"{submission_id}-*.arrow"):
                path.unlink(missing_ok=True)

    def forget_except(self, current: Sequence[Key]) -> None:
        """Drop what is kept for submissions not in ``current`` (superseded ones), in memory and on disk."""
        current = set(current)
        with self._lock:
            for key in [k for k in self._tables if k not in current]:
                self._rows -= _row_count(self._tables.pop(key))
        if self.folder is None:
            return
        names = {_stem(k) for k in current}
        for path in self.folder.glob("*.arrow"):
            if path.name.split(".", 1)[0] not in names:
                path.unlink(missing_ok=True)

    # --- memory -----------------------------------------------------------------------------------
    def _keep(self, key: Key, tables: dict[str, pa.Table]) -> None:
        with self._lock:
            if key in self._tables:
                return
            self._tables[key] = tables
            self._rows += _row_count(tables)
            while self._rows > self.memory_rows and len(self._tables) > 1:
                _, dropped = self._tables.popitem(last=False)
                self._rows -= _row_count(dropped)

    # --- files ------------------------------------------------------------------------------------
    def _path(self, key: Key, table: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{_stem(key)}.{table}.v{FORMAT}.arrow"

    def _from_file(self, key: Key) -> dict[str, pa.Table] | None:
        if self.folder is None:
            return None
        try:
            out = {}
            for table in TABLES:
                with pa.memory_map(str(self._path(key, table))) as source:
                    out[table] = ipc.open_file(source).read_all()
            return out
        except (OSError, pa.ArrowInvalid):
            return None  # not made yet, or damaged: made again from the database

    def _to_file(self, key: Key, tables: dict[str, pa.Table]) -> None:
        if self.folder is None:
            return
        for table, data in tables.items():
            path = self._path(key, table)
            partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
            try:
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # health data: owner only
                with os.fdopen(fd, "wb") as sink, ipc.new_file(sink, data.schema) as writer:
                    writer.write_table(data)
                os.replace(partial, path)
            except OSError:
                partial.unlink(missing_ok=True)  # a full disk only costs speed: the database has the rows


def _stem(key: Key) -> str:
    return f"{key[0]}-{key[1][:16]}"


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def _row_count(tables: dict[str, pa.Table]) -> int:
    return sum(t.num_rows for t in tables.values())


def concat_frames(tables: list[pa.Table], empty: pd.DataFrame, columns: Sequence[str] | None = None,
                  ) -> pd.DataFrame:
    """Many submissions' tables as one typed frame (``empty``'s columns and dtypes, or ``columns`` of them)."""
    columns = list(empty.columns if columns is None else columns)
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return empty[columns]
    frame = pa.concat_tables([t.select(columns) for t in tables]).to_pandas()
    for name in columns:  # Arrow gives back the pandas types it was given; make sure of it
        if frame[name].dtype != empty[name].dtype:
            frame[name] = frame[name].astype(empty[name].dtype)
    return frame
