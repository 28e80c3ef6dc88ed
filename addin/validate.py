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
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from workbook_templates.contract import ACTIONS, INCIDENTS, SITE_FIELDS, Field
from workbook_templates.records import SiteRecords
from workbook_templates.rules import RULES_BY_ID

from .checks import CHECKS, FIELDS, SITE, Frames, Hit, today_stamp
from .findings import Finding, findings_of
from .reader import (
    FIELDS_BY_KIND, ReadResult, SheetLayout, default_layout, normalise_column, normalise_frame, read_workbook,
)

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
            for _site, found in _findings_by_site(rule_id, hit, frames, [layout], [file]):
                findings += found
    return sort_findings(findings, layout=layout)


def validate_results(results: Sequence[ReadResult], *, today: dt.date | None = None) -> list[list[Finding]]:
    """``validate_result`` of many workbooks at once, one list of findings per result (same order).

    The records of every workbook are stacked (each row keeps its workbook in ``_site``) and
    every rule runs ONCE over all of them: the checks are vectorised, so 200 sites cost about
    what one large site costs, not 200 times a small one.  Rules that compare rows (duplicate
    refs, refs between the log and the actions, exposure months) compare rows of one workbook
    only, so each list equals what ``validate_result`` gives for that workbook alone.
    """
    results = list(results)
    for result in results:
        if not result.ok:
            raise ValueError(f"{result.file} could not be read: {result.error}")
    if not results:
        return []
    layouts = [{**default_layout(), **(r.layout or {})} for r in results]
    frames = _stacked_frames([r.records for r in results], today)
    own: list[list[Finding]] = [[] for _ in results]
    for rule_id in CHECKS:
        for hit in CHECKS[rule_id](frames):
            for i, found in _findings_by_site(rule_id, hit, frames, layouts, [r.file for r in results]):
                own[i] += found
    return [sort_findings(r.findings + own[i], layout=layouts[i]) for i, r in enumerate(results)]


def _stacked_frames(records: Sequence[SiteRecords], today) -> Frames:
    """The frames of many workbooks as one: each table stacked with ``_site``, the site frame one row each."""
    def table(kind: str) -> pd.DataFrame:
        parts = []
        for rec in records:
            frame = getattr(rec, kind)
            frame = frame if frame is not None else pd.DataFrame()
            if "_row" not in frame or frame["_row"].isna().all():
                frame = frame.assign(_row=pd.array(np.arange(len(frame)) + 2, dtype="Int64"))
            parts.append(frame)
        if not parts:
            return _normalised(pd.DataFrame(), kind)
        stacked = pd.concat(parts, ignore_index=True)
        stacked[SITE] = np.repeat(np.arange(len(parts), dtype=np.int64), [len(part) for part in parts])
        for name in stacked.columns:  # a column only some workbooks have is missing (not "") elsewhere
            if name.startswith("_raw_") and stacked[name].dtype == object:
                stacked[name] = stacked[name].astype("str")
        return _normalised(stacked, kind)

    site_frame = site_frame_of([rec.site for rec in records]).assign(_site=np.arange(len(records), dtype=np.int64))
    return Frames(incidents=table("incidents"), actions=table("actions"), site=site_frame,
                  exposure=table("exposure"), today=today_stamp(today))


def site_frame_of(sites: Sequence[dict | None]) -> pd.DataFrame:
    """The Site sheets' key/value pairs as a frame, one row each, as ``normalise_frame`` types them.

    A text field whose values are all text (or missing) goes to ``normalise_frame`` as pandas
    str, and a whole-number field whose values are all ints as Int64: it then takes its fast
    paths (a few Arrow calls instead of type inference over objects), with the same result.
    """
    rows = [dict(s or {}) for s in sites]
    plain = _plain_site_frame(rows)
    if plain is not None:
        return plain
    columns: dict[str, pd.Series] = {}
    index = pd.RangeIndex(len(rows))
    for name in dict.fromkeys(name for row in rows for name in row):  # as pd.DataFrame(rows) orders them
        values = [row.get(name, np.nan) for row in rows]
        f = _SITE_FIELD.get(name)
        given = [None if _missing(v) else v for v in values]
        dtype = _plain_dtype(f, given) if f is not None else None
        columns[name] = (pd.Series(given, index=index, dtype=dtype) if dtype is not None
                         else pd.Series(values, index=index, dtype=object))
    site = pd.DataFrame(columns, index=index, copy=False)
    return normalise_frame(site, "site")


