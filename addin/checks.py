"""Every rule of ``workbook_templates/rules.py`` as one small vectorised check.

A check takes the normalised frames (:class:`Frames`: incidents, actions, the Site sheet
as a one-row frame, exposure, and ``today``) and returns a list of :class:`Hit`: a
boolean mask over one frame, the field the finding points at and, where the message
needs it, the value to show.  ``CHECKS`` maps each rule id to its check.  No check loops
over rows: pandas does the work on whole columns.  The workbook-level rules (NM090-NM094)
are structural and come from the reader.

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
    CODE_LISTS, CQC_NOTIFY_WITHIN_DAYS, EXPOSURE_UNIT_BY_SETTING, REVIEW_TARGET_DAYS, SUBCATEGORY_OF,
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

    ``value`` is a Series (aligned with the frame) or a scalar shown as {value} in the
    message; None shows the cell's own value (its raw text when it could not be read).
    ``frame`` is given when the rows are not a record frame (NM082's months).
    """

    record: str  # "incidents" | "actions" | "site" | "exposure"
    field: str
    mask: pd.Series
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


def is_valid_code(frame: pd.DataFrame, name: str, list_name: str) -> pd.Series:
    return isin_values(col(frame, name), tuple(CODE_LISTS[list_name]))


def _valid(column: pd.Series) -> np.ndarray:
    """``column.notna()`` as a numpy bool array (for Arrow text, straight from its validity bitmap)."""
    array = getattr(column.array, "_pa_array", None)
    if array is None:
        return column.notna().to_numpy(dtype=bool)
    return pc.is_valid(array).to_numpy(zero_copy_only=False)


def isin_values(column: pd.Series, values: tuple) -> pd.Series:
    """``column.isin(values)`` (missing is never in): one Arrow pass for pandas text, else pandas' isin."""
    array = getattr(column.array, "_pa_array", None)
    if array is None or not all(isinstance(v, str) for v in values):
        return column.isin(values).astype(bool)
    found = pc.is_in(array, value_set=pa.array(values, type=array.type))
    return pd.Series(found.to_numpy(zero_copy_only=False), index=column.index)


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
    text = series.astype("str").str.strip()
    array = getattr(text.array, "_pa_array", None)
    if array is None or not len(text):
        return text.str.casefold()
    # ASCII text casefolds as it lowercases (in Arrow, one pass); other text goes through str.casefold.
    ascii_ = pc.string_is_ascii(array).to_numpy(zero_copy_only=False)
    lowered = text.str.lower()
    if ascii_.dtype == bool and ascii_.all():
        return lowered
    other = ~(ascii_.astype(bool) if ascii_.dtype == bool else pd.Series(ascii_).fillna(True).astype(bool).to_numpy())
    if other.any():
        lowered = lowered.copy()
        lowered[other] = text[other].str.casefold()
    return lowered


def linked_refs(actions: pd.DataFrame, *, include_cancelled: bool = True) -> pd.DataFrame:
    """One row per (action, incident ref named): columns ref (as typed) and key (casefolded).

    Action ``incident_refs`` are split on commas (semicolons and line breaks too), spaces
    stripped; the index is the action's index.
    """
    refs = col(actions, "incident_refs")
    if not include_cancelled:
        refs = refs[~equals(actions, "status", "cancelled")]
    refs = refs.astype("str")
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


def duplicated_key(frame: pd.DataFrame, key: pd.Series) -> pd.Series:
    """Rows whose (casefolded) key was already seen above them, within the row's site."""
    site = site_of(frame)
    if site is None:
        return key.notna() & key.duplicated(keep="first")
    codes, uniques = pd.factorize(key)  # missing keys (code -1) are never duplicates
    pairs = pd.Series(site.to_numpy(dtype=np.int64) * (len(uniques) + 1) + codes + 1, index=key.index)
    return key.notna() & pairs.duplicated(keep="first")


def isin_keys(keys: pd.Series, values) -> pd.Series:
    """``keys.isin(values)`` for text keys; in one Arrow pass when the keys are pandas str."""
    array = getattr(keys.array, "_pa_array", None)
    if array is None:
        return keys.isin(set(values)).astype(bool)
    value_set = pa.array(list(dict.fromkeys(values)), type=pa.large_string())
    found = pc.is_in(array.cast(pa.large_string()), value_set=value_set)
    return pd.Series(found.to_numpy(zero_copy_only=False).astype(bool), index=keys.index)


