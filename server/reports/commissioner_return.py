"""The commissioner return: counts per contract and period, formatted for people and for print.

:func:`build_return` is pure: frames in, :class:`ReturnData` out (a header of
labelled text and named tables as DataFrames).  :func:`write_return` lays that
out on one A4-landscape sheet with xlsxwriter.  The body is COUNTS ONLY: no
free text about people ever reaches it.  Code values a site typed that are not
in the code lists are counted under "other value or not recorded", never
written out; the one pass-through is the learning theme, a short tag.

Periods
-------
``"YYYY-Qn"`` is a calendar quarter (Q1 = January-March ... Q4 = October-December,
so "2025-Q4" is 1 October to 31 December 2025) and ``"YYYY-MM"`` a calendar month.
Financial-year quarters are not accepted, to avoid a Q1 that means two things:
ask for the calendar quarter ("2025-Q2" for April-June).

What each figure counts (sites chosen by commissioner, period P, ``today``)
-------------------------------------------------------------------------
- Reports belong to the period by ``occurred_at`` (as the trends and SPC do).
- Category x physical harm: near misses counted by event type (a near miss
  recorded with harm is a data quality finding, and still a near miss);
  incidents by physical harm.  Every category of the code list is a row, so
  returns line up quarter after quarter.
- Falls: all falls reported; falls with harm = falls incidents with physical
  harm low, moderate, severe or fatal (``HARM_LEVELS``, as the key measures).
- Medication errors by subcategory, near misses and incidents.
- New pressure ulcers: pressure care incidents (not near misses) with
  subcategory new_pressure_ulcer, by grade where recorded.
- Safeguarding concerns raised: ``safeguarding_referral_date`` in P.
  Commissioner notifications: ``commissioner_notified_date`` in P.
- CQC notifications by regulation: notifications MADE in P
  (``cqc_notified_date`` in P), which is what CQC holds for the period.  A
  second column counts events that occurred in P with a notification chosen
  but no date recorded, so a late notification is not hidden.
- RIDDOR reports: ``riddor_reportable`` yes and occurred in P (the contract has
  no RIDDOR date).  Deaths: occurred in P with category death or physical
  harm fatal, each report once.
- Missed or late visits: reports in that category from homecare, supported
  living and complex care sites (settings measured in care hours); the table
  says "not applicable" when the return has none.
- Actions of the chosen sites: opened (raised in P), completed (done,
  completed in P), overdue at the end of P (or today, if P has not ended) and
  completed by their due date among those due in P whose outcome is known --
  the action statistics of :mod:`addin.trends`.
- Learning themes: reviews closed in P (status closed, ``closed_date`` in P),
  by theme tag (trimmed, lower case).
- Rates per 1,000 exposure units: the period's count over the period's exposure,
  one row per unit (occupied bed days for care homes, delivered care hours
  otherwise), both summed only over the site-months with exposure recorded
  (the pooling rule of :mod:`addin.trends`); missed or late visits are also
  given per 1,000 visits where visits are recorded.
- SPC signal per key measure: :func:`addin.trends.key_measures` pooled over the
  chosen sites, on up to ``SPC_MONTHS`` months ending with P's last month.

Small-number suppression (``suppress_below``): see :mod:`.suppression`; None
(the default) leaves the counts as they are, for the contract relationship.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from xlsxwriter.utility import xl_range_abs

from addin import measures as M
from addin import trends
from workbook_templates.codelists import CODE_LISTS, EXPOSURE_UNIT_BY_SETTING, HARM_LEVELS
from workbook_templates.text_safety import write_text

from . import suppression as S
from .xlsx import (
    FOOTER_COUNTS_ONLY, column_pixels, formats, new_workbook, page_breaks, page_capacity_points, page_setup,
    plain_signal, stripped_text, text_lines, write_value,
)

SPC_MONTHS = 24  # months of history behind each SPC signal, ending with the period's last month
VISIT_SETTINGS = tuple(s for s, unit in EXPOSURE_UNIT_BY_SETTING.items() if unit == "care_hours")
OTHER = "Other value or not recorded"
TOTAL = S.TOTAL
UNIT_WORDS = {"occupied_bed_days": "occupied bed days", "care_hours": "delivered care hours", "visits": "visits"}
UNIT_SHORT = {"occupied_bed_days": "bed days", "care_hours": "care hours", "visits": "visits"}
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December")


# --- periods ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    code: str  # "2025-Q4" or "2025-11"
    start: pd.Timestamp  # first day
    end: pd.Timestamp  # last day

    @property
    def months(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, self.end, freq="MS")

    @property
    def label(self) -> str:
        """e.g. "Q4 2025 (1 October to 31 December 2025)" or "November 2025"."""
        if "Q" in self.code:
            year, q = self.code.split("-Q")
            return f"Q{q} {year} (1 {MONTH_NAMES[self.start.month - 1]} to {self.end.day} " \
                   f"{MONTH_NAMES[self.end.month - 1]} {self.end.year})"
        return f"{MONTH_NAMES[self.start.month - 1]} {self.start.year}"

    @property
    def short(self) -> str:
        if "Q" in self.code:
            year, q = self.code.split("-Q")
            return f"Q{q} {year}"
        return self.label

    def contains(self, dates: pd.Series) -> np.ndarray:
        """True where a date falls in the period (missing dates never do)."""
        d = _dates(dates)
        return ((d >= self.start) & (d < self.end + pd.Timedelta(days=1))).to_numpy(dtype=bool)


def parse_period(text: str) -> Period:
    """A calendar quarter "YYYY-Qn" (n = 1-4) or a calendar month "YYYY-MM"."""
    value = str(text).strip().upper()
    quarter = re.fullmatch(r"(\d{4})-Q([1-4])", value)
    month = re.fullmatch(r"(\d{4})-(0[1-9]|1[0-2])", value)
    if quarter:
        year, q = int(quarter[1]), int(quarter[2])
        start = pd.Timestamp(year, 3 * q - 2, 1)
        end = start + pd.DateOffset(months=3) - pd.Timedelta(days=1)
        return Period(f"{year}-Q{q}", start, end)
    if month:
        start = pd.Timestamp(int(month[1]), int(month[2]), 1)
        return Period(f"{month[1]}-{month[2]}", start, start + pd.offsets.MonthEnd(0))
    raise ValueError(f"period {text!r} is not a calendar quarter like 2025-Q4 (October to December 2025) "
                     "or a month like 2025-11")


# --- the return as data -----------------------------------------------------------------------------

@dataclass
class ReturnTable:
    """One table of the return.

    ``frame``: index = row labels (``frame.index.name`` heads the first column),
    columns = column headings, values = numbers, ``"*"`` (suppressed) or text.
    ``kinds`` maps a column to "count", "exposure", "rate", "percent" or
    "text" (default "count").  ``total_row``: the last row is the total.
    ``empty_note``: shown instead of the table when ``frame`` is empty.
    """

    key: str
    title: str
    frame: pd.DataFrame
    kinds: dict[str, str] = field(default_factory=dict)
    row_kinds: dict[str, str] = field(default_factory=dict)  # a row whose every value is of one kind
    total_row: bool = False
    note: str = ""
    empty_note: str = ""

    def kind(self, column: str, row: str | None = None) -> str:
        if row is not None and row in self.row_kinds:
            return self.row_kinds[row]
        return self.kinds.get(column, "count")


@dataclass
class ReturnData:
    """A built return: ``header`` (label -> text, in display order) and ``tables`` by key."""

    title: str
    period: Period
    header: dict[str, str]
    tables: dict[str, ReturnTable]
    notes: list[str]
    suppress_below: int | None
    site_codes: list[str]

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        return {key: table.frame for key, table in self.tables.items()}


# --- helpers ------------------------------------------------------------------------------------------

def _dates(values: pd.Series) -> pd.Series:
    s = values if pd.api.types.is_datetime64_any_dtype(values) else pd.to_datetime(values, errors="coerce")
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_localize(None)
    return s


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame.columns else pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _meaning(list_name: str, code: str) -> str:
    """A code's words for a reader: the code list meaning, without the "category: " prefix."""
    text = CODE_LISTS[list_name][code]
    if list_name == "subcategory":
        text = text.split(": ", 1)[1]
    return text[:1].upper() + text[1:]