_NOT_TEXT_TYPES = ("date", "time", "int", "number")  # every other type is normalised as text
_SITE_FIELD = {f.name: f for f in SITE_FIELDS}


def _plain_dtype(f: Field, given: list) -> str | None:
    """The dtype ``normalise_frame`` takes its fast path for, if ``given`` (None: missing) allow it, else None.

    str for a text field whose values are all text, Int64 for a whole-number field whose values
    are all ints (within float precision).
    """
    if f.type == "int":
        return "Int64" if all(v is None or (type(v) is int and abs(v) < 2**53) for v in given) else None
    if f.type not in _NOT_TEXT_TYPES:
        return "str" if all(v is None or type(v) is str for v in given) else None
    return None


def _plain_site_frame(rows: list[dict]) -> pd.DataFrame | None:
    """``site_frame_of`` of Site sheets as the reader gives them, else None (``normalise_frame`` types those).

    Plain: every key a contract field, every value given text (a whole number for a whole-number
    field, nothing for a date or decimal one).  ``normalise_frame`` costs ~0.3 ms a field whatever
    the rows; text normalises value by value, the same for every field that is not a code, so
    those fields' values are normalised as one column, and each other field on its own.
    """
    fields = FIELDS_BY_KIND["site"]
    values = {f.name: [None if _missing(row.get(f.name)) else row[f.name] for row in rows] for f in fields}
    if any(name not in values for row in rows for name in row):
        return None  # a _raw_ or unknown key: normalise_frame merges or keeps it
    dtypes = {f.name: _plain_dtype(f, values[f.name]) for f in fields}
    if any(dtypes[f.name] is None and any(v is not None for v in values[f.name]) for f in fields):
        return None  # a value normalise_frame has to type
    index = pd.RangeIndex(len(rows))
    text_fields = [f for f in fields if f.type not in _NOT_TEXT_TYPES and f.type != "code"]
    joined = pd.Series([v for f in text_fields for v in values[f.name]], dtype="str")
    text = normalise_column(joined, text_fields[0])[0].array if text_fields else None
    columns = {}
    for f in fields:
        if f in text_fields:
            at = text_fields.index(f) * len(rows)
            columns[f.name] = text[at:at + len(rows)]
            continue
        dtype = dtypes[f.name] or object  # None: a date, time or decimal field, all missing
        columns[f.name] = normalise_column(pd.Series(values[f.name], index=index, dtype=dtype), f)[0].array
    return pd.DataFrame(columns, index=index, copy=False)


def _missing(value: object) -> bool:
    return value is None or (type(value) is float and value != value)