def same_site_isin(frame: pd.DataFrame, keys: pd.Series, other: pd.DataFrame, other_keys: pd.Series) -> pd.Series:
    """``keys.isin(other_keys)`` (missing never matches), comparing keys of the same site only.

    ``keys`` are indexed like rows of ``frame``, ``other_keys`` like rows of ``other`` (labels may
    repeat, as after an explode).  Without ``_site`` columns it is a plain ``isin``.
    """
    site, other_site = site_of(frame), site_of(other)
    if site is None or other_site is None:
        return isin_keys(keys, other_keys.dropna())
    both = pd.concat([keys.astype("str"), other_keys.astype("str")], ignore_index=True)
    codes, uniques = pd.factorize(both)
    n, k = len(keys), max(len(uniques), 1)
    a = site.reindex(keys.index).to_numpy(dtype=np.int64) * k + codes[:n]
    b = other_site.reindex(other_keys.index).to_numpy(dtype=np.int64) * k + codes[n:]
    found = np.isin(a, b[codes[n:] >= 0]) & (codes[:n] >= 0)
    return pd.Series(found, index=keys.index)


def site_keyed(frame: pd.DataFrame, key: pd.Series) -> pd.Series:
    """``key`` made unique across sites (prefixed with the row's site) when the frames hold many sites."""
    site = site_of(frame)
    if site is None:
        return key
    prefix = site.reindex(key.index) if not site.index.equals(key.index) else site
    return prefix.astype("int64").astype("str") + "\x1f" + key


# --- reusable judgements ---------------------------------------------------------------------

def suggested_tier(frame: pd.DataFrame) -> pd.Series:
    """The response tier that harm, risk and notifications suggest, per incident.

    serious: physical harm severe or fatal, or risk band extreme;
    moderate: physical harm moderate, risk band high, a CQC notification other than none,
    or category safeguarding; low otherwise.
    """
    harm = col(frame, "physical_harm")
    band = risk_bands(frame)
    cqc = col(frame, "cqc_notification")
    serious = isin_values(harm, ("severe", "fatal")) | band.eq("extreme")
    moderate = (harm.eq("moderate") | band.eq("high")
                | (cqc.notna() & isin_values(cqc, tuple(CODE_LISTS["cqc_notification"])) & cqc.ne("none"))
                | col(frame, "category").eq("safeguarding"))
    return select_text([serious.fillna(False).to_numpy(bool), moderate.fillna(False).to_numpy(bool)],
                       ["serious", "moderate"], "low", frame.index)


def expected_notification(frame: pd.DataFrame) -> pd.Series:
    """The CQC notification an incident looks to need (missing when none is expected).

    death (category) or fatal harm -> reg16_death; severe harm -> reg18_serious_injury;
    police involved -> reg18_police; a safeguarding incident (not a near miss) ->
    reg18_abuse_allegation.
    """
    category = col(frame, "category")
    harm = col(frame, "physical_harm")
    conditions = [
        (category.eq("death") | harm.eq("fatal")),
        harm.eq("severe"),
        col(frame, "police_involved").eq("yes"),
        category.eq("safeguarding") & col(frame, "event_type").eq("incident"),
    ]
    return select_text([c.fillna(False).to_numpy(bool) for c in conditions],
                       ["reg16_death", "reg18_serious_injury", "reg18_police", "reg18_abuse_allegation"], None,
                       frame.index)


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


def identifier_scan(frames: Frames, record: str) -> dict[str, pd.DataFrame]:
    """identifiers.scan_candidates of every free-text field of a record, computed once per validation.

    Each frame holds only the rows that may hold an identifier (the other rows hold none).
    """
    key = ("scan", record)
    if key not in frames._cache:
        frame = frames.frame(record)
        frames._cache[key] = {f.name: identifiers.scan_candidates(col(frame, f.name))
                              for f in fields_of(record, lambda f: f.free_text) if f.name in frame}
    return frames._cache[key]


# --- incidents: completeness and code lists --------------------------------------------------