def _labelled(codes: pd.Series, list_name: str, allowed: list[str] | None = None) -> pd.Series:
    """Each code as its row label; anything outside ``allowed`` (default: the list) as OTHER."""
    allowed = allowed if allowed is not None else list(CODE_LISTS[list_name])
    words = {c: _meaning(list_name, c) for c in allowed}
    return stripped_text(codes).map(lambda c: words.get(c, OTHER))


def _crosstab(rows: pd.Series, cols: pd.Series, row_order: list[str], col_order: list[str], *,
              keep_rows: list[str] = (), keep_cols: list[str] = (), index_name: str = "") -> pd.DataFrame:
    """Counts of (row, col) pairs with totals; rows/cols not in ``keep_*`` appear only when non-zero."""
    table = pd.crosstab(rows, cols) if len(rows) else pd.DataFrame()
    table = table.reindex(index=row_order, columns=col_order, fill_value=0).fillna(0).astype(int)
    table = table.loc[[r for r in row_order if r in keep_rows or table.loc[r].sum() > 0],
                      [c for c in col_order if c in keep_cols or table[c].sum() > 0]]
    table[TOTAL] = table.sum(axis=1)
    table.loc[TOTAL] = table.sum(axis=0)
    table.index.name = index_name
    table.columns.name = None
    return table.astype(int)


def _event_column(event: pd.Series, harm: pd.Series | None) -> pd.Series:
    """Column of each report: "Near misses", the incident's harm, or "Type not recorded"."""
    event = stripped_text(event)
    out = pd.Series("Type not recorded", index=event.index, dtype=object)
    out[event == "near_miss"] = "Near misses"
    if harm is None:
        out[event == "incident"] = "Incidents"
    else:
        harm_words = {code: HARM_COLUMNS[code] for code in CODE_LISTS["physical_harm"]}
        inc = event == "incident"
        out[inc] = stripped_text(harm)[inc].map(lambda h: harm_words.get(h, "Harm not recorded"))
    return out


HARM_COLUMNS = {"none": "No harm", "low": "Low harm", "moderate": "Moderate harm", "severe": "Severe harm",
                "fatal": "Fatal"}


def _single(counts: dict[str, int], heading: str, index_name: str) -> pd.DataFrame:
    frame = pd.DataFrame({heading: pd.Series(counts, dtype=int)})
    frame.index.name = index_name
    return frame


def _suppress(frame: pd.DataFrame, threshold: int | None, *, row_total: bool, col_total: bool) -> pd.DataFrame:
    if threshold is None:
        return frame
    return S.suppress_table(frame, threshold, row_total=TOTAL if row_total else None,
                            col_total=TOTAL if col_total else None)


def _ratio(num, den, scale: float) -> float | str | None:
    """num / den * scale from published figures: "*" when either is hidden, None when den is 0."""
    if num == S.HIDDEN or den == S.HIDDEN:
        return S.HIDDEN
    if den is None or not den or (isinstance(den, float) and not np.isfinite(den)):
        return None
    return round(float(num) / float(den) * scale, 2)


