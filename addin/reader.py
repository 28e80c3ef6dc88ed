"""The one reading module: every path (validate, convert, consolidate, server ingest) reads a site workbook here.

    result = read_workbook("oakview.xlsx")
    result.records.incidents   # contract field names as columns, plus _row (the Excel row)
    result.findings            # structural findings: missing sheets or columns, unknown columns...

Reading happens in three steps:

1. :func:`precheck` looks at the file with :mod:`zipfile` alone, before any parser sees it
   (see ``security.md``): signature, entry count, declared sizes and compression ratios, paths,
   DTDs, and the used range of each sheet to be parsed.  A hostile or broken file is refused
   with a :class:`WorkbookError` a care manager can act on.  A sheet reaching cell XFD1048576
   aborts calamine's whole process, so this step is not optional.
2. python-calamine (Rust) reads the cell values of the Log, Actions and Site sheets.
3. Each sheet's header row is found (labels or field names, any case and spacing, within the
   first few rows), columns are mapped by header, blank rows are dropped (``_row`` stays the
   real Excel row) and every value is normalised once to its contract type: dates to
   Timestamps (Excel dates, serial numbers, ISO text and UK day-first text such as 03/04/2026,
   read as 3 April), times to "HH:MM", whole numbers to nullable Int64, codes matched to
   their code list ignoring case, text stripped with empty text as missing.

A value that cannot be read as its type is never dropped silently: the typed column holds
missing and a parallel column ``_raw_<field>`` holds the text as typed (for the Site sheet,
the key ``_raw_<field>`` of ``records.site``), so the validator can point at the cell.
Derived columns (risk score, risk band, overdue) are never read: :func:`risk_scores`,
:func:`risk_bands` and :func:`overdue` recompute them.
"""

from __future__ import annotations

import datetime as dt
import io
import posixpath
import re
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable
from xml.etree import ElementTree

import numpy as np
import pandas as pd
from python_calamine import CalamineWorkbook

from workbook_templates.codelists import CODE_LISTS, RISK_BANDS
from workbook_templates.contract import (
    ACTIONS, EXPOSURE_FIELDS, EXPOSURE_FIRST_COLUMN, INCIDENTS, LIMITS, SITE_FIELDS, SITE_SHEET, Field,
    column_letter,
)
from workbook_templates.records import SiteRecords, empty_frame

from .findings import Finding, make_finding

# --- limits of the pre-check (security.md); contract LIMITS hold the sheet sizes ------------------
MAX_FILE_BYTES = 100 * 2**20  # a site log of 50,000 rows is a few MB; anything this big is refused
MAX_ENTRIES = 2_000  # zip members (an xlsx has a few dozen)
MAX_MEMBER_BYTES = 256 * 2**20  # declared uncompressed size of any one member
MAX_TOTAL_BYTES = 512 * 2**20  # declared uncompressed size of all members together
MAX_RATIO = 500  # uncompressed / compressed above RATIO_FLOOR: sheets ~10-50x, bombs ~1000x (deflate max)
RATIO_FLOOR = 2**20  # small members may compress as well as they like
MAX_ROWS = LIMITS["max_rows"]
MAX_COLUMNS = LIMITS["max_columns"]
MAX_SHEETS = LIMITS["max_sheets"]
HEADER_SEARCH_ROWS = 10  # the header row may sit this far down (a title or notes above it)
MAX_FORMULA_FINDINGS = 200  # formula-without-result cells reported per sheet

OLE2_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
XML_SUFFIXES = (".xml", ".rels", ".vml")

NOT_A_LOG = ("This is not a nearmiss log: it has none of the Log, Actions and Site sheets. "
             "Use `nearmiss convert` to bring an existing log over.")

# The sheets the reader parses (keys of SheetLayout.kind): incidents and actions tables, the Site sheet.
TABLES = {"incidents": INCIDENTS, "actions": ACTIONS}
READ_SHEETS = (INCIDENTS.sheet, ACTIONS.sheet, SITE_SHEET)


class WorkbookError(ValueError):
    """The file cannot be read as a site workbook; the message says why in a care manager's words."""


# --- results ----------------------------------------------------------------------------------------

@dataclass
class SheetLayout:
    """Where a record's fields sit in the workbook, as the reader found them.

    ``columns`` maps field name to column letter.  Table sheets have one record per row
    (``_row`` in the frame); the Site sheet's key/value pairs have ``rows``: field -> Excel row.
    """

    sheet: str
    columns: dict[str, str]
    header_row: int = 1
    rows: dict[str, int] = field(default_factory=dict)
    found: bool = True  # False when the workbook lacks the sheet (NM090): nothing is reported on it

    def cell(self, field_name: str, row: int | None = None) -> str:
        letter = self.columns.get(field_name, "")
        row = row if row is not None else self.rows.get(field_name)
        return f"{letter}{row}" if letter and row else ""


@dataclass
class ReadResult:
    """One workbook read: its records, structural findings and layout, or why it could not be read."""

    file: str
    records: SiteRecords = field(default_factory=SiteRecords)
    findings: list[Finding] = field(default_factory=list)
    layout: dict[str, SheetLayout] = field(default_factory=dict)
    error: str | None = None  # set (and records empty) when the file cannot be read

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Precheck:
    """What the zip-level pre-check learned on the way."""

    sheets: dict[str, str]  # sheet name -> worksheet part, in workbook order
    used: dict[str, tuple[int, int]] = field(default_factory=dict)  # checked sheet -> (rows, columns)
    formulas_without_value: dict[str, list[str]] = field(default_factory=dict)  # sheet -> cell refs
    has_macros: bool = False


def default_layout() -> dict[str, SheetLayout]:
    """The template's own layout: what the builder writes, used when records did not come from a file."""
    def table(sheet) -> SheetLayout:
        return SheetLayout(sheet.sheet, {n: column_letter(i) for i, n in enumerate(sheet.names)})

    return {
        "incidents": table(INCIDENTS),
        "actions": table(ACTIONS),
        "site": SheetLayout(SITE_SHEET, {f.name: "B" for f in SITE_FIELDS},
                            rows={f.name: i for i, f in enumerate(SITE_FIELDS, start=2)}),
        "exposure": SheetLayout(SITE_SHEET, {f.name: column_letter(EXPOSURE_FIRST_COLUMN + i)
                                             for i, f in enumerate(EXPOSURE_FIELDS)}),
    }


