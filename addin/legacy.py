"""Reading managers' own Excel logs: find the header row, the sheets that hold the log, and the columns.

Real logs have a title block (often merged cells) above the header, the header
on row 3 or 5, one sheet per month, an actions sheet, hidden columns, blank
rows and a total row.  This module reads such a workbook with openpyxl (not in
read-only mode: merged cells, hidden columns and hidden rows must be seen) and
saved values only (``data_only=True``; formulas are never evaluated), and
turns every sheet into a :class:`LegacySheet`: its header, its columns and its
raw rows.  Matching header text to the contract's fields is here too, because
finding the header row is the same question: which cells read like the
contract's labels or the synonyms managers use.

Nothing here changes values; :mod:`addin.convert` does that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import openpyxl
from openpyxl.utils.cell import column_index_from_string, coordinate_from_string, get_column_letter
from rapidfuzz import fuzz

from workbook_templates.contract import ACTIONS, INCIDENTS, LIMITS, TableSheet

from .pseudonym import header_says_names
from .reader import MAX_FILE_BYTES, Precheck, WorkbookError
from .reader import precheck as reader_precheck
from .value_maps import normalise

HEADER_SCAN_ROWS = 30  # the header is looked for in the first rows of each sheet
HEADER_FUZZY_CUTOFF = 85  # rapidfuzz score (0-100) for a header that is not an exact label or synonym
MIN_HEADER_MATCHES = 2  # a header row matches at least this many known column names
MIN_TABLE_FIELDS = 3  # a sheet is a log or tracker when its header maps to this many fields
MAX_HEADER_TEXT = 60  # longer cells (titles, instructions) are not column headers


class LegacyReadError(Exception):
    """The file cannot be read as a workbook; the message says why in a manager's words (never cell text)."""


@dataclass
class LegacyColumn:
    index: int  # 1-based sheet column
    header: str  # header text as written (sub-header appended), "" when blank
    key: str  # unique name within the sheet: the header, or "Column H" when blank, " (column H)" on repeats
    hidden: bool = False

    @property
    def letter(self) -> str:
        return get_column_letter(self.index)


@dataclass
class LegacyRow:
    row: int  # 1-based sheet row
    values: list  # one value per column of LegacySheet.columns (None when empty)
    hidden: bool = False
    no_saved_value: frozenset = frozenset()  # column positions holding a formula with no saved result


@dataclass
class LegacySheet:
    name: str
    state: str = "visible"  # visible | hidden | veryHidden
    kind: str = "ignored"  # incidents | actions | ignored
    reason: str = ""  # why a sheet was ignored
    header_row: int | None = None
    data_start: int | None = None
    columns: list[LegacyColumn] = field(default_factory=list)
    rows: list[LegacyRow] = field(default_factory=list)  # every row from data_start to the last non-blank one
    matches: dict[str, int] = field(default_factory=dict)  # kind -> fields the header maps to


@dataclass
class LegacyWorkbook:
    path: Path
    sheets: list[LegacySheet]
    macros: bool = False


# --- header vocabulary and matching ----------------------------------------------------------------------

def vocabulary(sheet: TableSheet) -> dict[str, str]:
    """Normalised header text -> field name: each field's name, label and synonyms (first field wins)."""
    vocab: dict[str, str] = {}
    for f in sheet.fields:
        for text in (f.name, f.label, *f.synonyms):
            key = normalise(text)
            if key:
                vocab.setdefault(key, f.name)
    return vocab


VOCABULARY = {"incidents": vocabulary(INCIDENTS), "actions": vocabulary(ACTIONS)}


def header_score(header: str, candidate: str) -> float:
    """How well normalised header text matches a normalised vocabulary entry (0-100).

    Exact is 100.  A header holding every word of the entry ("Date of fall"
    holds "date") scores 90-99, more the more of the header the entry covers.
    Otherwise rapidfuzz's token-sort ratio catches typos and word order.
    """
    if not header or not candidate:
        return 0.0
    if header == candidate:
        return 100.0
    h_words, c_words = header.split(), candidate.split()
    if len(candidate) >= 3 and set(c_words) <= set(h_words):
        return 90.0 + 9.0 * len(candidate) / len(header)
    return float(fuzz.token_sort_ratio(header, candidate))


def best_field(header: str, vocab: dict[str, str], cutoff: float = HEADER_FUZZY_CUTOFF) -> tuple[str, float] | None:
    """The field whose label or synonym best matches normalised header text, with its score, or None."""
    if header in vocab:
        return vocab[header], 100.0
    return _best_field_cached(header, tuple(vocab.items()), cutoff)


@lru_cache(maxsize=4096)
def _best_field_cached(header: str, vocab: tuple[tuple[str, str], ...], cutoff: float) -> tuple[str, float] | None:
    best: tuple[str, float] | None = None
    for text, name in vocab:
        score = header_score(header, text)
        if score >= cutoff and (best is None or score > best[1]):
            best = (name, score)
    return best