def _fmt_int(n: float) -> str:
    return f"{n:,.0f}"


def _month_word(ts: pd.Timestamp) -> str:
    return f"{MONTH_NAMES[ts.month - 1][:3]} {ts.year}"


def _date_word(d: pd.Timestamp | dt.date) -> str:
    return f"{d.day} {MONTH_NAMES[d.month - 1]} {d.year}"


def _commissioner_names(sites: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(" ".join(p.split()) for text in stripped_text(_col(sites, "commissioners"))
                              for p in text.split(",") if p.strip()))


def commissioner_name(sites: pd.DataFrame, commissioner: str) -> str:
    """``commissioner`` as the sites spell it (the match ignores case and spaces)."""
    want = " ".join(commissioner.split()).casefold()
    for name in _commissioner_names(sites):
        if name.casefold() == want:
            return name
    return " ".join(commissioner.split())


def select_sites(sites: pd.DataFrame, commissioner: str | None) -> pd.DataFrame:
    """The sites whose commissioners (comma separated) include ``commissioner`` (case and spaces ignored)."""
    if commissioner is None:
        return sites
    want = " ".join(commissioner.split()).casefold()
    lists = stripped_text(_col(sites, "commissioners")).map(
        lambda text: {" ".join(part.split()).casefold() for part in text.split(",") if part.strip()})
    chosen = sites[lists.map(lambda names: want in names).to_numpy(dtype=bool)]
    if chosen.empty:
        known = sorted(_commissioner_names(sites))
        raise ValueError(f"no site names {commissioner!r} among its commissioners; the sites name: "
                         + (", ".join(known) if known else "no commissioners at all"))
    return chosen


# --- building ----------------------------------------------------------------------------------------