# --- the pre-check -----------------------------------------------------------------------------------

def precheck(data: bytes, *, sheets: Iterable[str] | None = None) -> Precheck:
    """Check a would-be xlsx with zipfile alone; raise :class:`WorkbookError` if no parser should see it.

    ``sheets`` names the sheets that will be parsed (any case); their used range and cell
    references must keep within the contract's LIMITS.  None checks every worksheet.  Sheets
    never handed to a parser still get the generic checks (sizes, paths, no DTD).
    """
    if not data:
        raise WorkbookError("The file is empty (0 bytes). Save the workbook again in Excel and use the new copy.")
    if len(data) > MAX_FILE_BYTES:
        raise WorkbookError(f"The file is {len(data) / 2**20:.0f} MB, more than a site log can be "
                            f"({MAX_FILE_BYTES // 2**20} MB). Check that it is the right file.")
    if data.startswith(OLE2_SIGNATURE):
        raise WorkbookError(_ole2_reason(data))
    if not data.startswith(ZIP_SIGNATURES):
        raise WorkbookError(_not_zip_reason(data))
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise WorkbookError("The file is damaged or incomplete (it may have been cut short while copying or "
                            f"downloading): {exc}. Copy it again from the original.") from exc
    with zf:
        infos = zf.infolist()
        _check_members(infos)
        names = {i.filename for i in infos}
        try:
            _check_kind(zf, names)
            # The workbook part and its relationships first (checked for DTDs before they are parsed),
            # then every XML part once: DTD check, and for the sheets to be parsed, their extent.
            sheet_parts = _sheet_parts(zf, names)
            report = Precheck(sheets=sheet_parts,
                              has_macros=any(n.lower().endswith("vbaproject.bin") for n in names))
            if len(sheet_parts) > MAX_SHEETS:
                raise WorkbookError(f"The workbook has {len(sheet_parts)} sheets, more than the {MAX_SHEETS} a site "
                                    "log may have. Check that it is the right file.")
            wanted = None if sheets is None else {_norm(s) for s in sheets}
            checked = {part: name for name, part in sheet_parts.items() if wanted is None or _norm(name) in wanted}
            for sheet_name, part in sheet_parts.items():
                if part in checked and part not in names:
                    raise WorkbookError(f"The workbook is damaged: sheet '{sheet_name}' has no data part. "
                                        "Open it in Excel and save it again.")
            for info in infos:
                if not (info.filename.lower().endswith(XML_SUFFIXES) or info.filename == "[Content_Types].xml"):
                    continue
                xml = _read_member(zf, info)
                _check_no_dtd(info.filename, xml)
                sheet_name = checked.get(info.filename)
                if sheet_name is not None:
                    report.used[sheet_name] = _check_sheet_extent(sheet_name, xml)
                    report.formulas_without_value[sheet_name] = _formulas_without_value(xml)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise WorkbookError("The file is damaged (a part of it does not read back correctly: "
                                f"{exc}). Copy it again from the original or save it again in Excel.") from exc
    return report


def _ole2_reason(data: bytes) -> str:
    if "EncryptedPackage".encode("utf-16-le") in data or "EncryptionInfo".encode("utf-16-le") in data:
        return ("The workbook is protected with a password, so it cannot be read. Remove the password in Excel: "
                "File > Info > Protect Workbook > Encrypt with Password, clear it, then save.")
    return ("This is an old-style Excel 97-2003 (.xls) file. Open it in Excel and use File > Save As > "
            "Excel Workbook (.xlsx), then use the new file.")


def _not_zip_reason(data: bytes) -> str:
    head = data[:4096]
    lowered = head.lower()
    if b"<html" in lowered or b"<table" in lowered or b"<!doctype html" in lowered:
        return ("This is a web page saved with an Excel name, not an Excel workbook. Open it in Excel and use "
                "File > Save As > Excel Workbook (.xlsx).")
    if head.startswith(b"<?xml"):
        return ("This is an XML file (perhaps Excel's 2003 XML format), not an .xlsx workbook. Open it in Excel "
                "and use File > Save As > Excel Workbook (.xlsx).")
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(c.isprintable() or c in "\r\n\t" for c in text):
        if any(sep in text for sep in (",", ";", "\t")):
            return ("This is a text (CSV) file with an Excel name, not an Excel workbook. Open it in Excel and "
                    "use File > Save As > Excel Workbook (.xlsx), or use `nearmiss convert` to bring it over.")
        return "This is a text file, not an Excel workbook (.xlsx). Check that it is the right file."
    return ("This is not an Excel workbook (.xlsx): the file's content is not a workbook. "
            "Check that it is the right file.")


def _check_members(infos: list[zipfile.ZipInfo]) -> None:
    if len(infos) > MAX_ENTRIES:
        raise WorkbookError(f"The file holds {len(infos)} parts, far more than a workbook has; it was not opened.")
    total = 0
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name):
            raise WorkbookError(f"The file holds a part with an unsafe path ({name!r}); it was not opened.")
        if info.flag_bits & 0x1:
            raise WorkbookError("Parts of the file are encrypted. Remove the password in Excel: File > Info > "
                                "Protect Workbook, then save.")
        if info.file_size > MAX_MEMBER_BYTES:
            raise WorkbookError(f"A part of the file ({name}) would unpack to {info.file_size / 2**20:.0f} MB, "
                                "far more than a site log needs; it was not opened.")
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size // max(info.compress_size, 1)
            raise WorkbookError(f"A part of the file ({name}) is compressed {ratio} times over, as zip bombs are; "
                                "it was not opened.")
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        raise WorkbookError(f"The file would unpack to {total / 2**20:.0f} MB, far more than a site log needs; "
                            "it was not opened.")