def assign_fields(headers: dict[int, str], vocab: dict[str, str], field_order: list[str],
                  cutoff: float = HEADER_FUZZY_CUTOFF) -> dict[int, tuple[str, float]]:
    """Column position -> (field, score): best pairs first, each column and each field used once."""
    pairs: list[tuple[float, int, int, str]] = []
    order = {name: i for i, name in enumerate(field_order)}
    for pos, header in headers.items():
        norm = normalise(header)
        if not norm:
            continue
        best_per_field: dict[str, float] = {}
        for text, name in vocab.items():
            score = header_score(norm, text)
            if score >= cutoff and score > best_per_field.get(name, 0):
                best_per_field[name] = score
        for name, score in best_per_field.items():
            pairs.append((score, -order.get(name, 0), pos, name))
    pairs.sort(key=lambda p: (-p[0], -p[1], p[2]))
    used_cols: set[int] = set()
    used_fields: set[str] = set()
    out: dict[int, tuple[str, float]] = {}
    for score, _, pos, name in pairs:
        if pos in used_cols or name in used_fields:
            continue
        out[pos] = (name, score)
        used_cols.add(pos)
        used_fields.add(name)
    return out


def _is_header_text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value.strip()) <= MAX_HEADER_TEXT


def header_row_score(values: list) -> int:
    """How many cells of a row read like column headers of the log or the action tracker."""
    return sum(_reads_like_header(value) for value in values if _is_header_text(value))


@lru_cache(maxsize=8192)
def _reads_like_header(value: str) -> bool:
    norm = normalise(value)
    return header_says_names(value) or any(best_field(norm, v) for v in VOCABULARY.values())


# --- reading ------------------------------------------------------------------------------------------------

