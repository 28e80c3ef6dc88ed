"""Monthly trends, rates, action statistics and SPC of the key measures.

Pure functions over DataFrames with the contract's field names (see
``workbook_templates.records.SiteRecords``).  Everything is vectorised over whole
frames: rows are placed in (site, month) cells by integer arithmetic on dates and
counted with ``numpy.bincount``; nothing loops per row.  The SPC charts every
site's series of a measure in one :func:`addin.spc.xmr_columns` call, and a summary's
blocks (the area's, each site's) have their lists made for all sites at once.

Conventions
-----------
- A month is the timestamp of its first day (``month_range`` builds them); an
  incident belongs to the month of ``occurred_at``.  Every month of the range
  is present, with 0 when nothing was reported.
- ``months`` is ``None`` (the span of the data, never past the month of
  ``today`` when a ``today`` is given, at most ``MAX_DEFAULT_MONTHS``), a ``(first, last)`` pair of anything
  ``pandas.Timestamp`` reads (``"2026-01"``, a date, a Timestamp), or a
  DatetimeIndex of month starts.
- ONE site: pass the frames of a SiteRecords (any ``site_code`` column is
  ignored).  MANY sites: pass frames concatenated with a ``site_code`` column
  (``site_col="site_code"``); the actions and exposure frames need that
  column too (the contract's actions and exposure tables have none, so the
  caller adds it when concatenating).
- Rates are per 1,000 exposure units: occupied bed days for care homes,
  delivered care hours otherwise (``EXPOSURE_UNIT_BY_SETTING``).  A month with
  missing or zero exposure has a NaN rate, never inf.  Across sites a rate is
  pooled: the sum of counts over the sum of exposure, both taken only over
  sites with exposure recorded that month and sharing one exposure unit.
- Code values missing from a row are counted under ``MISSING``
  ("not_recorded") so totals always add up.
"""

from __future__ import annotations

import datetime as dt
import gc
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from workbook_templates.codelists import CODE_LISTS, EXPOSURE_UNIT_BY_SETTING
from workbook_templates.contract import TABLE_SHEETS
from workbook_templates.records import empty_frame

from . import measures as M
from .spc import RULE_DESCRIPTIONS, describe_arrays, xmr_columns

MISSING = "not_recorded"
SITE_COL = "site_code"
PER = M.PER
OPEN_STATUSES = ("open", "in_progress")
MAX_DEFAULT_MONTHS = 120  # the longest span months=None gives; pass months for more
_NAT = np.iinfo(np.int64).min
_EPOCH_MONTH = np.datetime64("1970-01", "M")


# --- dates and months ---------------------------------------------------------

def _ts(value) -> pd.Timestamp:
    if isinstance(value, pd.Period):
        return value.start_time
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise ValueError(f"not a date: {value!r}")
    return ts.tz_localize(None) if ts.tzinfo else ts


def _month_code(value) -> int:
    """Months since 1970-01 of a single date-like value."""
    ts = _ts(value)
    return (ts.year - 1970) * 12 + ts.month - 1


def _today(today) -> pd.Timestamp:
    if today is None:
        raise ValueError("today is required (the date 'overdue' and 'not yet happened' are judged against)")
    return _ts(today).normalize()


def _index_from_codes(first: int, last: int) -> pd.DatetimeIndex:
    codes = np.arange(first, last + 1)
    values = (_EPOCH_MONTH + codes).astype("datetime64[us]")
    return pd.DatetimeIndex(values, name="month", freq="MS" if codes.size else None)


def month_range(first, last) -> pd.DatetimeIndex:
    """Every month from ``first`` to ``last`` inclusive, as month-start timestamps named "month".

    ``first`` and ``last`` may be any date in their month (or a Period, or a
    string such as "2026-03").  ``last`` before ``first`` is a ValueError.
    """
    a, b = _month_code(first), _month_code(last)
    if b < a:
        raise ValueError(f"month range ends ({last}) before it starts ({first})")
    return _index_from_codes(a, b)


def _as_datetime(values) -> pd.Series:
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if not pd.api.types.is_datetime64_any_dtype(s.dtype):
        s = pd.to_datetime(s, errors="coerce")
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_localize(None)
    return s


def _days(values) -> np.ndarray:
    """Days since 1970-01-01 as int64; missing dates are ``_NAT``."""
    arr = _as_datetime(values).to_numpy()
    return arr.astype("datetime64[D]").astype(np.int64)


def _months(values) -> np.ndarray:
    """Months since 1970-01 as int64; missing dates are ``_NAT``."""
    return _month_of_days(_days(values))