def _check_kind(zf: zipfile.ZipFile, names: set[str]) -> None:
    """Tell apart the zip formats people rename to .xlsx."""
    if "mimetype" in names:
        mime = zf.read("mimetype")[:200]
        if b"opendocument.spreadsheet" in mime:
            raise WorkbookError("This is an OpenDocument spreadsheet (.ods). Save it as an Excel Workbook (.xlsx) "
                                "and use that file.")
    if "xl/workbook.bin" in names:
        raise WorkbookError("This is an Excel binary workbook (.xlsb). Use File > Save As > Excel Workbook (.xlsx).")
    if "[Content_Types].xml" not in names or not any(n.startswith("xl/") for n in names):
        kind = ("a Word document" if any(n.startswith("word/") for n in names)
                else "a PowerPoint file" if any(n.startswith("ppt/") for n in names) else "a zip file")
        raise WorkbookError(f"This is {kind}, not an Excel workbook (.xlsx). Check that it is the right file.")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, never more than declared (and the declared size is bounded above)."""
    with zf.open(info) as fh:
        data = fh.read(info.file_size + 1)
    if len(data) > info.file_size:
        raise WorkbookError(f"A part of the file ({info.filename}) is larger than it says; it was not opened.")
    return data


_DTD = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def _check_no_dtd(name: str, xml: bytes) -> None:
    text = xml
    if xml[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in xml[:64]:
        for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
            try:
                text = xml.decode(encoding).encode("utf-8", "replace")
                break
            except UnicodeDecodeError:
                continue
    if _DTD.search(text):
        raise WorkbookError(f"A part of the file ({name}) declares a DOCTYPE or ENTITY, which Excel never writes; "
                            "the file was not opened. Save it again from Excel.")


def _sheet_parts(zf: zipfile.ZipFile, names: set[str]) -> dict[str, str]:
    """Sheet name -> worksheet part path, from the workbook part and its relationships."""
    workbook_part = "xl/workbook.xml"
    if "_rels/.rels" in names:
        for rel in _parse(zf, "_rels/.rels"):
            if rel.get("Type", "").endswith("/officeDocument"):
                workbook_part = _resolve("", rel.get("Target", ""))
    if workbook_part not in names:
        raise WorkbookError("The workbook is damaged: it has no workbook part. Open it in Excel and save it again.")
    base = posixpath.dirname(workbook_part)
    rels_part = posixpath.join(base, "_rels", posixpath.basename(workbook_part) + ".rels")
    targets = {}
    if rels_part in names:
        targets = {rel.get("Id"): _resolve(base, rel.get("Target", "")) for rel in _parse(zf, rels_part)}
    sheets: dict[str, str] = {}
    for element in _parse(zf, workbook_part).iter():
        if _local(element.tag) == "sheet":
            rid = next((v for k, v in element.attrib.items() if _local(k) == "id"), None)
            sheets[element.get("name", "")] = targets.get(rid, "")
    return sheets


def _parse(zf: zipfile.ZipFile, name: str) -> ElementTree.Element:
    xml = _read_member(zf, zf.getinfo(name))
    _check_no_dtd(name, xml)  # so no entity can be declared: safe to parse
    try:
        return ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise WorkbookError(f"The workbook is damaged ({name} cannot be read: {exc}). "
                            "Open it in Excel and save it again.") from exc


def _resolve(base: str, target: str) -> str:
    if target.startswith("/"):
        return posixpath.normpath(target.lstrip("/"))
    return posixpath.normpath(posixpath.join(base, target))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\b[^>]*?\bref\s*=\s*[\"']([^\"']*)[\"']")
_ROW_REF = re.compile(rb"<(?:\w+:)?row\b[^>]*?\sr\s*=\s*[\"'](\d{1,8})[\"']")
_A1 = re.compile(r"\$?([A-Za-z]{1,4})\$?(\d{1,8})$")


def _col_index(letters: str) -> int:
    """A -> 1, Z -> 26, AA -> 27."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def _beyond(limit: int, digits: str, width: int | None = None) -> str:
    """Regex for strings over ``digits`` (an ordered alphabet) whose value exceeds ``limit``.

    Numbers in base len(digits), most significant first, no leading "zero" (digits[0] for
    decimals; letters have none).  Used to spot an out-of-range row or column by search
    alone, without collecting every cell reference of a large sheet.
    """
    base = len(digits)
    if digits[0] == "0":  # decimal
        text = str(limit)
        value_of = digits.index
        lead = f"[{digits[1]}-{digits[-1]}]"
        longer = f"{lead}[{digits[0]}-{digits[-1]}]{{{len(text)},}}"
    else:  # bijective letters: A=1 .. Z=26
        text = column_letter(limit - 1)
        value_of = lambda ch: digits.index(ch) + 1  # noqa: E731
        longer = f"[{digits[0]}-{digits[-1]}]{{{len(text) + 1},}}"
    alternatives = [longer]
    for i, ch in enumerate(text):
        v = value_of(ch)
        top = base - 1 if digits[0] == "0" else base
        if v < top:
            nxt = digits[v + 1] if digits[0] == "0" else digits[v]
            rest = len(text) - i - 1
            tail = (f"[{digits[0]}-{digits[-1]}]{{{rest}}}" if rest else "")
            alternatives.append(re.escape(text[:i]) + f"[{nxt}-{digits[-1]}]" + tail)
    return "(?:" + "|".join(alternatives) + ")"


_DECIMAL = "0123456789"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# A cell reference (r="..") beyond the limits.  The fast form (what Excel and every library
# write: r="AB12") is searched first; the general one only if the sheet writes references
# another way (single quotes, spaces, lower case).
_BEYOND_REF = f"{_beyond(MAX_COLUMNS, _LETTERS)}\\d{{1,8}}|[A-Z]{{1,4}}{_beyond(MAX_ROWS, _DECIMAL)}".encode()
_CELL_BEYOND_FAST = re.compile(rb' r="(' + _BEYOND_REF + rb')"')
_CELL_BEYOND = re.compile(rb"\sr\s*=\s*[\"'](" + _BEYOND_REF + rb")[\"']", re.IGNORECASE)
_ROW_REF_FAST = re.compile(rb'<row r="(\d{1,8})"')


def _cell_beyond(xml: bytes) -> re.Match | None:
    found = _CELL_BEYOND_FAST.search(xml)
    if found is None and (any(odd in xml for odd in (b" r='", b" r =", b" r= ", b"\tr=", b"\nr="))
                          or re.search(rb' r="[a-z]', xml)):
        found = _CELL_BEYOND.search(xml)
    return found


