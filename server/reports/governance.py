"""The area lead's governance summary workbook: headline figures, sites, SPC charts, actions, themes, data quality.

:func:`write_governance` lays out a summary made by :func:`addin.trends.area_summary`
(or :func:`addin.trends.site_summary`, treated as an area of one site) with
xlsxwriter: it computes nothing the summary already holds.  Sheets:

- **Summary**: headline figures for the area over the months covered and for the
  latest month, then the signal of every key measure with a link to its chart;
- **Sites**: one row per site and a row for the area;
- **SPC ...**: one sheet per key measure, a month table (value, mean, limits,
  point type) and a NATIVE Excel line chart of it: the value as a line with
  markers, the mean, the process limits dashed, and special-cause points as
  marker-only series (improvement blue, concern orange, Making Data Count
  colours), with the plain-English signal as the caption;
- **Overdue actions**: open or in-progress actions past their due date as at the
  summary's ``today`` (when ``actions`` are given);
- **Themes**: learning themes per site (and by category when ``incidents`` are given);
- **Data quality**: validation findings counted by rule and site, and the files
  that could not be read.

Summaries only: row dumps go to CSV (``nearmiss consolidate --csv``), never here.
Every piece of text from a log (themes, refs, action text, names) is written
with ``write_string`` (:func:`workbook_templates.text_safety.write_text`, or :func:`.xlsx.write_value`)
under the safe workbook options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from workbook_templates.codelists import CODE_LISTS
from workbook_templates.rules import RULES_BY_ID
from workbook_templates.text_safety import write_text

from .xlsx import (
    MDC_COLOURS, formats, new_workbook, page_setup, plain_signal, sheet_name, stripped_text, text_lines, write_value,
)

UNIT_WORDS = {"occupied_bed_days": "occupied bed days", "care_hours": "delivered care hours"}
UNIT_SHORT = {"occupied_bed_days": "bed days", "care_hours": "care hours"}
SETTING_WORDS = {"care_home": "Care home", "homecare": "Homecare", "supported_living": "Supported living",
                 "complex_care_at_home": "Complex care at home"}
POINT_WORDS = {"common_cause": "common cause", "special_cause_improvement": "improvement",
               "special_cause_concern": "concern", "special_cause_neutral_high": "signal (high)",
               "special_cause_neutral_low": "signal (low)"}
SIGNAL_WORDS = {"special_cause_improvement": "Improvement", "special_cause_concern": "Concern",
                "special_cause_neutral_high": "Signal (higher)", "special_cause_neutral_low": "Signal (lower)",
                "common_cause": "No signal", None: "No data"}
SPC_COLUMNS = ["Month", "Value", "Mean", "Lower limit", "Upper limit", "Point"]
FOOTER = "Internal governance summary: counts and refs only, no personal details"
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


FULL_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
               "November", "December")
SHORT_SHEET = {"all_reports": "All reports", "near_misses": "Near misses", "near_miss_share": "Near-miss share",
               "incidents_with_harm": "Incidents with harm", "falls_with_harm": "Falls with harm",
               "medication_errors_reached": "Medication errors", "overdue_actions": "Overdue actions",
               "actions_on_time": "Actions on time"}


def _day_words(iso: str) -> str:
    d = pd.Timestamp(iso)
    return f"{d.day} {FULL_MONTHS[d.month - 1]} {d.year}"


def _spc_sheet_title(m: Mapping[str, Any]) -> str:
    """A short sheet name for a measure's chart: known short names, else the label cut at a word."""
    short = SHORT_SHEET.get(m["name"])
    if short is None:
        words, short = _label(m["label"]).split(" "), ""
        for word in words:
            if len(short) + len(word) + 1 > 26:
                break
            short = f"{short} {word}".strip()
    return f"SPC {short}"


def _note(ws, fmt, row: int, text: str, last_col: int) -> None:
    """An italic note across the table's width (merged, wrapped)."""
    if last_col > 0:
        ws.merge_range(row, 0, row, last_col, "", fmt["note"])
    write_text(ws, row, 0, text, fmt["note"])


def _month(text: str | None) -> pd.Timestamp | None:
    return None if not text else pd.Timestamp(f"{text}-01")