def precheck(path: Path) -> Precheck:
    """Refuse files that are not workbooks, or are built to exhaust memory, before any parser sees them.

    The reader's zip-level pre-check (``addin.reader.precheck``, see security.md) over every sheet,
    since the converter reads every sheet.  Returns what it learned (formulas without a saved
    value, macros).
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LegacyReadError(f"Cannot open {path.name}: {exc.strerror or exc}.") from None
    if size > MAX_FILE_BYTES:
        raise LegacyReadError(f"{path.name} is {size / 2**20:.0f} MB, more than a site log can be "
                              f"({MAX_FILE_BYTES // 2**20} MB). Check that it is the right file.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LegacyReadError(f"Cannot open {path.name}: {exc.strerror or exc}.") from None
    try:
        return reader_precheck(data)
    except WorkbookError as exc:
        raise LegacyReadError(f"{path.name}: {exc}") from None


def read_legacy(path: str | Path) -> LegacyWorkbook:
    """Every sheet of a legacy log, with its header found and its rows read (values as saved)."""
    path = Path(path)
    report = precheck(path)
    try:
        wb = openpyxl.load_workbook(path, data_only=True)
    except Exception as exc:  # openpyxl raises many types for damaged files
        raise LegacyReadError(f"{path.name} could not be read as an Excel workbook ({type(exc).__name__}). "
                              "Open it in Excel and save it again as .xlsx.") from None
    try:
        if len(wb.worksheets) > LIMITS["max_sheets"]:
            raise LegacyReadError(f"{path.name} has more than {LIMITS['max_sheets']} sheets.")
        sheets = [_read_sheet(ws, _cells(report.formulas_without_value.get(ws.title, [])))
                  for ws in wb.worksheets]
    finally:
        wb.close()
    macros = report.has_macros or path.suffix.lower() in (".xlsm", ".xltm")
    return LegacyWorkbook(path=path, sheets=sheets, macros=macros)


def _cells(refs: list[str]) -> set[tuple[int, int]]:
    out = set()
    for ref in refs:
        col, row = coordinate_from_string(ref)
        out.add((row, column_index_from_string(col)))
    return out


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _read_sheet(ws, formula_cells: set[tuple[int, int]]) -> LegacySheet:
    sheet = LegacySheet(name=ws.title, state=ws.sheet_state)
    max_col = min(ws.max_column or 0, LIMITS["max_columns"])
    max_row = ws.max_row or 0
    if max_col == 0 or max_row == 0:
        sheet.reason = "empty"
        return sheet

    grid_top = [list(r) for r in ws.iter_rows(min_row=1, max_row=min(max_row, HEADER_SCAN_ROWS),
                                              max_col=max_col, values_only=True)]
    merged = list(ws.merged_cells.ranges)
    scores = [header_row_score(row) for row in grid_top]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i)) if scores else 0
    if not scores or scores[best] < MIN_HEADER_MATCHES:
        sheet.reason = "no header row that reads like an incident log or action tracker"
        return sheet
    header_row = best + 1
    headers = {c: (grid_top[best][c - 1] if _is_header_text(grid_top[best][c - 1]) else "")
               for c in range(1, max_col + 1)}
    headers = {c: " ".join(str(h).split()) for c, h in headers.items()}
    data_start = header_row + 1

    # A two-row header: a merged group title ("Harm") over sub-headers ("Physical", "Psychological").
    spans = [m for m in merged if m.min_row == header_row and m.max_row == header_row and m.max_col > m.min_col]
    if spans and header_row < len(grid_top):
        below = grid_top[header_row]  # the row after the header (0-based index header_row)
        under = {c for m in spans for c in range(m.min_col, m.max_col + 1)}
        texts = {c for c in range(1, max_col + 1) if _is_header_text(below[c - 1])}
        if texts and texts <= under and not any(not _blank(below[c - 1]) and c not in texts
                                                for c in range(1, max_col + 1)):
            for m in spans:
                group = headers.get(m.min_col, "")
                for c in range(m.min_col, m.max_col + 1):
                    sub = " ".join(str(below[c - 1]).split()) if c in texts else ""
                    headers[c] = f"{group} {sub}".strip()
            data_start = header_row + 2

    # Rows below the header, down to the last non-blank one.
    rows_raw = list(ws.iter_rows(min_row=data_start, max_row=max_row, max_col=max_col, values_only=True))
    if len(rows_raw) > LIMITS["max_rows"]:
        # Formatting often reaches far below the data: only refuse when the cells really hold values.
        last = max((i for i, r in enumerate(rows_raw) if any(not _blank(v) for v in r)), default=-1)
        if last >= LIMITS["max_rows"]:
            raise LegacyReadError(f"Sheet '{ws.title}' has more than {LIMITS['max_rows']:,} rows.")
        rows_raw = rows_raw[: last + 1]
    while rows_raw and all(_blank(v) for v in rows_raw[-1]):
        rows_raw.pop()
    grid = [list(r) + [None] * (max_col - len(r)) for r in rows_raw]

    # Vertically merged cells in the data (one value spanning rows of a column) belong to every row.
    for m in merged:
        if m.min_col == m.max_col and m.max_row > m.min_row and m.min_row >= data_start:
            top = m.min_row - data_start
            if top < len(grid):
                value = grid[top][m.min_col - 1]
                for r in range(top + 1, min(m.max_row - data_start + 1, len(grid))):
                    grid[r][m.min_col - 1] = value

    used = [c for c in range(1, max_col + 1)
            if headers[c] or any(not _blank(row[c - 1]) for row in grid)]
    hidden_cols = _hidden_columns(ws)
    seen: dict[str, int] = {}
    for c in used:
        key = headers[c] or f"Column {get_column_letter(c)}"
        seen[normalise(key)] = seen.get(normalise(key), 0) + 1
    columns = []
    for c in used:
        header = headers[c]
        key = header or f"Column {get_column_letter(c)}"
        if header and seen[normalise(header)] > 1:
            key = f"{header} (column {get_column_letter(c)})"
        columns.append(LegacyColumn(index=c, header=header, key=key, hidden=c in hidden_cols))

    for i, raw in enumerate(grid):
        r = data_start + i
        values = [_clean(raw[col.index - 1]) for col in columns]
        missing = frozenset(pos for pos, col in enumerate(columns)
                            if values[pos] is None and (r, col.index) in formula_cells)
        dim = ws.row_dimensions.get(r)  # .get: indexing would create a row dimension
        sheet.rows.append(LegacyRow(row=r, values=values, hidden=bool(dim is not None and dim.hidden),
                                    no_saved_value=missing))

    sheet.header_row = header_row
    sheet.data_start = data_start
    sheet.columns = columns
    sheet.matches = {kind: len(assign_fields({col.index: col.header for col in columns}, vocab,
                                             list(dict.fromkeys(vocab.values()))))
                     for kind, vocab in VOCABULARY.items()}
    sheet.kind, sheet.reason = _classify(sheet)
    return sheet


def _hidden_columns(ws) -> set[int]:
    hidden: set[int] = set()
    for dim in ws.column_dimensions.values():
        if dim.hidden and dim.min and dim.max:
            hidden.update(range(dim.min, min(dim.max, LIMITS["max_columns"]) + 1))
    return hidden


def _clean(value: object) -> object:
    """Empty strings are None; text is stripped of surrounding space; everything else as openpyxl read it."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _classify(sheet: LegacySheet) -> tuple[str, str]:
    incidents, actions = sheet.matches.get("incidents", 0), sheet.matches.get("actions", 0)
    named_actions = "action" in normalise(sheet.name).split() or "actions" in normalise(sheet.name).split()
    if actions >= MIN_TABLE_FIELDS and (actions > incidents or (named_actions and actions >= incidents - 2)):
        return "actions", ""
    if incidents >= MIN_TABLE_FIELDS:
        return "incidents", ""
    return "ignored", "its header does not read like an incident log or an action tracker"