@check("NM001")
def required_incident_fields(fr: Frames) -> list[Hit]:
    return [Hit("incidents", f.name, blank(fr.incidents, f.name)) for f in fields_of("incidents", lambda f: f.required)]


@check("NM002")
def incident_codes(fr: Frames) -> list[Hit]:
    return [Hit("incidents", f.name, col(fr.incidents, f.name).notna() & ~is_valid_code(fr.incidents, f.name, f.codes))
            for f in fields_of("incidents", lambda f: f.type == "code")]


@check("NM003")
def duplicate_incident_refs(fr: Frames) -> list[Hit]:
    key = casefolded(col(fr.incidents, "incident_ref"))
    return [Hit("incidents", "incident_ref", duplicated_key(fr.incidents, key))]


@check("NM004")
def site_code_matches(fr: Frames) -> list[Hit]:
    values = col(fr.incidents, "site_code")
    site = site_of(fr.incidents)
    if site is not None:  # many sites: each row against its own site's code
        codes = col(fr.site, "site_code").astype("str").str.strip().str.casefold()
        expected = pd.Series(codes.to_numpy(), index=fr.site[SITE].to_numpy()).reindex(site.to_numpy())
        expected = pd.Series(expected.to_numpy(), index=values.index)
        mask = values.notna() & expected.notna() & casefolded(values).ne(expected)
        return [Hit("incidents", "site_code", mask.fillna(False).astype(bool))]
    code = fr.site_code
    if code is None:
        return [Hit("incidents", "site_code", pd.Series(False, index=fr.incidents.index))]
    return [Hit("incidents", "site_code", values.notna() & casefolded(values).ne(code.strip().casefold()))]


@check("NM005")
def incident_dates_readable(fr: Frames) -> list[Hit]:
    return [Hit("incidents", f.name, raw(fr.incidents, f.name).notna())
            for f in fields_of("incidents", lambda f: f.type == "date")]


@check("NM006")
def risk_scores_in_range(fr: Frames) -> list[Hit]:
    hits = []
    for f in fields_of("incidents", lambda f: f.type == "int" and f.minimum is not None):
        value = pd.to_numeric(col(fr.incidents, f.name), errors="coerce")
        out_of_range = value.notna() & ~value.between(f.minimum, f.maximum)
        hits.append(Hit("incidents", f.name, (raw(fr.incidents, f.name).notna() | out_of_range).astype(bool)))
    return hits


@check("NM007")
def incident_times_readable(fr: Frames) -> list[Hit]:
    return [Hit("incidents", f.name, raw(fr.incidents, f.name).notna())
            for f in fields_of("incidents", lambda f: f.type == "time")]


# --- incidents: dates ------------------------------------------------------------------------

@check("NM010")
def incident_dates_not_future(fr: Frames) -> list[Hit]:
    return [Hit("incidents", f.name, (dates(fr.incidents, f.name) > fr.today).fillna(False).astype(bool))
            for f in fields_of("incidents", lambda f: f.type == "date" and not f.future_ok)]


@check("NM011")
def reported_after_occurred(fr: Frames) -> list[Hit]:
    return [Hit("incidents", "reported_at", before(fr.incidents, "reported_at", "occurred_at"))]


@check("NM012")
def later_dates_after_occurred(fr: Frames) -> list[Hit]:
    return [Hit("incidents", name, before(fr.incidents, name, "occurred_at")) for name in AFTER_OCCURRED]


@check("NM013")
def closed_after_reported(fr: Frames) -> list[Hit]:
    return [Hit("incidents", "closed_date", before(fr.incidents, "closed_date", "reported_at"))]


# --- incidents: harm, tier and proportionate response -------------------------------------------

def _tier_low_but_harmful(inc: pd.DataFrame) -> pd.Series:
    cqc = col(inc, "cqc_notification")
    notified = isin_values(cqc, tuple(CODE_LISTS["cqc_notification"])) & cqc.ne("none")
    harmful = equals(inc, "physical_harm", "severe", "fatal") | notified
    return (equals(inc, "response_tier", "low") & harmful).astype(bool)


