"""Governance summaries of an area (or one site, or every site) from the database.

:func:`get_summary` is what the JSON API (``/api/v1/summary``) and the web pages show.  It
reads the current rows with :func:`server.queries.current_frames`, hands them to
:func:`addin.trends.area_summary` (which does every count, rate and SPC chart) and adds what
only the server knows:

- ``submissions``: per site, the current submission (file, when received, counts) and when
  the site last sent its log (an unchanged log sent again counts as sent);
- ``not_submitted_this_month``: the sites that have sent nothing since the 1st of this month;
- ``data_quality``: validation findings of the current submissions, by site and by rule;
- ``overdue_actions``: the open or in-progress actions past their due date as at ``today``.

Months: by default the 24 complete months before this one, starting no earlier than the data
does (the current month is only partly reported, and a half month would read as a fall).
``from``/``to`` (``YYYY-MM``) choose others.

The JSON (``GET /api/v1/summary``) is :func:`addin.trends.area_summary`'s dict (``scope``,
``today``, ``months``, ``per``, ``measures``, ``sites``, the area BLOCK -- ``reports``, ``counts``,
``by_category``, ``by_harm``, ``rates``, ``actions``, ``key_measures`` with SPC points and
``signal``, ``learning_themes`` -- and ``per_site`` {code: BLOCK}; see its docstring) plus::

    "area": "North" | None, "site": "OAK" | None, "scope_label": "North" | "OAK" | "All sites",
    "range": {"from": "YYYY-MM", "to": "YYYY-MM", "is_default": bool, "default_from", "default_to"},
    "submissions": {code: {"site_code", "site_name", "area", "setting", "submission_id" | None,
                           "received_at" | None, "original_name" | None, "incidents", "actions",
                           "errors", "warnings", "last_sent_at" | None, "sent_this_month": bool}},
    "not_submitted_this_month": [code, ...],
    "data_quality": {"errors": n, "warnings": n, "by_site": {code: {"errors", "warnings"}},
                     "by_rule": [{"rule", "severity", "description", "count", "sites": {code: n}}]},
    "overdue_actions": [{"site_code", "action_ref", "incident_refs", "action", "action_type",
                         "owner_role", "status", "raised_date", "due_date", "days_overdue"}]

Times are ISO 8601 in UK time (Europe/London), dates ``YYYY-MM-DD``.

A small per-app cache keeps recent summaries.  Its key holds the latest submission id, the
current submission of each site in scope, the latest duplicate or reinstated upload and the
months and day asked for, so any upload, reinstatement or new site makes a new summary while
repeated page loads cost two small queries.  Cached summaries are shared: never change one.
The cache is bounded in bytes, not only in entries (a summary of 200 sites over 36 months is
about 13 MB of JSON and four times that as Python objects), and it forgets every summary of an
older state of the data as soon as one of the new state is kept: none of them can be asked for again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from flask import Flask, current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from addin import trends
from workbook_templates.rules import RULES_BY_ID

from . import queries
from .models import Area, AuditEvent, FindingRow, Site, Submission

DEFAULT_MONTHS = 24
MAX_MONTHS = 120
CACHE_SIZE = 32  # summaries kept at most
CACHE_BYTES = 256 * 2**20  # ... and their estimated memory at most (the newest is kept whatever its size)
# A summary's memory, estimated from its JSON text: the text itself plus the Python objects, which
# take ~3.2x the text (measured: 6.3 MB of JSON for 100 sites x 36 months, 20.4 MB as objects).
BYTES_PER_JSON_BYTE = 4
LOCAL_TIME = ZoneInfo("Europe/London")  # what "this month" and the times shown mean to a UK service
RESENT_EVENTS = ("submission.duplicate", "submission.reinstated")
MONTH_WORDS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class RangeError(ValueError):
    """``from``/``to`` that cannot be used; the message says why (an HTTP 400)."""


def today_for(app: Flask | None = None) -> dt.date:
    """Today's date in the UK, or the app's ``NEARMISS_TODAY`` (a date or "YYYY-MM-DD") when set."""
    fixed = (app or current_app).config.get("NEARMISS_TODAY")
    if fixed:
        return fixed if isinstance(fixed, dt.date) else dt.date.fromisoformat(str(fixed))
    return dt.datetime.now(LOCAL_TIME).date()


# --- months -----------------------------------------------------------------------------------------

def parse_month(text: str | None, name: str) -> pd.Timestamp | None:
    """ "2025-04" -> the Timestamp of 1 April 2025; blank -> None; anything else is a RangeError."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        year, month = text.split("-")
        if len(year) != 4 or len(month) != 2:
            raise ValueError
        return pd.Timestamp(int(year), int(month), 1)
    except ValueError:
        raise RangeError(f"{name} must be a month written as YYYY-MM, e.g. 2025-04, not {text!r}.") from None