def _normalised(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """``normalise_frame`` for records the reader normalised already: types are normalised once.

    When every contract column is already of its contract type (text as str, dates, Int64,
    float64), as the reader leaves them, the frame is taken as it is; otherwise (records built
    by hand, a table the workbook lacks) it is normalised as ``validate_records`` does.
    """
    dtypes = dict(zip(frame.columns, frame.dtypes))
    typed = all(f.name in dtypes and str(dtypes[f.name]) == _CONTRACT_DTYPE.get(f.type, "str")
                for f in FIELDS_BY_KIND[kind])
    return frame if typed else normalise_frame(frame, kind)


_CONTRACT_DTYPE = {"date": "datetime64[us]", "int": "Int64", "number": "float64"}


def _findings_by_site(rule_id: str, hit: Hit, frames: Frames, layouts: list[dict[str, SheetLayout]],
                      files: list[str]) -> list[tuple[int, list[Finding]]]:
    """Finding objects for the rows a hit masks, split by workbook: [(site position, findings)].

    The frames hold one workbook (no ``_site`` column: every row is site 0) or many stacked;
    each site's findings are in row order, as for that workbook alone.  Only the flagged rows
    of the few columns a finding shows are gathered; what every finding of a frame needs
    (its site, ref and Excel row) is taken from arrays made once per frame.
    """
    frame = hit.frame if hit.frame is not None else frames.frame(hit.record)
    positions = np.flatnonzero(_flags(hit.mask, frame.index))
    if not positions.size:
        return []
    shown = _shown(frames, hit.record, frame) if hit.frame is None else _Shown(frame, hit.record)
    sites = shown.sites[positions] if shown.sites is not None else np.zeros(positions.size, dtype=np.int64)
    distinct = np.unique(sites).tolist()
    usable: dict[int, SheetLayout] = {}
    for site in distinct:
        sheet_layout = layouts[site][hit.record]
        if sheet_layout.found and (hit.record == "site" or hit.field in sheet_layout.columns):
            usable[site] = sheet_layout  # a missing sheet or column is left out: NM090/NM092 say so
    if not usable:
        return []
    if len(usable) < len(distinct):
        keep = np.isin(sites, list(usable))
        positions, sites = positions[keep], sites[keep]
    values = _values(hit, frame, positions)
    refs = shown.refs_at(positions)
    label, field = _label(rule_id, hit), hit.field
    if hit.record == "site":
        cells = [usable[site].cell(field) for site in sites.tolist()]
    else:
        letters = {site: sheet_layout.columns.get(field, "") for site, sheet_layout in usable.items()}
        rows = shown.rows[positions].tolist() if shown.rows is not None else [0] * positions.size
        cells = [f"{letters[site]}{row}" if row and letters[site] else ""
                 for site, row in zip(sites.tolist(), rows)]
    return [(site, findings_of(rule_id, label, files[site], usable[site].sheet, _take(cells, at), _take(refs, at),
                               _take(values, at)))
            for site, at in _by_site(sites)]  # each workbook's findings in row order


def _take(items: list, at: slice | list[int]) -> list:
    return items[at] if isinstance(at, slice) else [items[i] for i in at]


def _by_site(sites: np.ndarray) -> list[tuple[int, slice | list[int]]]:
    """Each site in ``sites`` with where its entries are: a slice when they are together (stacked frames
    keep each workbook's rows together and in order), else their positions in order."""
    if sites[0] == sites[-1] and (sites == sites[0]).all():
        return [(int(sites[0]), slice(None))]
    if np.all(sites[1:] >= sites[:-1]):
        starts = np.concatenate([[0], np.flatnonzero(np.diff(sites)) + 1]).tolist()
        stops = starts[1:] + [int(sites.size)]
        return [(int(sites[a]), slice(a, b)) for a, b in zip(starts, stops)]
    groups: dict[int, list[int]] = {}
    for i, site in enumerate(sites.tolist()):
        groups.setdefault(site, []).append(i)
    return list(groups.items())


class _Shown:
    """What a finding shows of each row of a frame: its site, ref ("" when none) and Excel row (0 when none)."""

    def __init__(self, frame: pd.DataFrame, record: str) -> None:
        self.sites = frame[SITE].to_numpy(dtype=np.int64) if SITE in frame else None
        ref_field = REF_FIELD.get(record)
        column = frame[ref_field] if ref_field and ref_field in frame else None
        array = getattr(column.array, "_pa_array", None) if column is not None else None
        if array is not None and (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            self._ref_text, self._refs = array, None  # refs taken at the flagged rows only
        else:
            self._ref_text = None
            self._refs = (np.array(["" if pd.isna(v) else str(v) for v in column.tolist()], dtype=object)
                          if column is not None else None)
        self.rows = _row_numbers(frame["_row"]) if "_row" in frame else None

    def refs_at(self, positions: np.ndarray) -> list[str]:
        if self._ref_text is not None:
            return pc.fill_null(self._ref_text.take(pa.array(positions, type=pa.int64())), "").to_pylist()
        if self._refs is not None:
            return self._refs[positions].tolist()
        return [""] * positions.size


def _shown(frames: Frames, record: str, frame: pd.DataFrame) -> _Shown:
    return frames.cached(("shown", record), lambda: _Shown(frame, record))


def _row_numbers(column: pd.Series) -> np.ndarray:
    """Excel row numbers as int64 (0 where unknown)."""
    if str(column.dtype) == "Int64":
        return column.to_numpy(dtype=np.int64, na_value=0)
    return np.array([0 if v is None or pd.isna(v) else int(v) for v in column.tolist()], dtype=np.int64)


def _flags(mask: np.ndarray | pd.Series, index: pd.Index) -> np.ndarray:
    """A hit's mask as one bool per row of the frame (rows it does not name are not flagged)."""
    if isinstance(mask, np.ndarray):
        if mask.dtype != bool or len(mask) != len(index):
            raise ValueError(f"a hit's mask must be one bool per row, got {mask.dtype} x {len(mask)}")
        return mask
    if mask.dtype == bool and mask.index.equals(index):  # one flag per row, no gaps
        return mask.to_numpy()
    return mask.reindex(index, fill_value=False).fillna(False).astype(bool).to_numpy()


def build_frames(records: SiteRecords, today: dt.date | pd.Timestamp | None = None) -> Frames:
    """The records as the checks read them: normalised, each table with ``_row``, the site as one row."""
    def table(frame: pd.DataFrame | None, kind: str, first_row: int = 2) -> pd.DataFrame:
        frame = frame if frame is not None else pd.DataFrame()
        out = normalise_frame(frame.reset_index(drop=True), kind)
        if "_row" not in out or out["_row"].isna().all():
            out["_row"] = pd.array(np.arange(len(out)) + first_row, dtype="Int64")
        return out

    site_frame = site_frame_of([records.site])
    return Frames(incidents=table(records.incidents, "incidents"), actions=table(records.actions, "actions"),
                  site=site_frame, exposure=table(records.exposure, "exposure"), today=today_stamp(today))


def _label(rule_id: str, hit: Hit) -> str:
    f = FIELDS.get(hit.record, {}).get(hit.field)
    return f.label if f is not None else RULES_BY_ID[rule_id].field


def _values(hit: Hit, frame: pd.DataFrame, positions: np.ndarray) -> list[str]:
    """The value each finding shows, as text: the hit's value, or the cell's own (its raw text if unreadable)."""
    if isinstance(hit.value, np.ndarray):
        return _display_all(hit.value[positions].tolist())
    if isinstance(hit.value, pd.Series):
        if hit.value.index.equals(frame.index):
            return _display_all(hit.value.take(positions).tolist())
        return _display_all(hit.value.reindex(frame.index[positions]).tolist())
    if hit.value is not None:
        return [_display(hit.value)] * positions.size
    own = _cell_values(frame, hit.field, positions)
    raw_name = f"_raw_{hit.field}"
    if raw_name in frame:
        raw = frame[raw_name].take(positions)
        given = raw.notna().to_numpy(dtype=bool)
        if given.any():
            own = [r if g else o for r, g, o in zip(raw.astype(object).tolist(), given.tolist(), own)]
    return _display_all(own)


def _cell_values(frame: pd.DataFrame, name: str, positions: np.ndarray) -> list:
    """The values of ``name`` at ``positions`` (None where the frame lacks the column)."""
    if name not in frame:
        return [None] * positions.size
    column = frame[name]
    array = getattr(column.array, "_pa_array", None)
    if array is not None:
        return array.take(pa.array(positions, type=pa.int64())).to_pylist()
    return column.take(positions).tolist()


def _display_all(values: list) -> list[str]:
    """``_display`` of each value; each distinct (type, value) is shown once."""
    shown: dict = {}
    out = []
    for v in values:
        if type(v) is str:
            out.append(v)
            continue
        try:
            key = (type(v), v)
            text = shown.get(key)
            if text is None:
                text = shown[key] = _display(v)
        except TypeError:  # unhashable
            text = _display(v)
        out.append(text)
    return out


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