def build_return(incidents: pd.DataFrame, actions: pd.DataFrame, exposure: pd.DataFrame | None,
                 sites: pd.DataFrame, *, period: str | Period, commissioner: str | None = None,
                 suppress_below: int | None = None, today: dt.date) -> ReturnData:
    """The return for ``period`` over the sites of ``commissioner`` (all sites when None).

    Frames as :func:`server.queries.current_frames` gives them: contract field
    names with a ``site_code`` column on incidents, actions and exposure;
    ``sites`` has one row per site with ``site_code``, ``site_name``,
    ``setting``, ``provider``, ``cqc_location_id``, ``commissioners`` and
    ``people_supported``.  ``suppress_below`` is None (counts as they are) or
    the threshold of :mod:`.suppression` (8 is the NHS Digital standard).
    """
    period = period if isinstance(period, Period) else parse_period(period)
    today_ts = pd.Timestamp(today).normalize()
    if period.start > today_ts:
        raise ValueError(f"{period.code} has not started yet (today is {today_ts.date().isoformat()})")
    if suppress_below is not None:
        S.check_threshold(suppress_below)
    chosen = select_sites(sites, commissioner).copy()
    chosen["site_code"] = stripped_text(chosen["site_code"])
    codes = list(dict.fromkeys(chosen["site_code"]))
    settings = dict(zip(chosen["site_code"], stripped_text(_col(chosen, "setting"))))

    def mine(frame: pd.DataFrame | None, kind: str) -> pd.DataFrame:
        if frame is None:
            return pd.DataFrame({"site_code": pd.Series(dtype=object)})
        if len(frame) and "site_code" not in frame.columns:
            raise ValueError(f"the {kind} frame needs a site_code column")
        if not len(frame):
            return frame.copy() if "site_code" in frame.columns else frame.assign(site_code=pd.Series(dtype=object))
        return frame[stripped_text(frame["site_code"]).isin(codes).to_numpy()].reset_index(drop=True)

    inc, act, expo = mine(incidents, "incidents"), mine(actions, "actions"), mine(exposure, "exposure")
    in_p = inc[period.contains(_col(inc, "occurred_at"))]
    t = suppress_below
    tables: dict[str, ReturnTable] = {}

    # 1. category x physical harm
    cat_rows = [_meaning("category", c) for c in CODE_LISTS["category"]] + [OTHER]
    ev_cols = ["Near misses", *HARM_COLUMNS.values(), "Harm not recorded", "Type not recorded"]
    matrix = _crosstab(_labelled(_col(in_p, "category"), "category"),
                       _event_column(_col(in_p, "event_type"), _col(in_p, "physical_harm")),
                       cat_rows, ev_cols, keep_rows=cat_rows[:-1], keep_cols=ev_cols[:6], index_name="Category")
    tables["category_harm"] = ReturnTable(
        "category_harm", "Incidents and near misses by category and physical harm",
        _suppress(matrix, t, row_total=True, col_total=True), total_row=True,
        note="Near misses did not reach the person. Incidents are shown by the physical harm recorded "
             "(LFPSE grading).")

    # 2. falls
    cat = stripped_text(_col(in_p, "category"))
    event = stripped_text(_col(in_p, "event_type"))
    harm = stripped_text(_col(in_p, "physical_harm"))
    falls = cat == "falls"
    falls_table = _single({"All falls reported (near misses and incidents)": int(falls.sum()),
                           "Falls with physical harm (low harm or worse)":
                               int((falls & (event == "incident") & harm.isin(HARM_LEVELS)).sum())},
                          "Reports", "Falls")
    tables["falls"] = ReturnTable("falls", "Falls", _suppress(falls_table, t, row_total=False, col_total=False))

    # 3. medication errors by subcategory
    med = in_p[(cat == "medication").to_numpy()]
    med_codes = [c for c, owner in _subcategories() if owner == "medication"]
    med_rows = [_meaning("subcategory", c) for c in med_codes] + [OTHER]
    med_table = _crosstab(_labelled(_col(med, "subcategory"), "subcategory", med_codes),
                          _event_column(_col(med, "event_type"), None), med_rows,
                          ["Near misses", "Incidents", "Type not recorded"], keep_rows=med_rows[:-1],
                          keep_cols=["Near misses", "Incidents"], index_name="Medication error")
    med_table = med_table.rename(columns={"Incidents": "Reached the person"})
    tables["medication"] = ReturnTable("medication", "Medication errors by subcategory",
                                       _suppress(med_table, t, row_total=True, col_total=True), total_row=True)

    # 4. new pressure ulcers by grade
    ulcers = in_p[((cat == "pressure_care") & (event == "incident")
                   & (stripped_text(_col(in_p, "subcategory")) == "new_pressure_ulcer")).to_numpy()]
    grades = list(CODE_LISTS["pressure_ulcer_grade"])
    grade_words = {g: _meaning("pressure_ulcer_grade", g) for g in grades}
    grade_col = stripped_text(_col(ulcers, "pressure_ulcer_grade")).map(lambda g: grade_words.get(g, "Grade not recorded"))
    grade_rows = [*grade_words.values(), "Grade not recorded"]
    ulcer_table = _crosstab(grade_col, pd.Series("New pressure ulcers", index=ulcers.index, dtype=object),
                            grade_rows, ["New pressure ulcers"], keep_rows=grade_rows,
                            keep_cols=["New pressure ulcers"],
                            index_name="Grade").drop(columns=TOTAL)
    tables["pressure_ulcers"] = ReturnTable(
        "pressure_ulcers", "New pressure ulcers by grade", _suppress(ulcer_table, t, row_total=False, col_total=True),
        total_row=True, note="Pressure care incidents recorded as a new pressure ulcer, by the grade recorded.")

    # 5. safeguarding, notifications, RIDDOR, deaths
    notes_table = _single({
        "Safeguarding concerns raised with the local authority": int(period.contains(
            _col(inc, "safeguarding_referral_date")).sum()),
        "Notifications to the commissioner": int(period.contains(_col(inc, "commissioner_notified_date")).sum()),
        "RIDDOR reports (reportable to HSE)": int((stripped_text(_col(in_p, "riddor_reportable")) == "yes").sum()),
        "Deaths of people using the service": int(((cat == "death") | (harm == "fatal")).sum()),
    }, "Count", "Safeguarding, notifications and reports")
    tables["notifications"] = ReturnTable(
        "notifications", "Safeguarding, notifications and reports",
        _suppress(notes_table, t, row_total=False, col_total=False),
        note="Safeguarding concerns and commissioner notifications by the date they were made; RIDDOR reports "
             "and deaths by the date the event occurred.")

    # 6. CQC notifications by regulation
    regs = [c for c in CODE_LISTS["cqc_notification"] if c != "none"]
    reg_rows = [_meaning("cqc_notification", c) for c in regs] + ["Regulation not recorded"]
    reg_words = dict(zip(regs, reg_rows))

    def reg_label(codes: pd.Series) -> pd.Series:
        return stripped_text(codes).map(lambda c: reg_words.get(c, "Regulation not recorded"))

    notified = inc[period.contains(_col(inc, "cqc_notified_date"))]
    pending = in_p[(stripped_text(_col(in_p, "cqc_notification")).isin(regs)
                    & _dates(_col(in_p, "cqc_notified_date")).isna()).to_numpy()]
    col_made, col_pending = "Notified in the period", "Notifiable, no date recorded"
    cqc = pd.concat([
        pd.DataFrame({"row": reg_label(_col(notified, "cqc_notification")), "col": col_made}),
        pd.DataFrame({"row": reg_label(_col(pending, "cqc_notification")), "col": col_pending}),
    ], ignore_index=True)
    cqc_table = _crosstab(cqc["row"], cqc["col"], reg_rows, [col_made, col_pending], keep_rows=reg_rows[:-1],
                          keep_cols=[col_made, col_pending], index_name="CQC notification").drop(columns=TOTAL)
    tables["cqc_notifications"] = ReturnTable(
        "cqc_notifications", "CQC notifications by regulation",
        _suppress(cqc_table, t, row_total=False, col_total=True), total_row=True,
        note="Notified in the period: by the date CQC was notified. Notifiable, no date recorded: events in the "
             "period with a notification chosen but no date yet.")

    # 7. missed or late visits
    visit_sites = [c for c in codes if settings.get(c) in VISIT_SETTINGS]
    visit_codes = [c for c, owner in _subcategories() if owner == "missed_or_late_visit"]
    if visit_sites:
        visits = in_p[(stripped_text(_col(in_p, "site_code")).isin(visit_sites) & (cat == "missed_or_late_visit")).to_numpy()]
        visit_rows = [_meaning("subcategory", c) for c in visit_codes] + [OTHER]
        visit_table = _crosstab(_labelled(_col(visits, "subcategory"), "subcategory", visit_codes),
                                pd.Series("Reports", index=visits.index, dtype=object), visit_rows, ["Reports"],
                                keep_rows=visit_rows[:-1], keep_cols=["Reports"],
                                index_name="Missed or late visits").drop(columns=TOTAL)
        visit_table = _suppress(visit_table, t, row_total=False, col_total=True)
    else:
        visit_table = pd.DataFrame()
    tables["missed_visits"] = ReturnTable(
        "missed_visits", "Missed or late visits", visit_table, total_row=True,
        note="Homecare, supported living and complex care at home sites.",
        empty_note="Not applicable: no homecare, supported living or complex care at home site in this return.")

    # 8. actions
    tables["actions"] = _actions_table(act, codes, period, today_ts, t)

    # 9. rates per 1,000 exposure units
    rates_table, exposure_totals, rate_notes = _rates_table(in_p, expo, codes, settings, visit_sites, period,
                                                            today_ts, t)
    tables["rates"] = rates_table

    # 10. SPC signals
    tables["spc"] = _spc_table(inc, act, expo, codes, settings, period, today_ts)

    # 11. learning themes
    closed = inc[(period.contains(_col(inc, "closed_date"))
                  & (stripped_text(_col(inc, "status")) == "closed")).to_numpy()]
    theme = stripped_text(_col(closed, "learning_theme")).str.lower()
    theme = theme.map(lambda s: " ".join(s.split()))
    counts = theme[theme != ""].value_counts()
    counts = counts.sort_index().sort_values(ascending=False, kind="stable")
    theme_table = pd.DataFrame({"Reviews closed": counts.astype(int)})
    theme_table.loc[TOTAL] = int(theme_table["Reviews closed"].sum())
    theme_table.index.name = "Learning theme"
    untagged = int((theme == "").sum())
    tables["themes"] = ReturnTable(
        "themes", "Learning themes from reviews closed in the period",
        _suppress(theme_table.astype(int), t, row_total=False, col_total=True), total_row=True,
        note="Themes are the short tags the sites record when a review closes."
             + (f" {_suppressed_or(untagged, t)} closed review(s) had no theme recorded." if untagged else ""))

    header = _header(chosen, codes, commissioner, period, expo, exposure_totals, today_ts, t)
    notes = _notes(period, today_ts, t, rate_notes)
    title = "Incident and near-miss return"
    return ReturnData(title=title, period=period, header=header, tables=tables, notes=notes,
                      suppress_below=suppress_below, site_codes=codes)


