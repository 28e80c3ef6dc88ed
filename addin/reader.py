"""The one reading module: every path (validate, convert, consolidate, server ingest) reads a site workbook here.

    result = read_workbook("oakview.xlsx")
    result.records.incidents   # contract field names as columns, plus _row (the Excel row)
    result.findings            # structural findings: missing sheets or columns, unknown columns...

Reading happens in three steps:

1. :func:`precheck` looks at the file with :mod:`zipfile` alone, before any parser sees it
   (see ``security.md``): signature, entry count, declared sizes and compression ratios, paths,
   DTDs, and the used range of each sheet to be parsed.  A hostile or broken file is refused
   with a :class:`WorkbookError` a care manager can act on.  A sheet reaching cell XFD1048576
   aborts calamine's whole process, so this step is not optional.  A plain sheet (as Excel and
   every library write one) is told apart by one RE2 pass; only other sheets get the exact checks.
2. fastexcel (Rust, calamine inside) reads the cell values of the Log and Actions sheets;
   python-calamine reads the Site sheet and what fastexcel cannot give exactly as calamine does
   (mixed columns, a header below row 1...).
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
import functools
import io
import logging
import posixpath
import re
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable
from xml.etree import ElementTree

import defusedxml.ElementTree as DefusedET
import fastexcel
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from defusedxml import DefusedXmlException
from python_calamine import CalamineWorkbook

from workbook_templates.codelists import CODE_LISTS, RISK_BANDS
from workbook_templates.contract import (
    ACTIONS, EXPOSURE_FIELDS, EXPOSURE_FIRST_COLUMN, INCIDENTS, LIMITS, SITE_FIELDS, SITE_SHEET, Field,
    column_letter,
)
from workbook_templates.records import SiteRecords, empty_frame

from .findings import Finding, make_finding

# fastexcel logs a warning for every column with no value at all (it reads it as text, which is
# what the reader wants); an empty Notes column is no news.
logging.getLogger("fastexcel.types.dtype").setLevel(logging.ERROR)

# --- limits of the pre-check (security.md); contract LIMITS hold the sheet sizes ------------------
MAX_FILE_BYTES = 100 * 2**20  # a site log of 50,000 rows is a few MB; anything this big is refused
MAX_ENTRIES = 2_000  # zip members (an xlsx has a few dozen)
MAX_MEMBER_BYTES = 256 * 2**20  # declared uncompressed size of any one member
MAX_TOTAL_BYTES = 512 * 2**20  # declared uncompressed size of all members together
MAX_RATIO = 500  # uncompressed / compressed above RATIO_FLOOR: sheets ~10-50x, bombs ~1000x (deflate max)
RATIO_FLOOR = 2**20  # small members may compress as well as they like
MAX_TEXT_BYTES = 256 * 2**20  # shared-string text the parsed sheets unpack to (each cell gets its own copy)
MAX_ROWS = LIMITS["max_rows"]
MAX_COLUMNS = LIMITS["max_columns"]
MAX_SHEETS = LIMITS["max_sheets"]
MAX_CELLS = MAX_ROWS * MAX_COLUMNS  # cells of one parsed sheet
MAX_SHARED_STRINGS = 2 * MAX_CELLS  # entries of the shared-strings table (calamine reserves room for the declared count)
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
    a1_value: dict[str, bool] = field(default_factory=dict)  # checked sheet -> its first cell is A1, with a value


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
                            "downloading). Copy it again from the original, or open it in Excel and save it "
                            "again.") from exc
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
            texts: dict[str, bytes] = {}  # checked sheet -> its XML, for the shared-strings volume
            tables: list[tuple[str, bytes]] = []  # shared-strings parts (calamine reads xl/sharedStrings.xml)
            for info in infos:
                sheet_name = checked.get(info.filename)
                # A parsed sheet is checked whatever its part is called; any other part that is XML
                # (by name or by its first bytes: a parser may be pointed at it) gets the DTD check.
                if sheet_name is None and not _is_xml(zf, info):
                    continue
                xml = _read_member(zf, info)
                if sheet_name is not None:
                    used, formulas = _check_sheet(sheet_name, info.filename, xml)
                    report.used[sheet_name] = used
                    report.formulas_without_value[sheet_name] = formulas
                    report.a1_value[sheet_name] = _A1_VALUE.search(xml, 0, 200_000) is not None
                    texts[sheet_name] = xml
                    continue
                _check_no_dtd(info.filename, xml)
                if _SST_ROOT.search(xml, 0, 4096):
                    tables.append((info.filename, xml))
            for part, xml in tables:
                lengths = _shared_string_lengths(xml)
                for sheet_name, sheet_xml in texts.items():
                    _check_text_volume(sheet_name, sheet_xml, lengths)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise WorkbookError("The file is damaged: a part of it does not read back correctly. Copy it again "
                                "from the original, or open it in Excel and save it again.") from exc
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
        raise WorkbookError(f"The file holds {len(infos):,} parts, far more than a workbook has ({MAX_ENTRIES:,} at "
                            "most); it was not opened. Check that it is the right file.")
    total = 0
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        # A backslash is no part of an xlsx name (the zip reader calamine uses reads it as "/", so
        # "xl\\worksheets\\sheet1.xml" would stand in for the sheet the pre-check looked at).
        if name.startswith(("/", "\\")) or ".." in parts or "\\" in name or re.match(r"^[A-Za-z]:", name):
            raise WorkbookError(f"The file holds a part with an unsafe path ({name!r}); it was not opened. "
                                "Check that it is the right file, or save it again from Excel.")
        if name.casefold() in seen:  # two parts of one name: which one a parser reads is anyone's guess
            raise WorkbookError(f"The file holds two parts called {name!r}, which Excel never writes; it was not "
                                "opened. Open it in Excel, save it again and send the new copy.")
        seen.add(name.casefold())
        if info.flag_bits & 0x1:
            raise WorkbookError("Parts of the file are encrypted. Remove the password in Excel: File > Info > "
                                "Protect Workbook, then save.")
        if info.file_size > MAX_MEMBER_BYTES:
            raise WorkbookError(f"A part of the file ({name}) would unpack to {info.file_size / 2**20:.0f} MB, "
                                "far more than a site log needs; it was not opened. Check that it is the right "
                                "file.")
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size // max(info.compress_size, 1)
            raise WorkbookError(f"A part of the file ({name}) is compressed {ratio} times over, as zip bombs are; "
                                "it was not opened. Check that it is the right file.")
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        raise WorkbookError(f"The file would unpack to {total / 2**20:.0f} MB, far more than a site log needs; "
                            "it was not opened. Check that it is the right file.")


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


def _is_xml(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether a member is XML: by its name, or by its first bytes (for parts named otherwise)."""
    if info.filename.lower().endswith(XML_SUFFIXES) or info.filename == "[Content_Types].xml":
        return True
    if info.is_dir() or info.file_size == 0:
        return False
    with zf.open(info) as fh:
        head = fh.read(64)
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") or head[:2] in (b"\xff\xfe", b"\xfe\xff")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, never more than declared (and the declared size is bounded above)."""
    with zf.open(info) as fh:
        data = fh.read(info.file_size + 1)
    if len(data) > info.file_size:
        raise WorkbookError(f"A part of the file ({info.filename}) is larger than it says; it was not opened. "
                            "Copy it again from the original, or open it in Excel and save it again.")
    return data