def _month_of_days(days: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of days since 1970-01-01 (``_NAT`` kept).

    numpy's calendar conversion to months costs several times its conversion to days, so each
    day spanned is converted once, into a table the rows look up; dates far apart (a mistyped
    year) are converted directly, as a table would be bigger than the rows.
    """
    ok = days != _NAT
    if not ok.any():
        return days.copy()
    lo, hi = int(days[ok].min()), int(days[ok].max())
    if hi - lo > days.size:
        return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    table = np.arange(lo, hi + 1).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return np.where(ok, table[np.where(ok, days - lo, 0)], _NAT)


def _day_of(ts: pd.Timestamp) -> int:
    return int(np.datetime64(ts.date(), "D").astype(np.int64))


def _codes_of(months: pd.DatetimeIndex) -> np.ndarray:
    return months.to_numpy().astype("datetime64[M]").astype(np.int64)


def resolve_months(months=None, *dates, today=None) -> pd.DatetimeIndex:
    """The month index to report on (see the module's conventions for ``months``).

    With ``months=None`` it spans the non-missing values of the ``dates``
    (Series or arrays), ending no later than the month of ``today`` when one is
    given and starting no more than ``MAX_DEFAULT_MONTHS`` months before its
    end (so one mistyped year cannot stretch a summary over a century); no
    dates at all give an empty index.
    """
    if months is not None:
        if isinstance(months, pd.DatetimeIndex):
            if months.empty:
                return _index_from_codes(0, -1)
            codes = _codes_of(months)
            if not np.array_equal(codes, np.arange(codes[0], codes[0] + codes.size)):
                raise ValueError("months must be consecutive months in order")
            return _index_from_codes(int(codes[0]), int(codes[-1]))
        if isinstance(months, (str, dt.date, pd.Timestamp)) or len(months) != 2:
            raise ValueError("months must be None, a (first, last) pair or a DatetimeIndex of months")
        return month_range(*months)
    return _span([_months(d) for d in dates if d is not None and len(d)], today)


def _span(month_codes: Sequence[np.ndarray], today) -> pd.DatetimeIndex:
    """``resolve_months`` with ``months=None``, from the dates' month codes."""
    codes = [c[c != _NAT] for c in month_codes]
    codes = [c for c in codes if c.size]
    if not codes:
        return _index_from_codes(0, -1)
    first = min(int(c.min()) for c in codes)
    last = max(int(c.max()) for c in codes)
    if today is not None:
        last = min(last, _month_code(today))
    first = min(max(first, last - MAX_DEFAULT_MONTHS + 1), last)
    return _index_from_codes(first, last)


def _positions(month_codes: np.ndarray, months: pd.DatetimeIndex) -> np.ndarray:
    """Position of each month code in ``months``; -1 when missing or outside."""
    if months.empty:
        return np.full(month_codes.size, -1, dtype=np.int64)
    pos = month_codes - _codes_of(months)[0]
    bad = (month_codes == _NAT) | (pos < 0) | (pos >= len(months))
    return np.where(bad, -1, pos)


# --- code values --------------------------------------------------------------

def _factorize(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, uniques) with blanks and missing values folded into ``MISSING``."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    uniques = np.asarray(uniques, dtype=object)
    blank = np.array([isinstance(u, str) and u.strip() == "" for u in uniques], dtype=bool)
    if blank.any() or (codes < 0).any():
        uniques = np.append(uniques, MISSING)
        missing_code = uniques.size - 1
        codes = np.where(codes < 0, missing_code, codes)
        if blank.any():
            remap = np.arange(uniques.size)
            remap[:-1][blank] = missing_code
            codes = remap[codes]
    return codes, uniques


def _factorize_runs(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``_factorize`` of a column that comes in long runs of one value (site codes: rows come site
    by site), Arrow text hashed once per run instead of once per row."""
    arrow = pa.array(values.array) if hasattr(values.array, "__arrow_array__") else None
    if arrow is None or not (pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type)):
        return _factorize(values)
    chunks = arrow.chunks if isinstance(arrow, pa.ChunkedArray) else [arrow]
    runs = [pc.run_end_encode(chunk) for chunk in chunks if len(chunk)]
    if sum(len(r.values) for r in runs) > len(values) // 8 + 1:  # not in runs after all
        return _factorize(values)
    run_codes, uniques = _factorize(pd.Series([v for r in runs for v in r.values.to_pylist()], dtype=object))
    lengths = [np.diff(r.run_ends.to_numpy(), prepend=0) for r in runs]
    return np.repeat(run_codes, np.concatenate(lengths) if lengths else []), uniques


def _levels(field: str, frame_key: str, uniques: np.ndarray, present: np.ndarray) -> list[str]:
    """Display order of a field's values: its code list, then other values seen, then MISSING."""
    try:
        allowed = TABLE_SHEETS[frame_key].field(field).allowed or []
    except KeyError:
        allowed = []
    seen = {str(u) for u, p in zip(uniques, present) if p and u != MISSING}
    extras = sorted(seen - set(allowed))
    tail = [MISSING] if any(p and u == MISSING for u, p in zip(uniques, present)) else []
    return [*allowed, *extras, *tail]


# --- the engine: rows placed in (site, month) cells -----------------------------

def _frames(data) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, dict]:
    """incidents, actions, exposure and the site dict of a SiteRecords, a mapping or an object."""
    get = (lambda k: data.get(k)) if isinstance(data, Mapping) else (lambda k: getattr(data, k, None))
    incidents, actions, exposure = get("incidents"), get("actions"), get("exposure")
    site = get("site") or {}
    if incidents is None:
        incidents = empty_frame("incidents")
    if actions is None:
        actions = empty_frame("actions")
    return incidents, actions, exposure, dict(site)


def exposure_unit(setting: str | None) -> str | None:
    """The exposure column rates use for a setting, or None for an unknown/missing setting."""
    return EXPOSURE_UNIT_BY_SETTING.get(setting) if isinstance(setting, str) else None


class _Engine:
    """One pass over the frames: each row's site and month position, cached codes, matrices (S x M)."""

    def __init__(self, incidents: pd.DataFrame, actions: pd.DataFrame | None, exposure: pd.DataFrame | None,
                 *, months: pd.DatetimeIndex, today: pd.Timestamp | None, site_col: str | None,
                 sites: Sequence[str] = (), settings: Mapping[str, str | None] | None = None,
                 dates: Mapping[tuple, np.ndarray] | None = None):
        self.months = months
        self.M = len(months)
        self.today = today
        self.site_col = site_col
        frames = {"incidents": incidents, "actions": actions, "exposure": exposure}
        if site_col is not None:
            for key, frame in frames.items():
                if frame is not None and len(frame) and site_col not in frame.columns:
                    raise ValueError(f"the {key} frame has no {site_col!r} column: add each site's code "
                                     "to its rows when concatenating sites")
            seen: set[str] = set()
            self._site_codes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for frame in frames.values():
                if frame is not None and len(frame):
                    codes, uniques = _factorize_runs(frame[site_col])
                    self._site_codes[id(frame)] = (codes, uniques)
                    seen.update(str(u) for u in uniques[np.bincount(codes, minlength=uniques.size) > 0])
            order = list(dict.fromkeys(str(s) for s in sites))
            self.sites = order + sorted(seen - set(order))
        else:
            self.sites = [None]
        self.S = len(self.sites)
        self._site_lookup = {s: i for i, s in enumerate(self.sites)}
        self.settings = {s: (settings or {}).get(s) for s in self.sites} if site_col else {None: (settings or {}).get(None)}
        self.incidents = incidents
        self.actions = actions if actions is not None else pd.DataFrame()
        self.exposure = exposure
        self._cache: dict = dict(dates or {})
        if self.M and today is not None:
            # months that have started by today; later months have no value yet
            self.live = _codes_of(months) <= _month_code(today)
        else:
            self.live = np.ones(self.M, dtype=bool)

    # rows -> site index
    def site_index(self, frame: pd.DataFrame) -> np.ndarray:
        if self.site_col is None or not len(frame):
            return np.zeros(len(frame), dtype=np.int64)
        codes, uniques = self._site_codes.get(id(frame)) or _factorize_runs(frame[self.site_col])
        lut = np.array([self._site_lookup[str(u)] for u in uniques], dtype=np.int64)
        return lut[codes]

    def _key(self, frame_key: str, date_field: str) -> np.ndarray:
        """Flat (site * M + month position) of each row, -1 when undated or outside the months."""
        ck = ("key", frame_key, date_field)
        if ck not in self._cache:
            frame = self._frame(frame_key)
            if not len(frame):
                self._cache[ck] = np.zeros(0, dtype=np.int64)
            else:
                pos = _positions(self.month_codes(frame_key, date_field), self.months)
                site = self._site_cache(frame_key)
                self._cache[ck] = np.where(pos >= 0, site * self.M + pos, -1)
        return self._cache[ck]

    def days(self, frame_key: str, date_field: str) -> np.ndarray:
        """Days since 1970-01-01 of each row's ``date_field`` (cached)."""
        ck = ("days", frame_key, date_field)
        if ck not in self._cache:
            self._cache[ck] = _days(self._frame(frame_key)[date_field])
        return self._cache[ck]

    def month_codes(self, frame_key: str, date_field: str) -> np.ndarray:
        """Months since 1970-01 of each row's ``date_field`` (cached)."""
        ck = ("months", frame_key, date_field)
        if ck not in self._cache:
            self._cache[ck] = _month_of_days(self.days(frame_key, date_field))
        return self._cache[ck]

    def _frame(self, frame_key: str) -> pd.DataFrame:
        return self.incidents if frame_key == "incidents" else self.actions

    def _site_cache(self, frame_key: str) -> np.ndarray:
        ck = ("site", frame_key)
        if ck not in self._cache:
            self._cache[ck] = self.site_index(self._frame(frame_key))
        return self._cache[ck]

    def codes(self, frame_key: str, field: str) -> tuple[np.ndarray, np.ndarray]:
        ck = ("codes", frame_key, field)
        if ck not in self._cache:
            frame = self._frame(frame_key)
            if field not in frame.columns:
                raise ValueError(f"the {frame_key} frame has no {field!r} column")
            self._cache[ck] = _factorize(frame[field])
        return self._cache[ck]

    def mask(self, frame_key: str, where: Mapping[str, Sequence[str]] | None) -> np.ndarray | None:
        """Rows matching every ``field -> allowed values`` of ``where`` (None: all rows; cached)."""
        if not where:
            return None
        ck = ("mask", frame_key, _where_key(where))
        if ck not in self._cache:
            out = np.ones(len(self._frame(frame_key)), dtype=bool)
            for field, allowed in where.items():
                codes, uniques = self.codes(frame_key, field)
                lut = np.isin(uniques.astype(str), [str(a) for a in allowed])
                out &= lut[codes] if len(codes) else np.zeros(0, dtype=bool)
            self._cache[ck] = out
        return self._cache[ck]

    def count(self, frame_key: str, date_field: str, mask: np.ndarray | None = None) -> np.ndarray:
        """S x M counts of rows (matching ``mask``) by site and month of ``date_field``."""
        ck = ("binned", frame_key, date_field)
        if ck not in self._cache:  # rows undated or outside the months go to one extra bin, dropped
            key = self._key(frame_key, date_field)
            self._cache[ck] = np.where(key >= 0, key, self.S * self.M)
        binned = self._cache[ck]
        if mask is None:
            counts = np.bincount(binned, minlength=self.S * self.M + 1)
        else:  # (weighing by the mask beats selecting the rows; sums of ones are exact)
            counts = np.bincount(binned, weights=mask, minlength=self.S * self.M + 1).astype(np.int64)
        return counts[:-1].reshape(self.S, self.M)

    def count_where(self, frame_key: str, date_field: str, where: Mapping[str, Sequence[str]] | None) -> np.ndarray:
        """:meth:`count` of the rows matching ``where`` (cached: measures and summaries ask for the same)."""
        ck = ("count", frame_key, date_field, _where_key(where))
        if ck not in self._cache:
            self._cache[ck] = self.count(frame_key, date_field, self.mask(frame_key, where))
        return self._cache[ck]

    def cube(self, fields: Sequence[str]) -> tuple[np.ndarray, list[list[str]]]:
        """Incident counts as an array (S, M, levels of field 1, levels of field 2, ...)."""
        key = self._key("incidents", "occurred_at")
        keep = key >= 0
        flat = key[keep]
        shape = [self.S * self.M]
        all_levels = []
        for field in fields:
            codes, uniques = self.codes("incidents", field)
            kept = codes[keep]
            present = np.bincount(kept, minlength=uniques.size) > 0
            levels = _levels(field, "incidents", uniques, present)
            where = {v: i for i, v in enumerate(levels)}
            lut = np.array([where.get(str(u), -1) for u in uniques], dtype=np.int64)
            level_codes = lut[kept]
            flat = flat * len(levels) + np.maximum(level_codes, 0)
            shape.append(len(levels))
            all_levels.append(levels)
        size = int(np.prod(shape))
        counts = np.bincount(flat, minlength=size).reshape([self.S, self.M, *shape[1:]])
        return counts, all_levels

    def outside(self, frame_key: str, date_field: str) -> tuple[np.ndarray, np.ndarray]:
        """Per site: rows with no date, and rows dated outside the months."""
        frame = self._frame(frame_key)
        site = self._site_cache(frame_key)
        if not len(frame):
            z = np.zeros(self.S, dtype=np.int64)
            return z, z
        undated = self.month_codes(frame_key, date_field) == _NAT
        out = (self._key(frame_key, date_field) < 0) & ~undated
        return (np.bincount(site[undated], minlength=self.S), np.bincount(site[out], minlength=self.S))

    # actions ------------------------------------------------------------------
    def action_matrices(self) -> dict[str, np.ndarray]:
        if "actions" in self._cache:
            return self._cache["actions"]
        S, Mn = self.S, self.M
        zeros = lambda: np.zeros((S, Mn), dtype=np.int64)  # noqa: E731
        a = self.actions
        if not len(a) or not Mn:
            out = {k: zeros() for k in ("opened", "done", "due", "due_outcome_known", "done_by_due_date",
                                        "overdue_at_month_end")}
        else:
            if self.today is None:
                raise ValueError("action statistics need today")
            today = _day_of(self.today)
            site = self._site_cache("actions")
            raised, due, completed = (self.days("actions", c) for c in ("raised_date", "due_date", "completed_date"))
            is_done = self.mask("actions", {"status": ("done",)})
            is_open = self.mask("actions", {"status": OPEN_STATUSES})
            not_cancelled = ~self.mask("actions", {"status": ("cancelled",)})
            out = {
                "opened": self.count("actions", "raised_date"),
                "done": self.count("actions", "completed_date", is_done),
            }
            has_due = due != _NAT
            on_time = is_done & (completed != _NAT) & (completed <= due) & has_due
            known = has_due & not_cancelled & (is_done | (due < today))
            out["due"] = self.count("actions", "due_date", has_due & not_cancelled)
            out["due_outcome_known"] = self.count("actions", "due_date", known)
            out["done_by_due_date"] = self.count("actions", "due_date", on_time & known)
            out["overdue_at_month_end"] = self._overdue_at(site, raised, due, completed, is_open, is_done, today)
        self._cache["actions"] = out
        return out

    def _overdue_at(self, site, raised, due, completed, is_open, is_done, today) -> np.ndarray:
        """S x M actions overdue as at each month's last day (today for the current month).

        An action is overdue on day D when it was raised by D, its due date is
        before D and it was not done by D: it is overdue on the days
        ``[max(due + 1, raised), completed)`` -- open-ended while open or in
        progress.  Cancelled actions, and done ones with no completed date,
        never count (when they stopped is not known).
        """
        S, Mn = self.S, self.M
        codes = _codes_of(self.months)
        month_end = ((_EPOCH_MONTH + codes + 1).astype("datetime64[D]").astype(np.int64)) - 1
        as_of = np.minimum(month_end, today)
        big = np.iinfo(np.int64).max
        start = np.maximum(due + 1, np.where(raised == _NAT, due + 1, raised))
        stop = np.where(is_open, big, np.where(is_done & (completed != _NAT), completed, _NAT))
        counted = (due != _NAT) & (is_open | (is_done & (completed != _NAT))) & (start < stop)
        start, stop, s = start[counted], stop[counted], site[counted]
        i_start = np.searchsorted(as_of, start, side="left")  # first month whose as-of day >= start
        i_stop = np.searchsorted(as_of, np.minimum(stop, big - 1), side="left")
        starts = np.bincount(s * (Mn + 1) + i_start, minlength=S * (Mn + 1))
        stops = np.bincount(s * (Mn + 1) + i_stop, minlength=S * (Mn + 1))
        return np.cumsum((starts - stops).reshape(S, Mn + 1), axis=1)[:, :Mn]

    def actions_now(self) -> dict[str, np.ndarray]:
        """Per site: actions by status now, and overdue now (open or in progress, due before today)."""
        S = self.S
        statuses = list(CODE_LISTS["action_status"])
        a = self.actions
        out = {s: np.zeros(S, dtype=np.int64) for s in statuses}
        out["overdue"] = np.zeros(S, dtype=np.int64)
        out["total"] = np.zeros(S, dtype=np.int64)
        if not len(a):
            return out
        if self.today is None:
            raise ValueError("action statistics need today")
        site = self._site_cache("actions")
        codes, uniques = self.codes("actions", "status")
        by_value = np.bincount(site * uniques.size + codes, minlength=S * uniques.size).reshape(S, uniques.size)
        names = uniques.astype(str)
        for s in statuses:
            out[s] = by_value[:, names == s].sum(axis=1)
        due = self.days("actions", "due_date")
        overdue = self.mask("actions", {"status": OPEN_STATUSES}) & (due != _NAT) & (due < _day_of(self.today))
        out["overdue"] = np.bincount(site[overdue], minlength=S)
        out["total"] = np.bincount(site, minlength=S)
        return out

    # exposure -----------------------------------------------------------------
    def exposure_matrix(self) -> tuple[np.ndarray, list[str | None]]:
        """S x M exposure in each site's unit (NaN when missing or not positive), and the units."""
        if "exposure" in self._cache:
            return self._cache["exposure"]
        units = [exposure_unit(self.settings.get(s)) for s in self.sites]
        mat = np.full((self.S, self.M), np.nan)
        e = self.exposure
        if e is not None and len(e) and self.M and "month" in e.columns:
            pos = _positions(_months(e["month"]), self.months)
            site = self.site_index(e)
            unit_of_row = np.array(units, dtype=object)[site]
            value = np.full(len(e), np.nan)
            for unit in set(u for u in units if u):
                if unit in e.columns:
                    col = pd.to_numeric(e[unit], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                    value = np.where(unit_of_row == unit, col, value)
            keep = (pos >= 0) & np.isfinite(value)
            flat = site[keep] * self.M + pos[keep]
            total = np.bincount(flat, weights=value[keep], minlength=self.S * self.M)
            seen = np.bincount(flat, minlength=self.S * self.M) > 0
            mat = np.where(seen, total, np.nan).reshape(self.S, self.M)
        mat = np.where(mat > 0, mat, np.nan)
        self._cache["exposure"] = (mat, units)
        return mat, units

    # measures -----------------------------------------------------------------
    def measure_parts(self, measure: M.Measure) -> tuple[np.ndarray, np.ndarray | None]:
        """S x M numerator, and denominator for share/percent/rate (None for counts; each part cached)."""
        if measure.frame == "incidents":
            num = self.count_where("incidents", "occurred_at", measure.where)
            if measure.kind in ("share", "percent"):
                den = self.count_where("incidents", "occurred_at", measure.of)
            elif measure.kind == "rate":
                den = self.exposure_matrix()[0]
            else:
                den = None
        elif measure.statistic == "overdue_at_month_end":
            num, den = self.action_matrices()["overdue_at_month_end"], None
        else:  # done_by_due_date
            mats = self.action_matrices()
            num, den = mats["done_by_due_date"], mats["due_outcome_known"]
        return num, den

    def measure_values(self, measure: M.Measure, *, pooled: bool = False) -> np.ndarray:
        """S x M values of a measure (or M values pooled over all sites); NaN for months not yet begun.

        Pooled: counts are summed, shares and percentages are sum over sum and
        rates are pooled over the sites with exposure (one exposure unit only).
        """
        num, den = self.measure_parts(measure)
        if measure.kind == "rate":
            if pooled:
                units = {u for u in self.exposure_matrix()[1] if u}
                if len(units) > 1:
                    raise ValueError(f"{measure.name}: cannot pool a rate over sites of different exposure "
                                     f"units {sorted(units)}")
                values = self.pooled_rate(num)[0][None, :]
            else:
                values = _ratio(num, den, PER)
        else:
            if pooled:
                num = num.sum(axis=0, keepdims=True)
                den = None if den is None else den.sum(axis=0, keepdims=True)
            values = num.astype(float) if den is None else _ratio(num, den, 100.0 if measure.kind == "percent"
                                                                   else 1.0)
        values = np.where(self.live, values, np.nan)
        return values[0] if pooled else values

    def pooled_rate(self, num: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rate per 1,000 over the sites ``rows`` (all when None): sums over sites with exposure."""
        expo, _ = self.exposure_matrix()
        if rows is not None:
            num, expo = num[rows], expo[rows]
        has = np.isfinite(expo)
        total_expo = np.where(has.any(axis=0), np.nansum(expo, axis=0), np.nan)
        total_num = np.where(has, num, 0).sum(axis=0)
        return _ratio(total_num.astype(float), total_expo, PER), total_expo


def _where_key(where: Mapping[str, Sequence[str]] | None) -> tuple | None:
    """A ``field -> allowed values`` filter as a cache key."""
    return tuple(sorted((k, tuple(v)) for k, v in where.items())) if where else None


def _ratio(num: np.ndarray, den: np.ndarray, scale: float) -> np.ndarray:
    """num / den * scale; NaN (never inf) where den is 0 or missing."""
    den = np.asarray(den, dtype=float)
    ok = np.isfinite(den) & (den > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, np.asarray(num, dtype=float) / np.where(ok, den, 1.0) * scale, np.nan)


def _engine(incidents, actions=None, exposure=None, *, months=None, today=None, site_col=None,
            sites=(), settings=None, span_actions=True) -> _Engine:
    if incidents is None or (not len(incidents) and "occurred_at" not in incidents.columns):
        incidents = empty_frame("incidents")
    if actions is None or (not len(actions) and "status" not in actions.columns):
        actions = empty_frame("actions")
    today_ts = None if today is None else _today(today)
    spanned = [("incidents", "occurred_at")] if "occurred_at" in incidents.columns else []
    if span_actions and len(actions):
        spanned += [("actions", c) for c in ("raised_date", "completed_date") if c in actions.columns]
    frames = {"incidents": incidents, "actions": actions}
    # the days and month codes of the spanning dates are the engine's too: each column converted once
    dates = {}
    for key, c in spanned:
        if len(frames[key]):
            dates[("days", key, c)] = days = _days(frames[key][c])
            dates[("months", key, c)] = _month_of_days(days)
    idx = (resolve_months(months) if months is not None
           else _span([v for k, v in dates.items() if k[0] == "months"], today_ts))
    return _Engine(incidents, actions, exposure, months=idx, today=today_ts, site_col=site_col,
                   sites=sites, settings=settings, dates=dates)


def _index(eng: _Engine) -> pd.Index:
    if eng.site_col is None:
        return eng.months
    return pd.MultiIndex.from_product([eng.sites, eng.months], names=[eng.site_col, "month"])


# --- public functions ------------------------------------------------------------

def monthly_counts(incidents: pd.DataFrame, *, by: Sequence[str] = ("category", "physical_harm"), months=None,
                   site_col: str | None = None, wide: bool = False) -> pd.DataFrame:
    """Reports per month (of ``occurred_at``) by the ``by`` fields, zeros included.

    Tidy (default): columns ``[site_col,] month, *by, count`` with a row for every
    site x month x combination of ``by`` values -- each code field's whole code
    list in display order, then any other value seen, then ``MISSING`` if some
    rows have none.  Wide: index ``month`` (or ``(site_col, month)``), one column
    per combination (a MultiIndex when ``by`` has several fields; a single
    "count" column when ``by`` is empty).  Undated rows and rows outside
    ``months`` are left out.
    """
    by = list(by)
    eng = _engine(incidents, months=months, site_col=site_col, span_actions=False)
    cube, levels = eng.cube(by)
    values = cube.reshape(eng.S * eng.M, -1)
    row_index = _index(eng)
    if not by:
        cols = pd.Index(["count"])
    elif len(by) == 1:
        cols = pd.Index(levels[0], name=by[0])
    else:
        cols = pd.MultiIndex.from_product(levels, names=by)
    wide_frame = pd.DataFrame(values, index=row_index, columns=cols)
    if wide:
        return wide_frame
    names = ([site_col] if site_col else []) + ["month"] + by
    index = pd.MultiIndex.from_product(([eng.sites] if site_col else []) + [eng.months] + levels, names=names)
    return pd.DataFrame({"count": cube.ravel()}, index=index).reset_index()


def near_miss_share(incidents: pd.DataFrame, months=None, *, site_col: str | None = None) -> pd.DataFrame:
    """Monthly ``near_misses``, ``incidents``, ``reports`` (their sum) and ``share`` = near_misses / reports.

    Index ``month`` (or ``(site_col, month)``); ``share`` is NaN in a month with no reports.
    """
    eng = _engine(incidents, months=months, site_col=site_col, span_actions=False)
    nm = eng.count("incidents", "occurred_at", eng.mask("incidents", {"event_type": ("near_miss",)}))
    inc = eng.count("incidents", "occurred_at", eng.mask("incidents", {"event_type": ("incident",)}))
    reports = nm + inc
    return pd.DataFrame({"near_misses": nm.ravel(), "incidents": inc.ravel(), "reports": reports.ravel(),
                         "share": _ratio(nm, reports, 1.0).ravel()}, index=_index(eng))


def exposure_by_month(exposure: pd.DataFrame | None, setting, *, months=None,
                      site_col: str | None = None) -> pd.Series:
    """Monthly exposure in the setting's unit: occupied bed days for care homes, else care hours.

    One site: ``setting`` is the site's setting; the Series is named after the
    unit and indexed by ``month``.  Many sites (``site_col``): ``setting`` maps
    site code -> setting, each site uses its own unit, and the Series
    ("exposure") is indexed by ``(site_col, month)``.  Months with no figure,
    or a figure of 0 or less, are NaN; several rows for one month are summed.
    ``months`` defaults to the months the exposure table has figures for.
    An unknown setting is a ValueError.
    """
    settings = dict(setting) if site_col else {None: setting}
    bad = {k: v for k, v in settings.items() if exposure_unit(v) is None}
    if bad:
        raise ValueError(f"unknown setting(s) {bad}; expected one of {sorted(EXPOSURE_UNIT_BY_SETTING)}")
    if months is None:
        units = {exposure_unit(v) for v in settings.values()}
        dates = []
        if exposure is not None and len(exposure):
            has = np.zeros(len(exposure), dtype=bool)
            for u in units:
                if u in exposure.columns:
                    has |= pd.to_numeric(exposure[u], errors="coerce").notna().to_numpy()
            dates = [exposure["month"][has]]
        months = resolve_months(None, *dates)
    else:
        months = resolve_months(months)
    eng = _Engine(_frames({})[0], None, exposure, months=months, today=None, site_col=site_col,
                  sites=list(settings) if site_col else (), settings=settings)
    mat, units = eng.exposure_matrix()
    name = units[0] if site_col is None else "exposure"
    return pd.Series(mat.ravel(), index=_index(eng), name=name)


def rates(counts, exposure: pd.Series, *, per: int = PER):
    """``counts`` per ``per`` (1,000) exposure units, aligned on the index.

    ``counts`` is a Series or a wide DataFrame (rows = months, or site x month)
    with the same index as ``exposure``; rows whose exposure is missing or not
    positive are NaN, never inf.
    """
    expo = pd.to_numeric(exposure, errors="coerce").astype(float)
    expo = expo.where(expo > 0)
    if isinstance(counts, pd.DataFrame):
        expo = expo.reindex(counts.index)
        return counts.astype(float).div(expo, axis=0) * per
    expo = expo.reindex(counts.index)
    return counts.astype(float) / expo * per


def pooled_rate(counts: pd.Series, exposure: pd.Series, *, per: int = PER, level: str = "month") -> pd.Series:
    """Area rate by month from per-site (site, month) Series: sum of counts / sum of exposure.

    Both sums run only over the sites with exposure recorded (> 0) that month,
    so a site with no exposure figure does not inflate the rate.  A month with
    no exposure at all is NaN.
    """
    expo = pd.to_numeric(exposure, errors="coerce").astype(float)
    expo = expo.where(expo > 0).reindex(counts.index)
    has = expo.notna()
    num = counts.astype(float).where(has, 0.0).groupby(level=level).sum()
    den = expo.groupby(level=level).sum(min_count=1)
    return pd.Series(_ratio(num.to_numpy(), den.reindex(num.index).to_numpy(), per), index=num.index,
                     name="rate")


class ActionStats(NamedTuple):
    """``monthly``: DataFrame indexed by month (or (site_col, month)) with columns

    - ``opened``: actions raised that month (any status);
    - ``done``: actions with status done completed that month;
    - ``due``: actions due that month, not cancelled;
    - ``due_outcome_known``: of those, the ones whose on-time outcome is known
      (done, or due before today);
    - ``done_by_due_date``: of those, done with completed_date <= due_date;
    - ``pct_done_by_due_date``: 100 x done_by_due_date / due_outcome_known (NaN when 0);
    - ``overdue_at_month_end``: open at the month's last day (today for the
      current month) and past due then; NaN for months after today.

    ``now``: Series (one site) or DataFrame indexed by site with the number of
    actions per status (open, in_progress, done, cancelled), ``overdue`` (open
    or in progress with due_date before today) and ``total``.
    """

    monthly: pd.DataFrame
    now: pd.Series | pd.DataFrame


def action_stats(actions: pd.DataFrame, *, today, months=None, site_col: str | None = None,
                 sites: Sequence[str] = ()) -> ActionStats:
    """Actions opened, done, overdue and done by their due date, per month (see ActionStats)."""
    eng = _engine(None, actions, months=months, today=today, site_col=site_col, sites=sites)
    return _action_stats(eng)


def _action_stats(eng: _Engine) -> ActionStats:
    mats = eng.action_matrices()
    data = {k: mats[k].ravel() for k in ("opened", "done", "due", "due_outcome_known", "done_by_due_date")}
    data["pct_done_by_due_date"] = _ratio(mats["done_by_due_date"], mats["due_outcome_known"], 100.0).ravel()
    data["overdue_at_month_end"] = np.where(eng.live, mats["overdue_at_month_end"], np.nan).ravel()
    monthly = pd.DataFrame(data, index=_index(eng))
    now = eng.actions_now()
    if eng.site_col is None:
        now_out = pd.Series({k: int(v[0]) for k, v in now.items()}, name="actions")
    else:
        now_out = pd.DataFrame(now, index=pd.Index(eng.sites, name=eng.site_col))
    return ActionStats(monthly, now_out)


# --- measures with SPC -------------------------------------------------------------

_SPC_JSON = ("mean", "lpl", "upl", "near_lpl", "near_upl", "point_type", "rule", "segment")


class _ChartRows(NamedTuple):
    """The XmR charts of every row (site) of one measure, and ``to_dict``'s pieces of each row, made at once."""

    columns: dict[str, np.ndarray]  # xmr column (in its order) -> R x M matrix (NaN/None where no value)
    labels: list[str]  # the months, "YYYY-MM"
    signals: list[str]
    latest: list[int | None]  # position of each row's latest month with a value
    lists: dict[str, list]  # "values", "points", "rate" and the SPC JSON columns -> one item per row


@dataclass(eq=False)
class MeasureResult:
    """One key measure: its monthly values, their XmR chart and the plain-English signal.

    Attributes: ``name``, ``label``, ``kind`` (count | share | percent | rate),
    ``improvement`` (increase | decrease | neutral), ``months`` (the month
    index), ``values``, ``rate_unit``.  Properties ``signal`` (e.g. "falls with
    harm: 7 months in a row above average (concern)"), ``latest_point_type``
    (point_type of the latest month with a value; None when there is none),
    ``trial_limits`` (the latest limits rest on fewer than 12 points, or there
    are no points), ``chart`` (xmr column -> array aligned with the months),
    ``series`` (value per month; NaN where there is no value: no reports for a
    share, nothing due for the on-time percentage, a month after today),
    ``spc`` (the :func:`addin.spc.xmr` columns indexed by month, NaN/None rows
    where the value is NaN), ``rate`` (per 1,000 exposure units, or None) and
    ``latest_month``.  A result is one row of its measure's charts of every
    site (``charts``, ``row``), whose arrays and JSON lists are made once for
    all sites, and the frames are built on demand, so summaries of many sites
    stay cheap.
    """

    name: str
    label: str
    kind: str
    improvement: str
    months: pd.DatetimeIndex
    values: np.ndarray
    charts: _ChartRows = field(repr=False)
    row: int
    rate_values: np.ndarray | None = None
    rate_unit: str | None = None

    @property
    def chart(self) -> dict[str, np.ndarray]:
        return {c: column[self.row] for c, column in self.charts.columns.items()}

    @property
    def signal(self) -> str:
        return self.charts.signals[self.row]

    @property
    def latest_index(self) -> int | None:
        return self.charts.latest[self.row]

    @property
    def latest_point_type(self) -> str | None:
        i = self.latest_index
        return None if i is None else str(self.charts.columns["point_type"][self.row, i])

    @property
    def trial_limits(self) -> bool:
        i = self.latest_index
        return True if i is None else bool(self.charts.columns["trial"][self.row, i])

    @property
    def series(self) -> pd.Series:
        return pd.Series(self.values, index=self.months, name=self.name)

    @property
    def spc(self) -> pd.DataFrame:
        return pd.DataFrame(self.chart, index=self.months)

    @property
    def rate(self) -> pd.Series | None:
        if self.rate_values is None:
            return None
        return pd.Series(self.rate_values, index=self.months, name=f"{self.name}_per_{PER}")

    @property
    def latest_month(self) -> pd.Timestamp | None:
        i = self.latest_index
        return None if i is None else self.months[i]

    def to_dict(self) -> dict:
        """JSON-ready form; lists are aligned with ``months`` ("YYYY-MM"), NaN is None::

            {"name", "label", "kind", "improvement", "signal",
             "latest_month": "YYYY-MM" | None, "latest_value", "latest_point_type",
             "latest_rule": "outside_limits" | "trend" | "two_in_three" | "shift" | None,
             "latest_rule_description": words | None,
             "trial_limits": bool, "points": number of months with a value,
             "months": [..], "values": [..],
             "spc": {"mean", "lpl", "upl", "near_lpl", "near_upl", "point_type", "rule", "segment"},
             "rate": None | {"unit", "per": 1000, "values": [..]}}

        ``point_type`` is common_cause / special_cause_improvement /
        special_cause_concern / special_cause_neutral_high / _low; ``rule`` is
        "" for common cause (None where there is no value).
        """
        i, r = self.latest_index, self.row
        rule = None if i is None else self.charts.columns["rule"][r, i]
        labels = list(self.charts.labels)  # (copies: results, and summaries, never share a list)
        lists = self.charts.lists
        values = list(lists["values"][r])
        return {
            "name": self.name, "label": self.label, "kind": self.kind, "improvement": self.improvement,
            "signal": self.signal, "latest_month": None if i is None else labels[i],
            "latest_value": None if i is None else values[i],
            "latest_point_type": self.latest_point_type,
            "latest_rule": rule or None,
            "latest_rule_description": None if rule is None else RULE_DESCRIPTIONS.get(rule),
            "trial_limits": self.trial_limits, "points": lists["points"][r],
            "months": labels,
            "values": values,
            "spc": {c: list(lists[c][r]) for c in _SPC_JSON},
            "rate": None if self.rate_values is None else {"unit": self.rate_unit, "per": PER,
                                                           "values": list(lists["rate"][r])},
        }


def _month_labels(months: pd.DatetimeIndex) -> list[str]:
    """["YYYY-MM", ...] of a month index (made once per measure's charts, and for the header)."""
    return [f"{m.year:04d}-{m.month:02d}" for m in months]


def _num(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v


def _jlist(arr) -> list:
    """A numpy array (of any shape: a matrix gives a list per row) as JSON-ready lists: NaN -> None.

    An object array must hold JSON-ready values already (the charts' text and None).
    """
    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        out = arr.astype(object)
        out[~np.isfinite(arr)] = None
        return out.tolist()
    return arr.tolist()


def _charts(values: np.ndarray, months: pd.DatetimeIndex, measure: M.Measure, spc_options: Mapping[str, Any] | None,
            rates: np.ndarray | None = None) -> list[tuple[_ChartRows, int]]:
    """XmR chart of each row of ``values`` (R x M), as (charts, row) of every row; ``rates`` (R x M) go
    into the charts' JSON lists.

    Rows are charted in ONE :func:`addin.spc.xmr_columns` call, each row's points a
    rebase segment of their own: spc.md has limits, runs and trends computed
    separately per segment, so this equals one call per row while costing one
    call in all (a 200-site summary has 1,600 charts).  When ``spc_options``
    asks for its own ``rebase_at``, rows are charted one by one instead.
    Missing values (NaN) are left out of the chart (their rows are NaN/None).
    """
    R, n = values.shape
    options = dict(spc_options or {})
    if options.get("rebase_at") is not None and R > 1:
        return [pair for r in range(R)
                for pair in _charts(values[r:r + 1], months, measure, options,
                                    None if rates is None else rates[r:r + 1])]
    valid = np.isfinite(values)
    counts = valid.sum(axis=1)
    ends = np.cumsum(counts)
    starts = ends - counts
    if options.get("rebase_at") is None:
        options["rebase_at"] = [int(x) for x in starts[(counts > 0)][1:]] or None
    chart = xmr_columns(values[valid], improvement=measure.improvement, **options)
    # each column as an R x M matrix: the chart's points are the valid cells, row by row
    columns = {}
    for c, column in chart.items():  # (numbers NaN, text and flags None where a row has no value)
        mat = np.full((R, n), np.nan) if column.dtype.kind in "fi" else np.full((R, n), None, dtype=object)
        mat[valid] = column
        columns[c] = mat
    first_segment = np.zeros(R)
    nonempty = counts > 0
    first_segment[nonempty] = chart["segment"][starts[nonempty]]
    columns["segment"] = columns["segment"] - first_segment[:, None]  # numbered within the row
    lists = {c: _jlist(columns[c]) for c in _SPC_JSON}  # to_dict's lists, every row's at once
    lists["values"] = _jlist(values)
    lists["points"] = counts.tolist()
    lists["rate"] = None if rates is None else _jlist(rates)
    latest = n - 1 - np.argmax(valid[:, ::-1], axis=1) if n else np.zeros(R, dtype=int)
    signals = [describe_arrays({c: column[a:b] for c, column in chart.items()}, measure.label)
               for a, b in zip(starts.tolist(), ends.tolist())]
    rows = _ChartRows(columns, _month_labels(months), signals,
                      [int(i) if k else None for i, k in zip(latest, nonempty)], lists)
    return [(rows, r) for r in range(R)]


def _measure_results(measure: M.Measure, months: pd.DatetimeIndex, values: np.ndarray, *,
                     rates: np.ndarray | None = None, rate_units: Sequence[str | None] = (),
                     spc_options: Mapping[str, Any] | None = None) -> list[MeasureResult]:
    """One MeasureResult per row of ``values`` (R x M); ``rates`` (R x M) where the row's unit is known."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    rates = None if rates is None else np.atleast_2d(np.asarray(rates, dtype=float))
    out = []
    for r, (charts, row) in enumerate(_charts(values, months, measure, spc_options, rates)):
        unit = rate_units[r] if rates is not None and r < len(rate_units) else None
        out.append(MeasureResult(
            name=measure.name, label=measure.label, kind=measure.kind, improvement=measure.improvement,
            months=months, values=values[r], charts=charts, row=row,
            rate_values=None if unit is None else rates[r], rate_unit=unit,
        ))
    return out


def measure_series(data, measure: str | M.Measure, *, months=None, today, site_col: str | None = None,
                   setting=None) -> pd.Series:
    """Monthly values of one measure (name or Measure) for a site, or pooled over many sites.

    ``data``: a SiteRecords, or a mapping/object with ``incidents``, ``actions``
    and optionally ``exposure`` (and ``site``).  With ``site_col`` the frames hold
    many sites and the series is their total (counts summed; shares and
    percentages as sum over sum; rates pooled).  A ``rate`` measure needs the
    setting: ``setting`` (a setting, or a site -> setting mapping with
    ``site_col``), else ``data.site["setting"]``.  Months after ``today`` are NaN.
    """
    measure = M.get(measure)
    incidents, actions, exposure, site = _frames(data)
    if site_col:
        settings = dict(setting or {})
    else:
        settings = {None: setting or site.get("setting")}
    eng = _engine(incidents, actions, exposure, months=months, today=today, site_col=site_col,
                  settings=settings)
    if measure.kind == "rate":
        units = {u for u in eng.exposure_matrix()[1] if u}
        if len(units) != 1:
            raise ValueError(f"a rate needs sites of one exposure unit with a known setting; found {units}")
    pooled = site_col is not None
    values = eng.measure_values(measure, pooled=True) if pooled else eng.measure_values(measure)[0]
    return pd.Series(values, index=eng.months, name=measure.name)


def _key_measure_results(eng: _Engine, measures: Sequence[M.Measure], *, pooled: bool,
                         spc_options=None) -> list[list[MeasureResult]]:
    """Key measures per site (``pooled=False``: one list per site) or for the area (one list)."""
    expo, units = eng.exposure_matrix()
    if pooled:
        unit_set = set(units)
        row_units = [unit_set.pop() if len(unit_set) == 1 else None]
    else:
        row_units = list(units)
    by_measure = []
    for m in measures:
        values = eng.measure_values(m, pooled=True)[None, :] if pooled else eng.measure_values(m)
        rates = None
        if m.exposure_rate and any(row_units):
            num = eng.measure_parts(m)[0].astype(float)
            rates = eng.pooled_rate(num)[0][None, :] if pooled else _ratio(num, expo, PER)
            rates = np.where(eng.live, rates, np.nan)
        by_measure.append(_measure_results(m, eng.months, values, rates=rates, rate_units=row_units,
                                           spc_options=spc_options))
    return [list(row) for row in zip(*by_measure)] if by_measure else [[] for _ in row_units]


def key_measures(incidents: pd.DataFrame, actions: pd.DataFrame | None, exposure: pd.DataFrame | None = None,
                 setting=None, *, today, months=None, directions: Mapping[str, str] | None = None,
                 measures: Sequence[str | M.Measure] = M.KEY_MEASURES, site_col: str | None = None,
                 spc_options: Mapping[str, Any] | None = None) -> list[MeasureResult]:
    """The key measures (addin.measures) with SPC and a plain-English signal, one site or pooled.

    ``directions`` overrides improvement directions by measure name.  With
    ``site_col`` the frames hold many sites and each measure is the area total
    (rates pooled; ``setting`` then maps site -> setting, and a rate is given
    only when all sites share one exposure unit).  ``spc_options`` go to
    :func:`addin.spc.xmr` (e.g. ``fix_after_n_points=12``; ``rebase_at`` positions count
    the months that have a value, and suit one series rather than many sites).  Months with no
    value (no reports for a share, nothing due for the on-time percentage,
    months after today) are left out of the chart; a measure with 0 or 1
    points has no signal and trial limits.
    """
    chosen = M.with_directions(measures, directions)
    settings = dict(setting or {}) if site_col else {None: setting}
    eng = _engine(incidents, actions, exposure, months=months, today=today, site_col=site_col,
                  settings=settings)
    return _key_measure_results(eng, chosen, pooled=True, spc_options=spc_options)[0]


# --- summaries --------------------------------------------------------------------------

COUNT_FIELDS = ("category", "physical_harm")
RATE_MEASURES = tuple(m.name for m in M.MEASURES if m.exposure_rate)


def _themes(eng: _Engine) -> list[list[dict]]:
    """Per site: learning themes of closed incidents (occurred within the months), most common first.

    Themes are free tags, so they are compared trimmed and in lower case.
    """
    inc = eng.incidents
    out: list[list[dict]] = [[] for _ in range(eng.S)]
    if not len(inc) or "learning_theme" not in inc.columns or "status" not in inc.columns:
        return out
    codes, uniques = eng.codes("incidents", "learning_theme")
    names = np.array(["" if u == MISSING else str(u).strip().lower() for u in uniques], dtype=object)
    levels, inverse = np.unique(names.astype(str), return_inverse=True)
    theme = inverse.reshape(-1)[codes]
    keep = eng.mask("incidents", {"status": ("closed",)}) & (eng._key("incidents", "occurred_at") >= 0)
    keep &= (levels != "")[theme]
    L = len(levels)
    counts = np.bincount(eng._site_cache("incidents")[keep] * L + theme[keep],
                         minlength=eng.S * L).reshape(eng.S, L)
    for r in np.flatnonzero(counts.sum(axis=1)):
        row = counts[r]
        order = np.lexsort((levels, -row))  # most common first, then alphabetical
        out[int(r)] = [{"theme": str(levels[i]), "count": int(row[i])} for i in order if row[i] > 0]
    return out


def _themes_total(per_site: list[list[dict]]) -> list[dict]:
    total: dict[str, int] = {}
    for items in per_site:
        for item in items:
            total[item["theme"]] = total.get(item["theme"], 0) + item["count"]
    return [{"theme": t, "count": c} for t, c in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))]


class _Counts(NamedTuple):
    """The counts of B blocks (every site, or the area as one): arrays with the block first."""

    cube: np.ndarray  # B, M, categories, harms
    event: dict[str, np.ndarray]  # B x M
    undated: np.ndarray  # B
    outside: np.ndarray  # B
    actions: dict[str, np.ndarray]  # B x M
    now: dict[str, np.ndarray]  # B

    def total(self) -> _Counts:
        """The area as one block: every count summed over the sites (integers, so exactly)."""
        def whole(a: np.ndarray) -> np.ndarray:
            return a.sum(axis=0, keepdims=True)
        return _Counts(whole(self.cube), {k: whole(v) for k, v in self.event.items()}, whole(self.undated),
                       whole(self.outside), {k: whole(v) for k, v in self.actions.items()},
                       {k: whole(v) for k, v in self.now.items()})


class _Parts(NamedTuple):
    counts: _Counts  # per site
    levels: list[list[str]]
    results_site: list[list[MeasureResult]]
    results_area: list[MeasureResult] | None
    themes: list[list[dict]]


def _blocks(eng: _Engine, counts: _Counts, levels: list[list[str]], rates: list[list[dict]],
            results: list[list[MeasureResult]], themes: list[list[dict]]) -> list[dict]:
    """The summary dict of each block of ``counts``, every block's lists made at once."""
    parts = zip(_reports(counts), _count_series(counts, levels), _by_level(counts, levels, 0),
                _by_level(counts, levels, 1), _actions(eng, counts))
    return [{"reports": reports, "counts": {"by": list(COUNT_FIELDS), "series": series}, "by_category": by_cat,
             "by_harm": by_harm, "rates": block_rates, "actions": actions,
             "key_measures": [r.to_dict() for r in block_results], "learning_themes": block_themes}
            for (reports, series, by_cat, by_harm, actions), block_rates, block_results, block_themes
            in zip(parts, rates, results, themes)]


def _reports(counts: _Counts) -> list[dict]:
    ev = counts.event
    lists = {k: ev[k].tolist() for k in ("all", "near_miss", "incident", "with_harm")}
    share = _jlist(_ratio(ev["near_miss"], ev["near_miss"] + ev["incident"], 1.0))
    totals, undated, outside = ev["all"].sum(axis=1).tolist(), counts.undated.tolist(), counts.outside.tolist()
    return [{"all_reports": lists["all"][b], "near_misses": lists["near_miss"][b], "incidents": lists["incident"][b],
             "incidents_with_harm": lists["with_harm"][b], "near_miss_share": share[b], "total": totals[b],
             "undated": undated[b], "outside_months": outside[b]} for b in range(len(totals))]


def _count_series(counts: _Counts, levels: list[list[str]]) -> list[list[dict]]:
    """Per block: the monthly counts of each (category, harm) with any report, in code-list order."""
    cats, harms = levels
    totals = counts.cube.sum(axis=1)  # B, C, H
    block, cat, harm = np.nonzero(totals)  # block by block, each in (category, harm) order
    monthly = counts.cube.transpose(0, 2, 3, 1)[block, cat, harm].tolist()
    items = [{"category": cats[c], "physical_harm": harms[h], "counts": series, "total": total}
             for c, h, series, total in zip(cat.tolist(), harm.tolist(), monthly, totals[block, cat, harm].tolist())]
    bounds = np.searchsorted(block, np.arange(totals.shape[0] + 1)).tolist()
    return [items[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


def _by_level(counts: _Counts, levels: list[list[str]], i: int) -> list[list[dict]]:
    """Per block: the monthly counts of every level of count field ``i`` (the other summed out)."""
    name, names = COUNT_FIELDS[i], levels[i]
    per_level = counts.cube.sum(axis=3 - i)  # B, M, levels (the cube's axes: B, M, categories, harms)
    monthly = per_level.transpose(0, 2, 1).tolist()
    totals = per_level.sum(axis=1).tolist()
    return [[{name: level, "counts": m, "total": t} for level, m, t in zip(names, block_monthly, block_totals)]
            for block_monthly, block_totals in zip(monthly, totals)]


def _actions(eng: _Engine, counts: _Counts) -> list[dict]:
    acts = counts.actions
    lists = {k: acts[k].tolist() for k in ("opened", "done", "due", "due_outcome_known", "done_by_due_date")}
    pct = _jlist(_ratio(acts["done_by_due_date"], acts["due_outcome_known"], 100.0))
    overdue = _jlist(np.where(eng.live, acts["overdue_at_month_end"], np.nan))
    overall = _ratio(acts["done_by_due_date"].sum(axis=1), acts["due_outcome_known"].sum(axis=1), 100.0)
    now = {k: v.tolist() for k, v in counts.now.items()}
    return [{"now": {k: v[b] for k, v in now.items()},
             "monthly": {"opened": lists["opened"][b], "done": lists["done"][b], "due": lists["due"][b],
                         "due_outcome_known": lists["due_outcome_known"][b],
                         "done_by_due_date": lists["done_by_due_date"][b],
                         "pct_done_by_due_date": pct[b], "overdue_at_month_end": overdue[b]},
             "pct_done_by_due_date": _num(overall[b])} for b in range(len(pct))]


def _rate_entry(unit: str, site_codes: list | None, exposure: list, values: dict[str, list]) -> dict:
    return {"unit": unit, "per": PER, "site_codes": site_codes, "exposure": exposure, "values": values}


def _area_rates(eng: _Engine) -> list[dict]:
    """The area's rates, one group per exposure unit, pooled over the group's sites (in site order)."""
    _, units = eng.exposure_matrix()
    groups = []
    for unit in dict.fromkeys(units):
        if unit is None:
            continue
        rows = np.array([r for r in range(eng.S) if units[r] == unit])
        _, total_expo = eng.pooled_rate(np.zeros((eng.S, eng.M)), rows)
        values = {name: _jlist(np.where(eng.live, eng.pooled_rate(_rate_numerator(eng, name), rows)[0], np.nan))
                  for name in RATE_MEASURES}
        groups.append(_rate_entry(unit, [eng.sites[r] for r in rows] if eng.site_col else None, _jlist(total_expo),
                                  values))
    return groups


def _site_rates(eng: _Engine) -> list[list[dict]]:
    """Each site's rates (a group of one: what pooling gives over that site alone), all sites at once."""
    expo, units = eng.exposure_matrix()
    exposure = _jlist(expo)
    values = {name: _jlist(np.where(eng.live, _ratio(_rate_numerator(eng, name), expo, PER), np.nan))
              for name in RATE_MEASURES}
    return [[] if unit is None else
            [_rate_entry(unit, [eng.sites[r]] if eng.site_col else None, exposure[r],
                         {name: rows[r] for name, rows in values.items()})]
            for r, unit in enumerate(units)]


def _rate_numerator(eng: _Engine, name: str) -> np.ndarray:
    return eng.measure_parts(M.get(name))[0].astype(float)


def _parts(eng: _Engine, measures: list[M.Measure], *, per_site_spc: bool, area: bool, spc_options) -> _Parts:
    if len(eng.incidents) and not set(COUNT_FIELDS) <= set(eng.incidents.columns):
        raise ValueError(f"the incidents frame needs columns {COUNT_FIELDS}")
    cube, levels = eng.cube(COUNT_FIELDS)
    wheres = {"all": None, "near_miss": {"event_type": ("near_miss",)}, "incident": {"event_type": ("incident",)},
              "with_harm": M.get("incidents_with_harm").where}
    event = {k: eng.count_where("incidents", "occurred_at", where) for k, where in wheres.items()}
    undated, outside = eng.outside("incidents", "occurred_at")
    results_site = (_key_measure_results(eng, measures, pooled=False, spc_options=spc_options)
                    if per_site_spc else [[] for _ in range(eng.S)])
    results_area = _key_measure_results(eng, measures, pooled=True, spc_options=spc_options)[0] if area else None
    counts = _Counts(cube, event, undated, outside, eng.action_matrices(), eng.actions_now())
    return _Parts(counts, levels, results_site, results_area, _themes(eng))


def _header(eng: _Engine, measures: list[M.Measure], scope: str) -> dict:
    return {"scope": scope, "today": eng.today.date().isoformat(),
            "months": _month_labels(eng.months), "per": PER,
            "measures": [m.to_dict() for m in measures]}


def site_summary(records, *, today, months=None, directions: Mapping[str, str] | None = None,
                 measures: Sequence[str | M.Measure] = M.KEY_MEASURES,
                 spc_options: Mapping[str, Any] | None = None) -> dict:
    """JSON-ready governance summary of ONE site (a SiteRecords, or mapping with its frames and ``site``).

    Shape (every list under a block is aligned with ``months``; NaN is None)::

        {"scope": "site", "today": "YYYY-MM-DD", "months": ["YYYY-MM", ...], "per": 1000,
         "measures": [Measure.to_dict(), ...],          # how each key measure is counted
         "site": {"site_code", "site_name", "setting", "exposure_unit"},
         **BLOCK}

    BLOCK (the same for a site, the area and each entry of area_summary's per_site)::

        "reports": {"all_reports": [..], "near_misses": [..], "incidents": [..],
                    "incidents_with_harm": [..], "near_miss_share": [0-1 | None],
                    "total": n, "undated": n, "outside_months": n},
        "counts": {"by": ["category", "physical_harm"],
                   "series": [{"category", "physical_harm", "counts": [..], "total"}, ...]},  # non-zero only
        "by_category": [{"category", "counts": [..], "total"}, ...],   # every category, code-list order
        "by_harm": [{"physical_harm", "counts": [..], "total"}, ...],  # every harm level
        "rates": [{"unit": "occupied_bed_days" | "care_hours", "per": 1000,
                   "site_codes": [..] | None, "exposure": [.. | None],
                   "values": {"all_reports": [..], "incidents_with_harm": [..], "falls_with_harm": [..],
                              "medication_errors_reached": [..]}}],   # one per unit; [] when unknown
        "actions": {"now": {"open", "in_progress", "done", "cancelled", "overdue", "total"},
                    "monthly": {"opened", "done", "due", "due_outcome_known", "done_by_due_date",
                                "pct_done_by_due_date", "overdue_at_month_end"},
                    "pct_done_by_due_date": float | None},              # over all the months
        "key_measures": [MeasureResult.to_dict(), ...],
        "learning_themes": [{"theme", "count"}, ...]   # closed incidents in the months, most common first

    Counts are by month of occurred_at; ``undated`` and ``outside_months``
    count the reports left out.  ``actions.now`` is the whole tracker as of
    ``today``; the monthly action series are described in ActionStats.
    """
    incidents, actions, exposure, site = _frames(records)
    chosen = M.with_directions(measures, directions)
    eng = _engine(incidents, actions, exposure, months=months, today=today, site_col=None,
                  settings={None: site.get("setting")})
    parts = _parts(eng, chosen, per_site_spc=True, area=False, spc_options=spc_options)
    out = _header(eng, chosen, "site")
    out["site"] = {"site_code": site.get("site_code"), "site_name": site.get("site_name"),
                   "setting": site.get("setting"), "exposure_unit": exposure_unit(site.get("setting"))}
    out.update(_blocks(eng, parts.counts, parts.levels, _site_rates(eng), parts.results_site, parts.themes)[0])
    return out


def area_summary(frames, sites: Mapping[str, Any], *, today, months=None,
                 directions: Mapping[str, str] | None = None,
                 measures: Sequence[str | M.Measure] = M.KEY_MEASURES, site_col: str = SITE_COL,
                 per_site_spc: bool = True, spc_options: Mapping[str, Any] | None = None) -> dict:
    """JSON-ready governance summary of MANY sites and of the area they make up.

    ``frames``: a mapping (or object) with ``incidents``, ``actions`` and
    ``exposure`` concatenated over sites, each with a ``site_code`` column.
    ``sites``: site_code -> setting (or -> the site's dict with ``setting`` and
    ``site_name``); sites listed here appear even with no rows, in this order,
    then any other site code found in the frames.

    Shape::

        {"scope": "area", "today", "months", "per", "measures",   # as in site_summary
         "sites": [{"site_code", "site_name", "setting", "exposure_unit"}, ...],
         **BLOCK,                     # the area: counts summed over sites, rates pooled
         "per_site": {site_code: {"site": {...}, **BLOCK}, ...}}

    The area's counts are the sums of the sites'.  Area rates are pooled per
    exposure unit (sum of counts / sum of exposure over the sites of that unit
    with exposure that month); a key measure carries a ``rate`` only when all
    sites share one unit.  ``per_site_spc=False`` leaves the per-site
    ``key_measures`` empty (SPC is the costly part: one chart per measure and site).
    """
    with gc_paused():
        return _area_summary(frames, sites, today=today, months=months, directions=directions, measures=measures,
                             site_col=site_col, per_site_spc=per_site_spc, spc_options=spc_options)


_GC_LOCK = threading.Lock()


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a summary is built: its lists and dicts are a hundred
    thousand new containers (none in a cycle) that each collection walks again and again, which
    took a quarter of a 200-site summary's time.  Collection resumes (if it was on) afterwards.

    The switch is process-wide, so uses nest, also across the server's threads: the use that
    found collection on turns it back on when it ends (an overlapping use may then run with it
    on; collection is never off for longer than one use).  Reading the state and turning it off
    happen under a lock that turning it on takes too, so no use can read "off" from a use that
    is just ending and then leave collection off for good."""
    with _GC_LOCK:
        enabled = gc.isenabled()
        gc.disable()
    try:
        yield
    finally:
        if enabled:
            with _GC_LOCK:
                gc.enable()


def _area_summary(frames, sites: Mapping[str, Any], *, today, months, directions, measures, site_col: str,
                  per_site_spc: bool, spc_options) -> dict:
    incidents, actions, exposure, _ = _frames(frames)
    settings, names = {}, {}
    for code, value in sites.items():
        if isinstance(value, Mapping):
            settings[str(code)], names[str(code)] = value.get("setting"), value.get("site_name")
        else:
            settings[str(code)] = value
    chosen = M.with_directions(measures, directions)
    eng = _engine(incidents, actions, exposure, months=months, today=today, site_col=site_col,
                  sites=list(settings), settings=settings)
    parts = _parts(eng, chosen, per_site_spc=per_site_spc, area=True, spc_options=spc_options)
    out = _header(eng, chosen, "area")
    infos = [{"site_code": s, "site_name": names.get(s), "setting": eng.settings.get(s),
              "exposure_unit": exposure_unit(eng.settings.get(s))} for s in eng.sites]
    out["sites"] = infos
    out.update(_blocks(eng, parts.counts.total(), parts.levels, [_area_rates(eng)], [parts.results_area],
                       [_themes_total(parts.themes)])[0])
    per_site = _blocks(eng, parts.counts, parts.levels, _site_rates(eng), parts.results_site, parts.themes)
    out["per_site"] = {info["site_code"]: {"site": info, **block} for info, block in zip(infos, per_site)}
    return out
