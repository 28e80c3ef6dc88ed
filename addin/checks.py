"""Every rule of ``workbook_templates/rules.py`` as one small vectorised check.

A check takes the normalised frames (:class:`Frames`: incidents, actions, the Site sheet
as a one-row frame, exposure, and ``today``) and returns a list of :class:`Hit`: a
boolean mask over one frame, the field the finding points at and, where the message
needs it, the value to show.  ``CHECKS`` maps each rule id to its check.  No check loops
over rows: each works on whole columns.  The workbook-level rules (NM090-NM094) are
structural and come from the reader.

Checks read their columns through :meth:`Frames.table`: a :class:`Table` computes each
derived column a check asks for (missing or not, in a code list, as dates, casefolded) once
per validation, as a numpy array, so the ~45 checks share the work and none pays pandas'
per-call cost on every small frame.

:func:`suggested_tier` and :func:`expected_notification` are also used by the converter.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from workbook_templates.codelists import (
    CODE_LISTS, CQC_NOTIFY_WITHIN_DAYS, EXPOSURE_UNIT_BY_SETTING, REVIEW_TARGET_DAYS, RISK_BANDS, SUBCATEGORY_OF,
)
from workbook_templates.contract import ACTIONS, EXPOSURE_FIELDS, INCIDENTS, SITE_FIELDS, Field
from workbook_templates.rules import EFFECTIVENESS_CHECK_DAYS

from . import identifiers
from .reader import _series_like, risk_bands

TIERS = ("low", "moderate", "serious")
TIER_RANK = {t: i for i, t in enumerate(TIERS)}
FIELDS = {
    "incidents": {f.name: f for f in INCIDENTS.fields},
    "actions": {f.name: f for f in ACTIONS.fields},
    "site": {f.name: f for f in SITE_FIELDS},
    "exposure": {f.name: f for f in EXPOSURE_FIELDS},
}
# Dates that come after the event: each must not be before the date it occurred (NM012).
AFTER_OCCURRED = ("safeguarding_referral_date", "cqc_notified_date", "commissioner_notified_date", "candour_date",
                  "feedback_to_reporter_date", "closed_date")
REF_SEPARATORS = r"[,;\n\r]+"


@dataclass
class Frames:
    """The normalised records a check reads, with ``today`` as a midnight Timestamp."""

    incidents: pd.DataFrame
    actions: pd.DataFrame
    site: pd.DataFrame  # one row: the Site sheet's key/value pairs
    exposure: pd.DataFrame
    today: pd.Timestamp
    _cache: dict = field(default_factory=dict, repr=False)

    def frame(self, record: str) -> pd.DataFrame:
        return getattr(self, record)

    def table(self, record: str) -> "Table":
        """The record's frame with its derived columns, each computed once per validation."""
        return self.cached(("table", record), lambda: Table(self.frame(record)))

    def cached(self, key: object, make: Callable[[], object]) -> object:
        """``make()`` computed once per validation (for what several checks share)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def today64(self) -> np.datetime64:
        return self.today.to_datetime64()

    @property
    def site_code(self) -> str | None:
        value = self.site["site_code"].iloc[0] if "site_code" in self.site and len(self.site) else None
        return None if pd.isna(value) else str(value)

    @property
    def setting(self) -> str | None:
        value = self.site["setting"].iloc[0] if "setting" in self.site and len(self.site) else None
        return None if pd.isna(value) else str(value)


@dataclass
class Hit:
    """Rows of one frame that break a rule, at one field.

    ``mask`` is a boolean numpy array (one flag per row of the frame) or a boolean Series
    (aligned with the frame by label).  ``value`` is a numpy array (one per row), a Series
    (aligned by label) or a scalar shown as {value} in the message; None shows the cell's
    own value (its raw text when it could not be read).  ``frame`` is given when the rows
    are not a record frame (NM082's months).
    """

    record: str  # "incidents" | "actions" | "site" | "exposure"
    field: str
    mask: np.ndarray | pd.Series
    value: object = None
    frame: pd.DataFrame | None = None


Check = Callable[[Frames], list[Hit]]
CHECKS: dict[str, Check] = {}


def check(rule_id: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[rule_id] = fn
        return fn

    return register


def run_checks(frames: Frames, rule_ids: list[str] | None = None) -> dict[str, list[Hit]]:
    """Hits per rule id, for every registered rule (or the ones named)."""
    return {rid: CHECKS[rid](frames) for rid in (rule_ids or CHECKS)}


# --- helpers over whole columns ------------------------------------------------------------

def col(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column, or an all-missing one when the frame lacks it."""
    if name in frame:
        return frame[name]
    return pd.Series(pd.NA, index=frame.index, dtype="object")


def raw(frame: pd.DataFrame, name: str) -> pd.Series:
    """Text of cells in ``name`` that could not be read as their type (missing elsewhere)."""
    return col(frame, f"_raw_{name}")


def present(frame: pd.DataFrame, name: str) -> pd.Series:
    """True where the cell holds something: a value, or text that could not be read."""
    given = np.zeros(len(frame), dtype=bool)
    for column in (name, f"_raw_{name}"):
        if column in frame:
            given |= _valid(frame[column])
    return pd.Series(given, index=frame.index)


def blank(frame: pd.DataFrame, name: str) -> pd.Series:
    return ~present(frame, name)


def equals(frame: pd.DataFrame, name: str, *values: str) -> pd.Series:
    return isin_values(col(frame, name), values)


def _valid(column: pd.Series) -> np.ndarray:
    """``column.notna()`` as a numpy bool array (for Arrow text, straight from its validity bitmap)."""
    array = getattr(column.array, "_pa_array", None)
    if array is None:  # the array's own isna, as notna() takes it, without making two Series
        return ~np.asarray(column.array.isna(), dtype=bool)
    if array.null_count in (0, len(array)):  # all given or all missing: no bitmap to read
        return np.full(len(array), array.null_count == 0, dtype=bool)
    return pc.is_valid(array).to_numpy(zero_copy_only=False)


def isin_values(column: pd.Series, values: tuple) -> pd.Series:
    """``column.isin(values)`` (missing is never in): one Arrow pass for pandas text, else pandas' isin."""
    return pd.Series(_isin(column, values), index=column.index)


def _isin(column: pd.Series, values: tuple) -> np.ndarray:
    """:func:`isin_values` as a numpy bool array."""
    array = getattr(column.array, "_pa_array", None)
    if array is None or not all(isinstance(v, str) for v in values):
        return column.isin(values).to_numpy(dtype=bool)
    found = pc.is_in(array, value_set=pa.array(values, type=array.type))  # missing: False
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def dates(frame: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_datetime(col(frame, name), errors="coerce")


def before(frame: pd.DataFrame, later: str, earlier: str) -> pd.Series:
    """True where both dates are known and ``later`` falls before ``earlier``."""
    return (dates(frame, later) < dates(frame, earlier)).fillna(False).astype(bool)


def days_between(frame: pd.DataFrame, start: str, end: pd.Series | pd.Timestamp) -> pd.Series:
    return (end - dates(frame, start)).dt.days


def fields_of(record: str, predicate: Callable[[Field], bool]) -> list[Field]:
    return [f for f in FIELDS[record].values() if f.type != "derived" and predicate(f)]


def casefolded(series: pd.Series) -> pd.Series:
    text = series.astype("str")
    array = getattr(text.array, "_pa_array", None)
    if array is None or not len(text):
        return text.str.strip().str.casefold()
    # In Arrow (``str.strip`` is Arrow's trim): ASCII text casefolds as it lowercases, other text
    # goes through str.casefold one value at a time.
    stripped = pc.utf8_trim_whitespace(array)
    ascii_ = pc.string_is_ascii(stripped)
    lowered = _series_like(pc.utf8_lower(stripped), text)
    if pc.all(ascii_).as_py() is not False:  # True, or null: all missing
        return lowered
    other = ~pc.fill_null(ascii_, True).to_numpy(zero_copy_only=False)
    lowered = lowered.copy()
    lowered[other] = _series_like(stripped, text)[other].str.casefold()
    return lowered


def linked_refs(actions: pd.DataFrame) -> pd.DataFrame:
    """One row per (action, incident ref named): columns ref (as typed) and key (casefolded).

    Action ``incident_refs`` are split on commas (semicolons and line breaks too), spaces
    stripped; the index is the action's index.  :func:`linked` leaves out cancelled actions.
    """
    refs = col(actions, "incident_refs").astype("str")
    array = getattr(refs.array, "_pa_array", None)
    if array is not None:  # one ref per cell, the usual case, needs no split (one RE2 pass finds the others)
        several = pc.match_substring_regex(array, REF_SEPARATORS).to_numpy(zero_copy_only=False)
        several = several.astype(bool) if several.dtype == bool else pd.Series(several).fillna(False).to_numpy(bool)
        single = refs[~several].str.strip()
        split = refs[several].str.split(REF_SEPARATORS, regex=True).explode().str.strip()
        exploded = pd.concat([single, split]).sort_index(kind="stable") if several.any() else single
    else:
        exploded = refs.str.split(REF_SEPARATORS, regex=True).explode().str.strip()
    exploded = exploded[exploded.notna() & exploded.ne("")]
    return pd.DataFrame({"ref": exploded, "key": exploded.str.casefold()})


# --- a frame's derived columns, each computed once ---------------------------------------------
_DAY_US = 86_400_000_000  # microseconds in a day


class Table:
    """A record frame and what checks derive from its columns, each as a numpy array, computed once.

    Every array has one element per row of the frame (positions, not labels).  A column the
    frame lacks reads as all missing, as :func:`col` gives it.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.n = len(frame)
        self._memo: dict = {}

    def _cached(self, key: tuple, make: Callable[[], object]):
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = make()
            return value

    def column(self, name: str) -> pd.Series:
        series = self.series(name)
        return series if series is not None else col(self.frame, name)

    def series(self, name: str) -> pd.Series | None:
        """The frame's column ``name`` (None when it lacks it), looked up once."""
        return self._cached(("series", name), lambda: self.frame[name] if name in self.frame else None)

    def valid(self, name: str) -> np.ndarray:
        """True where ``name`` holds a value (``col(frame, name).notna()``)."""
        def make() -> np.ndarray:
            series = self.series(name)
            return np.zeros(self.n, dtype=bool) if series is None else _valid(series)
        return self._cached(("valid", name), make)

    def present(self, name: str) -> np.ndarray:
        """True where the cell holds something: a value, or text that could not be read (:func:`present`)."""
        return self._cached(("present", name), lambda: self.valid(name) | self.unreadable(name))

    def blank(self, name: str) -> np.ndarray:
        return self._cached(("blank", name), lambda: ~self.present(name))

    def unreadable(self, name: str) -> np.ndarray:
        """True where the cell held text that could not be read as its type (``raw(frame, name).notna()``)."""
        return self.valid(f"_raw_{name}")

    def equals(self, name: str, *values: str) -> np.ndarray:
        """True where ``name`` is one of ``values`` (:func:`equals`; missing never is)."""
        def make() -> np.ndarray:
            series = self.series(name)
            if series is None or not self.valid(name).any():
                return np.zeros(self.n, dtype=bool)
            return _isin(series, values)
        return self._cached(("equals", name, values), make)

    def valid_code(self, name: str, list_name: str) -> np.ndarray:
        """True where ``name`` is a code of the code list ``list_name``."""
        return self.equals(name, *CODE_LISTS[list_name])

    def dates(self, name: str) -> np.ndarray:
        """The column as datetime64 (NaT where missing or not a date), as :func:`dates` reads it."""
        def make() -> np.ndarray:
            column = self.series(name)
            if column is not None and isinstance(column.dtype, np.dtype) and column.dtype.kind == "M":
                return column.to_numpy()
            return dates(self.frame, name).to_numpy()
        return self._cached(("dates", name), make)

    def before(self, later: str, earlier: str) -> np.ndarray:
        """True where both dates are known and ``later`` falls before ``earlier`` (:func:`before`)."""
        return self.dates(later) < self.dates(earlier)

    def days_to(self, start: str, end: np.datetime64 | np.ndarray) -> np.ndarray:
        """Whole days from the date in ``start`` to ``end`` (floored, as ``Timedelta.days``), NaN when unknown."""
        delta = (end - self.dates(start)).astype("timedelta64[us]")
        known = ~np.isnat(delta)
        days = np.full(self.n, np.nan)
        days[known] = delta[known].astype(np.int64) // _DAY_US
        return days

    def folded(self, name: str) -> pd.Series:
        """:func:`casefolded` text of ``name``."""
        return self._cached(("folded", name), lambda: casefolded(self.column(name)))


def mask_at(n: int, positions: np.ndarray) -> np.ndarray:
    """A boolean array of ``n`` flags, set at ``positions``."""
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    return mask


# --- many sites at once ---------------------------------------------------------------------
# ``validate.validate_results`` checks many workbooks in one pass: their frames are stacked with
# a ``_site`` column (the workbook's position) and the site frame has one row per workbook.  The
# few checks that compare rows with each other (duplicates, refs between the log and the
# actions, exposure months) then compare only rows of the same site; with no ``_site`` column
# each check is exactly the one-site check.
SITE = "_site"


def site_of(frame: pd.DataFrame) -> pd.Series | None:
    """The ``_site`` of each row when the frames hold many sites, else None."""
    return frame[SITE] if SITE in frame else None


def duplicated_key(frame: pd.DataFrame, key: pd.Series) -> np.ndarray:
    """Rows whose (casefolded) key was already seen above them, within the row's site (one flag per row)."""
    codes, uniques = pd.factorize(key)  # missing keys (code -1) are never duplicates
    site = site_of(frame)
    if site is not None and not _one_site(site):
        codes = np.where(codes >= 0, site.to_numpy(dtype=np.int64) * (len(uniques) + 1) + codes, -1)
    first = np.unique(codes, return_index=True)[1]  # where each key (each site's key) is first seen
    repeated = codes >= 0
    repeated[first] = False
    return repeated


def isin_keys(keys: pd.Series, values) -> pd.Series:
    """``keys.isin(values)`` for text keys; in one Arrow pass when the keys are pandas str."""
    array = getattr(keys.array, "_pa_array", None)
    if array is None:
        return keys.isin(set(values)).astype(bool)
    given = getattr(getattr(values, "array", None), "_pa_array", None)  # Arrow text: no Python per value
    if given is not None and given.null_count == 0 and (pa.types.is_string(given.type)
                                                         or pa.types.is_large_string(given.type)):
        value_set = pc.unique(given.cast(pa.large_string()))
        value_set = value_set.combine_chunks() if isinstance(value_set, pa.ChunkedArray) else value_set
    else:
        value_set = pa.array(list(dict.fromkeys(values)), type=pa.large_string())
    found = pc.is_in(array.cast(pa.large_string()), value_set=value_set)
    return pd.Series(found.to_numpy(zero_copy_only=False).astype(bool), index=keys.index)


def same_site_isin(frame: pd.DataFrame, keys: pd.Series, other: pd.DataFrame, other_keys: pd.Series) -> pd.Series:
    """``keys.isin(other_keys)`` (missing never matches), comparing keys of the same site only.

    ``keys`` are indexed like rows of ``frame``, ``other_keys`` like rows of ``other`` (labels may
    repeat, as after an explode).  Without ``_site`` columns it is a plain ``isin``.
    """
    site, other_site = site_of(frame), site_of(other)
    if site is None or other_site is None or _one_site(site, other_site):
        return isin_keys(keys, other_keys.dropna())
    # Number the other side's distinct keys (Arrow hashing), look each key up among them, then
    # compare (site, number) pairs as one integer each.
    encoded = pc.dictionary_encode(_large_text(other_keys))
    other_codes = encoded.indices
    codes = pc.index_in(_large_text(keys), value_set=encoded.dictionary)  # null: not among the other keys
    k = max(len(encoded.dictionary), 1)
    given, other_given = _valid_flags(codes), _valid_flags(other_codes)
    a = _sites_at(site, keys.index)[given] * k + codes.drop_null().to_numpy().astype(np.int64)
    b = _sites_at(other_site, other_keys.index)[other_given] * k + other_codes.drop_null().to_numpy().astype(np.int64)
    found = np.zeros(len(keys), dtype=bool)
    found[given] = pd.Series(a).isin(b).to_numpy(dtype=bool)
    return pd.Series(found, index=keys.index)


def _large_text(series: pd.Series) -> pa.Array:
    """Text as one Arrow large_string array (null where missing)."""
    array = series.astype("str").array._pa_array
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    return array.cast(pa.large_string())


def _valid_flags(array: pa.Array) -> np.ndarray:
    if not array.null_count:
        return np.ones(len(array), dtype=bool)
    return np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _sites_at(site: pd.Series, labels: pd.Index) -> np.ndarray:
    """The ``_site`` of the rows named by ``labels`` (``site.reindex(labels)``, as int64)."""
    if site.index.equals(labels):
        return site.to_numpy(dtype=np.int64)
    return site.reindex(labels).to_numpy(dtype=np.int64)


def _one_site(*sites: pd.Series) -> bool:
    """True when every row of every one of ``sites`` is of the same site (and there are rows)."""
    values = [s.to_numpy(dtype=np.int64) for s in sites]
    if not all(len(v) for v in values):
        return False
    first = values[0][0]
    return all(v.min() == first == v.max() for v in values)


# --- reusable judgements ---------------------------------------------------------------------

def suggested_tier(frame: pd.DataFrame) -> pd.Series:
    """The response tier that harm, risk and notifications suggest, per incident.

    serious: physical harm severe or fatal, or risk band extreme;
    moderate: physical harm moderate, risk band high, a CQC notification other than none,
    or category safeguarding; low otherwise.
    """
    serious, moderate = tier_conditions(Table(frame))
    return select_text([serious, moderate], ["serious", "moderate"], "low", frame.index)


def tier_conditions(inc: Table) -> tuple[np.ndarray, np.ndarray]:
    """(serious, moderate): where :func:`suggested_tier` suggests serious, and moderate (unless serious)."""
    def make() -> tuple[np.ndarray, np.ndarray]:
        band = risk_band_flags(inc, ("extreme", "high"))
        notified = inc.valid_code("cqc_notification", "cqc_notification") & ~inc.equals("cqc_notification", "none")
        serious = inc.equals("physical_harm", "severe", "fatal") | band["extreme"]
        moderate = (inc.equals("physical_harm", "moderate") | band["high"] | notified
                    | inc.equals("category", "safeguarding"))
        return serious, moderate
    return inc._cached(("tier_conditions",), make)


def risk_band_flags(inc: Table, bands: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per band of ``bands``: True where the incident's risk band (:func:`reader.risk_bands`) is that band.

    Consequence and likelihood are Int64 once normalised: the score is then banded in numpy,
    by the edges ``risk_bands`` cuts at (pandas' cut costs ~3 ms a call, whatever the rows).
    """
    consequence, likelihood = inc.column("consequence"), inc.column("likelihood")
    if str(consequence.dtype) != "Int64" or str(likelihood.dtype) != "Int64":
        labels = risk_bands(inc.frame)
        return {band: _isin(labels, (band,)) for band in bands}
    c = consequence.to_numpy(dtype=float, na_value=np.nan)
    lk = likelihood.to_numpy(dtype=float, na_value=np.nan)
    scored = (c >= 1) & (c <= 5) & (lk >= 1) & (lk <= 5)  # NaN (missing) compares False
    score = np.where(scored, c * lk, np.nan)
    edges = [0] + [high for _, high, _ in RISK_BANDS]  # as risk_bands: (0, 3], (3, 6], (6, 12], (12, 25]
    return {band: (score > low) & (score <= high)
            for low, high, (_, _, band) in zip(edges, edges[1:], RISK_BANDS) if band in bands}


NOTIFICATIONS = ("reg16_death", "reg18_serious_injury", "reg18_police", "reg18_abuse_allegation")


def expected_notification(frame: pd.DataFrame) -> pd.Series:
    """The CQC notification an incident looks to need (missing when none is expected).

    death (category) or fatal harm -> reg16_death; severe harm -> reg18_serious_injury;
    police involved -> reg18_police; a safeguarding incident (not a near miss) ->
    reg18_abuse_allegation.
    """
    return select_text(notification_conditions(Table(frame)), list(NOTIFICATIONS), None, frame.index)


def notification_conditions(inc: Table) -> list[np.ndarray]:
    """One condition per notification of ``NOTIFICATIONS``, the first true one chosen."""
    return [
        inc.equals("category", "death") | inc.equals("physical_harm", "fatal"),
        inc.equals("physical_harm", "severe"),
        inc.equals("police_involved", "yes"),
        inc.equals("category", "safeguarding") & inc.equals("event_type", "incident"),
    ]


def map_text(column: pd.Series, mapping: dict[str, object]) -> pd.Series:
    """``column.map(mapping)`` for text: each distinct value looked up once (missing where not a key)."""
    codes, uniques = pd.factorize(column)
    looked_up = pd.Series([mapping.get(u) for u in uniques] + [None], dtype=object)
    values = pd.Series(looked_up.to_numpy()[codes], index=column.index, dtype=object, name=column.name)  # -1: None
    return values.where(values.notna(), np.nan)


def select_text(conditions: list[np.ndarray], choices: list[str], default: str | None, index: pd.Index) -> pd.Series:
    """``np.select(conditions, choices, default)`` as pandas text (None: missing), built in Arrow."""
    pick = np.select(conditions, np.arange(len(choices)), len(choices)) if conditions else np.full(len(index),
                                                                                                   len(choices))
    labels = pa.array([*choices, default], type=pa.large_string()).take(pa.array(pick, type=pa.int64()))
    return _series_like(labels, pd.Series(index=index, dtype=object))


def identifier_scan(frames: Frames, record: str) -> dict[str, dict[str, tuple[np.ndarray, list[str]]]]:
    """Per free-text field of a record: per kind, the rows holding an identifier and the first one found.

    Computed once per validation (NM050-NM053 share it); see :func:`identifiers.scan_array`.
    """
    def make() -> dict:
        frame = frames.frame(record)
        return {f.name: identifiers.scan_array(identifiers.text_array(frame[f.name]))[1]
                for f in fields_of(record, lambda f: f.free_text) if f.name in frame}
    return frames.cached(("scan", record), make)


def linked(fr: Frames, *, include_cancelled: bool = True) -> pd.DataFrame:
    """:func:`linked_refs` of the actions, once per validation.

    Each action's refs are split on their own, so those of the actions not cancelled are the
    rows of all the refs whose action is not cancelled (split once for both).
    """
    every = fr.cached(("linked", True), lambda: linked_refs(fr.actions))
    if include_cancelled:
        return every
    def without_cancelled() -> pd.DataFrame:
        cancelled = fr.table("actions").equals("status", "cancelled")
        if not cancelled.any():
            return every
        return every[~cancelled[fr.actions.index.get_indexer(every.index)]]
    return fr.cached(("linked", False), without_cancelled)


# --- incidents: completeness and code lists --------------------------------------------------

@check("NM001")
def required_incident_fields(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", f.name, inc.blank(f.name)) for f in fields_of("incidents", lambda f: f.required)]


@check("NM002")
def incident_codes(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", f.name, inc.valid(f.name) & ~inc.valid_code(f.name, f.codes))
            for f in fields_of("incidents", lambda f: f.type == "code")]


@check("NM003")
def duplicate_incident_refs(fr: Frames) -> list[Hit]:
    key = fr.table("incidents").folded("incident_ref")
    return [Hit("incidents", "incident_ref", duplicated_key(fr.incidents, key))]


@check("NM004")
def site_code_matches(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    site = site_of(fr.incidents)
    if site is not None:  # many sites: each row against its own site's code
        codes = fr.table("site").folded("site_code").to_numpy(dtype=object)
        at = pd.Index(fr.site[SITE].to_numpy(dtype=np.int64)).get_indexer(site.to_numpy(dtype=np.int64))
        expected = np.append(codes, None)[at]  # each row's site's code (-1, no such site: None)
        folded = inc.folded("site_code").to_numpy(dtype=object)
        mask = inc.valid("site_code") & pd.notna(expected) & (folded != expected)
        return [Hit("incidents", "site_code", np.asarray(mask, dtype=bool))]
    code = fr.site_code
    if code is None:
        return [Hit("incidents", "site_code", np.zeros(inc.n, dtype=bool))]
    return [Hit("incidents", "site_code", inc.valid("site_code") & inc.folded("site_code").ne(code.strip().casefold())
                .to_numpy(dtype=bool))]


@check("NM005")
def incident_dates_readable(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", f.name, inc.unreadable(f.name))
            for f in fields_of("incidents", lambda f: f.type == "date")]


@check("NM006")
def risk_scores_in_range(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    hits = []
    for f in fields_of("incidents", lambda f: f.type == "int" and f.minimum is not None):
        column = inc.column(f.name)
        number = column if str(column.dtype) == "Int64" else pd.to_numeric(column, errors="coerce")
        value = np.asarray(number.to_numpy(dtype=float, na_value=np.nan), dtype=float)
        out_of_range = ~np.isnan(value) & ~((value >= f.minimum) & (value <= f.maximum))
        hits.append(Hit("incidents", f.name, inc.unreadable(f.name) | out_of_range))
    return hits


@check("NM007")
def incident_times_readable(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", f.name, inc.unreadable(f.name))
            for f in fields_of("incidents", lambda f: f.type == "time")]


# --- incidents: dates ------------------------------------------------------------------------

@check("NM010")
def incident_dates_not_future(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", f.name, inc.dates(f.name) > fr.today64)
            for f in fields_of("incidents", lambda f: f.type == "date" and not f.future_ok)]


@check("NM011")
def reported_after_occurred(fr: Frames) -> list[Hit]:
    return [Hit("incidents", "reported_at", fr.table("incidents").before("reported_at", "occurred_at"))]


@check("NM012")
def later_dates_after_occurred(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", name, inc.before(name, "occurred_at")) for name in AFTER_OCCURRED]


@check("NM013")
def closed_after_reported(fr: Frames) -> list[Hit]:
    return [Hit("incidents", "closed_date", fr.table("incidents").before("closed_date", "reported_at"))]


# --- incidents: harm, tier and proportionate response -------------------------------------------

def _tier_low_but_harmful(inc: Table) -> np.ndarray:
    notified = inc.valid_code("cqc_notification", "cqc_notification") & ~inc.equals("cqc_notification", "none")
    harmful = inc.equals("physical_harm", "severe", "fatal") | notified
    return inc.equals("response_tier", "low") & harmful


@check("NM020")
def near_miss_without_harm(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    harmed = inc.equals("physical_harm", *[c for c in CODE_LISTS["physical_harm"] if c != "none"])
    return [Hit("incidents", "physical_harm", inc.equals("event_type", "near_miss") & harmed)]


@check("NM021")
def tier_not_low_when_harmful(fr: Frames) -> list[Hit]:
    return [Hit("incidents", "response_tier", _tier_low_but_harmful(fr.table("incidents")))]


@check("NM022")
def tier_needs_action(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    needing = inc.equals("response_tier", "moderate", "serious")
    if not needing.any():
        return [Hit("incidents", "response_tier", needing)]
    keys = linked(fr, include_cancelled=False)["key"]
    has_action = same_site_isin(fr.incidents, inc.folded("incident_ref"), fr.actions, keys).to_numpy(dtype=bool)
    return [Hit("incidents", "response_tier", needing & ~has_action)]


@check("NM023")
def serious_safeguarding_considered(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", "safeguarding_considered",
                inc.equals("response_tier", "serious") & inc.blank("safeguarding_considered"))]


@check("NM024")
def serious_commissioner_notified(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", "commissioner_notified_date",
                inc.equals("response_tier", "serious") & inc.blank("commissioner_notified_date"))]


def _tier_rank(inc: Table, name: str) -> np.ndarray:
    """The rank (TIER_RANK) of the tier in column ``name``, NaN for anything else."""
    ranks = np.full(inc.n, np.nan)
    for tier, rank in TIER_RANK.items():
        ranks[inc.equals(name, tier)] = rank
    return ranks


@check("NM025")
def tier_in_proportion(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    serious, moderate = tier_conditions(inc)
    suggested = np.select([serious, moderate], [TIER_RANK["serious"], TIER_RANK["moderate"]], TIER_RANK["low"])
    recorded = _tier_rank(inc, "response_tier")
    lower = ~np.isnan(recorded) & (suggested > np.nan_to_num(recorded, nan=99))
    mask = lower & inc.blank("tier_override_reason") & ~_tier_low_but_harmful(inc)
    return [Hit("incidents", "response_tier", mask, value=np.array(TIERS, dtype=object)[suggested])]


@check("NM026")
def subcategory_matches_category(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    if not inc.valid("subcategory").any():
        return [Hit("incidents", "subcategory", np.zeros(inc.n, dtype=bool))]
    owner = map_text(inc.column("subcategory"), SUBCATEGORY_OF).to_numpy(dtype=object)
    category = inc.column("category").to_numpy(dtype=object)
    mask = pd.notna(owner) & inc.valid_code("category", "category") & (owner != category)
    return [Hit("incidents", "subcategory", np.asarray(mask, dtype=bool))]


# --- incidents: notifications --------------------------------------------------------------------

@check("NM030")
def notifiable_to_cqc(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    pick = np.select(notification_conditions(inc), np.arange(len(NOTIFICATIONS)), len(NOTIFICATIONS))
    not_chosen = inc.blank("cqc_notification") | inc.equals("cqc_notification", "none")
    value = np.array([*NOTIFICATIONS, None], dtype=object)[pick]
    return [Hit("incidents", "cqc_notification", (pick < len(NOTIFICATIONS)) & not_chosen, value=value)]


@check("NM031")
def cqc_notified_date_recorded(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    chosen = inc.valid_code("cqc_notification", "cqc_notification") & ~inc.equals("cqc_notification", "none")
    return [Hit("incidents", "cqc_notified_date", chosen & inc.blank("cqc_notified_date"))]


@check("NM032")
def cqc_notified_without_delay(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    delay = inc.days_to("reported_at", inc.dates("cqc_notified_date"))
    return [Hit("incidents", "cqc_notified_date", delay > CQC_NOTIFY_WITHIN_DAYS, value=delay)]


@check("NM033")
def safeguarding_referral_means_considered(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", "safeguarding_considered",
                inc.present("safeguarding_referral_date") & ~inc.equals("safeguarding_considered", "yes"))]


@check("NM034")
def riddor_reference(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", "riddor_ref", inc.equals("riddor_reportable", "yes") & inc.blank("riddor_ref"))]


@check("NM035")
def candour_date(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", "candour_date", inc.equals("duty_of_candour", "yes") & inc.blank("candour_date"))]


# --- incidents: closure and learning ------------------------------------------------------------------

@check("NM040")
def closed_needs_date(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", "closed_date", inc.equals("status", "closed") & inc.blank("closed_date"))]


@check("NM041")
def closed_needs_theme(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", "learning_theme", inc.equals("status", "closed") & inc.blank("learning_theme"))]


@check("NM042")
def closed_needs_feedback(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    mask = (inc.equals("status", "closed") & inc.equals("response_tier", "moderate", "serious")
            & inc.blank("feedback_to_reporter_date"))
    return [Hit("incidents", "feedback_to_reporter_date", mask)]


@check("NM043")
def closed_date_needs_closed_status(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    return [Hit("incidents", "closed_date",
                inc.present("closed_date") & inc.valid("status") & ~inc.equals("status", "closed"))]


@check("NM044")
def open_within_review_target(fr: Frames) -> list[Hit]:
    inc = fr.table("incidents")
    age = inc.days_to("reported_at", fr.today64)
    target = np.full(inc.n, float(REVIEW_TARGET_DAYS["low"]))  # a tier without a target: the low tier's
    for tier, days in REVIEW_TARGET_DAYS.items():
        target[inc.equals("response_tier", tier)] = days
    mask = inc.equals("status", "open", "under_review") & (age > target)
    return [Hit("incidents", "status", mask, value=age)]


# --- personal identifiers in free text (incidents and actions) ------------------------------------------

def _identifier_hits(fr: Frames, kind: str) -> list[Hit]:
    hits = []
    for record in ("incidents", "actions"):
        n = len(fr.frame(record))
        for name, found in identifier_scan(fr, record).items():
            positions, values = found[kind]  # the rows where one was found, and what
            value = np.empty(n, dtype=object)
            value[positions] = values
            hits.append(Hit(record, name, mask_at(n, positions), value=value))
    return hits


@check("NM050")
def no_nhs_numbers(fr: Frames) -> list[Hit]:
    return _identifier_hits(fr, "nhs_number")


@check("NM051")
def no_dates_of_birth(fr: Frames) -> list[Hit]:
    return _identifier_hits(fr, "date_of_birth")


@check("NM052")
def no_postcodes(fr: Frames) -> list[Hit]:
    return _identifier_hits(fr, "postcode")


@check("NM053")
def no_names(fr: Frames) -> list[Hit]:
    return _identifier_hits(fr, "name")


# --- actions --------------------------------------------------------------------------------------------

@check("NM060")
def required_action_fields(fr: Frames) -> list[Hit]:
    act = fr.table("actions")
    return [Hit("actions", f.name, act.blank(f.name)) for f in fields_of("actions", lambda f: f.required)]


@check("NM061")
def action_codes(fr: Frames) -> list[Hit]:
    act = fr.table("actions")
    return [Hit("actions", f.name, act.valid(f.name) & ~act.valid_code(f.name, f.codes))
            for f in fields_of("actions", lambda f: f.type == "code")]


@check("NM062")
def duplicate_action_refs(fr: Frames) -> list[Hit]:
    return [Hit("actions", "action_ref", duplicated_key(fr.actions, fr.table("actions").folded("action_ref")))]


@check("NM063")
def action_refs_known(fr: Frames) -> list[Hit]:
    n = len(fr.actions)
    refs = linked(fr)
    known = fr.table("incidents").folded("incident_ref")
    unknown = refs[~same_site_isin(fr.actions, refs["key"], fr.incidents, known).to_numpy()]
    names: dict[object, list[str]] = {}  # the refs an action names that are not in the log, in order
    for label, ref in zip(unknown.index.tolist(), unknown["ref"].tolist()):
        names.setdefault(label, []).append(ref)
    positions = fr.actions.index.get_indexer(list(names))
    value = np.empty(n, dtype=object)
    value[positions] = [", ".join(found) for found in names.values()]
    return [Hit("actions", "incident_refs", mask_at(n, positions), value=value)]


@check("NM064")
def due_after_raised(fr: Frames) -> list[Hit]:
    return [Hit("actions", "due_date", fr.table("actions").before("due_date", "raised_date"))]


@check("NM065")
def done_needs_completed_date(fr: Frames) -> list[Hit]:
    act = fr.table("actions")
    return [Hit("actions", "completed_date", act.equals("status", "done") & act.blank("completed_date"))]


@check("NM066")
def actions_not_overdue(fr: Frames) -> list[Hit]:
    act = fr.table("actions")
    late = act.days_to("due_date", fr.today64)
    return [Hit("actions", "due_date", act.equals("status", "open", "in_progress") & (late > 0), value=late)]


@check("NM067")
def completed_after_raised(fr: Frames) -> list[Hit]:
    return [Hit("actions", "completed_date", fr.table("actions").before("completed_date", "raised_date"))]


@check("NM068")
def action_dates_readable(fr: Frames) -> list[Hit]:
    act = fr.table("actions")
    return [Hit("actions", f.name, act.unreadable(f.name)) for f in fields_of("actions", lambda f: f.type == "date")]


@check("NM069")
def effectiveness_checked(fr: Frames) -> list[Hit]:
    act = fr.table("actions")
    since = act.days_to("completed_date", fr.today64)
    unchecked = act.blank("effectiveness_check_date") & ~act.equals("effective", "yes", "no")
    return [Hit("actions", "effective", act.equals("status", "done") & (since > EFFECTIVENESS_CHECK_DAYS) & unchecked)]


@check("NM070")
def action_dates_not_future(fr: Frames) -> list[Hit]:
    act = fr.table("actions")
    return [Hit("actions", f.name, act.dates(f.name) > fr.today64)
            for f in fields_of("actions", lambda f: f.type == "date" and not f.future_ok)]


# --- site sheet --------------------------------------------------------------------------------------------

@check("NM080")
def required_site_fields(fr: Frames) -> list[Hit]:
    site = fr.table("site")
    return [Hit("site", f.name, site.blank(f.name)) for f in SITE_FIELDS if f.required]


@check("NM081")
def site_setting(fr: Frames) -> list[Hit]:
    site = fr.table("site")
    return [Hit("site", "setting", site.valid("setting") & ~site.valid_code("setting", "setting"))]


EXPOSURE_FIGURES = ["occupied_bed_days", "care_hours", "visits"]  # NM082: any of them when the setting names none


@check("NM082")
def exposure_for_months_with_reports(fr: Frames) -> list[Hit]:
    if site_of(fr.incidents) is not None:
        return _exposure_months_by_site(fr)
    occurred = dates(fr.incidents, "occurred_at")
    occurred = occurred[occurred.notna() & (occurred <= fr.today)]
    months = pd.Series(occurred.dt.to_period("M").dt.to_timestamp().unique(), name="month").sort_values()
    unit = EXPOSURE_UNIT_BY_SETTING.get(fr.setting or "")
    figures = [unit] if unit else EXPOSURE_FIGURES
    exp = fr.exposure
    exp_month = dates(exp, "month").dt.to_period("M").dt.to_timestamp()
    has_figure = pd.concat([col(exp, f).notna() for f in figures], axis=1).any(axis=1) if len(exp) else \
        pd.Series(dtype=bool)
    table = pd.DataFrame({"month": exp_month, "_has": has_figure.astype(bool), "_row": col(exp, "_row")})
    table = table[table["month"].notna()].drop_duplicates("month", keep="first")
    merged = pd.DataFrame({"month": months.to_numpy()}).merge(table, on="month", how="left")
    merged["_has"] = merged["_has"].fillna(False).astype(bool)
    label = merged["month"].dt.strftime("%B %Y")
    return [Hit("exposure", figures[0], ~merged["_has"], value=label, frame=merged)]


_MONTH_SPAN = 1 << 20  # (site, month) pairs as one integer: site * span + month (months since 1970, offset)
_MONTH_OFFSET = 1 << 19


def _site_months(sites: np.ndarray, days: np.ndarray) -> np.ndarray:
    """One integer per (site, month of the date) pair; dates must be known."""
    return sites.astype(np.int64) * _MONTH_SPAN + days.astype("datetime64[M]").astype(np.int64) + _MONTH_OFFSET


def _exposure_months_by_site(fr: Frames) -> list[Hit]:
    """NM082 over many sites at once: each site's months with reports against its own exposure table.

    A (site, month) pair is one integer, so the months with reports are one ``np.unique`` and
    each is looked up in the site's exposure rows (the first row of the month counts).
    """
    inc, exp = fr.table("incidents"), fr.table("exposure")
    occurred = inc.dates("occurred_at")
    keep = ~np.isnat(occurred) & (occurred <= fr.today64)
    months = np.unique(_site_months(fr.incidents[SITE].to_numpy()[keep], occurred[keep]))  # sorted: site, month
    if not months.size:
        return []
    site_ids = fr.site[SITE].to_numpy(dtype=np.int64)
    settings = col(fr.site, "setting").tolist()
    unit_of = np.full(int(site_ids.max(initial=0)) + 1, -1, dtype=np.int64)  # site -> figure (-1: any)
    for site, setting in zip(site_ids.tolist(), settings):
        unit = EXPOSURE_UNIT_BY_SETTING.get("" if pd.isna(setting) else str(setting))
        unit_of[site] = EXPOSURE_FIGURES.index(unit) if unit else -1
    exp_site = fr.exposure[SITE].to_numpy(dtype=np.int64) if SITE in fr.exposure else np.zeros(0, dtype=np.int64)
    row_unit = unit_of[exp_site]
    has = np.zeros(exp.n, dtype=bool)
    for k, name in enumerate(EXPOSURE_FIGURES):
        has |= exp.valid(name) & ((row_unit == k) | (row_unit == -1))
    exp_month = exp.dates("month")
    dated = np.flatnonzero(~np.isnat(exp_month))
    exp_keys, first = np.unique(_site_months(exp_site[dated], exp_month[dated]), return_index=True)
    found = month_has = np.zeros(len(months), dtype=bool)
    rows = np.full(len(months), np.nan)
    if len(exp_keys):  # each month's first exposure row of its site, where there is one
        at = np.minimum(np.searchsorted(exp_keys, months), len(exp_keys) - 1)
        found = exp_keys[at] == months
        row_of = dated[first[at]]
        month_has = found & has[row_of]
        rows = np.asarray(col(fr.exposure, "_row").to_numpy(dtype=float, na_value=np.nan), dtype=float)[row_of]
    month_site = months // _MONTH_SPAN
    month_start = (months % _MONTH_SPAN - _MONTH_OFFSET).astype("datetime64[M]")
    merged = pd.DataFrame({SITE: month_site, "month": month_start.astype("datetime64[us]"), "_has": month_has,
                           "_row": pd.array(np.where(found, rows, np.nan), dtype="Float64").astype("Int64")})
    labels = {m: pd.Timestamp(m).strftime("%B %Y") for m in np.unique(month_start[~month_has]).tolist()}
    label = np.array([labels.get(m) for m in month_start.tolist()], dtype=object)
    unit = unit_of[month_site]
    first_figure = np.where(unit >= 0, unit, 0)
    return [Hit("exposure", EXPOSURE_FIGURES[k], ~month_has & (first_figure == k), value=label, frame=merged)
            for k in dict.fromkeys(first_figure.tolist())]


@check("NM083")
def site_values_readable(fr: Frames) -> list[Hit]:
    site, exp = fr.table("site"), fr.table("exposure")
    hits = [Hit("site", f.name, site.unreadable(f.name)) for f in SITE_FIELDS if f.type != "text"]
    hits += [Hit("exposure", f.name, exp.unreadable(f.name)) for f in EXPOSURE_FIELDS]
    return hits


# Rules the reader raises while reading the workbook's structure (not checks over records).
STRUCTURAL_RULES = ("NM090", "NM091", "NM092", "NM093", "NM094")


def today_stamp(today: dt.date | pd.Timestamp | None) -> pd.Timestamp:
    return pd.Timestamp(today or dt.date.today()).normalize()