_DTD = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def _maybe_utf16(xml: bytes) -> bool:
    """Whether a part may be UTF-16 (a byte-order mark, or NULs among its first bytes)."""
    return xml[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in xml[:64]


def _check_no_dtd(name: str, xml: bytes) -> None:
    text = xml
    if _maybe_utf16(xml):
        for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
            try:
                text = xml.decode(encoding).encode("utf-8", "replace")
                break
            except UnicodeDecodeError:
                continue
    found = b"!" in text and (_re2_found(text, _RE2_DTD, ignore_case=True) if len(text) > 65_536  # memchr first
                              else b"<!" in text and _DTD.search(text) is not None)
    if found:
        raise WorkbookError(f"A part of the file ({name}) holds a DOCTYPE or ENTITY declaration, which Excel never "
                            "writes (files built to attack a server do); it was not opened. Open the workbook in "
                            "Excel, save it again and send the new copy.")


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
    _check_no_dtd(name, xml)  # so no entity can be declared; defusedxml refuses one all the same
    try:
        return DefusedET.fromstring(xml)
    except DefusedXmlException as exc:
        raise WorkbookError(f"A part of the file ({name}) holds a DOCTYPE or ENTITY declaration, which Excel never "
                            "writes (files built to attack a server do); it was not opened. Open the workbook in "
                            "Excel, save it again and send the new copy.") from exc
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


# The same searches for RE2 (pyarrow's regex engine): linear time, run with the GIL released, so a
# sheet's pre-check in one thread does not hold up the parsing of another workbook in the next.
# Only whether there is a match is asked; the match itself (for the message) comes from ``re``.
_WS = r"[\t\n\r\f\x0b ]"  # what ``\s`` means in a bytes pattern
_RE2_CELL_BEYOND = _WS + r"r" + _WS + r"*=" + _WS + r"*[\"'](?:" + _BEYOND_REF.decode() + r")[\"']"
_RE2_ROW_BEYOND = (r"<(?:\w+:)?row\b[^>]*" + _WS + r"r" + _WS + r"*=" + _WS + r"*[\"'](?:"
                   + _beyond(MAX_ROWS, _DECIMAL) + r")[\"']")
_RE2_DTD = r"<!" + _WS + r"*(?:DOCTYPE|ENTITY)"
_RE2_NO_VALUE = r"</(?:\w+:)?f>" + _WS + r"*</(?:\w+:)?c>|<(?:\w+:)?f\b[^>]*/>" + _WS + r"*</(?:\w+:)?c>"


def _as_arrow(xml: bytes, start: int = 0, end: int | None = None) -> pa.Array:
    """``xml[start:end]`` as a one-value Arrow binary array, without a copy."""
    offsets = pa.py_buffer(np.array([start, len(xml) if end is None else end], dtype=np.int64).tobytes())
    return pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(xml)])


def _re2_found(xml: bytes, pattern: str, *, ignore_case: bool = False, start: int = 0, end: int | None = None) -> bool:
    """Whether ``pattern`` (RE2 syntax) matches in ``xml[start:end]``; the GIL is released meanwhile.

    Arrow runs RE2 on binary values as Latin-1: any byte is one character, so ``[^>]`` also
    matches bytes that are not UTF-8, and ``$`` is the end of the range.
    """
    array = _as_arrow(xml, start, end)
    return bool(pc.match_substring_regex(array, pattern, ignore_case=ignore_case)[0].as_py())


def _far_cell(xml: bytes) -> re.Match | None:
    """The first cell reference beyond the limits, however it is written (one RE2 scan when there is none)."""
    if not _re2_found(xml, _RE2_CELL_BEYOND, ignore_case=True):
        return None
    return _cell_beyond(xml) or _CELL_BEYOND.search(xml)


_WORD_TYPES = {1: np.uint8, 2: np.dtype("<u2"), 4: np.dtype("<u4")}