def _month_word(text: str | None) -> str:
    m = _month(text)
    return "" if m is None else f"{MONTH_NAMES[m.month - 1]} {m.year}"


def _nsum(values: Sequence) -> float:
    return float(sum(v for v in values if v is not None))


def _pooled_rate(rates: Mapping[str, Any], measure: str, months: slice = slice(None)) -> float | None:
    """sum(count) / sum(exposure) x 1,000 over the months with both, from a summary's monthly rates."""
    values = rates["values"].get(measure)
    if values is None:
        return None
    pairs = [(r, e) for r, e in zip(values[months], rates["exposure"][months]) if r is not None and e]
    exposure = sum(e for _, e in pairs)
    if not exposure:
        return None
    return sum(r * e / rates["per"] for r, e in pairs) / exposure * rates["per"]


def _share(num: float, den: float, scale: float = 1.0) -> float | None:
    return None if not den else num / den * scale


def _label(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- figures from the summary ------------------------------------------------------------------

def headline(block: Mapping[str, Any], months: slice = slice(None)) -> list[tuple[str, Any, str]]:
    """(figure, value, kind) rows of one summary block over ``months`` (a slice of the month lists)."""
    rep = block["reports"]
    near, inc = _nsum(rep["near_misses"][months]), _nsum(rep["incidents"][months])
    rows: list[tuple[str, Any, str]] = [
        ("Reports (near misses and incidents)", _nsum(rep["all_reports"][months]), "count"),
        ("Near misses", near, "count"),
        ("Incidents", inc, "count"),
        ("Near-miss share of reports", _share(near, near + inc), "share"),
        ("Incidents with harm (low harm or worse)", _nsum(rep["incidents_with_harm"][months]), "count"),
    ]
    for group in block["rates"]:
        unit = UNIT_WORDS.get(group["unit"], group["unit"])
        rows.append((f"Reports per 1,000 {unit}", _pooled_rate(group, "all_reports", months), "rate"))
        rows.append((f"Incidents with harm per 1,000 {unit}", _pooled_rate(group, "incidents_with_harm", months),
                     "rate"))
    monthly = block["actions"]["monthly"]
    rows += [
        ("Actions raised", _nsum(monthly["opened"][months]), "count"),
        ("Actions completed", _nsum(monthly["done"][months]), "count"),
        ("Actions completed by their due date (%)",
         _share(_nsum(monthly["done_by_due_date"][months]), _nsum(monthly["due_outcome_known"][months]), 100.0),
         "percent"),
    ]
    return rows


def _now_rows(block: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    now = block["actions"]["now"]
    return [("Actions open or in progress now", now["open"] + now["in_progress"], "count"),
            ("Actions overdue now", now["overdue"], "count")]


def _quality_counts(findings: pd.DataFrame | None, site: str | None = None) -> dict[str, int]:
    if findings is None or not len(findings):
        return {"error": 0, "warning": 0}
    rows = findings if site is None else findings[findings["site_code"].astype(str) == site]
    counts = rows["severity"].astype(str).value_counts()
    return {"error": int(counts.get("error", 0)), "warning": int(counts.get("warning", 0))}


def _quality_counts_by_site(findings: pd.DataFrame | None) -> dict[str, dict[str, int]]:
    """``_quality_counts(findings, site)`` of every site at once (a site without findings is left out)."""
    if findings is None or not len(findings):
        return {}
    pairs = pd.DataFrame({"site": findings["site_code"].astype(str), "severity": findings["severity"].astype(str)})
    counts = pairs.value_counts()
    return {site: {"error": int(counts.get((site, "error"), 0)), "warning": int(counts.get((site, "warning"), 0))}
            for site in pairs["site"].unique()}


# --- writing -----------------------------------------------------------------------------------

def write_governance(summary: Mapping[str, Any], path: str | Path, *, incidents: pd.DataFrame | None = None,
                     actions: pd.DataFrame | None = None, findings: pd.DataFrame | None = None,
                     unreadable: Sequence[tuple[str, str]] = (), submissions: Mapping[str, Mapping] | None = None,
                     area: str = "All sites", title: str = "Governance summary") -> Path:
    """Write the governance summary workbook to ``path``.

    - ``summary``: :func:`addin.trends.area_summary` (or ``site_summary``) output;
    - ``incidents``/``actions``: the frames it was made from (with ``site_code``),
      for the themes-by-category table and the overdue actions list;
    - ``findings``: one row per validation finding with at least ``site_code``,
      ``rule`` and ``severity`` (e.g. ``addin.validate.findings_frame`` plus the site);
    - ``unreadable``: (file, reason) of the files that could not be read;
    - ``submissions``: site_code -> {"file": name, "saved": datetime} shown per site.
    """
    path = Path(path)
    blocks = _as_area(summary)
    months = list(summary["months"])
    today = _day_words(str(summary["today"]))
    span = f"{_month_word(months[0])} to {_month_word(months[-1])}" if months else "no months"
    wb = new_workbook(path, title, f"nearmiss governance summary as at {today}")
    fmt = formats(wb)
    taken: set[str] = set()
    names = {key: sheet_name(key, taken) for key in ("Summary", "Sites")}
    km = summary.get("key_measures", [])
    spc_names = {m["name"]: sheet_name(_spc_sheet_title(m), taken) for m in km}
    for key in ("Overdue actions", "Themes", "Data quality"):
        names[key] = sheet_name(key, taken)

    ws_summary = wb.add_worksheet(names["Summary"])
    ws_sites = wb.add_worksheet(names["Sites"])
    spc_sheets = {name: wb.add_worksheet(sheet) for name, sheet in spc_names.items()}
    ws_overdue = wb.add_worksheet(names["Overdue actions"])
    ws_themes = wb.add_worksheet(names["Themes"])
    ws_quality = wb.add_worksheet(names["Data quality"])

    _write_summary(ws_summary, fmt, summary, blocks, findings, unreadable, spc_names, area, title, span, today)
    _write_sites(ws_sites, fmt, summary, findings, submissions or {}, area, span, today)
    for m in km:
        _write_spc(wb, spc_sheets[m["name"]], fmt, m, area, today)
    _write_overdue(ws_overdue, fmt, actions, summary, today)
    _write_themes(ws_themes, fmt, summary, incidents, span, today)
    _write_quality(ws_quality, fmt, summary, findings, unreadable, today)
    ws_summary.activate()
    wb.close()
    return path


def _as_area(summary: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Site code -> block; an area summary's per_site, or the one site of a site summary."""
    if summary.get("scope") == "site":
        return {summary["site"]["site_code"] or "site": summary}
    return dict(summary.get("per_site", {}))


def _sites_info(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return summary["sites"] if summary.get("scope") != "site" else [summary["site"]]


def _title(ws, fmt, row: int, title: str, subtitle: str) -> int:
    write_text(ws, row, 0, title, fmt["title"])
    ws.set_row(row, 24)
    write_text(ws, row + 1, 0, subtitle, fmt["subtitle"])
    return row + 3


def _table(ws, fmt, row: int, headers: list[str], rows: list[list[Any]], kinds: list[str], *,
           total_last: bool = False, widths: list[float] | None = None) -> int:
    """Header row plus body rows; returns the row after the table."""
    for j, h in enumerate(headers):
        write_text(ws, row, j, h, fmt["header"] if kinds[j] in ("text", "date", "month") else fmt["header_num"])
    if widths:
        ws.set_row(row, 15 + 12 * (max(text_lines(h, w) for h, w in zip(headers, widths)) - 1))
    row += 1
    for i, values in enumerate(rows):
        total = total_last and i == len(rows) - 1
        for j, (value, kind) in enumerate(zip(values, kinds)):
            write_value(ws, row, j, value, _format(fmt, kind, total))
        row += 1
    return row


def _format(fmt, kind: str, total: bool = False):
    if kind == "text":
        return fmt["total_label"] if total else fmt["cell_text"]
    if kind in ("rate", "percent"):
        return fmt[f"total_{kind}"] if total else fmt[kind]
    if kind == "count":
        return fmt["total_count"] if total else fmt["count"]
    return fmt[kind]


def _write_summary(ws, fmt, summary, blocks, findings, unreadable, spc_names, area, title, span, today) -> None:
    ws.set_column(0, 0, 46)
    ws.set_column(1, 2, 18)
    ws.set_column(3, 3, 16)
    ws.set_column(4, 4, 70)
    months = summary["months"]
    sites = _sites_info(summary)
    row = _title(ws, fmt, 0, title, f"{area}: {len(sites)} site(s), {span}; figures as at {today}")
    write_text(ws, row, 0, "Headline figures", fmt["h2"])
    row += 1
    latest = slice(len(months) - 1, len(months)) if months else slice(0, 0)
    all_rows = headline(summary)
    latest_rows = headline(summary, latest)
    body = [[name, value, latest_value] for (name, value, _), (_, latest_value, _) in zip(all_rows, latest_rows)]
    kinds_by_row = [kind for _, _, kind in all_rows]
    body += [[name, value, None] for name, value, _ in _now_rows(summary)]
    kinds_by_row += ["count", "count"]
    quality = _quality_counts(findings)
    body += [["Data quality errors (findings)", quality["error"], None],
             ["Data quality warnings (findings)", quality["warning"], None],
             ["Files that could not be read", len(unreadable), None],
             ["Reports left out: no date, or outside the months", summary["reports"]["undated"]
              + summary["reports"]["outside_months"], None]]
    kinds_by_row += ["count"] * 4
    headers = ["Figure", f"All months ({span})", f"Latest month ({_month_word(months[-1]) if months else ''})"]
    for j, h in enumerate(headers):
        write_text(ws, row, j, h, fmt["header"] if j == 0 else fmt["header_num"])
    ws.set_row(row, 28)
    first = row + 1
    row += 1
    for values, kind in zip(body, kinds_by_row):
        write_text(ws, row, 0, values[0], fmt["key"])
        for j in (1, 2):
            write_value(ws, row, j, values[j], _format(fmt, kind))
        row += 1
    _note(ws, fmt, row, "Actions now and data quality are as at the date of the summary, not per month.", 2)
    row += 2
    write_text(ws, row, 0, "Key measures: statistical process control", fmt["h2"])
    row += 1
    headers = ["Measure", "Latest month", "Latest value", "Signal", "What the chart shows"]
    for j, h in enumerate(headers):
        write_text(ws, row, j, h, fmt["header_num"] if j == 2 else fmt["header"])
    row += 1
    for m in summary.get("key_measures", []):
        sheet = spc_names[m["name"]]
        ws.write_url(row, 0, f"internal:'{sheet}'!A1", fmt["key"], string=_label(m["label"]),
                     tip="Open the chart")
        write_value(ws, row, 1, _month_word(m["latest_month"]), fmt["cell_text"])
        write_value(ws, row, 2, m["latest_value"], _value_format(fmt, m["kind"]))
        signal = SIGNAL_WORDS.get(m["latest_point_type"], "No data")
        write_value(ws, row, 3, signal, {"Concern": fmt["concern"], "Improvement": fmt["improvement"]}.get(
            signal, fmt["cell_text"]))
        words = _signal_words(m, verdict=False)
        write_value(ws, row, 4, words, fmt["cell_text"])
        ws.set_row(row, 15 + 12 * (text_lines(words, 70) - 1))
        row += 1
    _note(ws, fmt, row, "Making Data Count XmR charts of the area's monthly values; the signal is the latest "
                        "month's. Open a measure for its chart.", 4)
    ws.freeze_panes(first, 0)
    page_setup(ws, title=title, footer_left=FOOTER, header_right=f"As at {today}")


def _signal_words(m: Mapping[str, Any], *, verdict: bool = True) -> str:
    """The signal sentence without the measure's name (the row or sheet already names it)."""
    return plain_signal(m["signal"], verdict=verdict)


def _value_format(fmt, kind: str):
    return {"share": fmt["share"], "percent": fmt["percent"], "rate": fmt["rate"]}.get(kind, fmt["number"])


def _write_sites(ws, fmt, summary, findings, submissions, area, span, today) -> None:
    headers = ["Site code", "Site name", "Setting", "Reports", "Near misses", "Near-miss share",
               "Incidents with harm", "Reports per 1,000", "Per 1,000", "Actions open", "Overdue now",
               "On time (%)", "Errors", "Warnings", "Source file", "File saved"]
    kinds = ["text", "text", "text", "count", "count", "share", "count", "rate", "text", "count", "count",
             "percent", "count", "count", "text", "date"]
    widths = [9, 24, 14, 9, 9, 10, 10, 10, 11, 9, 9, 9, 8, 9, 24, 11]
    for j, w in enumerate(widths):
        ws.set_column(j, j, w)
    row = _title(ws, fmt, 0, "Sites", f"{area}: {span}; actions and data quality as at {today}")
    rows = []
    per_site = summary.get("per_site", {}) if summary.get("scope") != "site" else {
        summary["site"]["site_code"]: summary}
    quality = _quality_counts_by_site(findings)
    for info in _sites_info(summary):
        code = info["site_code"]
        block = per_site[code]
        sub = submissions.get(code, {})
        rows.append(_site_row(code, info.get("site_name"), SETTING_WORDS.get(info.get("setting"),
                                                                             info.get("setting")),
                              block, quality.get(str(code), {"error": 0, "warning": 0}), sub.get("file"),
                              sub.get("saved")))
    if summary.get("scope") != "site":
        rows.append(_site_row("All", area, "", summary, _quality_counts(findings), None, None))
    header_row = row
    row = _table(ws, fmt, row, headers, rows, kinds, total_last=summary.get("scope") != "site", widths=widths)
    _note(ws, fmt, row, "Rates are per 1,000 occupied bed days (care homes) or delivered care hours (other "
                        "settings); the area row gives a rate only when every site uses the same unit.",
          len(headers) - 1)
    ws.freeze_panes(header_row + 1, 2)
    page_setup(ws, title="Sites", footer_left=FOOTER, header_right=f"As at {today}",
               repeat_rows=(header_row, header_row))


def _site_row(code, name, setting, block, quality, file, saved) -> list[Any]:
    rep = block["reports"]
    near, inc = _nsum(rep["near_misses"]), _nsum(rep["incidents"])
    rates = block["rates"]
    rate, unit = None, None
    if len(rates) == 1:
        rate = _pooled_rate(rates[0], "all_reports")
        unit = UNIT_SHORT.get(rates[0]["unit"], rates[0]["unit"])
    elif len(rates) > 1:
        unit = "mixed units"
    now = block["actions"]["now"]
    return [code, name, setting, rep["total"], near, _share(near, near + inc), _nsum(rep["incidents_with_harm"]),
            rate, unit, now["open"] + now["in_progress"], now["overdue"], block["actions"]["pct_done_by_due_date"],
            quality["error"], quality["warning"], file, saved]


# The special-cause columns of an SPC sheet, by improvement direction: (heading, point types, colour key).
SIGNAL_COLUMNS = {
    "directional": [("Improvement", ("special_cause_improvement",), "improvement"),
                    ("Concern", ("special_cause_concern",), "concern")],
    "neutral": [("Signal", ("special_cause_neutral_high", "special_cause_neutral_low"), "neutral")],
}
BOUNDS = {"count": (0.0, None), "rate": (0.0, None), "percent": (0.0, 100.0), "share": (0.0, 1.0)}


def _write_spc(wb, ws, fmt, m: Mapping[str, Any], area: str, today: str) -> None:
    """The month table of one key measure and its native line chart.

    Columns: Month, Value, Mean, Lower limit, Upper limit, Point, then the value again
    in the column of its kind of special cause (Improvement / Concern, or Signal for a
    measure with no preferred direction): those columns are the chart's coloured points.
    The chart's value axis stops at what the measure can reach (0, and 100% for
    percentages), so a lower limit below 0 is in the table but not drawn.
    """
    label = _label(m["label"])
    signals = SIGNAL_COLUMNS["neutral" if m["improvement"] == "neutral" else "directional"]
    headings = [*SPC_COLUMNS[:6], *[h for h, _, _ in signals]]
    widths = [11, 11, 11, 11, 11, 16, 12, 12]
    for j, w in enumerate(widths):
        ws.set_column(j, j, w)
    last_col = 7
    write_text(ws, 0, 0, label, fmt["title"])
    ws.set_row(0, 24)
    direction = {"increase": "higher is better", "decrease": "lower is better",
                 "neutral": "no preferred direction"}[m["improvement"]]
    write_text(ws, 1, 0, f"{area}: monthly values with Making Data Count XmR limits ({direction}).",
                    fmt["subtitle"])
    caption = _signal_words(m) + (". Trial limits: fewer than 12 points." if m["trial_limits"]
                                  and "trial limits" not in m["signal"] else "")
    latest = _month_word(m["latest_month"])
    caption = f"Latest month ({latest}): {caption[:1].lower() + caption[1:]}" if latest else caption
    ws.merge_range(2, 0, 2, last_col, "", fmt["caption"])
    write_value(ws, 2, 0, caption, fmt["caption"])
    ws.set_row(2, 15 + 14 * (text_lines(caption, sum(widths)) - 1))
    chart_row, table_row = 4, 26
    write_text(ws, table_row - 1, 0, "Monthly values", fmt["h2"])
    value_fmt = _value_format(fmt, m["kind"])
    limit_fmt = fmt["rate"] if m["kind"] in ("count", "percent") else value_fmt  # limits: 2 decimals
    for j, h in enumerate(headings):
        write_text(ws, table_row, j, h, fmt["header"] if j in (0, 5) else fmt["header_num"])
    spc = m["spc"]
    n = len(m["months"])
    for i in range(n):
        r = table_row + 1 + i
        point = spc["point_type"][i]
        value = m["values"][i]
        write_value(ws, r, 0, _month(m["months"][i]), fmt["month"])
        write_value(ws, r, 1, value, value_fmt)
        for j, v in enumerate((spc["mean"][i], spc["lpl"][i], spc["upl"][i]), start=2):
            write_value(ws, r, j, v, limit_fmt)
        write_value(ws, r, 5, POINT_WORDS.get(point, "") if point else "", fmt["cell_text"])
        for j, (_, kinds, _) in enumerate(signals, start=6):
            write_value(ws, r, j, value if point in kinds else None, value_fmt)
    last = table_row + n
    sheet = ws.get_name()
    chart = wb.add_chart({"type": "line"})
    cats = [sheet, table_row + 1, 0, last, 0]

    def series(col: int, **style) -> None:
        chart.add_series({"name": [sheet, table_row, col], "categories": cats,
                          "values": [sheet, table_row + 1, col, last, col], **style})

    grey, black = MDC_COLOURS["common"], "#000000"
    series(1, line={"color": grey, "width": 1.75},
           marker={"type": "circle", "size": 5, "fill": {"color": grey}, "border": {"color": grey}})
    series(2, line={"color": black, "width": 1}, marker={"type": "none"})
    for col in (3, 4):
        series(col, line={"color": grey, "width": 1, "dash_type": "dash"}, marker={"type": "none"})
    for col, (_, _, key) in enumerate(signals, start=6):
        colour = MDC_COLOURS[key]
        series(col, line={"none": True},
               marker={"type": "circle", "size": 7, "fill": {"color": colour}, "border": {"color": colour}})
    chart.set_title({"name": label, "name_font": {"size": 12, "bold": True}})
    chart.set_x_axis({"date_axis": True, "num_format": "mmm yy", "major_unit": 3, "major_unit_type": "months",
                      "num_font": {"rotation": -45, "size": 8}, "label_position": "low"})
    y_axis = {"num_format": {"share": "0%", "percent": "0", "rate": "0.0"}.get(m["kind"], "0"),
              "major_gridlines": {"visible": True, "line": {"color": "#E7E6E6"}}}
    low, high = BOUNDS.get(m["kind"], (None, None))
    values = [v for v in (*m["values"], *spc["lpl"], *spc["upl"]) if v is not None]
    if low is not None and values and min(values) < low:
        y_axis["min"] = low
    if high is not None and values and max(values) > high:
        y_axis["max"] = high
    chart.set_y_axis(y_axis)
    chart.set_legend({"position": "bottom"})
    chart.show_blanks_as("gap")
    chart.set_size({"width": 900, "height": 400})
    ws.insert_chart(chart_row, 0, chart, {"x_offset": 4, "y_offset": 4, "object_position": 1})
    words = " and ".join(h for h, _, _ in signals)
    note = (f"{words} repeat the value of the months where a special-cause rule fired (the chart's coloured "
            "points).")
    if "min" in y_axis or "max" in y_axis:
        note += " A limit beyond what the measure can reach (below 0, or above 100%) is not drawn."
    _note(ws, fmt, last + 1, note, last_col)
    page_setup(ws, title=label, footer_left=FOOTER, header_right=f"As at {today}")
    ws.repeat_rows(table_row, table_row)


def _write_overdue(ws, fmt, actions: pd.DataFrame | None, summary, today: str) -> None:
    headers = ["Site", "Action ref", "Incident refs", "Action type", "Owner (role)", "Raised", "Due",
               "Days overdue", "Status", "Action"]
    kinds = ["text", "text", "text", "text", "text", "date", "date", "count", "text", "text"]
    widths = [8, 13, 20, 14, 18, 11, 11, 9, 11, 60]
    for j, w in enumerate(widths):
        ws.set_column(j, j, w)
    row = _title(ws, fmt, 0, "Overdue actions", f"Open or in progress and past the due date on {today}")
    if actions is None:
        write_text(ws, row, 0, "No action rows were given to this report.", fmt["note"])
        page_setup(ws, title="Overdue actions", footer_left=FOOTER, header_right=f"As at {today}")
        return
    today_ts = pd.Timestamp(today)
    actions = actions.reset_index(drop=True)
    status = stripped_text(actions["status"])
    due = pd.to_datetime(actions["due_date"], errors="coerce")
    late = actions[(status.isin(["open", "in_progress"]) & (due < today_ts)).to_numpy()].copy()
    late["_days"] = (today_ts - pd.to_datetime(late["due_date"])).dt.days
    late = late.sort_values(["_days", "site_code" if "site_code" in late else "action_ref"],
                            ascending=[False, True])
    rows = [[r.get("site_code"), r.get("action_ref"), r.get("incident_refs"),
             CODE_LISTS["action_type"].get(r.get("action_type"), r.get("action_type")), r.get("owner_role"),
             r.get("raised_date"), r.get("due_date"), r["_days"],
             CODE_LISTS["action_status"].get(r.get("status"), r.get("status")).split(":")[0], r.get("action")]
            for r in late.to_dict("records")]
    header_row = row
    if rows:
        row = _table(ws, fmt, row, headers, rows, kinds)
        _note(ws, fmt, row, f"{len(rows)} overdue action(s), longest overdue first.", 4)
    else:
        write_text(ws, row, 0, "No overdue actions.", fmt["note"])
    ws.freeze_panes(header_row + 1, 2)
    page_setup(ws, title="Overdue actions", footer_left=FOOTER, header_right=f"As at {today}",
               repeat_rows=(header_row, header_row))


def _write_themes(ws, fmt, summary, incidents: pd.DataFrame | None, span: str, today: str) -> None:
    per_site = _as_area(summary)
    codes = list(per_site)
    ws.set_column(0, 0, 30)
    ws.set_column(1, len(codes) + 1, 11)
    row = _title(ws, fmt, 0, "Learning themes", f"Closed reviews of reports that occurred {span}, by theme tag")
    area = summary.get("learning_themes", [])
    counts = {code: {t["theme"]: t["count"] for t in per_site[code]["learning_themes"]} for code in codes}
    rows = [[t["theme"], *[counts[c].get(t["theme"], 0) for c in codes], t["count"]] for t in area]
    rows.append(["Total", *[sum(counts[c].values()) for c in codes], sum(t["count"] for t in area)])
    header_row = row
    row = _table(ws, fmt, row, ["Learning theme", *codes, "All sites"], rows,
                 ["text", *["count"] * (len(codes) + 1)], total_last=True)
    row += 1
    if incidents is not None and len(incidents):
        row = _themes_by_category(ws, fmt, incidents, summary, row)
    ws.freeze_panes(header_row + 1, 1)
    page_setup(ws, title="Learning themes", footer_left=FOOTER, header_right=f"As at {today}")


def _themes_by_category(ws, fmt, incidents: pd.DataFrame, summary, row: int) -> int:
    """Theme x category of the closed incidents in the summary's months (same rule as the trends' themes)."""
    months = summary["months"]
    if not months:
        return row
    incidents = incidents.reset_index(drop=True)
    first, last = _month(months[0]), _month(months[-1]) + pd.offsets.MonthEnd(0)
    occurred = pd.to_datetime(incidents["occurred_at"], errors="coerce")

    theme = stripped_text(incidents["learning_theme"]).str.lower()
    keep = ((stripped_text(incidents["status"]) == "closed") & (theme != "") & (occurred >= first)
            & (occurred < last + pd.Timedelta(days=1))).to_numpy()
    if not keep.any():
        return row
    category = stripped_text(incidents["category"])[keep]
    category = category.where(category.isin(list(CODE_LISTS["category"])), "other value")
    table = pd.crosstab(theme[keep], category)
    cats = [c for c in [*CODE_LISTS["category"], "other value"] if c in table.columns]
    order = [t["theme"] for t in summary.get("learning_themes", []) if t["theme"] in table.index]
    table = table.reindex(index=order + [t for t in table.index if t not in order], columns=cats, fill_value=0)
    write_text(ws, row, 0, "Themes by category", fmt["h2"])
    row += 1
    words = [_label(c.replace("_", " ")) for c in cats]
    rows = [[t, *table.loc[t].tolist()] for t in table.index]
    return _table(ws, fmt, row, ["Learning theme", *words], rows, ["text", *["count"] * len(cats)],
                  widths=[30, *[11] * len(cats)])


def _write_quality(ws, fmt, summary, findings: pd.DataFrame | None, unreadable, today: str) -> None:
    codes = [info["site_code"] for info in _sites_info(summary)]
    if findings is not None and len(findings):
        codes += sorted(set(findings["site_code"].astype(str)) - set(codes))
    ws.set_column(0, 0, 9)
    ws.set_column(1, 1, 10)
    ws.set_column(2, 2, 60)
    ws.set_column(3, 3 + len(codes), 10)
    row = _title(ws, fmt, 0, "Data quality", f"Validation findings by rule and site, as at {today}")
    header_row = row
    if findings is not None and len(findings):
        table = pd.crosstab([findings["rule"].astype(str), findings["severity"].astype(str)],
                            findings["site_code"].astype(str))
        table = table.reindex(columns=codes, fill_value=0)
        table = table.sort_index(level=[1, 0], key=lambda idx: idx.map(
            lambda v: {"error": 0, "warning": 1}.get(v, 2) if v in ("error", "warning") else v))
        rows = [[rule, severity, _rule_words(rule), *table.loc[(rule, severity)].tolist(),
                 int(table.loc[(rule, severity)].sum())] for rule, severity in table.index]
        rows.append(["Total", "", "", *table.sum(axis=0).astype(int).tolist(), int(table.to_numpy().sum())])
        row = _table(ws, fmt, row, ["Rule", "Severity", "What it checks", *codes, "All sites"], rows,
                     ["text", "text", "text", *["count"] * (len(codes) + 1)], total_last=True)
    else:
        write_text(ws, row, 0, "No findings: every workbook passed every check.", fmt["note"])
        row += 1
    row += 1
    write_text(ws, row, 0, "Files that could not be read", fmt["h2"])
    row += 1
    if unreadable:
        row = _table(ws, fmt, row, ["File", "", "Problem"], [[f, "", why] for f, why in unreadable],
                     ["text", "text", "text"])
    else:
        write_text(ws, row, 0, "None: every file was read.", fmt["note"])
    ws.freeze_panes(header_row + 1, 0)
    page_setup(ws, title="Data quality", footer_left=FOOTER, header_right=f"As at {today}",
               repeat_rows=(header_row, header_row))


def _rule_words(rule_id: str) -> str:
    rule = RULES_BY_ID.get(rule_id)
    if rule is None:
        return ""
    field = rule.field if rule.field != "*" else "a field"
    return rule.message.replace("{label}", field.replace("_", " ")).replace("'{value}'", "the value") \
        .replace("{value}", "...")


__all__ = ["write_governance", "headline"]