def _suppressed_or(n: int, threshold: int | None) -> str:
    return str(n) if threshold is None else str(S.suppress_value(n, threshold))


def _subcategories() -> list[tuple[str, str]]:
    return [(code, meaning.split(":", 1)[0]) for code, meaning in CODE_LISTS["subcategory"].items()]


def _actions_table(act: pd.DataFrame, codes: list[str], period: Period, today: pd.Timestamp,
                   t: int | None) -> ReturnTable:
    stats = trends.action_stats(act, today=today, months=(period.start, period.end), site_col="site_code",
                                sites=codes).monthly
    total = stats.groupby(level="month").sum(min_count=1)
    live = total.index[total.index <= today]
    overdue = total["overdue_at_month_end"].reindex(live).dropna()
    rows = {
        "Actions opened in the period": int(total["opened"].sum()),
        "Actions completed in the period": int(total["done"].sum()),
        "Actions overdue at the end of the period": int(overdue.iloc[-1]) if len(overdue) else 0,
        "Actions due in the period (outcome known)": int(total["due_outcome_known"].sum()),
        "Of those, completed by their due date": int(total["done_by_due_date"].sum()),
    }
    frame = _single(rows, "Number", "Actions")
    frame = _suppress(frame, t, row_total=False, col_total=False).astype(object)
    num = frame.at["Of those, completed by their due date", "Number"]
    den = frame.at["Actions due in the period (outcome known)", "Number"]
    pct_row = "% completed by their due date"
    frame.loc[pct_row] = [_ratio(num, den, 100.0)]
    as_at = "the end of the period" if period.end <= today else f"{_date_word(today)} (the period has not ended)"
    return ReturnTable("actions", "Actions", frame, kinds={"Number": "count"}, row_kinds={pct_row: "percent"},
                       note=f"Overdue: open or in progress and past the due date as at {as_at}. Cancelled actions, "
                            "and open actions not yet due, are left out of the on-time percentage.")