def _count(xml: bytes, needle: bytes, start: int = 0, end: int | None = None) -> int:
    """``xml.count(needle, start, end)`` for a needle of 1, 2 or 4 bytes, in numpy with the GIL released.

    The words at each of the needle's offsets are compared at once, several times faster than
    bytes.count.  Exact for needles that cannot overlap themselves ("<row", "<c", "<c r"), as used.
    """
    end = len(xml) if end is None else end
    size = len(needle)
    dtype = _WORD_TYPES[size]
    word = np.frombuffer(needle, dtype=dtype)[0]
    return sum(int(np.count_nonzero(np.frombuffer(xml, dtype=dtype, count=(end - at) // size, offset=at) == word))
               for at in range(start, min(start + size, end)))


def _last_row_number(xml: bytes, written: int) -> int:
    at = xml.rfind(b'<row r="')
    last = _ROW_REF_FAST.match(xml, at) if at >= 0 else None
    if last is None:
        return max(_row_numbers(xml, written), default=0)
    return int(last.group(1))


def _row_numbers(xml: bytes, written: int | None = None) -> list[int]:
    """Every row number of a sheet; ``written`` is ``xml.count(b"<row")`` when already counted."""
    found = _ROW_REF_FAST.findall(xml)
    if len(found) != (_count(xml, b"<row") if written is None else written) or b":row" in xml:
        found = _ROW_REF.findall(xml)
    return list(map(int, found))


def _check_sheet_extent(sheet: str, xml: bytes) -> tuple[int, int]:
    """The sheet's used rows and columns (as declared); refuse references beyond the limits.

    The declared ``<dimension>``, every cell reference and every row number are checked;
    so is the number of rows (rows may be written without numbers).
    """
    rows, cols, far = _declared_extent(xml)
    cell = _far_cell(xml)
    if cell and not far:
        far = cell.group(1).decode("ascii", "replace").upper()
    written = _count(xml, b"<row")
    if _re2_found(xml, _RE2_ROW_BEYOND):  # a row number beyond the limit: all of them, for the message
        row_numbers = _row_numbers(xml, written)
        rows = max(rows, max(row_numbers)) if row_numbers else rows
    else:  # rows come in order (Excel refuses a sheet whose rows do not), so the last is the largest
        rows = max(rows, _last_row_number(xml, written))
    written += xml.count(b":row ") if b":row " in xml else 0
    _refuse_beyond(sheet, far, rows, written)
    _check_cells_without_ref(sheet, xml)
    return rows, cols


def _declared_extent(xml: bytes) -> tuple[int, int, str]:
    """Rows and columns of the sheet's ``<dimension>``, and its far corner if that is beyond the limits."""
    rows = cols = 0
    match = _DIMENSION.search(xml, 0, 65_536)  # it comes before the cells; anywhere else is looked for too
    if match is None and b"dimension" in xml:
        match = _DIMENSION.search(xml)
    if match:
        for corner in match.group(1).decode("ascii", "replace").split(":"):
            a1 = _A1.match(corner.strip())
            if a1:
                cols = max(cols, _col_index(a1.group(1)))
                rows = max(rows, int(a1.group(2)))
    far = match.group(1).decode("ascii", "replace").split(":")[-1] if rows > MAX_ROWS or cols > MAX_COLUMNS else ""
    return rows, cols, far


def _refuse_beyond(sheet: str, far: str, rows: int, written: int) -> None:
    """Refuse the sheet if a reference (``far``), its last row number or its number of rows is beyond the limits."""
    if not far and (rows > MAX_ROWS or written > MAX_ROWS):
        far = f"row {max(rows, written):,}"
    if far:
        raise WorkbookError(_beyond_message(sheet, far))


def _beyond_message(sheet: str, far: str) -> str:
    return (f"Sheet '{sheet}' reaches {far if far.startswith('row') else 'cell ' + far}, beyond the {MAX_ROWS:,} "
            f"rows and {MAX_COLUMNS} columns (A to {column_letter(MAX_COLUMNS - 1)}) a site log may use. Delete the "
            "empty rows and columns below and to the right of your data (select them, right-click, Delete), save, "
            "and try again.")


# Cells and rows as elements (a cell may leave out its reference: it then follows the one before).
_CELL_OPENINGS = (b"<c ", b"<c>", b"<c/>")
_ROW_OR_CELL = re.compile(rb"<(?:\w+:)?(row|c)\b([^>]*)>")
_REF_ATTR = re.compile(rb"""(?:^|\s)r\s*=\s*["']([^"']*)["']""")


def _check_cells_without_ref(sheet: str, xml: bytes) -> None:
    """Refuse a sheet whose cells, placed one after another where they have no reference, go beyond the limits.

    Excel and every library write ``r="B7"`` on each cell; a file that leaves it out can still
    make calamine size its grid by the widest row times the number of rows (a few KB of
    ``<c/>`` elements ask for gigabytes).  Only sheets with such cells are walked, cell by cell.
    """
    start = xml.find(b"<sheetData")
    if start >= 0 and b":sheetData" not in xml:  # unprefixed: inside sheetData, "<c" opens a cell and nothing else
        end = xml.rfind(b"</sheetData>")
        end = len(xml) if end < start else end
        if xml.count(b"<c", start, end) == xml.count(b'<c r="', start, end):
            return  # every cell carries its reference, which _check_sheet_extent has checked
    openings = sum(xml.count(o) for o in _CELL_OPENINGS) + xml.count(b":c ")
    if openings > MAX_CELLS:
        raise WorkbookError(f"Sheet '{sheet}' holds {openings:,} cells, more than the {MAX_ROWS:,} rows and "
                            f"{MAX_COLUMNS} columns a site log may use; it was not opened. Check that it is the "
                            "right file.")
    row = col = 0
    for match in _ROW_OR_CELL.finditer(xml):
        ref = _REF_ATTR.search(match.group(2))
        if match.group(1) == b"row":
            row = int(ref.group(1)) if ref and ref.group(1).isdigit() else row + 1
            col = 0
        else:
            a1 = _A1.match(ref.group(1).decode("ascii", "replace").strip()) if ref else None
            col = _col_index(a1.group(1)) if a1 else col + 1
        if col > MAX_COLUMNS or row > MAX_ROWS:
            raise WorkbookError(_beyond_message(sheet, f"row {row:,}" if row > MAX_ROWS else
                                                f"{column_letter(col - 1)}{max(row, 1)}"))


# --- shared strings: each cell that refers to one gets its own copy of the text when read -------------
_SST_ROOT = re.compile(rb"<(?:\w+:)?sst\b")
_SST_COUNTS = re.compile(rb"""\b(?:count|uniqueCount)\s*=\s*["']\s*(\d+)""")
_SI_PREFIXED = re.compile(rb"<\w+:si\b")
_S_CELL_FAST = re.compile(rb' t="s"><v>(\d{1,10})</v>')
_S_ATTR = re.compile(rb"""\st\s*=\s*["']s["']""")
_S_CELL = re.compile(rb"""\st\s*=\s*["']s["'][^>]*>\s*<(?:\w+:)?v>\s*(\d{1,10})\s*<""")


def _shared_string_lengths(xml: bytes) -> np.ndarray:
    """An upper bound of each shared string's text, in bytes (its XML, which no entity can make shorter)."""
    root = _SST_ROOT.search(xml)
    head = xml[root.start():xml.find(b">", root.start()) + 1] if root else b""
    declared = max((int(n) for n in _SST_COUNTS.findall(head)), default=0)
    pieces = _SI_PREFIXED.split(xml) if b":si" in xml else xml.split(b"<si")
    if max(declared, len(pieces) - 1) > MAX_SHARED_STRINGS:
        raise WorkbookError(f"The workbook's table of texts says it holds {max(declared, len(pieces) - 1):,} "
                            f"entries, far more than a site log has ({MAX_SHARED_STRINGS:,} at most); it was not "
                            "opened. Open it in Excel, save it again and send the new copy.")
    return np.fromiter(map(len, pieces[1:]), dtype=np.int64, count=len(pieces) - 1)


def _check_text_volume(sheet: str, xml: bytes, lengths: np.ndarray) -> None:
    """Refuse a sheet whose cells would unpack more than MAX_TEXT_BYTES of shared-string text.

    A few KB of sheet can point 100,000 cells at one 1 MB string: 100 GB once read.  The
    quick bound (cells x longest string) settles a real log; only past it are the cells counted.
    """
    if not len(lengths):
        return
    longest = int(lengths.max())
    # '"s"' and "'s'" cannot overlap, so a third of the sheet's bytes bounds their count: no count needed.
    if len(xml) // 3 * longest <= MAX_TEXT_BYTES:
        return
    if (xml.count(b'"s"') + xml.count(b"'s'")) * longest <= MAX_TEXT_BYTES:
        return
    found = _S_CELL_FAST.findall(xml)
    total = xml.count(b' t="s"')
    if total != xml.count(b'"s"') + xml.count(b"'s'") or len(found) != total:  # written some other way
        found = _S_CELL.findall(xml)
        total = len(_S_ATTR.findall(xml))
    index = np.fromiter(map(int, found), dtype=np.int64, count=len(found))
    volume = int(lengths[index[index < len(lengths)]].sum()) + (total - len(found)) * longest
    if volume > MAX_TEXT_BYTES:
        raise WorkbookError(f"Sheet '{sheet}' repeats long texts so often that reading it would unpack about "
                            f"{volume / 2**20:,.0f} MB of text, far more than a site log holds "
                            f"({MAX_TEXT_BYTES // 2**20} MB); it was not opened. Check that it is the right file.")


# The sheet's first row is row 1 and its first cell A1, holding a value (as the builder and Excel write
# a header row): then the parsed range starts at A1 and column letters can be counted from A.
_A1_VALUE = re.compile(rb'<sheetData>\s*<row r="1"[^>]*>\s*<c r="A1"(?: [^>]*)?>\s*<(?:v|is)>')

_CELL_START = re.compile(rb"<(?:\w+:)?c\b[^>]*?\sr\s*=\s*[\"']([A-Za-z]{1,4}\d{1,8})[\"'][^>]*>")
# A formula element closed and straight away the cell: no <v> saved result.
_NO_VALUE = re.compile(rb"</f>\s*</c>|<f\b[^>]*/>\s*</c>")
_NO_VALUE_PREFIXED = re.compile(rb"</\w+:f>\s*</\w+:c>|<\w+:f\b[^>]*/>\s*</\w+:c>")


def _formulas_without_value(xml: bytes) -> list[str]:
    """Cells holding a formula with no saved result (no <v> at all), e.g. written by a script, never opened."""
    if not _re2_found(xml, _RE2_NO_VALUE):  # the usual case: every formula has its saved result
        return []
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


# --- the plain sheet: one pass of RE2 instead of the exact checks --------------------------------------
# Nearly every sheet is written as Excel and every library write it: each cell opens `<c r="B7"`, no
# reference is beyond the limits, no element has a namespace prefix, every formula has its saved value.
# One RE2 scan (GIL released) for anything else tells such a sheet apart; for it the exact checks'
# answers follow from the dimension, the last row number and the number of rows.  Any other sheet gets
# the exact checks, so its answers and refusals are theirs (tests/test_precheck_fast.py compares both).

def _not_followed_by(prefix: str, text: str) -> str:
    """RE2 for ``prefix`` followed by anything but ``text`` or by the end (RE2 has no lookahead).

    ``text`` holds plain characters (no regex syntax): ``_not_followed_by("<c", ' r="')``.
    """
    tail = ""
    for ch in reversed(text):
        tail = f"(?:$|[^{ch}]|{ch}{tail})" if tail else f"(?:$|[^{ch}])"
    return prefix + tail


_BEYOND_CELL_OR_ROW = _BEYOND_REF.decode() + "|" + _beyond(MAX_ROWS, _DECIMAL)  # a cell's or a row's reference
_RE2_ODD = "|".join([
    r"<!" + _WS + r"*(?i:doctype|entity)",  # a DTD (_check_no_dtd)
    # A reference written another way than ` r="B7"`: _far_cell and _RE2_ROW_BEYOND look at those too.
    r"[\t\n\r\f\x0b][rR]" + _WS + r"*=", r" R" + _WS + r"*=", r" r" + _WS + r"+=", r" r=" + _WS, r" r='",
    r' r="[A-Z]*[a-z]',
    r' r="(?:' + _BEYOND_CELL_OR_ROW + r")[\"']",
    r":row ", r":sheetData",  # prefixed rows are counted apart; a prefixed sheetData has its cells walked
    _RE2_NO_VALUE,  # a formula without its saved value (_formulas_without_value)
])
# Inside sheetData, also a cell without its reference first: _check_cells_without_ref walks such sheets.
_RE2_ODD_CELLS = _RE2_ODD + "|" + _not_followed_by("<c", ' r="')

# sheetData as Excel and the libraries write it (no white space but spaces, no "!") is told plain
# by cheaper looks than the _RE2_ODD_CELLS scan, which spends most of its time where its alternatives
# start with a common byte ("<", a space).  Each pattern below starts with one byte (RE2 skips to it)
# and matches wherever the alternatives it stands for do; with "<c" always followed by " r" (counted
# in numpy), they rule out every alternative.  Any other sheetData gets the _RE2_ODD_CELLS scan.
_RE2_PLAIN_DATA_ODD = [
    # " r" or " R" other than a reference ` r="B7"` within the limits: a reference written another
    # way, lower-case letters in one, one beyond the limits; and "<c r" not opening ` r="`.
    r' (?:R|r(?:$|[^=]|=(?:$|[^"])|="(?:[A-Z]*[a-z]|(?:' + _BEYOND_CELL_OR_ROW + r")[\"'])))",
    r":(?:row |sheetData)",
    r"f(?:>|\b[^>]*/>) *</(?:\w+:)?c>",  # _RE2_NO_VALUE from its "f" on
]


def _is_plain_sheet(xml: bytes) -> bool:
    """Whether the sheet holds none of the oddities the exact checks look for (see above).

    sheetData (from ``<sheetData`` to ``</sheetData>``, as _check_cells_without_ref takes it) is
    scanned for the oddities and for cells without a reference, the rest of the sheet (before and
    after it, joined: an oddity made by the join only sends the sheet to the exact checks) for the
    oddities.  No oddity can straddle the two ends (each end is a "<" that none holds after its
    first byte), except a formula tag left open before sheetData: that sheet is not plain.
    """
    if _maybe_utf16(xml):  # the DTD check reads it decoded
        return False
    start = xml.find(b"<sheetData")
    if start < 0 or xml.rfind(b">", 0, start) <= xml.rfind(b"<", 0, start):
        return False
    end = xml.rfind(b"</sheetData>")
    end = len(xml) if end < start else end
    if _re2_found(xml[:start] + xml[end:], _RE2_ODD):  # one RE2 call (each compiles its pattern) for both ends
        return False
    return _plain_sheet_data(xml, start, end) or not _re2_found(xml, _RE2_ODD_CELLS, start=start, end=end)


def _plain_sheet_data(xml: bytes, start: int, end: int) -> bool:
    """Whether ``xml[start:end]`` (sheetData) is shown free of _RE2_ODD_CELLS by the cheaper looks (see above).

    False says only that they cannot tell; True that no alternative of _RE2_ODD_CELLS matches there.
    """
    return (xml.find(b"!", start, end) < 0  # no DTD
            and int(np.frombuffer(xml, np.uint8, end - start, start).min()) >= 0x20  # "\s" is a space only
            and _count(xml, b"<c", start, end) == _count(xml, b"<c r", start, end)
            and not any(_re2_found(xml, pattern, start=start, end=end) for pattern in _RE2_PLAIN_DATA_ODD))


def _check_sheet(sheet: str, part: str, xml: bytes) -> tuple[tuple[int, int], list[str]]:
    """A parsed sheet's checks: no DTD, its extent within the limits, and its formulas without a saved value."""
    if _is_plain_sheet(xml):
        return _plain_sheet_extent(sheet, xml), []
    _check_no_dtd(part, xml)
    return _check_sheet_extent(sheet, xml), _formulas_without_value(xml)


def _plain_sheet_extent(sheet: str, xml: bytes) -> tuple[int, int]:
    """``_check_sheet_extent`` of a plain sheet.

    It has no reference beyond the limits (so no far cell and no row number beyond), no
    prefixed row, and every cell of sheetData has its reference (no cell walk); what remains
    is the dimension, the last row number and the number of rows.
    """
    rows, cols, far = _declared_extent(xml)
    written = _count(xml, b"<row")
    rows = max(rows, _last_row_number(xml, written))
    _refuse_beyond(sheet, far, rows, written)
    return rows, cols


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
    books = _Books(data)

    # Records are filled in below; a sheet the workbook lacks keeps an empty frame (made only then).
    result = ReadResult(file=file, records=SiteRecords(site={}, incidents=None, actions=None, exposure=None),
                        layout=default_layout())
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
            fast = _read_table_fast(books, sheet, actual, file) if report.a1_value.get(actual) else None
            if fast is None:
                fast = _read_table(_sheet_rows(books.calamine(), actual), sheet, actual, file)
            frame, layout, findings = fast
            findings += _formula_findings(report.formulas_without_value.get(actual, []), frame, layout, sheet, file)
            setattr(result.records, key, frame)
            result.layout[key] = layout
            result.findings += findings

        actual = present[SITE_SHEET]
        if actual is not None:
            grid = _sheet_rows(books.calamine(), actual)
            site, site_layout, exposure, exposure_layout, findings = _read_site(grid, actual, file)
            findings += _site_formula_findings(report.formulas_without_value.get(actual, []), site_layout,
                                               exposure_layout, file)
            result.records.site = site
            result.records.exposure = exposure
            result.layout["site"] = site_layout
            result.layout["exposure"] = exposure_layout
            result.findings += findings
    finally:
        books.close()
    for kind in ("incidents", "actions", "exposure"):
        if getattr(result.records, kind) is None:
            setattr(result.records, kind, empty_frame(kind))
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


class _Books:
    """The parsers of one workbook, each opened on first use: fastexcel for the tables, calamine for the Site
    sheet and for what fastexcel cannot read as calamine does."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._fast = None
        self._calamine = None

    def fast(self):  # noqa: ANN201 - fastexcel.ExcelReader
        if self._fast is None:
            try:
                self._fast = fastexcel.read_excel(self.data)
            except Exception as exc:  # fastexcel raises its own error types, all with a reason
                raise WorkbookError(f"The workbook cannot be read ({exc}). Open it in Excel and save it "
                                    "again.") from exc
        return self._fast

    def calamine(self) -> CalamineWorkbook:
        if self._calamine is None:
            try:
                self._calamine = CalamineWorkbook.from_filelike(io.BytesIO(self.data))
            except Exception as exc:  # calamine raises its own error types, all with a reason
                raise WorkbookError(f"The workbook cannot be read ({exc}). Open it in Excel and save it "
                                    "again.") from exc
        return self._calamine

    def close(self) -> None:
        if self._calamine is not None:
            self._calamine.close()
        self._fast = self._calamine = None


# Field types whose column the fast path takes as Arrow gives it, by Arrow type; any other pairing
# (a date typed in a text column, a number in a date column...) goes through the general reader.
_TEXT_TYPES = ("text", "longtext", "ref", "refs", "code")
_FAST_KINDS = {
    "text": ("string", "null"), "longtext": ("string", "null"), "ref": ("string", "null"),
    "refs": ("string", "null"), "code": ("string", "null"),
    "date": ("timestamp", "string", "null"), "time": ("timestamp", "string", "null"),
    "int": ("double", "string", "null"), "number": ("double", "string", "null"),
}
# Excel dates before March 1900 (its leap-year bug) and time-only values read differently by the two
# parsers; such a column goes through the general reader.
_FAST_FIRST_DATE = pa.scalar(dt.datetime(1900, 3, 1), pa.timestamp("ms"))
_FAST_LAST_DATE = pa.scalar(dt.datetime(2199, 12, 31, 23, 59, 59, 999000), pa.timestamp("ms"))
_STR_DTYPE = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' "str"
_ARROW_STR_ARRAY = _STR_DTYPE.construct_array_type()


def _arrow_kind(arrow_type: pa.DataType) -> str:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_floating(arrow_type):
        return "double"
    if pa.types.is_null(arrow_type):
        return "null"
    return str(arrow_type)


def _read_table_fast(books: _Books, sheet, actual: str, file: str):  # noqa: ANN202
    """A table sheet through fastexcel (Rust, into Arrow, GIL released), or None for the general reader.

    Taken only for the layout the builder writes and Excel keeps: the header in row 1 from A1,
    every header a known label or field name (once each), and every input column of one type
    (text, dates, numbers) or empty.  The result is what :func:`_read_table` gives for the same
    sheet: the same frame (column order, dtypes, ``_row``, ``_raw_*``), layout and findings.
    """
    lookup = _header_lookup(sheet.fields)
    chosen: dict[int, Field] = {}
    seen: dict[str, int] = {}  # every field found -> its column (derived ones too, as the layout has them)
    usable = True

    def select(column) -> bool:  # noqa: ANN001 - fastexcel.ColumnInfo
        nonlocal usable
        f = lookup.get(_norm(column.name))
        if f is None or f.name in seen:  # unknown, unnamed or repeated heading: NM091 needs the general reader
            usable = False
            return False
        seen[f.name] = column.index
        if f.type == "derived":
            return False
        chosen[column.index] = f
        return True

    try:
        batch = books.fast().load_sheet(actual, header_row=0, skip_rows=0, schema_sample_rows=None,
                                        dtype_coercion="strict", use_columns=select, eager=True)
    except WorkbookError:
        raise
    except Exception:  # noqa: BLE001 - mixed types in a column, or anything else: the general reader decides
        return None
    if not usable or batch.num_columns != len(chosen):
        return None
    fields = [chosen[j] for j in sorted(chosen)]
    columns = dict(sorted(seen.items(), key=lambda item: item[1]))
    arrays: dict[str, pa.Array] = {}
    for f, array in zip(fields, batch.columns):
        kind = _arrow_kind(array.type)
        if kind not in _FAST_KINDS.get(f.type, ()):
            return None
        if kind == "timestamp":
            if f.type == "date" and pc.any(pc.or_(pc.less(array, _FAST_FIRST_DATE),
                                                  pc.greater(array, _FAST_LAST_DATE))).as_py():
                return None
        elif kind == "string":
            array = _blank_as_null(array, strip=f.type in _TEXT_TYPES)
        elif kind == "null":
            continue
        arrays[f.name] = array
    keep = _nonblank_rows(list(arrays.values()), batch.num_rows)
    if keep.size < batch.num_rows:
        take = pa.array(keep)
        arrays = {name: array.take(take) for name, array in arrays.items()}
    index = pd.Index(keep, dtype="int64") if keep.size < batch.num_rows else pd.RangeIndex(batch.num_rows)
    frame = _normalise_arrow(arrays, sheet.input_fields, index, sheet.key)

    findings = [make_finding("NM092", file=file, sheet=actual, label=f.label, value=actual)
                for f in sheet.input_fields if f.name not in columns]
    layout = SheetLayout(actual, {name: column_letter(j) for name, j in columns.items()}, header_row=1)
    return frame, layout, findings


def _blank_as_null(array: pa.Array, *, strip: bool) -> pa.Array:
    """Text with each cell holding only spaces made missing; the rest stripped (codes and text) or as typed."""
    trimmed = pc.utf8_trim_whitespace(array)
    empty = pc.equal(trimmed, "")
    kept = trimmed if strip else array
    return pc.if_else(empty, pa.scalar(None, array.type), kept) if empty.true_count else kept


def _nonblank_rows(arrays: list[pa.Array], rows: int) -> np.ndarray:
    """Positions of the rows with a value in at least one of ``arrays`` (all of them, if one column is full)."""
    if any(array.null_count == 0 for array in arrays):
        return np.arange(rows)
    nonblank = np.zeros(rows, dtype=bool)
    for array in arrays:
        nonblank |= pc.is_valid(array).to_numpy(zero_copy_only=False)
    return np.flatnonzero(nonblank)


def _normalise_arrow(arrays: dict[str, pa.Array], fields: list[Field], index: pd.Index, kind: str) -> pd.DataFrame:
    """``normalise_frame`` of the fast path's columns (blank cells already null, text stripped).

    Text, codes, Excel dates and times, and numbers are typed in Arrow and turned into pandas in
    one step; text that must be parsed (dates, times or numbers typed as text) and numbers that
    are not whole where a whole number is due go through the same functions as the general reader.
    """
    n = len(index)
    typed: dict[str, pa.Array] = {}  # in the frame's column order
    parsed: dict[str, pd.Series] = {}  # columns typed by pandas, and their _raw_ columns
    for f in fields:
        array = arrays.get(f.name)
        if array is None:  # no column, or not one value in it
            typed[f.name] = pa.nulls(n, _EMPTY_ARROW[f.type])
            continue
        kind = _arrow_kind(array.type)
        if f.type in _TEXT_TYPES:
            typed[f.name] = _arrow_codes(array, f.codes) if f.type == "code" else array
            continue
        if kind == "timestamp" and f.type == "date":
            typed[f.name] = pc.floor_temporal(array, unit="day").cast(pa.timestamp("us"))
            continue
        if kind == "timestamp":  # a time
            typed[f.name] = _arrow_times(array)
            continue
        if kind == "double" and f.type == "number":
            typed[f.name] = array
            continue
        if kind == "double" and _whole_numbers(array):
            typed[f.name] = array.cast(pa.int64())
            continue
        if kind == "double":
            column = pd.Series(array.to_numpy(zero_copy_only=False), index=index)
        else:  # text to parse: as the general reader hands it over, missing cells as NaN
            column = pd.Series(array.to_numpy(zero_copy_only=False), index=index, dtype=object)
            column = column.where(column.notna(), np.nan)
        values, bad = normalise_column(column, f)
        typed[f.name] = None  # placeholder: keeps the column's place
        parsed[f.name] = values
        if bad is not None and bad.notna().any():
            typed[f"_raw_{f.name}"] = None
            parsed[f"_raw_{f.name}"] = bad.astype("str")
    typed["_row"] = pa.array(np.asarray(index, dtype=np.int64) + 2)
    columns = {name: parsed[name] if array is None else _pandas_array(array) for name, array in typed.items()}
    return pd.DataFrame(columns, index=index, copy=False)


def _pandas_array(array: pa.Array):  # noqa: ANN202 - a numpy or pandas extension array
    """One column as ``pa.table(...).to_pandas(types_mapper=_ARROW_PANDAS_TYPES.get)`` makes it, without the table."""
    mapped = _ARROW_PANDAS_TYPES.get(array.type)
    if mapped is not None:  # text as pandas' str, whole numbers as Int64
        return mapped.__from_arrow__(array)
    return array.to_numpy(zero_copy_only=False)  # dates as datetime64 (NaT), numbers as float64 (NaN)


_EMPTY_ARROW = {"date": pa.timestamp("us"), "int": pa.int64(), "number": pa.float64(), "time": pa.string()}
_EMPTY_ARROW.update({t: pa.string() for t in _TEXT_TYPES})
_ARROW_PANDAS_TYPES = {pa.string(): _STR_DTYPE, pa.large_string(): _STR_DTYPE, pa.int64(): pd.Int64Dtype()}


def _whole_numbers(array: pa.Array) -> bool:
    """Every number is whole and exact as Int64 (so ``parse_numbers`` would find nothing to report)."""
    valid = array.drop_null()
    if not len(valid):
        return True
    big = pc.max(pc.abs(valid)).as_py()
    return big is not None and big < 2**53 and pc.all(pc.equal(valid, pc.floor(valid))).as_py()


_MINUTES_HHMM = pa.array([f"{m // 60:02d}:{m % 60:02d}" for m in range(24 * 60)], pa.string())
_PER_MINUTE = {"s": 60, "ms": 60_000, "us": 60_000_000, "ns": 60_000_000_000}


def _arrow_times(array: pa.Array) -> pa.Array:
    """``pc.strftime(array, format="%H:%M")``, looked up by the minute of the day (strftime is slow)."""
    if array.type.tz is not None:
        return pc.strftime(array, format="%H:%M")
    since_midnight = pc.subtract(array, pc.floor_temporal(array, unit="day")).cast(pa.int64())
    return pc.take(_MINUTES_HHMM, pc.divide(since_midnight, _PER_MINUTE[array.type.unit]))


@functools.cache  # one per code list, which is fixed
def _code_set(list_name: str) -> pa.Array:
    """The list's codes, and a missing value (so that is_in takes one for listed)."""
    return pa.array([*CODE_LISTS[list_name], None], pa.string())


def _arrow_codes(array: pa.Array, list_name: str) -> pa.Array:
    """``match_codes`` in Arrow: a code in its list's own spelling, or the text as typed."""
    listed = pc.is_in(array, value_set=_code_set(list_name))  # missing values too
    if pc.all(listed).as_py() is not False:
        return array
    others = pc.unique(array.filter(pc.invert(listed)))
    folded = {code.casefold(): code for code in CODE_LISTS[list_name]}
    mapped = pa.array([None if x is None else folded.get(x.casefold(), x) for x in others.to_pylist()],
                      pa.string())
    at = pc.index_in(array, value_set=others)
    return pc.if_else(pc.is_null(at), array, pc.take(mapped, at))


def _norm(text: object) -> str:
    """Header or sheet name compared without case, spacing or underscores."""
    return _norm_text(str(text))


@functools.lru_cache(maxsize=4096)  # the same headers come back in every workbook
def _norm_text(text: str) -> str:
    return re.sub(r"[\s_]+", " ", text).strip().casefold()


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
    if not cells:  # the usual case: no need to index the rows' refs
        return []
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
    keys = [r[0] if r else "" for r in grid]
    values = [r[1] if len(r) > 1 else "" for r in grid]
    for i, key in enumerate(keys):
        f = lookup.get(_norm(key)) if isinstance(key, str) else None
        if f is not None and f.name not in rows:
            rows[f.name] = i + 1
    found = {name: values[r - 1] for name, r in rows.items()}
    scalar = {f.name: _site_value(found.get(f.name), f) for f in SITE_FIELDS}
    others = [f for f in SITE_FIELDS if scalar[f.name] is None]
    typed = (normalise_frame(pd.DataFrame({f.name: [found.get(f.name)] for f in others}, dtype=object), "site",
                             fields=others) if others else None)
    for f in SITE_FIELDS:
        raw_col = f"_raw_{f.name}"
        if scalar[f.name] is not None:
            value, raw = scalar[f.name]
            site[f.name] = value
            if raw is not None:
                site[raw_col] = raw
            continue
        value = typed[f.name].iloc[0] if f.name in typed else None
        site[f.name] = None if _is_missing(value) else _python_value(value)
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
    exposure = _plain_exposure(grid[header + 1:], columns, header)
    if exposure is None:
        exposure = _normalised_exposure(grid[header + 1:], columns, header)
    return site, site_layout, exposure, exposure_layout, findings


def _normalised_exposure(body: list[list], columns: dict[str, int], header: int) -> pd.DataFrame:
    """The exposure table's rows below ``header``: blank rows dropped, every value typed by ``normalise_frame``."""
    cells = pd.DataFrame(body, dtype=object)
    raw = pd.DataFrame({n: cells[j] if j in cells else pd.Series(dtype=object) for n, j in columns.items()},
                       index=cells.index)
    raw["_row"] = raw.index + header + 2
    raw = _drop_blank_rows(raw, list(columns))
    return normalise_frame(raw, "exposure", fields=EXPOSURE_FIELDS)


_FIRST_DATE, _LAST_DATE = (stamp.date() for stamp in (pd.Timestamp("1900-01-01"), pd.Timestamp("2199-12-31")))


def _plain_exposure(body: list[list], columns: dict[str, int], header: int) -> pd.DataFrame | None:
    """``_normalised_exposure`` built straight from the cells, when every cell is plain: empty, a date
    from 1900 to 2199 in the date field, a finite number in a number field, a whole number exact as
    Int64 in a whole-number field.  None for anything else (or no row at all).
    """
    cells = [[None if j >= len(row) or _blank_cell(row[j]) else row[j] for j in columns.values()] for row in body]
    keep = np.array([i for i, row in enumerate(cells) if any(v is not None for v in row)], dtype=np.int64)
    if not keep.size:
        return None
    index = pd.RangeIndex(len(body)).take(keep)  # what the general way's row filter leaves
    position = {name: k for k, name in enumerate(columns)}
    data = {}
    for f in EXPOSURE_FIELDS:
        k = position.get(f.name)
        values = [None if k is None else cells[i][k] for i in keep]
        if not all(v is None or _plain_exposure_value(v, f.type) for v in values):
            return None
        if f.type == "date":
            array = np.array(values, dtype=DATE_DTYPE)
        elif f.type == "int":
            array = pd.array([None if v is None else int(v) for v in values], dtype="Int64")
        else:
            array = np.array([np.nan if v is None else v for v in values], dtype=float)
        data[f.name] = pd.Series(array, index=index)
    data["_row"] = pd.Series(pd.array(keep + header + 2, dtype="Int64"), index=index)
    return pd.DataFrame(data, index=index, copy=False)


def _blank_cell(value: object) -> bool:
    """An empty cell as ``_empty_cells`` has it (NaN aside: a plain cell is never NaN)."""
    return value is None or (type(value) is str and not value.strip())


def _plain_exposure_value(value: object, kind: str) -> bool:
    if kind == "date":
        return type(value) is dt.date and _FIRST_DATE <= value <= _LAST_DATE
    if type(value) is not float or not np.isfinite(value):
        return False
    return kind == "number" or (value.is_integer() and abs(value) < 2**53)


_NOT_WHITE_SPACE = ("\x1c", "\x1d", "\x1e", "\x1f")  # str.strip() removes them, Arrow (and to_text) keeps them


def _site_value(value: object, f: Field) -> tuple[object, str | None] | None:
    """(value, raw text) of one Site sheet cell as ``normalise_frame`` types it, for the plain cases.

    Text in a text or code field, a number in a number field, an empty cell; None for anything
    else, which then goes through ``normalise_frame`` itself.
    """
    if value is None:
        return None, None
    if type(value) is str:
        if any(c in value for c in _NOT_WHITE_SPACE):
            return None
        text = value.strip()
        if not text:
            return None, None
        if f.type not in _TEXT_TYPES:
            return None
        if f.type == "code":
            text = {code.casefold(): code for code in CODE_LISTS[f.codes]}.get(text.casefold(), text)
        return text, None
    if type(value) is float and f.type in ("int", "number") and abs(value) < 2**53:  # finite, exact as Int64
        if f.type == "number":
            return value, None
        return (int(value), None) if value.is_integer() else (None, _scalar_text(value))
    return None


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
    data: dict[str, pd.Series] = {}
    for f in fields:
        column = frame[f.name] if f.name in frame else pd.Series(None, index=frame.index, dtype=object)
        values, bad = normalise_column(column, f)
        data[f.name] = values
        raw_name = f"_raw_{f.name}"
        previous = frame[raw_name] if raw_name in frame else None
        if previous is not None:
            bad = bad.fillna(previous) if bad is not None else previous
        if bad is not None and bad.notna().any():
            data[raw_name] = bad.astype("str")
    for name in frame.columns:
        if name not in data:
            data[name] = frame[name]
    if "_row" in data:
        data["_row"] = pd.to_numeric(data["_row"], errors="coerce").astype("Int64")
    if not data:
        return pd.DataFrame(index=frame.index)
    return pd.DataFrame(data, index=frame.index, copy=False)


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
    if _is_arrow_text(column):  # fast path: text already in pandas' Arrow-backed str, as the reader gives it
        text = _arrow_text(column)
        if f.type == "code":
            return _series_like(_arrow_codes(text, f.codes), column), None
        return _series_like(text, column), None
    text = to_text(column)
    if f.type == "code":
        return match_codes(text, f.codes), None
    return text, None


def _is_arrow_text(column: pd.Series) -> bool:
    return column.dtype == _STR_DTYPE and isinstance(getattr(column.array, "_pa_array", None), pa.ChunkedArray)


def _arrow_text(column: pd.Series) -> pa.ChunkedArray:
    """The column's text stripped, with empty text as missing (``to_text`` of a str column, in Arrow)."""
    trimmed = pc.utf8_trim_whitespace(column.array._pa_array)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, trimmed.type), trimmed)


def _series_like(values: pa.ChunkedArray | pa.Array, like: pd.Series) -> pd.Series:
    """Arrow text as a pandas str Series on ``like``'s index."""
    if isinstance(values, pa.Array):
        values = pa.chunked_array([values], type=values.type)
    if values.type != pa.large_string() and values.type != pa.string():
        values = values.cast(pa.large_string())
    return pd.Series(_ARROW_STR_ARRAY(values, dtype=_STR_DTYPE), index=like.index, copy=False)


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
    if isinstance(column.dtype, np.dtype) and column.dtype.kind == "M":  # fast path: already dates
        days = column.to_numpy().astype("datetime64[D]")  # floor to the day, NaT kept
        return pd.Series(days.astype(DATE_DTYPE), index=column.index, name=column.name), None
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
    if _is_arrow_text(column):  # fast path: times already written HH:MM (as normalised records hold them)
        text = _arrow_text(column)
        if pc.all(pc.match_substring_regex(text, r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$")).as_py() is not False:
            return _series_like(text, column), None
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
    if str(column.dtype) == dtype:  # fast path: already typed (a normalised column)
        return column, None
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
    out = {}
    for name in frame.columns:
        column = frame[name]
        empty = np.array(column.isna(), dtype=bool)
        if column.dtype == object:
            values = column.to_numpy()
            empty |= np.fromiter((isinstance(v, str) and not v.strip() for v in values), dtype=bool,
                                 count=len(values))
        else:
            empty |= np.array(column.eq(""), dtype=bool)
        out[name] = empty
    return pd.DataFrame(out, index=frame.index, columns=frame.columns)


def _drop_blank_rows(raw: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Rows with something in at least one contract column, their empty cells made missing."""
    if not names:
        return raw.iloc[0:0]
    empty = _empty_cells(raw[names]).to_numpy(dtype=bool)
    keep = ~empty.all(axis=1)
    raw = raw[keep].copy()
    empty = empty[keep]
    for j, name in enumerate(names):
        if empty[:, j].any():
            column = raw[name]
            if column.dtype == object:
                values = column.to_numpy(dtype=object, copy=True)
                values[empty[:, j]] = np.nan
                raw[name] = values
            else:
                raw[name] = column.mask(pd.Series(empty[:, j], index=raw.index))
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
