"""Validation: every rule of ``workbook_templates/rules.py`` over a site's records, as findings.

    findings = validate_workbook("oakview.xlsx")          # read + structural + rule findings
    findings = validate_records(records, today=...)       # records from anywhere (converter, synthetic)
    findings = validate_result(read_workbook(...))        # a workbook already read

Each finding points at the real cell: the column the reader found the field in (or the
template's column when the records did not come from a workbook) and the record's
``_row``.  Findings are sorted by sheet (as the workbook orders them: Site, Log,
Actions), row and column.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from workbook_templates.contract import ACTIONS, INCIDENTS
from workbook_templates.records import SiteRecords
from workbook_templates.rules import RULES_BY_ID

from .checks import CHECKS, FIELDS, Frames, Hit, today_stamp
from .findings import Finding, make_finding
from .reader import ReadResult, SheetLayout, default_layout, normalise_frame, read_workbook

REF_FIELD = {"incidents": INCIDENTS.ref_field, "actions": ACTIONS.ref_field}
FINDING_COLUMNS = ["file", "sheet", "cell", "ref", "rule", "severity", "message"]


def validate_workbook(path: str | Path, *, today: dt.date | None = None) -> list[Finding]:
    """Read a workbook and check it: structural findings plus every rule.

    Raises :class:`addin.reader.WorkbookError` when the file cannot be read at all.
    """
    return validate_result(read_workbook(path), today=today)


def validate_result(result: ReadResult, *, today: dt.date | None = None) -> list[Finding]:
    """Findings for a workbook already read: the reader's structural ones and the rules'."""
    if not result.ok:
        raise ValueError(f"{result.file} could not be read: {result.error}")
    findings = validate_records(result.records, today=today, file=result.file, layout=result.layout)
    return sort_findings(result.findings + findings, layout=result.layout)


def validate_records(records: SiteRecords, *, today: dt.date | None = None, file: str = "",
                     layout: dict[str, SheetLayout] | None = None,
                     rules: Iterable[str] | None = None) -> list[Finding]:
    """Findings of every rule (or only ``rules``) over ``records``, normalised here if they are not yet.

    ``layout`` is where the reader found each field (``ReadResult.layout``); without it the
    template's own columns are used and rows without ``_row`` count from Excel row 2.
    """
    layout = {**default_layout(), **(layout or {})}
    frames = build_frames(records, today)
    findings: list[Finding] = []
    for rule_id in (CHECKS if rules is None else list(rules)):
        for hit in CHECKS[rule_id](frames):
            findings += _findings(rule_id, hit, frames, layout, file)
    return sort_findings(findings, layout=layout)


def build_frames(records: SiteRecords, today: dt.date | pd.Timestamp | None = None) -> Frames:
    """The records as the checks read them: normalised, each table with ``_row``, the site as one row."""
    def table(frame: pd.DataFrame | None, kind: str, first_row: int = 2) -> pd.DataFrame:
        frame = frame if frame is not None else pd.DataFrame()
        out = normalise_frame(frame.reset_index(drop=True), kind)
        if "_row" not in out or out["_row"].isna().all():
            out["_row"] = pd.array(np.arange(len(out)) + first_row, dtype="Int64")
        return out

    site = dict(records.site or {})
    site_frame = normalise_frame(pd.DataFrame([{k: v for k, v in site.items()}], dtype=object), "site")
    return Frames(incidents=table(records.incidents, "incidents"), actions=table(records.actions, "actions"),
                  site=site_frame, exposure=table(records.exposure, "exposure"), today=today_stamp(today))


def _findings(rule_id: str, hit: Hit, frames: Frames, layout: dict[str, SheetLayout], file: str) -> list[Finding]:
    """Finding objects for the rows a hit masks (the only per-row step, over flagged rows only)."""
    frame = hit.frame if hit.frame is not None else frames.frame(hit.record)
    mask = hit.mask.reindex(frame.index, fill_value=False).fillna(False).astype(bool)
    if not mask.any():
        return []
    sheet_layout = layout[hit.record]
    if not sheet_layout.found:
        return []  # the sheet is missing: NM090 already says so
    if hit.record != "site" and hit.field not in sheet_layout.columns:
        return []  # the column is missing from the sheet: NM092 already says so
    rows = frame[mask]
    label = _label(rule_id, hit)
    values = _values(hit, rows)
    ref_field = REF_FIELD.get(hit.record)
    refs = rows[ref_field] if ref_field and ref_field in rows else pd.Series("", index=rows.index)
    excel_rows = rows["_row"].tolist() if "_row" in rows else [None] * len(rows)

    def cell(row: object) -> str:
        if hit.record == "site":
            return sheet_layout.cell(hit.field)
        return "" if row is None or pd.isna(row) else sheet_layout.cell(hit.field, int(row))

    return [
        make_finding(rule_id, file=file, sheet=sheet_layout.sheet, cell=cell(r), ref="" if pd.isna(ref) else str(ref),
                     label=label, value=_display(v))
        for r, ref, v in zip(excel_rows, refs.tolist(), values)
    ]


def _label(rule_id: str, hit: Hit) -> str:
    f = FIELDS.get(hit.record, {}).get(hit.field)
    return f.label if f is not None else RULES_BY_ID[rule_id].field


def _values(hit: Hit, rows: pd.DataFrame) -> list:
    if isinstance(hit.value, pd.Series):
        return hit.value.reindex(rows.index).tolist()
    if hit.value is not None:
        return [hit.value] * len(rows)
    own = rows[hit.field] if hit.field in rows else pd.Series(None, index=rows.index, dtype=object)
    raw_name = f"_raw_{hit.field}"
    if raw_name in rows:
        own = rows[raw_name].astype(object).where(rows[raw_name].notna(), own.astype(object))
    return own.tolist()


def _display(value: object) -> str:
    """A value as a care manager would have typed it."""
    if value is None:
        return ""
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return "" if pd.isna(value) else value.strftime("%d/%m/%Y")
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


# --- ordering and tables ---------------------------------------------------------------------------------

_CELL = re.compile(r"^([A-Z]+)(\d+)$")


def _cell_key(cell: str) -> tuple[int, int]:
    m = _CELL.match(cell or "")
    if not m:
        return (0, 0)
    letters, row = m.groups()
    col = 0
    for ch in letters:
        col = col * 26 + ord(ch) - 64
    return int(row), col


def sort_findings(findings: list[Finding], *, layout: dict[str, SheetLayout] | None = None) -> list[Finding]:
    """By file, sheet (workbook level first, then Site, Log, Actions), row, column and rule."""
    layout = layout or default_layout()
    order = {"": 0, layout["site"].sheet: 1, layout["incidents"].sheet: 2, layout["actions"].sheet: 3}
    return sorted(findings, key=lambda f: (f.file, order.get(f.sheet, 4), f.sheet, _cell_key(f.cell), f.rule, f.ref))


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    """Findings as a table: file, sheet, cell, ref, rule, severity, message."""
    return pd.DataFrame([[getattr(f, c) for c in FINDING_COLUMNS] for f in findings], columns=FINDING_COLUMNS)


def counts(findings: list[Finding]) -> dict[str, int]:
    """{"error": n, "warning": m}."""
    out = {"error": 0, "warning": 0}
    for f in findings:
        out[f.severity] = out.get(f.severity, 0) + 1
    return out


__all__ = ["validate_workbook", "validate_result", "validate_records", "build_frames", "findings_frame",
           "sort_findings", "counts"]