def _rates_table(in_p: pd.DataFrame, expo: pd.DataFrame, codes: list[str], settings: dict[str, str],
                 visit_sites: list[str], period: Period, today: pd.Timestamp,
                 t: int | None) -> tuple[ReturnTable, dict[str, float], list[str]]:
    """Period rates per unit, pooled over the site-months with exposure recorded."""
    months = (period.start, min(period.end, today))
    known = {c: s for c, s in settings.items() if s in EXPOSURE_UNIT_BY_SETTING}
    notes: list[str] = []
    unknown = [c for c in codes if c not in known]
    if unknown:
        notes.append(f"No rates for {', '.join(unknown)}: the site's setting is not recorded.")
    rows: list[dict[str, Any]] = []
    totals: dict[str, float] = {}
    if known:
        mat = trends.exposure_by_month(expo, known, months=months, site_col="site_code")
    else:
        mat = pd.Series(dtype=float)
    has = mat.notna()
    missing = mat.index[~has]
    if len(missing):
        gaps: dict[str, list[str]] = {}
        for site, month in missing:
            gaps.setdefault(site, []).append(_month_word(month))
        notes.append("Exposure not recorded for " + "; ".join(f"{s}: {', '.join(m)}" for s, m in gaps.items())
                     + ". Those months are left out of the rates (counts and exposure alike).")
    units = {c: EXPOSURE_UNIT_BY_SETTING[s] for c, s in known.items()}
    site_of = stripped_text(_col(in_p, "site_code"))
    month_of = _dates(_col(in_p, "occurred_at")).dt.to_period("M").dt.to_timestamp()
    pair = pd.MultiIndex.from_arrays([site_of, month_of])
    counted = pd.Series(pair.isin(mat.index[has]), index=in_p.index) if len(in_p) else pd.Series(dtype=bool)
    for unit in dict.fromkeys(units.values()):
        group = [c for c, u in units.items() if u == unit]
        in_group = mat[has & mat.index.get_level_values(0).isin(group)]
        exposure_total = float(in_group.sum())
        if not len(in_group):
            continue
        totals[unit] = exposure_total
        group_rows = site_of.isin(group) & counted
        for measure in (m for m in M.MEASURES if m.exposure_rate):
            mask = group_rows.copy()
            for name, allowed in measure.where.items():
                mask &= stripped_text(_col(in_p, name)).isin(allowed)
            rows.append({"Measure": measure.label[:1].upper() + measure.label[1:], "unit": unit,
                         "Count": int(mask.sum()), "Exposure": exposure_total})
    visit_total = _visits(expo, visit_sites, period, today)
    if visit_total is not None:
        vmonths, vsum = visit_total
        totals["visits"] = vsum
        mask = (site_of.isin(visit_sites) & (stripped_text(_col(in_p, "category")) == "missed_or_late_visit")
                & pd.Series(pd.MultiIndex.from_arrays([site_of, month_of]).isin(vmonths), index=in_p.index))
        rows.append({"Measure": "Missed or late visits", "unit": "visits", "Count": int(mask.sum()),
                     "Exposure": vsum})
    frame = pd.DataFrame(rows, columns=["Measure", "unit", "Count", "Exposure"])
    if len(frame):
        frame.insert(1, "Per 1,000", frame.pop("unit").map(UNIT_SHORT))
        if t is not None:
            frame["Count"] = [S.suppress_value(n, t) for n in frame["Count"]]
        frame["Rate per 1,000"] = [_ratio(n, e, 1000.0) for n, e in zip(frame["Count"], frame["Exposure"])]
        frame = frame.set_index("Measure")
    table = ReturnTable("rates", "Rates per 1,000 exposure units", frame,
                        kinds={"Per 1,000": "text", "Count": "count", "Exposure": "exposure",
                               "Rate per 1,000": "rate"},
                        note="Care homes: per 1,000 occupied bed days. Homecare, supported living and complex care: "
                             "per 1,000 delivered care hours; missed or late visits also per 1,000 visits. Count "
                             "and exposure are both summed over the months with exposure recorded.",
                        empty_note="No rates: no exposure (bed days or care hours) recorded for the period.")
    return table, totals, notes


def _visits(expo: pd.DataFrame, visit_sites: list[str], period: Period,
            today: pd.Timestamp) -> tuple[pd.MultiIndex, float] | None:
    """(site, month) pairs with visits recorded in the period, and the visits summed; None when none."""
    if not visit_sites or "visits" not in expo.columns or not len(expo):
        return None
    rows = expo[stripped_text(expo["site_code"]).isin(visit_sites).to_numpy()
                & period.contains(expo["month"]) & (_dates(expo["month"]) <= today).to_numpy()]
    value = pd.to_numeric(rows["visits"], errors="coerce")
    rows = rows[(value > 0).to_numpy()]
    if rows.empty:
        return None
    month = _dates(rows["month"]).dt.to_period("M").dt.to_timestamp()
    pairs = pd.MultiIndex.from_arrays([stripped_text(rows["site_code"]), month]).unique()
    return pairs, float(pd.to_numeric(rows["visits"]).sum())


SIGNAL_WORDS = {"special_cause_improvement": "Improvement", "special_cause_concern": "Concern",
                "special_cause_neutral_high": "Signal (higher)", "special_cause_neutral_low": "Signal (lower)",
                "common_cause": "No signal"}
DIRECTION_WORDS = {"increase": "Higher", "decrease": "Lower", "neutral": "Either way"}


def _spc_table(inc: pd.DataFrame, act: pd.DataFrame, expo: pd.DataFrame, codes: list[str],
               settings: dict[str, str], period: Period, today: pd.Timestamp) -> ReturnTable:
    last = min(period.end, today)
    first = last.to_period("M").to_timestamp() - pd.DateOffset(months=SPC_MONTHS - 1)
    occurred = _dates(_col(inc, "occurred_at"))
    earliest = occurred[occurred.notna()].min() if occurred.notna().any() else period.start
    first = max(first, earliest.to_period("M").to_timestamp())
    first = min(first, period.start)
    results = trends.key_measures(inc, act, expo, settings, today=today, months=(first, last), site_col="site_code")
    rows = []
    for r in results:
        words = plain_signal(r.signal, verdict=False)  # the Signal column gives the verdict
        points = int(r.series.notna().sum())
        rows.append({"Measure": r.label[:1].upper() + r.label[1:], "Better when": DIRECTION_WORDS[r.improvement],
                     "Months": points,
                     "Latest month": _month_word(r.latest_month) if r.latest_month is not None else "",
                     "Signal": SIGNAL_WORDS.get(r.latest_point_type or "", "No data"),
                     "What the chart shows": words})
    frame = pd.DataFrame(rows).set_index("Measure")
    kinds = {c: "text" for c in frame.columns}
    kinds["Months"] = "count"
    return ReturnTable("spc", "Statistical process control: signal per key measure", frame, kinds=kinds,
                       note=f"Making Data Count XmR charts over the months {_month_word(first)} to "
                            f"{_month_word(last)}, all the sites in this return together. The signal is the "
                            "latest month's: improvement or concern when a special-cause rule fires, otherwise "
                            "no signal (common cause variation).")


