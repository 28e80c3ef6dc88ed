"""Storing a site's uploaded workbook: read, validate, store all-or-nothing, supersede.

The workbook a site sends is its whole current log.  :func:`submit` reads it with
``addin.reader`` and checks it with ``addin.validate`` (outside any transaction), then in one
write transaction stores the submission, its rows, exposure months, Site sheet and findings,
and marks the site's previous submission as superseded (kept for audit).  Rows with errors are
stored too, flagged by their findings: the area lead sees what the site sent.

The same workbook again is recognised and changes nothing: by the file's SHA-256, or, when
the bytes differ (re-saving changes them), by the SHA-256 of the normalised rows.  When the
matching submission is no longer current (the site sent an older copy again), it becomes the
current one again.  A UNIQUE key on (site, content hash) keeps racing duplicates from being
stored twice; on SQLite the transaction starts with ``BEGIN IMMEDIATE``, on PostgreSQL it
locks the site's row, so two uploads for one site are stored one after the other.

The original bytes are kept under ``instance/uploads`` under a generated name (the user's
file name is metadata only), written to a temporary name first and renamed after the commit.
While an ingest owns its ``.<stored_name>.part`` file it holds an exclusive ``flock`` on it;
:mod:`server.recovery` (run at start-up) finishes or removes only unlocked ones, the leftovers
of a process that was killed.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import math
import os
import sys
import time
import threading
import uuid
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from addin.findings import Finding
from workbook_templates.contract import ACTIONS, EXPOSURE_FIELDS, INCIDENTS, SITE_FIELDS, Field

from .admin import audit
from .db import Database, insert_columns, python_values, write_session
from .models import (
    Action, ExposureMonth, FindingRow, Incident, Site, SiteSheet, Submission, stored_fields, utcnow,
)

INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # SQL INTEGER
MAX_NAME = 255


class IngestError(Exception):
    """An upload that is refused; nothing was stored.  ``status`` is the HTTP answer."""

    status = 422

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAWorkbook(IngestError):
    status = 422


class WrongSite(IngestError):
    status = 403


class UnknownSite(IngestError):
    status = 422


class TooLarge(IngestError):
    """The request was over the upload limit (refused before it was read)."""

    status = 413


class MissingFile(IngestError):
    """The request had no ``file`` field."""

    status = 400


class ServerBusy(IngestError):
    """Every reader slot stayed taken for the whole wait; nothing was stored (HTTP 503)."""

    status = 503


class ReaderFailed(IngestError, RuntimeError):
    """Reading failed through a fault of the server's, not of the file; nothing was stored (HTTP 500).

    The user sees ``message``; ``detail`` (the worker's traceback) goes to the log only.
    """

    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__("The server could not read the workbook because of a fault on the server, not in your "
                         "file. Nothing was stored. Try again later; if it happens again, tell your administrator.")
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message}\n{self.detail}"


@dataclass
class Rows:
    """One table's rows as stored, column by column: each stored field and ``excel_row`` as a typed Arrow
    array (date32, int64, float64 or string; null where blank), and ``raw_values`` (a dict or None per row).

    Arrow rather than Python values: the reader process makes them with a few vectorised steps and sends
    them back as buffers, where 2,000 rows of 40 Python values each cost more to make and to pickle than
    reading the workbook did.
    """

    arrays: dict[str, pa.Array]
    raw_values: list[dict | None]

    def __len__(self) -> int:
        return len(self.arrays["excel_row"])

    @property
    def columns(self) -> dict[str, list[Any]]:
        """Every column as a list of plain Python values (date, int, float, str, dict or None)."""
        return {**{name: python_values(array) for name, array in self.arrays.items()}, "raw_values": self.raw_values}

    def stored_columns(self) -> dict[str, pa.Array | list]:
        """What ``insert_columns`` stores: the Arrow arrays and ``raw_values``."""
        return {**self.arrays, "raw_values": self.raw_values}


@dataclass
class Parsed:
    """A workbook read and validated: its Site sheet as plain Python values, its tables as :class:`Rows`."""

    site: dict[str, Any]
    incidents: Rows
    actions: Rows
    exposure: Rows
    findings: list[Finding]
    content_sha256: str = ""

    def tables(self) -> dict[str, Rows]:
        return {"incidents": self.incidents, "actions": self.actions, "exposure": self.exposure}


class Stored(NamedTuple):
    """What :func:`_store` stored: the new submission and the one it replaced (None for a site's first)."""

    submission: Submission
    replaced: dict | None


@dataclass
class IngestResult:
    submission: Submission
    duplicate: bool
    findings: list[dict] = field(default_factory=list)  # Finding.to_dict() form
    reinstated: bool = False  # a duplicate of an older submission, made current again
    replaced: dict | None = None  # the site's current submission before this one: id and counts
    stored: Parsed | None = None  # what was just stored (a new submission only): its snapshot is made from it

    def to_json(self) -> dict:
        s = self.submission
        out = {
            "submission_id": s.id,
            "site_code": s.site.code,
            "counts": {"incidents": s.n_incidents, "actions": s.n_actions},
            "errors": s.n_errors,
            "warnings": s.n_warnings,
            "findings": self.findings,
            "duplicate": self.duplicate,
            "is_current": s.is_current,
            "received_at": iso_utc(s.received_at),
        }
        if self.reinstated:
            out["reinstated"] = True
        if self.replaced is not None:
            out["replaced"] = self.replaced
            notice = shrink_notice(s.n_incidents, self.replaced["incidents"])
            if notice:
                out["notice"] = notice
        return out


SHRINK_NOTICE_BELOW = 0.5  # a log with under half the reports of the one it replaces is worth a question


def shrink_notice(now: int, before: int) -> str | None:
    """Words for a site whose new log holds far fewer reports than the one it replaced (the wrong file?)."""
    if before and now < before * SHRINK_NOTICE_BELOW:
        return (f"This log has {now} report{'s' if now != 1 else ''} where the one it replaces had {before}. "
                "If that is not what you meant (an empty template or last year's file, say), send the full log "
                "again: the earlier one is kept and becomes current again when it is sent.")
    return None


def iso_utc(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite gives back naive values; they were stored as UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# --- reading ---------------------------------------------------------------------------------------

def read_and_validate(data: bytes, *, name: str, today: dt.date | None = None) -> Parsed:
    """Read the workbook with addin.reader and check it with addin.validate.

    Raises :class:`NotAWorkbook` with the reader's message when it cannot be read.
    """
    from addin.reader import WorkbookError, read_workbook
    from addin.validate import validate_results

    try:
        result = read_workbook(data, name=name)
    except WorkbookError as exc:
        raise NotAWorkbook(str(exc)) from exc
    records = result.records
    # The reader's structural findings and every rule's, pointing at the cells the reader found.
    findings = list(validate_results([result], today=today)[0])  # the records as read: typed once
    parsed = Parsed(
        site=normalise_row(records.site, SITE_FIELDS),
        incidents=normalise_frame(records.incidents, INCIDENTS.fields),
        actions=normalise_frame(records.actions, ACTIONS.fields),
        exposure=normalise_frame(records.exposure, EXPOSURE_FIELDS),
        findings=findings,
    )
    parsed.content_sha256 = content_hash(parsed)
    return parsed


def normalise_frame(frame: pd.DataFrame, fields: tuple[Field, ...]) -> Rows:
    """The frame's stored fields as :class:`Rows`, with ``raw_values`` and ``excel_row``.

    The same values as :func:`normalise_row` of each record, worked out a column at a time.
    """
    n = len(frame)
    stored = stored_fields(fields)
    arrays = {f.name: _column_array(frame[f.name] if f.name in frame else None, f.type, n) for f in stored}
    arrays["excel_row"] = _column_array(frame["_row"] if "_row" in frame else None, "int", n)
    raw_values: list[dict | None] = [None] * n
    for f in stored:  # the reader's text of unreadable cells: a few cells, if any, in columns mostly empty
        if f"_raw_{f.name}" not in frame:
            continue
        column = frame[f"_raw_{f.name}"]
        for i in np.flatnonzero(column.notna().to_numpy()).tolist():
            value = column.iat[i]
            text = None if is_blank(value) else to_text(value)
            if text is not None:
                raw_values[i] = {**(raw_values[i] or {}), f.name: text}
    return Rows(arrays, raw_values)


ARROW_TYPES = {"date": pa.date32(), "int": pa.int64(), "number": pa.float64()}  # any other kind is text
# Every character str.strip() removes (none is above U+3000; a test checks): a text value is blank only
# if its first character is one of these, so only those few values are looked at one by one.
_SPACES = pa.array(["", *(chr(c) for c in range(0x3001) if chr(c).isspace())])


def _column_array(column: pd.Series | None, kind: str, n: int) -> pa.Array:
    """``normalise_value`` of every cell of a column as an Arrow array: vectorised for the reader's own
    dtypes, else cell by cell."""
    arrow_type = ARROW_TYPES.get(kind, pa.string())
    if column is None:
        return pa.nulls(n, arrow_type)
    dtype = str(column.dtype)
    if kind == "date" and dtype.startswith("datetime64[") and column.dt.tz is None:
        return pa.array(column, from_pandas=True).cast(pa.date32())  # the calendar day, as .dt.date gives
    if kind == "int" and dtype == "Int64":
        values = pa.array(column, from_pandas=True)
        return pc.if_else(pc.and_(pc.greater_equal(values, INT_MIN), pc.less_equal(values, INT_MAX)), values,
                          pa.scalar(None, pa.int64()))
    if kind == "number" and dtype == "float64":
        values = column.to_numpy()
        return pa.array(values, mask=~np.isfinite(values), type=pa.float64())
    if kind not in ARROW_TYPES and dtype == "str":  # text, codes, refs and "HH:MM" times
        return _text_array(pa.array(column, from_pandas=True))
    return pa.array([normalise_value(v, kind) for v in column.tolist()], type=arrow_type)


def _text_array(text: pa.Array) -> pa.Array:
    """Text as stored: without NUL characters (PostgreSQL text cannot hold them), blank text as null."""
    text = text.cast(pa.string())
    if pc.any(pc.match_substring(text, "\x00")).as_py():
        text = pc.replace_substring(text, "\x00", "")
    maybe_blank = pc.is_in(pc.utf8_slice_codeunits(text, 0, 1), value_set=_SPACES)
    if pc.any(maybe_blank).as_py():  # only the values that start with a space are looked at one by one
        at = np.flatnonzero(maybe_blank.to_numpy(zero_copy_only=False))
        blank = np.zeros(len(text), dtype=bool)
        blank[at] = [not v.strip() for v in text.take(pa.array(at)).to_pylist()]
        text = pc.if_else(pa.array(blank), pa.scalar(None, pa.string()), text)
    return text


def normalise_row(values: dict, fields: tuple[Field, ...]) -> dict[str, Any]:
    """One record's stored fields, plus ``raw_values``: the reader's ``_raw_<field>`` text of unreadable cells."""
    values = values or {}
    row: dict[str, Any] = {f.name: normalise_value(values.get(f.name), f.type) for f in stored_fields(fields)}
    raw = {f.name: to_text(values[f"_raw_{f.name}"]) for f in stored_fields(fields)
           if not is_blank(values.get(f"_raw_{f.name}"))}
    row["raw_values"] = {k: v for k, v in raw.items() if v is not None} or None
    return row


def is_blank(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and not value.strip():
        return True
    try:
        return bool(pd.isna(value)) if not isinstance(value, (list, tuple, dict)) else False
    except (TypeError, ValueError):
        return False


def normalise_value(value: Any, kind: str) -> Any:
    """One cell as stored: a date, int, float or str, or None when blank or not of the field's type.

    A value of the wrong type for a date or number column (which the validator has flagged)
    cannot be kept in a typed column and is stored as blank; text is kept as typed.
    """
    if is_blank(value):
        return None
    if kind == "date":
        return to_date(value)
    if kind == "int":
        return to_int(value)
    if kind == "number":
        return to_float(value)
    if kind == "time":
        return to_time_text(value)
    return to_text(value)


def to_text(value: Any) -> str | None:
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        value = value.date().isoformat() if value == value.normalize() else value.isoformat()
    elif isinstance(value, dt.date):
        value = value.isoformat()
    elif isinstance(value, Real) and not isinstance(value, bool) and float(value).is_integer():
        value = str(int(value))
    text = str(value).replace("\x00", "")  # PostgreSQL text cannot hold NUL
    return text if text.strip() else None


def to_date(value: Any) -> dt.date | None:
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def to_int(value: Any) -> int | None:
    if is_blank(value) or isinstance(value, bool):
        return None
    if isinstance(value, Integral):
        number = int(value)
    elif isinstance(value, Real):
        if not math.isfinite(float(value)) or not float(value).is_integer():
            return None
        number = int(value)
    elif isinstance(value, str):
        try:
            as_float = float(value.strip())
        except ValueError:
            return None
        if not math.isfinite(as_float) or not as_float.is_integer():
            return None
        number = int(as_float)
    else:
        return None
    return number if INT_MIN <= number <= INT_MAX else None


def to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def to_time_text(value: Any) -> str | None:
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        return value.strftime("%H:%M")
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    if isinstance(value, pd.Timedelta):
        minutes = int(value.total_seconds() // 60)
        return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"
    if isinstance(value, Real) and not isinstance(value, bool) and 0 <= float(value) < 1:
        minutes = round(float(value) * 24 * 60)
        return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"  # an Excel time: a fraction of a day
    return to_text(value)


def content_hash(parsed: Parsed) -> str:
    """SHA-256 of the normalised rows: equal for the same log however the file was saved."""
    payload = {"site": parsed.site, **{table: _hashed_columns(rows) for table, rows in parsed.tables().items()}}
    text = json.dumps(payload, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _hashed_columns(rows: Rows) -> dict[str, list[Any]]:
    """The columns as the hash has always seen them: dates as ISO text (what ``_json_default`` makes of a
    date), here made by Arrow for a whole column at once."""
    out: dict[str, list[Any]] = {}
    for name, array in rows.arrays.items():
        out[name] = (array.cast(pa.string()) if pa.types.is_date32(array.type) else array).to_pylist()
    out["raw_values"] = rows.raw_values
    return out


def _json_default(value: Any) -> str:
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    raise TypeError(f"cannot hash {type(value).__name__}")


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- reading in a worker process ---------------------------------------------------------------------

@dataclass(frozen=True)
class Isolation:
    """Read each upload in a worker process, with a memory cap and a time limit.

    A hostile workbook that slips past the reader's zip pre-check can make a native parser
    abort its whole process or stall (../shared/spec/security.md); in a worker process that
    costs the upload, not the server.
    """

    timeout_s: float = 120.0
    memory_mb: int = 4096  # address space of the worker (RLIMIT_AS); pandas alone maps ~1.5 GB
    workers: int = 2  # readers at once: with memory_mb, what all uploads together may take (2 x 4 GB)


_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def reader_slots(workers: int) -> threading.BoundedSemaphore:
    """The process's reader slots for ``workers`` readers at once (one semaphore per size)."""
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(workers, threading.BoundedSemaphore(workers))


logger = logging.getLogger(__name__)
# Imported once in the fork server, not per worker.  server.cli too: each worker runs the main
# script again on start (multiprocessing's "fixup" of __main__; preloading "__main__" itself does
# not work in Python 3.11), and for `nearmiss serve` that script imports the whole CLI, openpyxl
# included.  With it preloaded the re-run finds every import done.  server.reader_warmup reads one
# small log, so workers start warm.
PRELOAD = ["server.cli", "addin.reader", "addin.validate", "server.ingest", "server.reader_warmup"]
# A worker reads this many uploads, one at a time, then makes way for a fresh one (as gunicorn's
# max_requests does), so no worker grows for ever.  Reusing workers saves starting one (~20 ms) and
# its first, cold read (~40 ms more) on every upload.  A worker that failed in any way is never reused.
READS_PER_WORKER = 50
RETIRE_RESIDENT_MB = 1024  # ... and one that holds more than this after a read makes way too
IDLE_WORKERS = 4  # kept waiting for the next upload, per memory cap
_CRASHED = ("The workbook could not be read: reading it stopped the reader (the file may be damaged or "
            "built to harm). Open it in Excel, save it again and send the new copy; if that fails, "
            "ask your administrator.")


def run_isolated(fn: Any, *args: Any, isolation: Isolation) -> Any:
    """``fn(*args)`` in a reader worker process under ``isolation``'s limits.

    :class:`IngestError` raised by ``fn`` is raised again here.  A worker that dies (a native
    abort, the memory cap) or overruns the time limit becomes :class:`NotAWorkbook`; any other
    exception in the worker, :class:`ReaderFailed`.  Each read is logged (``server.ingest``, INFO)
    with the worker's pid, outcome, time and peak resident memory.
    """
    slots = reader_slots(isolation.workers)
    if not slots.acquire(timeout=isolation.timeout_s):  # many uploads at once wait their turn, within reason
        raise ServerBusy("The server is busy reading other workbooks, so this one was not read and nothing was "
                         "stored. Send it again in a few minutes.")
    try:
        return _run_worker(fn, args, isolation)
    finally:
        slots.release()


def _reader_context():  # noqa: ANN202 - a multiprocessing context
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def start_reader_server(isolation: Isolation | None = None) -> None:
    """Start the reader workers' fork server now, so it has preloaded and warmed up (a few seconds)
    before the first upload rather than during it, and with ``isolation`` that many workers too.
    Both start on first use anyway."""
    from multiprocessing import forkserver

    _reader_context()
    forkserver.ensure_running()
    if isolation is not None:  # started in the background: each waits for the fork server's warm-up

        def start_workers() -> None:
            for _ in range(min(isolation.workers, IDLE_WORKERS)):
                _IDLE.put(_Reader(isolation.memory_mb))

        threading.Thread(target=start_workers, name="nearmiss-reader-start", daemon=True).start()


class _Reader:
    """One worker process and its pipe: it runs what it is sent, one call at a time, within its memory cap."""

    def __init__(self, memory_mb: int) -> None:
        context = _reader_context()
        self.memory_mb = memory_mb
        self.connection, theirs = context.Pipe(duplex=True)
        self.process = context.Process(target=_serve_reads, args=(theirs, memory_mb), daemon=True,
                                       name="nearmiss-reader")
        self.process.start()
        theirs.close()
        self.reads = 0

    def stop(self) -> None:
        self.connection.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


class _IdleReaders:
    """Workers waiting for the next upload, by memory cap (a lock, not a queue: any thread may take one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, list[_Reader]] = {}

    def take(self, memory_mb: int) -> _Reader:
        with self._lock:
            waiting = self._waiting.get(memory_mb, [])
            while waiting:
                reader = waiting.pop()
                if reader.process.is_alive():
                    return reader
                reader.stop()
        return _Reader(memory_mb)

    def put(self, reader: _Reader) -> None:
        with self._lock:
            waiting = self._waiting.setdefault(reader.memory_mb, [])
            if len(waiting) < IDLE_WORKERS:
                waiting.append(reader)
                return
        reader.stop()

    def clear(self) -> None:
        with self._lock:
            readers = [r for waiting in self._waiting.values() for r in waiting]
            self._waiting.clear()
        for reader in readers:
            reader.stop()


_IDLE = _IdleReaders()


def _handed_to_reader(fn: Any, args: tuple, memory_mb: int) -> _Reader:
    """A worker that has been sent ``fn(*args)``.  A waiting one that died meanwhile (killed from outside,
    say) never saw this upload: it makes way for a fresh one, and only a fresh one failing is an error."""
    while True:
        reader = _IDLE.take(memory_mb)
        try:
            reader.connection.send((fn, args))
            return reader
        except (BrokenPipeError, ConnectionResetError):
            reader.stop()
            if not reader.reads:
                raise


def _run_worker(fn: Any, args: tuple, isolation: Isolation) -> Any:
    try:
        reader = _handed_to_reader(fn, args, isolation.memory_mb)
    except (BrokenPipeError, ConnectionResetError):
        raise NotAWorkbook(_CRASHED) from None
    started = time.monotonic()
    status, usage = "crashed", {}
    try:
        if not reader.connection.poll(isolation.timeout_s):
            status = "timeout"
            raise NotAWorkbook(f"Reading the workbook took longer than {isolation.timeout_s:g} seconds, so it was "
                               "stopped. Check that it is the right file; a site log reads in a few seconds.")
        try:
            status, payload, usage = reader.connection.recv()
        except (EOFError, OSError):
            raise NotAWorkbook(_CRASHED) from None
    finally:
        reader.reads += 1
        healthy = status in ("ok", "refused") and reader.process.is_alive()
        if healthy and reader.reads < READS_PER_WORKER and (usage.get("end_mb") or 0) < RETIRE_RESIDENT_MB:
            _IDLE.put(reader)
        else:
            reader.stop()
        logger.info("reader worker %s: %s in %.2f s (read %d), peak %s MB resident (%s MB at start), limit %d MB",
                    reader.process.pid, status, time.monotonic() - started, reader.reads,
                    usage.get("peak_mb", "?"), usage.get("start_mb", "?"), isolation.memory_mb,
                    extra={"worker_pid": reader.process.pid, "worker_status": status, "worker_usage": usage})
    if status == "ok":
        return payload
    if status == "refused":
        raise NotAWorkbook(payload)
    if status == "memory":
        raise NotAWorkbook("The workbook needs more memory to read than a site log can, so reading it was "
                           "stopped. Check that it is the right file; a site log reads in a few seconds.")
    logger.error("reading a workbook failed in the worker process: %s", payload)
    raise ReaderFailed(f"reading the workbook failed in the worker process: {payload}")


def _resident_mb(key: str) -> int | None:
    """This process's resident memory (VmRSS) or its peak (VmHWM) in MB, from /proc (None elsewhere)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(key.encode() + b":"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def _reset_peak() -> None:
    """Start this process's peak resident memory (VmHWM) again from now, so each read reports its own."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass  # not Linux, or not allowed: the peak is then the worker's whole life's


def _serve_reads(connection: Any, memory_mb: int) -> None:
    """A worker's life: the limits once, then each call it is sent, until its pipe closes or a call fails."""
    import resource
    import traceback

    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not leave a core file of health data
    while True:
        try:
            fn, args = connection.recv()
        except (EOFError, OSError):
            return  # the server closed the pipe (or is gone)
        _reset_peak()
        start_mb = _resident_mb("VmRSS")
        try:
            status, payload = "ok", fn(*args)
        except IngestError as exc:
            status, payload = "refused", exc.message
        except MemoryError:
            status, payload = "memory", ""
        except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
            status, payload = "error", traceback.format_exc(limit=8)
        usage = {"start_mb": start_mb, "peak_mb": _resident_mb("VmHWM"), "end_mb": _resident_mb("VmRSS")}
        try:
            connection.send((status, payload, usage))
        except MemoryError:
            connection.send(("memory", "", usage))
            return
        except Exception:  # noqa: BLE001 - a result that cannot be sent (unpicklable): an error, as any other
            connection.send(("error", traceback.format_exc(limit=8), usage))
            return
        if status not in ("ok", "refused"):
            return  # after a failure the worker is not reused: it ends here


def _read_and_validate_args(data: bytes, name: str, today: dt.date | None) -> Parsed:
    return read_and_validate(data, name=name, today=today)


def parse_upload(data: bytes, *, name: str, today: dt.date | None, isolation: Isolation | None) -> Parsed:
    """Read and validate an upload, in a worker process when ``isolation`` is given."""
    if isolation is None:
        return read_and_validate(data, name=name, today=today)
    return run_isolated(_read_and_validate_args, data, name, today, isolation=isolation)


# --- storing ----------------------------------------------------------------------------------------

def submit(db: Database, *, data: bytes, original_name: str, upload_folder: str | Path, who: str,
           site_code: str | None = None, token_id: int | None = None, user_id: int | None = None,
           today: dt.date | None = None, isolation: Isolation | None = None) -> IngestResult:
    """Store an uploaded workbook as ``site_code``'s current log (see the module docstring).

    ``site_code`` is the uploading site (from its token).  When None (an admin upload) the
    workbook's own Site sheet names the site.  Raises :class:`IngestError` subclasses for
    uploads that are refused; then nothing is stored.  With ``isolation`` the workbook is read
    in a worker process (:func:`run_isolated`), else in this one.
    """
    original_name = clean_name(original_name)
    sha = file_hash(data)
    site = _find_site(db, site_code) if site_code else None
    if site_code and site is None:  # named but unknown: never fall back to whatever the Site sheet says
        raise UnknownSite(f"There is no site {site_code.strip().upper()}; an administrator must add it first.")
    if site is not None:
        existing = _existing(db, site.id, file_sha256=sha)
        if existing is not None:
            return _duplicate(db, existing, who=who, file_sha256=sha, via="file", data=data, folder=upload_folder)

    parsed = parse_upload(data, name=original_name, today=today, isolation=isolation)
    sheet_code = (parsed.site.get("site_code") or "").strip().upper()
    if site is None:
        if not sheet_code:
            raise UnknownSite("The Site sheet has no site code, so the workbook cannot be matched to a site.")
        site = _find_site(db, sheet_code)
        if site is None:
            raise UnknownSite(f"There is no site {sheet_code}; an administrator must add it first.")
    elif sheet_code and sheet_code != site.code:
        raise WrongSite(f"This workbook is for site {sheet_code}, but the token is {site.code}'s. "
                        f"Send {site.code}'s own workbook, or ask for {sheet_code}'s token.")

    existing = _existing(db, site.id, content_sha256=parsed.content_sha256)
    if existing is not None:
        return _duplicate(db, existing, who=who, file_sha256=sha, via="content", data=data,
                              folder=upload_folder)

    folder = Path(upload_folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored_name, temporary, lock = _write_part(folder, data)
    try:  # the flock on the .part file is held until it is renamed or removed (os.close below)
        try:
            with write_session(db) as session:
                result = _store(session, site.id, parsed, sha=sha, size=len(data), original_name=original_name,
                                stored_name=stored_name, who=who, token_id=token_id, user_id=user_id)
                _test_pause("in_transaction")
        except IntegrityError:
            # Another upload of the same rows committed first (UNIQUE site + content hash).
            temporary.unlink(missing_ok=True)
            existing = _existing(db, site.id, content_sha256=parsed.content_sha256)
            if existing is None:
                raise
            return _duplicate(db, existing, who=who, file_sha256=sha, via="content", data=data,
                              folder=upload_folder)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        if isinstance(result, Stored):
            _test_pause("committed")
            finish_part(temporary, folder / stored_name)
            return IngestResult(submission=result.submission, duplicate=False,
                                findings=[f.to_dict() for f in parsed.findings], replaced=result.replaced,
                                stored=parsed)
        temporary.unlink(missing_ok=True)  # a duplicate found inside the transaction
    finally:
        os.close(lock)
    return _duplicate(db, result[1], who=who, file_sha256=sha, via="content", data=data, folder=upload_folder)


def _store(session: Session, site_id: int, parsed: Parsed, *, sha: str, size: int, original_name: str,
           stored_name: str, who: str, token_id: int | None,
           user_id: int | None) -> Stored | tuple[str, Submission]:
    """Inside the write transaction: store, or return ("duplicate", existing) if it raced in."""
    site = session.scalar(select(Site).where(Site.id == site_id).with_for_update())  # PostgreSQL row lock
    raced = session.scalar(select(Submission).where(
        Submission.site_id == site_id,
        (Submission.content_sha256 == parsed.content_sha256) | (Submission.file_sha256 == sha)))
    if raced is not None:
        return ("duplicate", raced)
    now = utcnow()
    previous = session.execute(select(Submission.id, Submission.n_incidents, Submission.n_actions).where(
        Submission.site_id == site_id, Submission.is_current.is_(True))).all()
    superseded = [row.id for row in previous]
    if superseded:
        session.execute(update(Submission).where(Submission.id.in_(superseded))
                        .values(is_current=False, superseded_at=now))
    n_errors = sum(1 for f in parsed.findings if f.severity == "error")
    submission = Submission(
        site=site, file_sha256=sha, content_sha256=parsed.content_sha256, original_name=original_name,
        stored_name=stored_name, size=size, received_at=now, received_by_token_id=token_id,
        received_by_user_id=user_id, is_current=True, n_incidents=len(parsed.incidents),
        n_actions=len(parsed.actions), n_errors=n_errors, n_warnings=len(parsed.findings) - n_errors,
    )
    session.add(submission)
    session.flush()
    keys = {"submission_id": submission.id, "site_id": site_id}
    for model, rows in ((Incident, parsed.incidents), (Action, parsed.actions),
                        (ExposureMonth, parsed.exposure)):
        insert_columns(session, model.__table__, rows.stored_columns(), **keys)
    session.add(SiteSheet(submission_id=submission.id, **parsed.site))
    found = parsed.findings
    insert_columns(session, FindingRow.__table__, {
        "sheet": [f.sheet[:100] for f in found], "cell": [f.cell[:20] for f in found],
        "ref": [f.ref or "" for f in found], "rule": [f.rule[:20] for f in found],
        "severity": [f.severity[:10] for f in found], "message": [f.message for f in found]},
        submission_id=submission.id)
    audit(session, who, "submission.stored", f"submission:{submission.id}", file_sha256=sha,
          site=site.code, content_sha256=parsed.content_sha256, original_name=original_name, size=size,
          incidents=submission.n_incidents, actions=submission.n_actions, errors=n_errors,
          warnings=submission.n_warnings, superseded=list(superseded))
    return Stored(submission, {"submission_id": previous[-1].id, "incidents": previous[-1].n_incidents,
                               "actions": previous[-1].n_actions} if previous else None)


def _duplicate(db: Database, existing: Submission, *, who: str, file_sha256: str, via: str, data: bytes,
               folder: str | Path) -> IngestResult:
    """Answer for a workbook already stored; an older copy sent again becomes current again.

    If retention had removed that submission's file, the copy just sent takes its place (the same
    rows, so the checked copy and the audit trail work again) rather than a current log with no file.
    """
    reinstated = False
    restored: Path | None = None
    try:
        with write_session(db) as session:
            session.scalar(select(Site.id).where(Site.id == existing.site_id).with_for_update())  # as _store does
            submission = session.get(Submission, existing.id)
            if not submission.is_current:
                now = utcnow()
                session.execute(update(Submission).where(Submission.site_id == submission.site_id,
                                                         Submission.is_current.is_(True))
                                .values(is_current=False, superseded_at=now))
                submission.is_current = True
                submission.superseded_at = None
                reinstated = True
            if submission.file_removed_at is not None:
                restored = _restore_file(Path(folder), submission.stored_name, data)
                submission.file_removed_at = None
                submission.file_sha256, submission.size = file_sha256, len(data)
            audit(session, who, "submission.reinstated" if reinstated else "submission.duplicate",
                  f"submission:{submission.id}", file_sha256=file_sha256, site=submission.site.code, matched_by=via,
                  **({"file_restored": True} if restored else {}))
            session.flush()
            findings = stored_findings(session, submission)
            _ = submission.site.code  # load before the session closes
    except BaseException:
        if restored is not None:
            restored.unlink(missing_ok=True)  # not committed: the submission still says its file was removed
        raise
    return IngestResult(submission=submission, duplicate=True, findings=findings, reinstated=reinstated)


def _restore_file(folder: Path, stored_name: str, data: bytes) -> Path:
    """Put ``data`` back under a submission's stored name (written as a locked .part first, then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    _, temporary, lock = _write_part(folder, data)
    try:
        finish_part(temporary, folder / stored_name)
    finally:
        os.close(lock)
    return folder / stored_name


def stored_findings(session: Session, submission: Submission) -> list[dict]:
    rows = session.scalars(select(FindingRow).where(FindingRow.submission_id == submission.id)
                           .order_by(FindingRow.id)).all()
    return [Finding(file=submission.original_name, sheet=r.sheet, cell=r.cell, ref=r.ref, rule=r.rule,
                    severity=r.severity, message=r.message).to_dict() for r in rows]


def _existing(db: Database, site_id: int, *, file_sha256: str | None = None,
              content_sha256: str | None = None) -> Submission | None:
    with db.sessions() as session:
        query = select(Submission).where(Submission.site_id == site_id)
        if file_sha256 is not None:
            query = query.where(Submission.file_sha256 == file_sha256)
        if content_sha256 is not None:
            query = query.where(Submission.content_sha256 == content_sha256)
        return session.scalars(query.order_by(Submission.id.desc())).first()


def _find_site(db: Database, code: str) -> Site | None:
    with db.sessions() as session:
        return session.scalar(select(Site).where(Site.code == code.strip().upper()))


def part_name(stored_name: str) -> str:
    """The temporary name of an upload until its submission is committed: ``.<stored_name>.part``."""
    return f".{stored_name}.part"


def _write_part(folder: Path, data: bytes) -> tuple[str, Path, int]:
    """Write ``data`` (0600, fsynced) to a new ``.part`` file under a generated name, flock-ed.

    Returns the stored name, the ``.part`` path and the descriptor holding the exclusive lock:
    the caller closes it after renaming or removing the file.  The file is made and locked under
    a shared flock of the folder, which :mod:`server.recovery` takes exclusively while it looks
    for unlocked ``.part`` files: it never sees one in the moment between making and locking.
    """
    stored_name = f"{uuid.uuid4().hex}.xlsx"
    path = folder / part_name(stored_name)
    directory = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(directory, fcntl.LOCK_SH)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # nobody else holds it: a new file
        except BaseException:
            path.unlink(missing_ok=True)
            os.close(fd)
            raise
    finally:
        os.close(directory)  # and with it the folder's lock
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        os.close(fd)
        raise
    _test_pause("written")
    return stored_name, path, fd


def finish_part(temporary: Path, final: Path) -> None:
    """Rename a committed submission's ``.part`` file to its stored name, durably."""
    os.replace(temporary, final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


TEST_PAUSE_ENV = "NEARMISS_TEST_PAUSE_INGEST"  # test-only, see _test_pause


def _test_pause(point: str) -> None:
    """Test-only: with ``NEARMISS_TEST_PAUSE_INGEST=<point>`` an ingest says so on stderr and waits there.

    Points: ``written`` (the .part file complete, no transaction yet), ``in_transaction`` (every
    row written, not committed) and ``committed`` (not yet renamed).  tests/server/test_crash_recovery.py
    kills ``nearmiss serve`` at each; never set it anywhere else.  The wait ends after 60 s.
    """
    if os.environ.get(TEST_PAUSE_ENV) == point:
        print(f"nearmiss-test: ingest paused at {point}", file=sys.stderr, flush=True)
        time.sleep(60)


def clean_name(name: str | None) -> str:
    """The user's file name as metadata: its last path part, printable, at most 255 characters."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:MAX_NAME] or "workbook.xlsx"