def _row_numbers(xml: bytes) -> list[int]:
    found = _ROW_REF_FAST.findall(xml)
    if len(found) != xml.count(b"<row") or b":row" in xml:
        found = _ROW_REF.findall(xml)
    return [int(r) for r in found]


def _check_sheet_extent(sheet: str, xml: bytes) -> tuple[int, int]:
    """The sheet's used rows and columns (as declared); refuse references beyond the limits.

    The declared ``<dimension>``, every cell reference and every row number are checked;
    so is the number of rows (rows may be written without numbers).
    """
    rows = cols = 0
    far = ""
    match = _DIMENSION.search(xml)
    if match:
        for corner in match.group(1).decode("ascii", "replace").split(":"):
            a1 = _A1.match(corner.strip())
            if a1:
                cols = max(cols, _col_index(a1.group(1)))
                rows = max(rows, int(a1.group(2)))
    if rows > MAX_ROWS or cols > MAX_COLUMNS:
        far = match.group(1).decode("ascii", "replace").split(":")[-1]
    cell = _cell_beyond(xml)
    if cell and not far:
        far = cell.group(1).decode("ascii", "replace").upper()
    row_numbers = _row_numbers(xml)
    rows = max([rows, *row_numbers]) if row_numbers else rows
    written = xml.count(b"<row") + (xml.count(b":row ") if b":row " in xml else 0)
    if not far and (rows > MAX_ROWS or written > MAX_ROWS):
        far = f"row {max(rows, written):,}"
    if far:
        raise WorkbookError(
            f"Sheet '{sheet}' reaches {far if far.startswith('row') else 'cell ' + far}, beyond the {MAX_ROWS:,} "
            f"rows and {MAX_COLUMNS} columns (A to {column_letter(MAX_COLUMNS - 1)}) a site log may use. Delete the "
            "empty rows and columns below and to the right of your data (select them, right-click, Delete), save, "
            "and try again.")
    return rows, cols


_CELL_START = re.compile(rb"<(?:\w+:)?c\b[^>]*?\sr\s*=\s*[\"']([A-Za-z]{1,4}\d{1,8})[\"'][^>]*>")
# A formula element closed and straight away the cell: no <v> saved result.
_NO_VALUE = re.compile(rb"</f>\s*</c>|<f\b[^>]*/>\s*</c>")
_NO_VALUE_PREFIXED = re.compile(rb"</\w+:f>\s*</\w+:c>|<\w+:f\b[^>]*/>\s*</\w+:c>")


def _formulas_without_value(xml: bytes) -> list[str]:
    """Cells holding a formula with no saved result (no <v> at all), e.g. written by a script, never opened."""
    pattern = _NO_VALUE_PREFIXED if b":f>" in xml and b"</f>" not in xml else _NO_VALUE
    out: list[str] = []
    for match in pattern.finditer(xml):
        window = xml[max(0, match.start() - 2000):match.start()]
        starts = list(_CELL_START.finditer(window))
        if starts:
            out.append(starts[-1].group(1).decode("ascii").upper())
        if len(out) >= MAX_FORMULA_FINDINGS:
            break
    return out


# --- reading ------------------------------------------------------------------------------------

def read_workbook(source: str | Path | bytes | bytearray | BinaryIO, *, name: str | None = None) -> ReadResult:
    """Read a site workbook (a path, its bytes or a binary file object).

    Raises :class:`WorkbookError` when the file cannot be read at all; problems inside a
    readable workbook are findings in the result.
    """
    data, file = _load(source, name)
    report = precheck(data, sheets=READ_SHEETS)
    by_norm = {_norm(s): s for s in report.sheets}
    present = {want: by_norm.get(_norm(want)) for want in READ_SHEETS}
    if not any(present.values()):
        raise WorkbookError(NOT_A_LOG)
    try:
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(data))
    except Exception as exc:  # calamine raises its own error types, all with a reason
        raise WorkbookError(f"The workbook cannot be read ({exc}). Open it in Excel and save it again.") from exc

    result = ReadResult(file=file, records=SiteRecords(), layout=default_layout())
    if report.has_macros:
        result.findings.append(make_finding("NM094", file=file))
    for want in READ_SHEETS:
        if present[want] is None:
            result.findings.append(make_finding("NM090", file=file, value=want))
    for key, layout in result.layout.items():
        if present[layout.sheet] is None:
            layout.found = False

    try:
        for key, sheet in TABLES.items():
            actual = present[sheet.sheet]
            if actual is None:
                continue
            grid = _sheet_rows(workbook, actual)
            frame, layout, findings = _read_table(grid, sheet, actual, file)
            findings += _formula_findings(report.formulas_without_value.get(actual, []), frame, layout, sheet, file)
            setattr(result.records, key, frame)
            result.layout[key] = layout
            result.findings += findings

        actual = present[SITE_SHEET]
        if actual is not None:
            grid = _sheet_rows(workbook, actual)
            site, site_layout, exposure, exposure_layout, findings = _read_site(grid, actual, file)
            findings += _site_formula_findings(report.formulas_without_value.get(actual, []), site_layout,
                                               exposure_layout, file)
            result.records.site = site
            result.records.exposure = exposure
            result.layout["site"] = site_layout
            result.layout["exposure"] = exposure_layout
            result.findings += findings
    finally:
        workbook.close()
    return result


def read_workbooks(sources: Iterable[str | Path], *, threads: int = 2,
                   on_done: Callable[[ReadResult], None] | None = None) -> list[ReadResult]:
    """Read several workbooks in parallel threads (calamine releases the GIL); results in input order.

    A file that cannot be read gives a ReadResult with ``error`` set (the reason, as
    :class:`WorkbookError` words it) instead of raising, so a caller can report it and go on.
    ``on_done`` is called in the calling thread as each file finishes (for a progress bar).
    """
    sources = list(sources)
    results: list[ReadResult | None] = [None] * len(sources)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = {pool.submit(_read_or_error, s): i for i, s in enumerate(sources)}
        for future in as_completed(futures):
            result = future.result()
            results[futures[future]] = result
            if on_done is not None:
                on_done(result)
    return results  # type: ignore[return-value]