def _header(chosen: pd.DataFrame, codes: list[str], commissioner: str | None, period: Period, expo: pd.DataFrame,
            totals: dict[str, float], today: pd.Timestamp, t: int | None) -> dict[str, str]:
    def joined(column: str) -> str:
        values = [v for v in dict.fromkeys(stripped_text(_col(chosen, column))) if v]
        return "; ".join(values) if values else "Not recorded"

    site_words = "; ".join(f"{name} ({code})" if name else code for code, name in
                           zip(stripped_text(chosen["site_code"]), stripped_text(_col(chosen, "site_name"))))
    people, people_note = _people_supported(chosen, expo, period, today)
    exposure_words = "; ".join(f"{_fmt_int(v)} {UNIT_WORDS[u]}" for u, v in totals.items()) or "Not recorded"
    if commissioner is None:
        commissioner_words = "All commissioners of these sites: " + joined("commissioners")
    else:
        commissioner_words = commissioner_name(chosen, commissioner)
    as_at = _date_word(today) + (" (the period has not ended: figures so far)" if today < period.end else "")
    return {
        "Provider": joined("provider"),
        "Site(s)": site_words,
        "CQC location ID(s)": joined("cqc_location_id"),
        "Commissioner": commissioner_words,
        "Period": period.label,
        "People supported": (f"{_fmt_int(people)} {people_note}" if people is not None else "Not recorded"),
        "Exposure in the period": exposure_words,
        "Figures as at": as_at,
        "Small numbers": ("Not suppressed: for the contract relationship only" if t is None
                          else f"Suppressed (counts of 1 to {t - 1} shown as *, others rounded to the nearest 5)"),
    }


def _people_supported(chosen: pd.DataFrame, expo: pd.DataFrame, period: Period,
                      today: pd.Timestamp) -> tuple[float | None, str]:
    """People supported across the sites: each site's latest monthly figure in the period, else its Site sheet."""
    total, from_sheet = 0.0, False
    found = False
    last = min(period.end, today)
    for code, sheet_value in zip(stripped_text(chosen["site_code"]), _col(chosen, "people_supported")):
        value = None
        if len(expo) and "people_supported" in expo.columns:
            rows = expo[(stripped_text(expo["site_code"]) == code).to_numpy() & period.contains(expo["month"])
                        & (_dates(expo["month"]) <= last).to_numpy()]
            figures = pd.to_numeric(rows["people_supported"], errors="coerce")
            rows = rows[figures.notna().to_numpy()]
            if len(rows):
                value = float(pd.to_numeric(rows.sort_values("month")["people_supported"]).iloc[-1])
        if value is None and sheet_value is not None and not pd.isna(sheet_value):
            value, from_sheet = float(sheet_value), True
        if value is not None:
            total += value
            found = True
    if not found:
        return None, ""
    note = "(latest monthly figure in the period" + (", or the Site sheet's figure)" if from_sheet else ")")
    return total, note


def _notes(period: Period, today: pd.Timestamp, t: int | None, rate_notes: list[str]) -> list[str]:
    notes = [
        "Counts only: this return holds no names, descriptions or other information about individuals.",
        f"Reports are counted in the period in which they occurred ({period.label}), from the logs as they "
        f"stood on {_date_word(today)}; figures for a period can change as late reports are added.",
        "Near miss: an event that did not reach the person. Incident: an event that reached the person. "
        "Physical harm follows the LFPSE grading (none, low, moderate, severe, fatal).",
    ]
    if t is not None:
        notes.append(S.note(t))
    return notes + rate_notes


# --- writing --------------------------------------------------------------------------------------------

LABEL_WIDTH = 52
VALUE_WIDTH = 13
LAST_COL = 8  # columns A:I
ROW = 14.0  # points: every row gets an explicit (custom) height, so page breaks can be worked out
LINE = 12.0  # points per extra line of wrapped text


class _Layout:
    """Row heights and blocks (kept together on a page) of the sheet being written."""

    def __init__(self, ws):
        self.ws = ws
        self.heights: dict[int, float] = {}
        self.blocks: list[tuple[int, int]] = []

    def height(self, row: int, points: float = ROW) -> None:
        points = max(points, self.heights.get(row, 0.0))
        self.heights[row] = points
        self.ws.set_row(row, points)

    def lines(self, row: int, n: int) -> None:
        self.height(row, ROW + LINE * (n - 1))