@check("NM020")
def near_miss_without_harm(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    harmed = equals(inc, "physical_harm", *[c for c in CODE_LISTS["physical_harm"] if c != "none"])
    return [Hit("incidents", "physical_harm", equals(inc, "event_type", "near_miss") & harmed)]


@check("NM021")
def tier_not_low_when_harmful(fr: Frames) -> list[Hit]:
    return [Hit("incidents", "response_tier", _tier_low_but_harmful(fr.incidents))]


@check("NM022")
def tier_needs_action(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    linked = linked_refs(fr.actions, include_cancelled=False)["key"]
    has_action = same_site_isin(inc, casefolded(col(inc, "incident_ref")), fr.actions, linked)
    return [Hit("incidents", "response_tier", equals(inc, "response_tier", "moderate", "serious") & ~has_action)]


@check("NM023")
def serious_safeguarding_considered(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    return [Hit("incidents", "safeguarding_considered",
                equals(inc, "response_tier", "serious") & blank(inc, "safeguarding_considered"))]


@check("NM024")
def serious_commissioner_notified(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    return [Hit("incidents", "commissioner_notified_date",
                equals(inc, "response_tier", "serious") & blank(inc, "commissioner_notified_date"))]


def _tier_rank(values: pd.Series) -> pd.Series:
    """``values.map(TIER_RANK)`` on whole columns: the tier's rank, NaN for anything else."""
    ranks = np.full(len(values), np.nan)
    for tier, rank in TIER_RANK.items():
        ranks[np.array(values.eq(tier).fillna(False), dtype=bool)] = rank
    return pd.Series(ranks, index=values.index)


@check("NM025")
def tier_in_proportion(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    suggestion = suggested_tier(inc)
    recorded = _tier_rank(col(inc, "response_tier"))
    lower = recorded.notna() & (_tier_rank(suggestion) > recorded.fillna(99))
    mask = lower & blank(inc, "tier_override_reason") & ~_tier_low_but_harmful(inc)
    return [Hit("incidents", "response_tier", mask.astype(bool), value=suggestion)]


@check("NM026")
def subcategory_matches_category(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    owner = map_text(col(inc, "subcategory"), SUBCATEGORY_OF)
    category = col(inc, "category")
    mask = owner.notna() & is_valid_code(inc, "category", "category") & owner.ne(category)
    return [Hit("incidents", "subcategory", mask.astype(bool))]


# --- incidents: notifications --------------------------------------------------------------------

@check("NM030")
def notifiable_to_cqc(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    expected = expected_notification(inc)
    not_chosen = blank(inc, "cqc_notification") | equals(inc, "cqc_notification", "none")
    return [Hit("incidents", "cqc_notification", expected.notna() & not_chosen, value=expected)]


@check("NM031")
def cqc_notified_date_recorded(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    chosen = is_valid_code(inc, "cqc_notification", "cqc_notification") & ~equals(inc, "cqc_notification", "none")
    return [Hit("incidents", "cqc_notified_date", chosen & blank(inc, "cqc_notified_date"))]


@check("NM032")
def cqc_notified_without_delay(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    delay = days_between(inc, "reported_at", dates(inc, "cqc_notified_date"))
    return [Hit("incidents", "cqc_notified_date", (delay > CQC_NOTIFY_WITHIN_DAYS).fillna(False).astype(bool),
                value=delay)]


@check("NM033")
def safeguarding_referral_means_considered(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    return [Hit("incidents", "safeguarding_considered",
                present(inc, "safeguarding_referral_date") & ~equals(inc, "safeguarding_considered", "yes"))]


@check("NM034")
def riddor_reference(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    return [Hit("incidents", "riddor_ref", equals(inc, "riddor_reportable", "yes") & blank(inc, "riddor_ref"))]


@check("NM035")
def candour_date(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    return [Hit("incidents", "candour_date", equals(inc, "duty_of_candour", "yes") & blank(inc, "candour_date"))]


# --- incidents: closure and learning ------------------------------------------------------------------

@check("NM040")
def closed_needs_date(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    return [Hit("incidents", "closed_date", equals(inc, "status", "closed") & blank(inc, "closed_date"))]


@check("NM041")
def closed_needs_theme(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    return [Hit("incidents", "learning_theme", equals(inc, "status", "closed") & blank(inc, "learning_theme"))]


@check("NM042")
def closed_needs_feedback(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    mask = (equals(inc, "status", "closed") & equals(inc, "response_tier", "moderate", "serious")
            & blank(inc, "feedback_to_reporter_date"))
    return [Hit("incidents", "feedback_to_reporter_date", mask)]


@check("NM043")
def closed_date_needs_closed_status(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    status = col(inc, "status")
    return [Hit("incidents", "closed_date", present(inc, "closed_date") & status.notna() & status.ne("closed"))]


@check("NM044")
def open_within_review_target(fr: Frames) -> list[Hit]:
    inc = fr.incidents
    age = days_between(inc, "reported_at", fr.today)
    target = map_text(col(inc, "response_tier"), REVIEW_TARGET_DAYS).astype(float)
    target = target.fillna(REVIEW_TARGET_DAYS["low"])
    mask = equals(inc, "status", "open", "under_review") & (age > target).fillna(False)
    return [Hit("incidents", "status", mask.astype(bool), value=age)]


# --- personal identifiers in free text (incidents and actions) ------------------------------------------

def _identifier_hits(fr: Frames, kind: str) -> list[Hit]:
    hits = []
    for record in ("incidents", "actions"):
        index = fr.frame(record).index
        for name, found in identifier_scan(fr, record).items():
            value = found[kind][found[kind].notna()]  # the rows where one was found, and what
            hits.append(Hit(record, name, pd.Series(index.isin(value.index), index=index), value=value))
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
    return [Hit("actions", f.name, blank(fr.actions, f.name)) for f in fields_of("actions", lambda f: f.required)]


@check("NM061")
def action_codes(fr: Frames) -> list[Hit]:
    return [Hit("actions", f.name, col(fr.actions, f.name).notna() & ~is_valid_code(fr.actions, f.name, f.codes))
            for f in fields_of("actions", lambda f: f.type == "code")]


@check("NM062")
def duplicate_action_refs(fr: Frames) -> list[Hit]:
    key = casefolded(col(fr.actions, "action_ref"))
    return [Hit("actions", "action_ref", duplicated_key(fr.actions, key))]


@check("NM063")
def action_refs_known(fr: Frames) -> list[Hit]:
    refs = linked_refs(fr.actions)
    known = casefolded(col(fr.incidents, "incident_ref"))
    unknown = refs[~same_site_isin(fr.actions, refs["key"], fr.incidents, known).to_numpy()]
    names = unknown.groupby(level=0)["ref"].agg(", ".join)
    mask = pd.Series(fr.actions.index.isin(names.index), index=fr.actions.index)
    return [Hit("actions", "incident_refs", mask, value=names.reindex(fr.actions.index))]


@check("NM064")
def due_after_raised(fr: Frames) -> list[Hit]:
    return [Hit("actions", "due_date", before(fr.actions, "due_date", "raised_date"))]


@check("NM065")
def done_needs_completed_date(fr: Frames) -> list[Hit]:
    act = fr.actions
    return [Hit("actions", "completed_date", equals(act, "status", "done") & blank(act, "completed_date"))]


@check("NM066")
def actions_not_overdue(fr: Frames) -> list[Hit]:
    act = fr.actions
    late = days_between(act, "due_date", fr.today)
    mask = equals(act, "status", "open", "in_progress") & (late > 0).fillna(False)
    return [Hit("actions", "due_date", mask.astype(bool), value=late)]


@check("NM067")
def completed_after_raised(fr: Frames) -> list[Hit]:
    return [Hit("actions", "completed_date", before(fr.actions, "completed_date", "raised_date"))]


@check("NM068")
def action_dates_readable(fr: Frames) -> list[Hit]:
    return [Hit("actions", f.name, raw(fr.actions, f.name).notna())
            for f in fields_of("actions", lambda f: f.type == "date")]


@check("NM069")
def effectiveness_checked(fr: Frames) -> list[Hit]:
    act = fr.actions
    since = days_between(act, "completed_date", fr.today)
    unchecked = blank(act, "effectiveness_check_date") & ~equals(act, "effective", "yes", "no")
    mask = equals(act, "status", "done") & (since > EFFECTIVENESS_CHECK_DAYS).fillna(False) & unchecked
    return [Hit("actions", "effective", mask.astype(bool))]


@check("NM070")
def action_dates_not_future(fr: Frames) -> list[Hit]:
    return [Hit("actions", f.name, (dates(fr.actions, f.name) > fr.today).fillna(False).astype(bool))
            for f in fields_of("actions", lambda f: f.type == "date" and not f.future_ok)]


# --- site sheet --------------------------------------------------------------------------------------------

@check("NM080")
def required_site_fields(fr: Frames) -> list[Hit]:
    return [Hit("site", f.name, blank(fr.site, f.name)) for f in SITE_FIELDS if f.required]


@check("NM081")
def site_setting(fr: Frames) -> list[Hit]:
    return [Hit("site", "setting", col(fr.site, "setting").notna() & ~is_valid_code(fr.site, "setting", "setting"))]


@check("NM082")
def exposure_for_months_with_reports(fr: Frames) -> list[Hit]:
    if site_of(fr.incidents) is not None:
        return _exposure_months_by_site(fr)
    occurred = dates(fr.incidents, "occurred_at")
    occurred = occurred[occurred.notna() & (occurred <= fr.today)]
    months = pd.Series(occurred.dt.to_period("M").dt.to_timestamp().unique(), name="month").sort_values()
    unit = EXPOSURE_UNIT_BY_SETTING.get(fr.setting or "")
    figures = [unit] if unit else ["occupied_bed_days", "care_hours", "visits"]
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


def _exposure_months_by_site(fr: Frames) -> list[Hit]:
    """NM082 over many sites at once: each site's months with reports against its own exposure table."""
    inc, exp, site = fr.incidents, fr.exposure, fr.site
    occurred = dates(inc, "occurred_at")
    keep = (occurred.notna() & (occurred <= fr.today)).to_numpy(dtype=bool)
    months = pd.DataFrame({SITE: inc[SITE].to_numpy()[keep],
                           "month": occurred[keep].dt.to_period("M").dt.to_timestamp().to_numpy()})
    months = months.drop_duplicates().sort_values([SITE, "month"], kind="stable")
    units = {int(s): EXPOSURE_UNIT_BY_SETTING.get("" if pd.isna(v) else str(v))
             for s, v in zip(site[SITE], col(site, "setting"))}
    every = ["occupied_bed_days", "care_hours", "visits"]
    exp_site = exp[SITE].to_numpy() if SITE in exp else np.zeros(0, dtype=np.int64)
    row_unit = np.array([units.get(int(s)) for s in exp_site], dtype=object)
    has = np.zeros(len(exp), dtype=bool)
    for name in every:
        given = col(exp, name).notna().to_numpy(dtype=bool)
        has |= given & ((row_unit == name) | pd.isna(row_unit))
    table = pd.DataFrame({SITE: exp_site, "month": dates(exp, "month").dt.to_period("M").dt.to_timestamp().to_numpy(),
                          "_has": has, "_row": col(exp, "_row").to_numpy()})
    table = table[table["month"].notna()].drop_duplicates([SITE, "month"], keep="first")
    merged = months.merge(table, on=[SITE, "month"], how="left")
    merged["_has"] = merged["_has"].fillna(False).astype(bool)
    merged["_row"] = merged["_row"].astype("Int64") if len(merged) else pd.Series(dtype="Int64")
    label = merged["month"].dt.strftime("%B %Y")
    first_figure = np.array([units.get(int(s)) or every[0] for s in merged[SITE]], dtype=object)
    hits = []
    for figure in dict.fromkeys(first_figure.tolist()):
        mask = pd.Series(~merged["_has"].to_numpy() & (first_figure == figure), index=merged.index)
        hits.append(Hit("exposure", figure, mask, value=label, frame=merged))
    return hits


@check("NM083")
def site_values_readable(fr: Frames) -> list[Hit]:
    hits = [Hit("site", f.name, raw(fr.site, f.name).notna()) for f in SITE_FIELDS if f.type != "text"]
    hits += [Hit("exposure", f.name, raw(fr.exposure, f.name).notna()) for f in EXPOSURE_FIELDS]
    return hits


# Rules the reader raises while reading the workbook's structure (not checks over records).
STRUCTURAL_RULES = ("NM090", "NM091", "NM092", "NM093", "NM094")


def today_stamp(today: dt.date | pd.Timestamp | None) -> pd.Timestamp:
    return pd.Timestamp(today or dt.date.today()).normalize()