def _read_or_error(source: str | Path) -> ReadResult:
    file = Path(source).name if isinstance(source, (str, Path)) else "workbook.xlsx"
    try:
        return read_workbook(source)
    except WorkbookError as exc:
        return ReadResult(file=file, error=str(exc))
    except OSError as exc:
        return ReadResult(file=file, error=f"The file cannot be opened: {exc.strerror or exc}.")
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
        return ReadResult(file=file, error=f"The file cannot be read ({type(exc).__name__}: {exc}).")


def _load(source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "workbook.xlsx"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            raise WorkbookError(f"{path.name} is a folder, not a workbook.")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise WorkbookError(f"The file is {size / 2**20:.0f} MB, more than a site log can be "
                                f"({MAX_FILE_BYTES // 2**20} MB). Check that it is the right file.")
        return path.read_bytes(), name or path.name
    data = source.read(MAX_FILE_BYTES + 1)
    return data, name or Path(getattr(source, "name", "workbook.xlsx") or "workbook.xlsx").name


def _sheet_rows(workbook: CalamineWorkbook, sheet: str) -> list[list]:
    try:
        return workbook.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
    except Exception as exc:
        raise WorkbookError(f"Sheet '{sheet}' cannot be read ({exc}). Open the workbook in Excel and save it "
                            "again.") from exc


def _norm(text: object) -> str:
    """Header or sheet name compared without case, spacing or underscores."""
    return re.sub(r"[\s_]+", " ", str(text)).strip().casefold()


def _header_lookup(fields: Iterable[Field]) -> dict[str, Field]:
    lookup = {}
    for f in fields:
        lookup[_norm(f.label)] = f
        lookup[_norm(f.name)] = f
    return lookup


def _find_header(grid: list[list], lookup: dict[str, Field], first_col: int = 0,
                 min_matches: int = 2) -> int | None:
    """Index of the row (among the first few) whose cells best match the expected headers."""
    best, best_hits = None, 0
    for i, row in enumerate(grid[:HEADER_SEARCH_ROWS]):
        hits = sum(1 for v in row[first_col:] if isinstance(v, str) and _norm(v) in lookup)
        if hits > best_hits:
            best, best_hits = i, hits
    return best if best_hits >= min_matches else None


def _read_table(grid: list[list], sheet, actual: str, file: str) -> tuple[pd.DataFrame, SheetLayout, list[Finding]]:
    lookup = _header_lookup(sheet.fields)
    findings: list[Finding] = []
    header = _find_header(grid, lookup)
    kind = sheet.key
    if header is None:
        for f in sheet.input_fields:
            findings.append(make_finding("NM092", file=file, sheet=actual, label=f.label, value=actual))
        return empty_frame(kind).assign(_row=pd.Series(dtype="Int64")), SheetLayout(actual, {}), findings

    body = pd.DataFrame(grid[header + 1:], dtype=object)
    columns: dict[str, int] = {}
    for j, heading in enumerate(grid[header]):
        text = heading.strip() if isinstance(heading, str) else ("" if heading in ("", None) else str(heading))
        f = lookup.get(_norm(text)) if text else None
        if f is not None and f.name not in columns:
            columns[f.name] = j
        elif f is not None and f.type == "derived":
            continue
        elif text or (j in body and not _empty_cells(body[[j]]).all().all()):
            shown = text or f"{column_letter(j)} (no heading)"
            findings.append(make_finding("NM091", file=file, sheet=actual, cell=f"{column_letter(j)}{header + 1}",
                                         value=shown))
    for f in sheet.input_fields:
        if f.name not in columns:
            findings.append(make_finding("NM092", file=file, sheet=actual, label=f.label, value=actual))

    layout = SheetLayout(actual, {name: column_letter(j) for name, j in columns.items()}, header_row=header + 1)
    inputs = [f for f in sheet.input_fields if f.name in columns]
    raw = pd.DataFrame({f.name: body[columns[f.name]] if columns[f.name] in body else pd.Series(dtype=object)
                        for f in inputs}, index=body.index)
    raw["_row"] = raw.index + header + 2
    raw = _drop_blank_rows(raw, [f.name for f in inputs])
    frame = normalise_frame(raw, kind, fields=sheet.input_fields)
    return frame, layout, findings


def _formula_findings(cells: list[str], frame: pd.DataFrame, layout: SheetLayout, sheet, file: str) -> list[Finding]:
    """NM093 for input cells holding a formula with no saved result (derived columns are recomputed anyway)."""
    letters = {v: k for k, v in layout.columns.items()}
    refs = dict(zip(frame["_row"], frame[sheet.ref_field])) if sheet.ref_field in frame else {}
    out = []
    for cell in cells:
        a1 = _A1.match(cell)
        name = letters.get(a1.group(1).upper()) if a1 else None
        if name is None or int(a1.group(2)) <= layout.header_row:
            continue
        ref = refs.get(int(a1.group(2)))
        out.append(make_finding("NM093", file=file, sheet=layout.sheet, cell=cell,
                                ref="" if ref is None or pd.isna(ref) else str(ref), label=sheet.field(name).label))
    return out


def _site_formula_findings(cells: list[str], site: SheetLayout, exposure: SheetLayout, file: str) -> list[Finding]:
    """NM093 for Site sheet values (key/value pairs and the exposure table) with no saved result."""
    by_cell = {site.cell(name): f.label for f in SITE_FIELDS if (name := f.name) in site.rows}
    letters = {letter: f.label for f in EXPOSURE_FIELDS if (letter := exposure.columns.get(f.name))}
    out = []
    for cell in cells:
        a1 = _A1.match(cell)
        if not a1:
            continue
        label = by_cell.get(cell)
        if label is None and int(a1.group(2)) > exposure.header_row:
            label = letters.get(a1.group(1).upper())
        if label is not None:
            out.append(make_finding("NM093", file=file, sheet=site.sheet, cell=cell, label=label))
    return out


def _read_site(grid: list[list], actual: str, file: str):
    findings: list[Finding] = []
    # Key/value pairs: label (or field name) in column A, value in column B.
    lookup = _header_lookup(SITE_FIELDS)
    site: dict = {}
    rows: dict[str, int] = {}
    keys = pd.Series([r[0] if r else "" for r in grid], dtype=object)
    values = pd.Series([r[1] if len(r) > 1 else "" for r in grid], dtype=object)
    for i, key in keys.items():
        f = lookup.get(_norm(key)) if isinstance(key, str) else None
        if f is not None and f.name not in rows:
            rows[f.name] = i + 1
    one = pd.DataFrame({name: [values[r - 1]] for name, r in rows.items()}, dtype=object)
    typed = normalise_frame(one, "site", fields=SITE_FIELDS)
    for f in SITE_FIELDS:
        value = typed[f.name].iloc[0] if f.name in typed else None
        site[f.name] = None if _is_missing(value) else _python_value(value)
        raw_col = f"_raw_{f.name}"
        if raw_col in typed and not _is_missing(typed[raw_col].iloc[0]):
            site[raw_col] = typed[raw_col].iloc[0]
    site_layout = SheetLayout(actual, {name: "B" for name in rows}, header_row=1, rows=rows)

    # The exposure table, from column D.
    lookup = _header_lookup(EXPOSURE_FIELDS)
    header = _find_header(grid, lookup, first_col=EXPOSURE_FIRST_COLUMN, min_matches=1)
    columns: dict[str, int] = {}
    if header is not None:
        for j, heading in enumerate(grid[header]):
            if j < EXPOSURE_FIRST_COLUMN or not isinstance(heading, str):
                continue
            f = lookup.get(_norm(heading))
            if f is not None and f.name not in columns:
                columns[f.name] = j
    for f in EXPOSURE_FIELDS:
        if f.name not in columns:
            findings.append(make_finding("NM092", file=file, sheet=actual, label=f.label, value=actual))
    exposure_layout = SheetLayout(actual, {n: column_letter(j) for n, j in columns.items()},
                                  header_row=(header or 0) + 1)
    if header is None:
        exposure = empty_frame("exposure").assign(_row=pd.Series(dtype="Int64"))
        return site, site_layout, exposure, exposure_layout, findings
    body = pd.DataFrame(grid[header + 1:], dtype=object)
    raw = pd.DataFrame({n: body[j] if j in body else pd.Series(dtype=object) for n, j in columns.items()},
                       index=body.index)
    raw["_row"] = raw.index + header + 2
    raw = _drop_blank_rows(raw, list(columns))
    exposure = normalise_frame(raw, "exposure", fields=EXPOSURE_FIELDS)
    return site, site_layout, exposure, exposure_layout, findings


# --- normalising values ----------------------------------------------------------------------------

FIELDS_BY_KIND = {
    "incidents": INCIDENTS.input_fields,
    "actions": ACTIONS.input_fields,
    "site": list(SITE_FIELDS),
    "exposure": list(EXPOSURE_FIELDS),
}
EXCEL_EPOCH = pd.Timestamp("1899-12-30")
DATE_RANGE = (pd.Timestamp("1900-01-01"), pd.Timestamp("2199-12-31"))
DATE_DTYPE = "datetime64[us]"


def normalise_frame(frame: pd.DataFrame, kind: str, *, fields: Iterable[Field] | None = None) -> pd.DataFrame:
    """Every contract column of ``frame`` in its one type; unreadable values kept in ``_raw_<field>``.

    Idempotent: records already normalised (or made by ``synthetic.make_site``) pass through
    with blanks ("" or whitespace) turned into missing.  Columns the contract lacks are kept
    as they are (``_row``, ``_raw_*``); missing contract columns are added, empty.
    """
    fields = list(fields if fields is not None else FIELDS_BY_KIND[kind])
    out = pd.DataFrame(index=frame.index)
    for f in fields:
        column = frame[f.name] if f.name in frame else pd.Series(None, index=frame.index, dtype=object)
        values, bad = normalise_column(column, f)
        out[f.name] = values
        raw_name = f"_raw_{f.name}"
        previous = frame[raw_name] if raw_name in frame else None
        if previous is not None:
            bad = bad.fillna(previous) if bad is not None else previous
        if bad is not None and bad.notna().any():
            out[raw_name] = bad.astype("str")
    for name in frame.columns:
        if name not in out:
            out[name] = frame[name]
    if "_row" in out:
        out["_row"] = pd.to_numeric(out["_row"], errors="coerce").astype("Int64")
    return out


def normalise_column(column: pd.Series, f: Field) -> tuple[pd.Series, pd.Series | None]:
    """(typed values, raw text of unreadable cells or None) for one column of field ``f``."""
    if column.isna().all():  # fast path: an empty or absent column
        dtype = {"date": DATE_DTYPE, "int": "Int64", "number": "float64"}.get(f.type, "str")
        return pd.Series(None, index=column.index, dtype=object).astype(dtype), None
    if f.type == "date":
        return parse_dates(column)
    if f.type == "time":
        return parse_times(column)
    if f.type == "int":
        return parse_numbers(column, integer=True)
    if f.type == "number":
        return parse_numbers(column, integer=False)
    text = to_text(column)
    if f.type == "code":
        return match_codes(text, f.codes), None
    return text, None


def _kind(column: pd.Series) -> str:
    """pandas' inferred kind of the non-missing values: "string", "date", "floating", "mixed"..."""
    return pd.api.types.infer_dtype(column, skipna=True)


def to_text(column: pd.Series) -> pd.Series:
    """Stripped text; empty as missing.  Numbers lose a trailing .0; dates become ISO dates."""
    if column.dtype == "str" or _kind(column) in ("string", "empty"):  # fast path: only text
        text = column.astype("str").str.strip()
        return text.where(text.ne(""))
    column = column.astype(object)
    kinds = column.map(type)
    is_str = kinds.eq(str)
    if not is_str.all():
        others = column[~is_str & column.notna()]
        column = column.copy()
        column[~is_str & column.notna()] = others.map(_scalar_text)
    text = column.where(column.notna(), None).astype("str").str.strip()
    return text.where(text.ne(""), None).astype("str")


def _scalar_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if value is pd.NaT or value is pd.NA:
        return None
    return str(value)


def match_codes(text: pd.Series, list_name: str) -> pd.Series:
    """Codes matched to their list ignoring case (as Excel's drop-downs do); anything else kept as typed."""
    allowed = {code.casefold(): code for code in CODE_LISTS[list_name]}
    folded = text.str.casefold()
    matched = folded.map(allowed)
    return matched.where(matched.notna(), text).astype("str")


_NUMERIC_DATE = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_ISO_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")
_NAMED_MONTH_DATE = re.compile(r"^\d{1,2}(?:st|nd|rd|th)?[ \-]+[A-Za-z]{3,9}\.?,?[ \-]+(?:\d{2}|\d{4})$|"
                               r"^[A-Za-z]{3,9}\.? \d{1,2}(?:st|nd|rd|th)?,? \d{4}$")


def parse_dates(column: pd.Series) -> tuple[pd.Series, pd.Series | None]:
    """Dates as Timestamps at midnight (time of day dropped); unreadable cells' text returned apart.

    Accepts Excel dates (calamine gives date/datetime), Excel serial numbers, ISO text
    (2026-04-03) and UK day-first text (03/04/2026, 3.4.26, 3-4-2026 = 3 April; 3 April 2026;
    3-Apr-26).  Dates outside 1900-2199 are not dates.
    """
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        values = pd.to_datetime(column).astype(DATE_DTYPE).dt.normalize()
        return values, None
    if _kind(column) in ("date", "datetime", "datetime64"):  # fast path: Excel dates only
        values = pd.to_datetime(column.astype(object)).astype(DATE_DTYPE)
        if values.dropna().between(*DATE_RANGE).all():
            return values.dt.normalize(), None
    column = column.astype(object)
    out = pd.Series(pd.NaT, index=column.index, dtype=DATE_DTYPE)
    bad = pd.Series(None, index=column.index, dtype=object)
    kinds = column.map(type)
    missing = column.isna() | kinds.eq(type(None))

    is_date = kinds.isin([dt.date, dt.datetime, pd.Timestamp])
    if is_date.any():
        out[is_date] = pd.to_datetime(column[is_date].map(lambda v: pd.Timestamp(v))).astype(DATE_DTYPE)

    is_num = kinds.isin([float, int, np.float64, np.int64])
    if is_num.any():
        serial = pd.to_numeric(column[is_num], errors="coerce").astype(float)
        ok = serial.between(1, 109_574) & serial.notna()  # 1900-01-01 .. 2199-12-31
        stamps = EXCEL_EPOCH + pd.to_timedelta(serial[ok].round(6), unit="D")
        out[ok[ok].index] = stamps.astype(DATE_DTYPE)
        bad[ok[~ok].index] = column[ok[~ok].index].map(_scalar_text)

    is_str = kinds.eq(str)
    if is_str.any():
        text = column[is_str].astype("str").str.strip()
        blank = text.eq("")
        missing = missing | blank.reindex(column.index, fill_value=False)
        text = text[~blank]
        parsed = _parse_date_text(text)
        out[parsed.index[parsed.notna()]] = parsed[parsed.notna()]
        bad[parsed.index[parsed.isna()]] = text[parsed.isna()]

    other = ~(is_date | is_num | is_str | missing)
    if other.any():
        bad[other] = column[other].map(_scalar_text)
    in_range = out.isna() | out.between(*DATE_RANGE)
    if not in_range.all():
        bad[~in_range] = out[~in_range].dt.strftime("%d/%m/%Y")
        out[~in_range] = pd.NaT
    out = out.dt.normalize()
    bad = bad.where(bad.notna(), None)
    return out, (bad.astype("str") if bad.notna().any() else None)


def _parse_date_text(text: pd.Series) -> pd.Series:
    """Text dates, day first; NaT where the text is not a date."""
    out = pd.Series(pd.NaT, index=text.index, dtype=DATE_DTYPE)
    if text.empty:
        return out
    numeric = text.str.extract(_NUMERIC_DATE)
    is_numeric = numeric[0].notna()
    if is_numeric.any():
        n = numeric[is_numeric]
        year = n[2].astype(int)
        year = year.where(n[2].str.len() == 4, 2000 + year)  # 2-digit years are this century
        parts = pd.DataFrame({"year": year, "month": n[1].astype(int), "day": n[0].astype(int),
                              "hour": 0, "minute": 0})
        out[is_numeric[is_numeric].index] = pd.to_datetime(parts, errors="coerce").astype(DATE_DTYPE)
    iso = text.str.match(_ISO_DATE) & ~is_numeric
    if iso.any():
        out[iso] = pd.to_datetime(text[iso], format="ISO8601", errors="coerce").astype(DATE_DTYPE)
    named = text.str.match(_NAMED_MONTH_DATE) & ~is_numeric & ~iso
    if named.any():
        cleaned = text[named].str.replace(r"(?<=\d)(?:st|nd|rd|th)\b", "", regex=True).str.replace(r"[.,]", "",
                                                                                                     regex=True)
        cleaned = cleaned.str.replace(r"[ \-]+", " ", regex=True).str.strip()
        parsed = pd.Series(pd.NaT, index=cleaned.index, dtype=DATE_DTYPE)
        for fmt in ("%d %B %Y", "%d %b %Y", "%d %B %y", "%d %b %y", "%B %d %Y", "%b %d %Y"):
            todo = parsed.isna()
            if not todo.any():
                break
            parsed[todo] = pd.to_datetime(cleaned[todo], format=fmt, errors="coerce").astype(DATE_DTYPE)
        out[named] = parsed
    return out


_TIME_TEXT = re.compile(r"^(\d{1,2})(?:[:.](\d{2})|(\d{2}))(?::(\d{2}))?\s*(am|pm|AM|PM)?$")


def parse_times(column: pd.Series) -> tuple[pd.Series, pd.Series | None]:
    """Times as "HH:MM" text; unreadable cells' text returned apart.

    Accepts Excel times (calamine gives time/datetime), day fractions (0.5 = 12:00), and text
    such as 14:05, 14.05, 1405, 2:05 pm.
    """
    column = column.astype(object)
    out = pd.Series(None, index=column.index, dtype=object)
    bad = pd.Series(None, index=column.index, dtype=object)
    kinds = column.map(type)
    is_time = kinds.isin([dt.time, dt.datetime, pd.Timestamp])
    if is_time.any():
        out[is_time] = column[is_time].map(lambda v: f"{v.hour:02d}:{v.minute:02d}")
    is_num = kinds.isin([float, int])
    if is_num.any():
        fraction = pd.to_numeric(column[is_num], errors="coerce").astype(float)
        ok = fraction.between(0, 1, inclusive="left")
        minutes = (fraction[ok] * 1440).round().astype(int).clip(upper=1439)
        out[ok[ok].index] = _hhmm(minutes // 60, minutes % 60)
        bad[ok[~ok].index] = column[ok[~ok].index].map(_scalar_text)
    is_str = kinds.eq(str)
    if is_str.any():
        text = column[is_str].astype("str").str.strip()
        text = text[text.ne("")]
        parts = text.str.extract(_TIME_TEXT)
        hour = pd.to_numeric(parts[0], errors="coerce")
        minute = pd.to_numeric(parts[1].fillna(parts[2]), errors="coerce")
        suffix = parts[4].str.lower()
        hour = hour.where(~(suffix.eq("pm") & hour.lt(12)), hour + 12)
        hour = hour.where(~(suffix.eq("am") & hour.eq(12)), 0)
        ok = hour.between(0, 23) & minute.between(0, 59) & ~(suffix.notna() & (hour > 23))
        good = ok[ok].index
        out[good] = _hhmm(hour[good], minute[good])
        bad[ok[~ok].index] = text[~ok]
    other = ~(is_time | is_num | is_str | column.isna())
    if other.any():
        bad[other] = column[other].map(_scalar_text)
    bad = bad.where(bad.notna(), None)
    return out.astype("str"), (bad.astype("str") if bad.notna().any() else None)


def _hhmm(hours: pd.Series, minutes: pd.Series) -> pd.Series:
    if hours.empty:
        return pd.Series([], index=hours.index, dtype=object)
    return hours.astype(int).map("{:02d}".format) + ":" + minutes.astype(int).map("{:02d}".format)


def parse_numbers(column: pd.Series, *, integer: bool) -> tuple[pd.Series, pd.Series | None]:
    """Numbers (nullable Int64 for whole numbers, float64 otherwise); unreadable text returned apart.

    1.0 reads as 1; 2.5 is not a whole number; text "3" or "1,055" reads as a number.
    """
    dtype = "Int64" if integer else "float64"
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        values = column.astype(float)
        if not integer:
            return values, None
        fractional = values.notna() & (values != values.round())
        if not fractional.any():
            return values.astype("Int64"), None
        bad = values.where(fractional).map(_scalar_text, na_action="ignore").astype("str")
        return values.where(~fractional).astype("Int64"), bad
    if _kind(column) in ("floating", "integer", "mixed-integer-float"):  # fast path: numbers only
        return parse_numbers(pd.to_numeric(column.astype(object)).astype(float), integer=integer)
    column = column.astype(object)
    kinds = column.map(type)
    is_num = kinds.isin([float, int, np.float64, np.int64])
    is_str = kinds.eq(str)
    text = column.where(is_str, None).astype("str").str.strip().str.replace(r"(?<=\d),(?=\d{3})", "", regex=True)
    numbers = pd.to_numeric(column.where(is_num, None), errors="coerce").astype(float)
    from_text = pd.to_numeric(text.where(text.ne("")), errors="coerce").astype(float)
    values = numbers.fillna(from_text)
    given = (is_num | (is_str & text.ne("") & text.notna())) | ~(is_num | is_str | column.isna())
    unreadable = given & values.isna()
    if integer:
        fractional = values.notna() & (values != values.round())
        unreadable |= fractional
        values = values.where(~fractional)
    bad = column.where(unreadable, None).map(_scalar_text, na_action="ignore")
    bad = bad.where(bad.notna(), None)
    return values.astype(dtype), (bad.astype("str") if bad.notna().any() else None)


def _empty_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """True where a raw cell is empty: missing, "" or only spaces."""
    out = frame.isna() | frame.eq("")
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object:
            try:
                spaces = column.str.strip().eq("")
            except AttributeError:  # no text in the column at all
                continue
            out[name] = out[name] | spaces.fillna(False).astype(bool)
    return out


def _drop_blank_rows(raw: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Rows with something in at least one contract column, their empty cells made missing."""
    if not names:
        return raw.iloc[0:0]
    empty = _empty_cells(raw[names])
    keep = ~empty.all(axis=1)
    raw = raw[keep].copy()
    raw[names] = raw[names].mask(empty[keep])
    return raw


def _is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _python_value(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime().date() if value == value.normalize() else value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- derived columns, recomputed ----------------------------------------------------------------------

def risk_scores(incidents: pd.DataFrame) -> pd.Series:
    """Consequence x likelihood (nullable Int64; missing unless both are whole numbers 1-5)."""
    c = pd.to_numeric(incidents.get("consequence"), errors="coerce").astype("Int64")
    lk = pd.to_numeric(incidents.get("likelihood"), errors="coerce").astype("Int64")
    valid = c.between(1, 5) & lk.between(1, 5)
    return (c * lk).where(valid.fillna(False)).astype("Int64")


def risk_bands(incidents: pd.DataFrame) -> pd.Series:
    """The NPSA band of the risk score (low, moderate, high, extreme), missing without a score."""
    score = risk_scores(incidents).astype(float)
    edges = [0] + [high for _, high, _ in RISK_BANDS]
    labels = [band for _, _, band in RISK_BANDS]
    bands = pd.cut(score, bins=edges, labels=labels, right=True)
    return bands.astype(object).where(score.notna(), None).astype("str")


def overdue(actions: pd.DataFrame, today: dt.date | pd.Timestamp | None = None) -> pd.Series:
    """True for actions open or in progress whose due date has passed (as the Overdue column shows)."""
    today = pd.Timestamp(today or dt.date.today()).normalize()
    status = actions.get("status", pd.Series(index=actions.index, dtype="str"))
    due = pd.to_datetime(actions.get("due_date", pd.Series(index=actions.index, dtype=DATE_DTYPE)))
    return (status.isin(["open", "in_progress"]) & due.lt(today)).fillna(False).astype(bool)