def write_return(data: ReturnData, path: str | Path) -> Path:
    """Lay the return out on one sheet, "Return", formatted for people and for print (A4 landscape).

    Title and subtitle repeat at the top of every printed page; each table (with its
    title and note) is kept on one page; the footer says the return holds counts only.
    Each table's range is a defined name ``tbl_<key>`` (header row to last row), and the
    header block is ``tbl_header``.
    """
    path = Path(path)
    title = f"{data.title}: {data.period.short}"
    wb = new_workbook(path, title, "Commissioner return: counts only")
    fmt = formats(wb)
    ws = wb.add_worksheet("Return")
    lay = _Layout(ws)
    ws.set_column(0, 0, LABEL_WIDTH)
    ws.set_column(1, LAST_COL, VALUE_WIDTH)
    merged_width = VALUE_WIDTH * LAST_COL
    write_text(ws, 0, 0, title, fmt["title"])
    lay.height(0, 24)
    commissioner = data.header.get("Commissioner", "")
    write_text(ws, 1, 0, " | ".join(x for x in (data.header.get("Provider", ""), commissioner) if x), fmt["subtitle"])
    lay.height(1)
    lay.height(2, 8)
    row = first = 3
    for label, text in data.header.items():
        write_text(ws, row, 0, label, fmt["key"])
        ws.merge_range(row, 1, row, LAST_COL, "", fmt["value"])
        write_value(ws, row, 1, text, fmt["value"])
        lay.lines(row, text_lines(str(text), merged_width))
        row += 1
    wb.define_name("tbl_header", _ref(first, 0, row - 1, 1))
    lay.blocks.append((0, row - 1))
    row += 1
    for table in data.tables.values():
        start = row
        row = _write_table(wb, ws, lay, fmt, table, row)
        lay.blocks.append((start, row - 1))
        row += 1
    start = row
    write_text(ws, row, 0, "Notes", fmt["h2"])
    lay.height(row, 20)
    row += 1
    for text in data.notes:
        ws.merge_range(row, 0, row, LAST_COL, "", fmt["note"])
        write_text(ws, row, 0, text, fmt["note"])
        lay.lines(row, text_lines(text, LABEL_WIDTH + merged_width))
        row += 1
    lay.blocks.append((start, row - 1))
    for r in range(row):
        if r not in lay.heights:
            lay.height(r)
    as_at = data.header.get("Figures as at", "")
    page_setup(ws, title=title, repeat_rows=(0, 1), footer_left=FOOTER_COUNTS_ONLY,
               header_right=f"Figures as at {as_at.split(' (')[0]}" if as_at else "")
    capacity = page_capacity_points(column_pixels(LABEL_WIDTH) + LAST_COL * column_pixels(VALUE_WIDTH),
                                    reserved_points=lay.heights[0] + lay.heights[1])
    breaks = page_breaks(lay.blocks, lay.heights, capacity)
    if breaks:
        ws.set_h_pagebreaks(breaks)
    ws.print_area(0, 0, row - 1, LAST_COL)
    ws.activate()
    wb.close()
    return path


def _ref(r1: int, c1: int, r2: int, c2: int) -> str:
    return f"='Return'!{xl_range_abs(r1, c1, r2, c2)}"


def _write_table(wb, ws, lay: _Layout, fmt: dict, table: ReturnTable, row: int) -> int:
    """Write one table (title, header, rows, note) from ``row``; returns the row after it."""
    write_text(ws, row, 0, table.title, fmt["h2"])
    lay.height(row, 22)
    row += 1
    frame = table.frame
    if frame.empty:
        ws.merge_range(row, 0, row, LAST_COL, "", fmt["note"])
        write_text(ws, row, 0, table.empty_note or "Nothing to show.", fmt["note"])
        return row + 1
    columns = list(frame.columns)
    last_col = len(columns)
    spans = {j: (LAST_COL if table.key == "spc" and j == last_col else j) for j in range(1, last_col + 1)}
    write_text(ws, row, 0, frame.index.name or "", fmt["header"])
    header_lines = 1
    for j, name in enumerate(columns, start=1):
        header = fmt["header"] if table.kind(name) == "text" else fmt["header_num"]
        if spans[j] > j:
            ws.merge_range(row, j, row, spans[j], "", header)
        write_text(ws, row, j, str(name), header)
        header_lines = max(header_lines, text_lines(str(name), VALUE_WIDTH * (spans[j] - j + 1) - 1))
    lay.lines(row, header_lines)
    header_row = row
    row += 1
    for i, (label, values) in enumerate(frame.iterrows()):
        is_total = table.total_row and i == len(frame) - 1
        write_text(ws, row, 0, str(label), fmt["total_label"] if is_total else fmt["key"])
        lines = text_lines(str(label), LABEL_WIDTH)
        for j, name in enumerate(columns, start=1):
            value = values[name]
            kind = table.kind(name, str(label))
            cell_format = _cell_format(fmt, kind, value, is_total, name)
            if spans[j] > j:
                ws.merge_range(row, j, row, spans[j], "", cell_format)
            write_value(ws, row, j, value, cell_format)
            if kind == "text":
                lines = max(lines, text_lines(str(value), VALUE_WIDTH * (spans[j] - j + 1) - 1))
        lay.lines(row, lines)
        row += 1
    wb.define_name(f"tbl_{table.key}", _ref(header_row, 0, row - 1, last_col))
    if table.note:
        ws.merge_range(row, 0, row, LAST_COL, "", fmt["note"])
        write_text(ws, row, 0, table.note, fmt["note"])
        lay.lines(row, text_lines(table.note, LABEL_WIDTH + VALUE_WIDTH * LAST_COL))
        row += 1
    return row


def _cell_format(fmt: dict, kind: str, value: Any, is_total: bool, column: str):
    if kind == "text":
        if column == "Signal":
            return {"Concern": fmt["concern"], "Improvement": fmt["improvement"]}.get(value, fmt["cell_text"])
        return fmt["total_label"] if is_total else fmt["cell_text"]
    if value == S.HIDDEN:
        return fmt["total_hidden"] if is_total else fmt["hidden"]
    if kind in ("rate", "percent"):
        return fmt[f"total_{kind}"] if is_total else fmt[kind]
    if kind == "exposure":
        return fmt["number"]
    return fmt["total_count"] if is_total else fmt["count"]


def return_to_mapping(data: ReturnData) -> Mapping[str, Any]:
    """The return as plain JSON-ready data (header, tables as lists of rows), e.g. for an API."""
    return {
        "title": data.title, "period": data.period.code, "header": dict(data.header),
        "suppress_below": data.suppress_below, "site_codes": list(data.site_codes),
        "tables": {k: {"title": t.title, "columns": [t.frame.index.name, *map(str, t.frame.columns)],
                       "rows": [[str(i), *[None if (isinstance(v, float) and not np.isfinite(v)) else
                                          (v.item() if hasattr(v, "item") else v) for v in row]]
                                for i, row in zip(t.frame.index, t.frame.itertuples(index=False))],
                       "note": t.note}
                   for k, t in data.tables.items()},
        "notes": list(data.notes),
    }