def month_label(month: pd.Timestamp | str | None) -> str:
    """ "Apr 2025" for a month (a Timestamp or "YYYY-MM")."""
    if month is None:
        return ""
    m = pd.Timestamp(f"{month}-01") if isinstance(month, str) and len(month) == 7 else pd.Timestamp(month)
    return f"{MONTH_WORDS[m.month - 1]} {m.year}"


def _month_start(day: dt.date | pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(day.year, day.month, 1)


def _earliest_month(*columns: pd.Series) -> pd.Timestamp | None:
    firsts = [c.min() for c in columns if c is not None and len(c) and c.notna().any()]
    return _month_start(min(firsts)) if firsts else None


def choose_months(first: pd.Timestamp | None, last: pd.Timestamp | None, *, today: dt.date,
                  incidents: pd.DataFrame, actions: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``(first, last)``: the months asked for, the rest filled in by default (module docstring)."""
    this_month = _month_start(today)
    if last is not None and last > this_month:
        raise RangeError(f"to ({last:%Y-%m}) is after this month ({this_month:%Y-%m}).")
    earliest = _earliest_month(incidents.get("occurred_at"), actions.get("raised_date"))
    default_last = this_month - pd.DateOffset(months=1)
    if earliest is not None and earliest > default_last:
        default_last = this_month  # everything is from this month: show it rather than nothing
    if last is None:
        last = max(default_last, first) if first is not None else default_last
    if first is None:
        first = last - pd.DateOffset(months=DEFAULT_MONTHS - 1)
        if earliest is not None:
            first = min(max(first, earliest), last)
    if first > last:
        raise RangeError(f"from ({first:%Y-%m}) is after to ({last:%Y-%m}).")
    span = (last.year - first.year) * 12 + last.month - first.month + 1
    if span > MAX_MONTHS:
        raise RangeError(f"Choose at most {MAX_MONTHS} months (asked for {span}).")
    return pd.Timestamp(first), pd.Timestamp(last)


# --- the server's part ----------------------------------------------------------------------------------

def _local(moment: Any) -> dt.datetime | None:
    if moment is None or moment is pd.NaT or (isinstance(moment, float) and np.isnan(moment)):
        return None
    moment = pd.Timestamp(moment).to_pydatetime()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(LOCAL_TIME)


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _text(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _resent(session: Session, submission_ids: list[int]) -> dict[int, dt.datetime]:
    """Submission id -> the last time an identical log was sent again (duplicate or reinstated upload)."""
    if not submission_ids:
        return {}
    whats = [f"submission:{i}" for i in submission_ids]
    rows = session.execute(select(AuditEvent.what, func.max(AuditEvent.at))
                           .where(AuditEvent.action.in_(RESENT_EVENTS), AuditEvent.what.in_(whats))
                           .group_by(AuditEvent.what)).all()
    return {int(what.split(":", 1)[1]): at for what, at in rows}


def submission_status(session: Session, sites: pd.DataFrame, *, today: dt.date) -> dict[str, dict]:
    """Per site code: its current submission and when it last sent its log (see the module docstring)."""
    codes = [str(c) for c in sites["site_code"]]
    last_received: dict[str, Any] = {}
    all_ids: dict[int, str] = {}
    if codes:
        rows = session.execute(select(Site.code, Submission.id, Submission.received_at)
                               .join(Site, Submission.site_id == Site.id).where(Site.code.in_(codes))).all()
        for code, sub_id, received in rows:
            all_ids[sub_id] = code
            when = _local(received)
            if code not in last_received or when > last_received[code]:
                last_received[code] = when
        for sub_id, at in _resent(session, list(all_ids)).items():
            code, when = all_ids[sub_id], _local(at)
            if code not in last_received or when > last_received[code]:
                last_received[code] = when
    month_start = dt.datetime(today.year, today.month, 1, tzinfo=LOCAL_TIME)
    out = {}
    for row in sites.to_dict("records"):
        code = str(row["site_code"])
        sub_id = _int(row.get("submission_id"))
        sent = last_received.get(code)
        out[code] = {
            "site_code": code, "site_name": _text(row.get("site_name")), "area": _text(row.get("area")),
            "setting": _text(row.get("setting")),
            "submission_id": sub_id,
            "received_at": _iso(_local(row.get("received_at"))) if sub_id is not None else None,
            "original_name": _text(row.get("original_name")) if sub_id is not None else None,
            "incidents": _int(row.get("n_incidents")), "actions": _int(row.get("n_actions")),
            "errors": _int(row.get("n_errors")), "warnings": _int(row.get("n_warnings")),
            "last_sent_at": _iso(sent),
            "sent_this_month": sent is not None and sent >= month_start,
        }
    return out


def _scoped(query, *, area: str | None, site: str | None):  # noqa: ANN001, ANN202
    if area is not None:
        query = query.where(Area.name == area)
    if site is not None:
        query = query.where(Site.code == site)
    return query


def findings_counts(session: Session, *, area: str | None = None, site: str | None = None) -> pd.DataFrame:
    """Findings of the current submissions: columns site_code, rule, severity, count."""
    query = (select(Site.code, FindingRow.rule, FindingRow.severity, func.count())
             .join(Submission, FindingRow.submission_id == Submission.id)
             .join(Site, Submission.site_id == Site.id).join(Area, Site.area_id == Area.id)
             .where(Submission.is_current.is_(True))
             .group_by(Site.code, FindingRow.rule, FindingRow.severity))
    rows = session.execute(_scoped(query, area=area, site=site)).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=["site_code", "rule", "severity", "count"])


def rule_words(rule_id: str) -> str:
    """What a rule checks, in words (its message with the placeholders made general)."""
    rule = RULES_BY_ID.get(rule_id)
    if rule is None:
        return ""
    field = rule.field.replace("_", " ") if rule.field != "*" else "a field"
    text = (rule.message.replace("{label}", field).replace("'{value}'", "the value").replace("{value}", "...")
            .replace("....", "...").replace(" (the value)", "").strip())
    return text[:1].upper() + text[1:]


SEVERITY_ORDER = {"error": 0, "warning": 1}


def data_quality(counts: pd.DataFrame, site_codes: list[str]) -> dict:
    """Findings by site and by rule, from :func:`findings_counts`."""
    by_site = {code: {"errors": 0, "warnings": 0} for code in site_codes}
    for row in counts.itertuples(index=False):
        entry = by_site.setdefault(str(row.site_code), {"errors": 0, "warnings": 0})
        entry["errors" if row.severity == "error" else "warnings"] += int(row.count)
    by_rule = []
    if len(counts):
        grouped = counts.groupby(["rule", "severity"], sort=False)
        for (rule, severity), rows in grouped:
            by_rule.append({"rule": str(rule), "severity": str(severity), "description": rule_words(str(rule)),
                            "count": int(rows["count"].sum()),
                            "sites": {str(s): int(c) for s, c in zip(rows["site_code"], rows["count"])}})
        by_rule.sort(key=lambda r: (SEVERITY_ORDER.get(r["severity"], 2), -r["count"], r["rule"]))
    return {"errors": sum(v["errors"] for v in by_site.values()),
            "warnings": sum(v["warnings"] for v in by_site.values()),
            "by_site": by_site, "by_rule": by_rule}


def overdue_actions(actions: pd.DataFrame, *, today: dt.date) -> list[dict]:
    """Actions open or in progress and past their due date on ``today``, most overdue first."""
    if not len(actions):
        return []
    from addin.reader import overdue

    late = actions[overdue(actions, today).to_numpy(dtype=bool)]  # (the few late rows, not all)
    late = late.assign(days_overdue=(pd.Timestamp(today) - late["due_date"]).dt.days).sort_values(
        ["days_overdue", "site_code", "action_ref"], ascending=[False, True, True])
    # each column read out once (a row at a time through pandas costs ~0.1 ms a row: 1,500 rows of 200 sites)
    columns = {name: _texts(late, name) for name in ("site_code", "action_ref", "incident_refs", "action",
                                                     "action_type", "owner_role", "status")}
    columns |= {name: _dates(late, name) for name in ("raised_date", "due_date")}
    columns["days_overdue"] = late["days_overdue"].astype(int).tolist()
    return [dict(zip(columns, row)) for row in zip(*columns.values())]


def _dates(frame: pd.DataFrame, name: str) -> list[str | None]:
    """Each date of a column as "YYYY-MM-DD", None when missing (or when the frame has no such column)."""
    if name not in frame.columns:
        return [None] * len(frame)
    return [None if day is pd.NaT else day.date().isoformat() for day in frame[name].tolist()]


def _texts(frame: pd.DataFrame, name: str) -> list[str | None]:
    """:func:`_text` of each value of a column."""
    if name not in frame.columns:
        return [None] * len(frame)
    return [_text(value) for value in frame[name].tolist()]


# --- building ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """What a summary covers: one area (by name), one site (by code), or every site (both None)."""

    area: str | None = None
    site: str | None = None

    @property
    def label(self) -> str:
        return self.site or self.area or "All sites"


def build_summary(session: Session, scope: Scope, *, today: dt.date, first: pd.Timestamp | None = None,
                  last: pd.Timestamp | None = None) -> dict:
    """The summary of ``scope`` (uncached): :func:`addin.trends.area_summary` plus the server's part."""
    with trends.gc_paused():  # (the server's part adds thousands of containers too; see gc_paused)
        return _build_summary(session, scope, today=today, first=first, last=last)


def _build_summary(session: Session, scope: Scope, *, today: dt.date, first: pd.Timestamp | None,
                   last: pd.Timestamp | None) -> dict:
    incidents, actions, exposure, sites = queries.current_frames(session, area=scope.area, site=scope.site,
                                                                 columns=SUMMARY_COLUMNS)
    first, last = choose_months(first, last, today=today, incidents=incidents, actions=actions)
    default_first, default_last = choose_months(None, None, today=today, incidents=incidents, actions=actions)
    site_map = {str(r["site_code"]): {"setting": _text(r["setting"]), "site_name": _text(r["site_name"])}
                for r in sites.to_dict("records")}
    summary = trends.area_summary({"incidents": incidents, "actions": actions, "exposure": exposure}, site_map,
                                  today=today, months=(first, last))
    status = submission_status(session, sites, today=today)
    codes = list(site_map)
    summary.update({
        "area": scope.area,
        "site": scope.site,
        "scope_label": scope.label,
        "range": {"from": f"{first:%Y-%m}", "to": f"{last:%Y-%m}",
                  "is_default": (first, last) == (default_first, default_last),
                  "default_from": f"{default_first:%Y-%m}", "default_to": f"{default_last:%Y-%m}"},
        "submissions": status,
        "not_submitted_this_month": [c for c in codes if not status[c]["sent_this_month"]],
        "data_quality": data_quality(findings_counts(session, area=scope.area, site=scope.site), codes),
        "overdue_actions": overdue_actions(actions, today=today),
    })
    return summary


# What a summary reads of the rows (trends.area_summary and overdue_actions): a summary of 200
# sites then turns a few columns, not all forty, into pandas.
SUMMARY_COLUMNS = {
    "incidents": ["site_code", "occurred_at", "event_type", "category", "physical_harm", "status",
                  "learning_theme", "_row"],
    "actions": ["site_code", "action_ref", "incident_refs", "action", "action_type", "owner_role", "raised_date",
                "due_date", "status", "completed_date", "_row"],
}


class SummaryCache:
    """Recent summaries of an app by key (thread-safe, least recently used out), bounded by count and bytes.

    ``put`` takes the state of the data the summary was made from (``generation``): keeping one of
    a new state drops every entry of another, which no request can ask for again.
    """

    def __init__(self, size: int = CACHE_SIZE, max_bytes: int = CACHE_BYTES) -> None:
        self.size, self.max_bytes = size, max_bytes
        self._items: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()  # key -> (value, bytes)
        self._generation: Any = None
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.bytes = 0

    def get(self, key: tuple) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: tuple, value: Any, *, nbytes: int = 0, generation: Any = None) -> None:
        with self._lock:
            if generation != self._generation:
                self._items.clear()
                self.bytes, self._generation = 0, generation
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._items[key] = (value, nbytes)
            self.bytes += nbytes
            while len(self._items) > 1 and (len(self._items) > self.size or self.bytes > self.max_bytes):
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0


def cache_for(app: Flask | None = None) -> SummaryCache:
    app = app or current_app
    cache = app.extensions.get("nearmiss_summary_cache")
    if cache is None:
        cache = app.extensions.setdefault("nearmiss_summary_cache", SummaryCache())
    return cache


class Fingerprint(NamedTuple):
    """What a cached summary of a scope depends on in the database."""

    latest: tuple  # the latest submission id and the latest resent-upload event: the same for every scope
    current: tuple  # (site code, current submission id) of each site in the scope


def fingerprint(session: Session, scope: Scope) -> Fingerprint:
    """What a cached summary of ``scope`` depends on in the database (two small queries)."""
    query = (select(Site.code, Submission.id).join(Area, Site.area_id == Area.id)
             .outerjoin(Submission, (Submission.site_id == Site.id) & Submission.is_current.is_(True))
             .order_by(Site.code))
    current = tuple(tuple(r) for r in session.execute(_scoped(query, area=scope.area, site=scope.site)).all())
    latest = session.execute(select(
        select(func.max(Submission.id)).scalar_subquery(),
        select(func.max(AuditEvent.id)).where(AuditEvent.action.in_(RESENT_EVENTS)).scalar_subquery(),
    )).one()
    return Fingerprint(tuple(latest), current)


def get_summary(session: Session, scope: Scope, *, today: dt.date, first: pd.Timestamp | None = None,
                last: pd.Timestamp | None = None, app: Flask | None = None) -> dict:
    """The summary of ``scope`` for the months asked for, from the cache when nothing has changed."""
    return _cached(session, scope, today=today, first=first, last=last, app=app).summary


def get_summary_json(session: Session, scope: Scope, *, today: dt.date, first: pd.Timestamp | None = None,
                     last: pd.Timestamp | None = None, app: Flask | None = None) -> tuple[dict, str]:
    """:func:`get_summary` and its JSON text, cached with it: a summary of 200 sites is megabytes of JSON."""
    entry = _cached(session, scope, today=today, first=first, last=last, app=app)
    return entry.summary, entry.json


def summary_json(summary: Mapping[str, Any], app: Flask) -> str:
    """The summary as JSON text, keys sorted as Flask sorts them: by orjson (7 MB for 100 sites in ~20 ms
    instead of ~200 ms), or by Flask's own encoder for anything orjson refuses (a huge int, a non-text key)."""
    try:
        return orjson.dumps(summary, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return app.json.dumps(summary)


@dataclass(frozen=True)
class _Cached:
    summary: dict
    json: str


def _cached(session: Session, scope: Scope, *, today: dt.date, first: pd.Timestamp | None,
            last: pd.Timestamp | None, app: Flask | None) -> _Cached:
    app = app or current_app
    cache = cache_for(app)
    state = fingerprint(session, scope)
    key = (scope, today, first, last, state)
    entry = cache.get(key)
    if entry is None:
        summary = build_summary(session, scope, today=today, first=first, last=last)
        # The JSON is made now for every summary: the API sends it, and its length weighs the entry.
        entry = _Cached(summary, summary_json(summary, app))
        release_free_memory()
        # The latest ids are the same for every scope: with today, they are the state of the data.
        cache.put(key, entry, nbytes=len(entry.json) * BYTES_PER_JSON_BYTE, generation=(today, state.latest))
    return entry


def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()
_TRIMMING = threading.Lock()  # held while a trim runs: one at a time, and none queued behind it


def release_free_memory() -> None:
    """Hand the memory a summary's working frames freed back to the system.

    Building a 200-site summary allocates a few hundred MB that are free again once it is made,
    but the allocators keep freed pages: the server grew ~115 MB a summary and passed 1 GiB after
    four.  Arrow's pool (mimalloc) releases the calling thread's free pages here (<1 ms);
    glibc's ``malloc_trim(0)`` (~40 ms, every heap) runs in a thread of its own, off the request.
    """
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None and _TRIMMING.acquire(blocking=False):
        threading.Thread(target=_trim, name="nearmiss-malloc-trim", daemon=True).start()


def _trim() -> None:
    try:
        _MALLOC_TRIM(0)
    finally:
        _TRIMMING.release()


# --- the governance workbook ---------------------------------------------------------------------------

def findings_frame(summary: Mapping[str, Any]) -> pd.DataFrame:
    """One row per finding (site_code, rule, severity), as :func:`server.reports.governance.write_governance` reads."""
    rows = [(site, r["rule"], r["severity"], n) for r in summary["data_quality"]["by_rule"]
            for site, n in r["sites"].items()]
    counts = pd.DataFrame(rows, columns=["site_code", "rule", "severity", "count"])
    return counts.loc[counts.index.repeat(counts["count"])].drop(columns="count").reset_index(drop=True)


def governance_workbook(session: Session, summary: Mapping[str, Any]) -> bytes:
    """The governance summary workbook (:func:`server.reports.governance.write_governance`) of a summary."""
    from .reports.governance import write_governance

    incidents, actions, _, _ = queries.current_frames(session, area=summary.get("area"), site=summary.get("site"))
    submissions = {}
    for code, s in summary["submissions"].items():
        if s["submission_id"] is not None:
            received = dt.datetime.fromisoformat(s["received_at"]).replace(tzinfo=None)
            submissions[code] = {"file": s["original_name"] or "", "saved": received}
    with tempfile.TemporaryDirectory(prefix="nearmiss-governance-") as folder:
        path = Path(folder) / "governance.xlsx"
        write_governance(summary, path, incidents=incidents, actions=actions, findings=findings_frame(summary),
                         submissions=submissions, area=summary["scope_label"],
                         title=f"Governance summary: {summary['scope_label']}")
        return path.read_bytes()


def xlsx_bytes(write: Any, *args: Any, **kwargs: Any) -> bytes:
    """Run ``write(..., path)`` into a temporary .xlsx and return its bytes."""
    with tempfile.TemporaryDirectory(prefix="nearmiss-xlsx-") as folder:
        path = Path(folder) / "out.xlsx"
        write(*args, path, **kwargs)
        return path.read_bytes()


__all__ = ["Scope", "RangeError", "build_summary", "get_summary", "get_summary_json", "governance_workbook", "parse_month",
           "today_for", "month_label", "xlsx_bytes"]
