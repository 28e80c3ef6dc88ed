"""The reader: layouts people make, values typed every which way, and files that must never reach a parser."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import xlsxwriter

import addin.reader as reader
from addin.reader import (
    NOT_A_LOG, WorkbookError, normalise_frame, overdue, parse_dates, parse_numbers, parse_times, precheck,
    read_workbook, read_workbooks, risk_bands, risk_scores,
)
from addin.validate import validate_result
from tests.conftest import DATA_END
from workbook_templates.builder import build_workbook
from workbook_templates.contract import ACTIONS, EXPOSURE_FIELDS, INCIDENTS, SITE_FIELDS
from workbook_templates.records import field_names
from workbook_templates.synthetic import make_site

SAFE = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}


def write_xlsx(path: Path, sheets: dict[str, list[list]]) -> Path:
    """A plain workbook: each sheet's rows written from A1 by value type (None leaves the cell empty)."""
    wb = xlsxwriter.Workbook(str(path), SAFE)
    date_format = wb.add_format({"num_format": "dd/mm/yyyy"})
    for name, rows in sheets.items():
        ws = wb.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
                    continue
                if isinstance(value, (dt.date, pd.Timestamp)):
                    ws.write_datetime(r, c, pd.Timestamp(value).to_pydatetime(), date_format)
                elif isinstance(value, dt.time):
                    ws.write_datetime(r, c, value, wb.add_format({"num_format": "hh:mm"}))
                elif isinstance(value, bool):
                    ws.write_boolean(r, c, value)
                elif isinstance(value, (int, float)):
                    ws.write_number(r, c, value)
                else:
                    ws.write_string(r, c, str(value))
    wb.close()
    return path


def rewrite(src: Path | bytes, dst: Path, edits: dict[str, object], extra: dict[str, bytes] | None = None) -> Path:
    """Copy a zip, replacing members (bytes, or a function of the old bytes) and adding ``extra`` ones."""
    data = src if isinstance(src, bytes) else Path(src).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            body = zin.read(info.filename)
            if info.filename in edits:
                edit = edits[info.filename]
                body = edit(body) if callable(edit) else edit
            zout.writestr(info.filename, body)
        for name, body in (extra or {}).items():
            zout.writestr(name, body)
    return dst


def sheet_part(path: Path, sheet: str) -> str:
    """The zip member holding ``sheet`` (xlsxwriter numbers them in order)."""
    return precheck(Path(path).read_bytes()).sheets[sheet]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    records = make_site(end=DATA_END, seed=3, months=6)
    path = build_workbook(tmp_path_factory.mktemp("syn") / "OAK.xlsx", records)
    return records, path


def minimal_log(header_rows: int = 0, names: list[str] | None = None, rows: list[list] | None = None) -> list[list]:
    names = names or ["Incident ref", "Site code", "Date occurred", "Date reported"]
    return [["Oakview near-miss log"]] * header_rows + [names] + (rows or [])


# --- the template as the builder writes it ----------------------------------------------------------------

def test_round_trip_of_a_synthetic_workbook(synthetic):
    records, path = synthetic
    result = read_workbook(path)
    assert result.ok and result.findings == [] and result.file == "OAK.xlsx"
    got = result.records
    assert got.site == records.site
    for kind in ("incidents", "actions", "exposure"):
        frame = getattr(got, kind)
        assert frame["_row"].tolist() == list(range(2, len(frame) + 2))
        expected = normalise_frame(getattr(records, kind).reset_index(drop=True), kind)
        pd.testing.assert_frame_equal(frame[field_names(kind)].reset_index(drop=True), expected[field_names(kind)],
                                      check_dtype=False)
    assert str(got.incidents["occurred_at"].dtype).startswith("datetime64")
    assert str(got.incidents["consequence"].dtype) == "Int64"
    assert result.layout["incidents"].columns["status"] == "AJ"
    assert result.layout["site"].cell("setting") == "B5"


def test_read_from_bytes_and_file_objects(synthetic):
    _, path = synthetic
    data = path.read_bytes()
    assert len(read_workbook(data, name="x.xlsx").records.incidents) == len(read_workbook(path).records.incidents)
    with open(path, "rb") as fh:
        assert read_workbook(fh).file == "OAK.xlsx"


# --- layouts ---------------------------------------------------------------------------------------------

def test_header_below_a_title_columns_reordered_labels_and_field_names(tmp_path):
    log = minimal_log(header_rows=2, names=["reported_at", "INCIDENT  REF", "Mystery", "site_code", "Date occurred"],
                      rows=[[dt.date(2026, 4, 4), "OAK-1", "x", "OAK", dt.date(2026, 4, 3)],
                            [None, None, None, None, None],
                            [None, None, None, None, None],
                            ["05/04/2026", "OAK-2", None, "OAK", 46116.0]])
    path = write_xlsx(tmp_path / "odd.xlsx", {"Log": log})
    result = read_workbook(path)
    inc = result.records.incidents
    assert inc["_row"].tolist() == [4, 7]
    assert inc["incident_ref"].tolist() == ["OAK-1", "OAK-2"]
    assert inc["occurred_at"].tolist() == [pd.Timestamp("2026-04-03"), pd.Timestamp("2026-04-04")]
    assert inc["reported_at"].tolist() == [pd.Timestamp("2026-04-04"), pd.Timestamp("2026-04-05")]
    layout = result.layout["incidents"]
    assert layout.header_row == 3 and layout.columns["incident_ref"] == "B" and layout.columns["occurred_at"] == "E"
    rules = [(f.rule, f.sheet, f.cell) for f in result.findings]
    assert ("NM091", "Log", "C3") in rules
    assert ("NM090", "", "") in rules  # no Actions sheet, no Site sheet
    missing = {f.message for f in result.findings if f.rule == "NM092" and f.sheet == "Log"}
    assert "Column Category is missing from the Log sheet." in missing
    assert not any("Incident ref" in m for m in missing)
    # Nothing is reported about the missing Site and Actions sheets beyond NM090.
    assert {f.sheet for f in validate_result(result, today=DATA_END)} == {"", "Log"}


def test_a_workbook_with_none_of_the_sheets_is_not_a_log(tmp_path):
    path = write_xlsx(tmp_path / "other.xlsx", {"Incidents 2025": [["Date", "What happened"], ["1/1/25", "fall"]]})
    with pytest.raises(WorkbookError, match="nearmiss convert"):
        read_workbook(path)
    assert "not a nearmiss log" in NOT_A_LOG


def test_sheet_names_match_without_case(tmp_path):
    path = write_xlsx(tmp_path / "case.xlsx", {"log": minimal_log(rows=[["OAK-1", "OAK", None, None]])})
    result = read_workbook(path)
    assert result.records.incidents["incident_ref"].tolist() == ["OAK-1"]
    assert result.layout["incidents"].sheet == "log"


def test_unnamed_column_with_data_is_reported(tmp_path):
    log = [["Incident ref", "Site code", None], ["OAK-1", "OAK", "stray note"]]
    result = read_workbook(write_xlsx(tmp_path / "stray.xlsx", {"Log": log}))
    assert [(f.cell, f.message) for f in result.findings if f.rule == "NM091"] == \
        [("C1", "Column 'C (no heading)' is not part of the log; it was ignored.")]


def test_site_sheet_pairs_and_exposure_table(tmp_path):
    rows = [["Field", "Value", None, "Month", "Occupied bed days", "Delivered care hours", "Visits",
             "People supported"],
            ["Site code", "OAK", None, dt.date(2026, 9, 1), 1100, None, None, 37],
            ["Setting", "Care_Home", None, "01/10/2026", "1,120", None, None, 38.0],
            ["People supported", "about forty", None, "Oct", None, None, None, None],
            ["Site name", " Oakview ", None, None, None, None, None, None]]
    result = read_workbook(write_xlsx(tmp_path / "site.xlsx", {"Site": rows}))
    site = result.records.site
    assert site["site_code"] == "OAK" and site["setting"] == "care_home" and site["site_name"] == "Oakview"
    assert site["people_supported"] is None and site["_raw_people_supported"] == "about forty"
    assert site["provider"] is None
    assert result.layout["site"].cell("people_supported") == "B4"
    exp = result.records.exposure
    assert exp["month"].tolist()[:2] == [pd.Timestamp("2026-09-01"), pd.Timestamp("2026-10-01")]
    assert exp["occupied_bed_days"].tolist()[:2] == [1100.0, 1120.0]
    assert exp["_row"].tolist() == [2, 3, 4]
    assert exp["_raw_month"].tolist()[2] == "Oct"
    findings = validate_result(result, today=DATA_END)
    assert {(f.rule, f.cell) for f in findings if f.rule == "NM083"} == {("NM083", "B4"), ("NM083", "D4")}


# --- values ----------------------------------------------------------------------------------------------

def test_dates_every_way_people_type_them():
    col = pd.Series([dt.date(2026, 4, 3), dt.datetime(2026, 4, 3, 14, 30), 46115.0, 46115.75, "03/04/2026",
                     "3/4/26", "3.4.2026", "2026-04-03", "3 April 2026", "3-Apr-2026", " 03/04/2026 ", "", None,
                     "31/02/2026", "next week", 5.0e9, True, "04/03/1850"], dtype=object)
    values, bad = parse_dates(col)
    april3 = pd.Timestamp("2026-04-03")
    assert values.iloc[:11].tolist() == [april3] * 11
    assert values.iloc[11:].isna().all()
    assert bad.iloc[:13].isna().all()
    assert bad.iloc[13:].tolist() == ["31/02/2026", "next week", "5000000000", "TRUE", "04/03/1850"]


def test_times_numbers_and_codes():
    times, bad = parse_times(pd.Series([dt.time(9, 5), "14:05", "14.05", "1405", "2:05 pm", 0.5, "", None, "25:00",
                                        "soon"], dtype=object))
    assert times.iloc[:6].tolist() == ["09:05", "14:05", "14:05", "14:05", "14:05", "12:00"]
    assert bad.dropna().tolist() == ["25:00", "soon"]
    ints, bad = parse_numbers(pd.Series([1.0, "3", 2.5, "high", None, ""], dtype=object), integer=True)
    assert str(ints.dtype) == "Int64" and ints.iloc[:2].tolist() == [1, 3] and ints.iloc[2:].isna().all()
    assert bad.dropna().tolist() == ["2.5", "high"]
    raw = pd.DataFrame({"event_type": ["Near_Miss", "near miss", None], "site_code": [" OAK ", 12.0, ""]})
    frame = normalise_frame(raw, "incidents")
    assert frame["event_type"].tolist()[:2] == ["near_miss", "near miss"]
    assert frame["site_code"].tolist()[:2] == ["OAK", "12"] and pd.isna(frame["site_code"].iloc[2])


def test_a_bad_date_in_a_workbook_becomes_a_finding_not_a_gap(tmp_path):
    log = minimal_log(rows=[["OAK-1", "OAK", "32/01/2026", "03/04/2026"], ["OAK-2", "OAK", "tomorrow", 46115.0]])
    result = read_workbook(write_xlsx(tmp_path / "bad.xlsx", {"Log": log}))
    inc = result.records.incidents
    assert inc["_raw_occurred_at"].tolist() == ["32/01/2026", "tomorrow"]
    assert inc["occurred_at"].isna().all()
    assert inc["reported_at"].tolist() == [pd.Timestamp("2026-04-03")] * 2
    found = [(f.rule, f.cell, f.ref) for f in validate_result(result, today=DATA_END) if f.rule in ("NM005", "NM001")]
    assert ("NM005", "C2", "OAK-1") in found and ("NM005", "C3", "OAK-2") in found
    assert not any(r == "NM001" and c.startswith("C") for r, c, _ in found)


def test_derived_columns_are_recomputed_not_read(tmp_path):
    log = [["Incident ref", "Consequence (1-5)", "Likelihood (1-5)", "Risk score", "Risk band"],
           ["OAK-1", 3, 5, 99, "low"], ["OAK-2", 2, None, None, None]]
    inc = read_workbook(write_xlsx(tmp_path / "derived.xlsx", {"Log": log})).records.incidents
    assert "risk_score" not in inc and "risk_band" not in inc
    assert risk_scores(inc).tolist()[0] == 15 and pd.isna(risk_scores(inc).iloc[1])
    assert risk_bands(inc).tolist()[0] == "extreme"
    actions = pd.DataFrame({"status": ["open", "in_progress", "done", "open"],
                            "due_date": pd.to_datetime(["2026-10-30", "2026-11-02", "2026-10-01", None])})
    assert overdue(actions, DATA_END).tolist() == [True, False, False, False]


# --- structural findings ------------------------------------------------------------------------------------

def test_formula_without_saved_value_in_an_input_column(tmp_path):
    src = write_xlsx(tmp_path / "f.xlsx", {"Log": minimal_log(rows=[["OAK-1", "OAK", None, "03/04/2026"]])})
    part = sheet_part(src, "Log")
    formula = b'<c r="C2"><f>TODAY()</f></c>'

    def add_formula(xml: bytes) -> bytes:
        return re.sub(rb'(<row r="2"[^>]*>)', rb"\1" + formula, xml)

    path = rewrite(src, tmp_path / "formula.xlsx", {part: add_formula})
    found = [(f.rule, f.sheet, f.cell, f.ref) for f in read_workbook(path).findings if f.rule == "NM093"]
    assert found == [("NM093", "Log", "C2", "OAK-1")]


def test_formula_without_saved_value_on_the_site_sheet(tmp_path):
    rows = [["Field", "Value", None, "Month", "Occupied bed days"], ["Site code", "OAK", None, "01/10/2026", 1100],
            ["People supported", None, None, "01/11/2026", None]]
    src = write_xlsx(tmp_path / "s.xlsx", {"Site": rows})
    part = sheet_part(src, "Site")

    def add_formulas(xml: bytes) -> bytes:
        xml = re.sub(rb'(<row r="3"[^>]*>)', rb'\1<c r="B3"><f>SUM(Z1:Z9)</f></c>', xml)
        return xml.replace(b'<c r="D3"', b'<c r="E3"><f>Z1*2</f></c><c r="D3"', 1)

    found = read_workbook(rewrite(src, tmp_path / "sf.xlsx", {part: add_formulas})).findings
    assert sorted((f.cell, f.message.split(" holds")[0]) for f in found if f.rule == "NM093") == \
        [("B3", "People supported"), ("E3", "Occupied bed days")]


def test_macros_are_reported_and_ignored(synthetic, tmp_path):
    _, path = synthetic
    xlsm = rewrite(path, tmp_path / "OAK.xlsm", {}, extra={"xl/vbaProject.bin": b"\x00" * 64})
    result = read_workbook(xlsm)
    assert [f.rule for f in result.findings] == ["NM094"]
    assert len(result.records.incidents) == len(read_workbook(path).records.incidents)


# --- files that must be refused ------------------------------------------------------------------------------

@pytest.fixture
def no_parser(monkeypatch):
    """Fail the test if calamine is ever asked to open the file."""
    def refuse(*args, **kwargs):
        raise AssertionError("calamine must not see this file")

    monkeypatch.setattr(reader.CalamineWorkbook, "from_filelike", refuse, raising=False)
    monkeypatch.setattr(reader, "CalamineWorkbook", type("Refuse", (), {"from_filelike": staticmethod(refuse),
                                                                        "from_path": staticmethod(refuse)}))


def _small_xlsx(tmp_path: Path) -> Path:
    return write_xlsx(tmp_path / "small.xlsx", {"Log": minimal_log(rows=[["OAK-1", "OAK", None, None]])})


@pytest.mark.parametrize("content, reason", [
    (b"Incident ref,Date\nOAK-1,03/04/2026\n", "text (CSV) file"),
    (bytes(range(256)) * 8, "not an Excel workbook"),
    (b"", "empty"),
    (reader.OLE2_SIGNATURE + b"\x00" * 512 + "EncryptedPackage".encode("utf-16-le") + b"\x00" * 512,
     "File > Info > Protect Workbook"),
    (reader.OLE2_SIGNATURE + b"\x00" * 2048, "Excel 97-2003"),
    (b"<html><table><tr><td>1</td></tr></table></html>", "web page"),
])
def test_files_that_are_not_workbooks(tmp_path, no_parser, content, reason):
    path = tmp_path / "log.xlsx"
    path.write_bytes(content)
    with pytest.raises(WorkbookError, match=re.escape(reason)):
        read_workbook(path)


def test_truncated_zip(tmp_path, no_parser, synthetic):
    _, path = synthetic
    data = path.read_bytes()
    with pytest.raises(WorkbookError, match="damaged or incomplete"):
        read_workbook(data[: len(data) // 2])


def test_crc_error_is_caught(tmp_path, no_parser):
    src = _small_xlsx(tmp_path)
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = zf.getinfo("xl/workbook.xml")
    # Flip a byte of the stored CRC in the local header and the central directory.
    for offset in [m.start() for m in re.finditer(re.escape(info.CRC.to_bytes(4, "little")), bytes(data))]:
        data[offset] ^= 0xFF
    with pytest.raises(WorkbookError, match="damaged"):
        read_workbook(bytes(data))


def test_a_word_document_renamed(tmp_path, no_parser):
    path = tmp_path / "doc.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<document/>")
    with pytest.raises(WorkbookError, match="Word document"):
        read_workbook(path)


def test_doctype_in_any_xml_part_is_refused(tmp_path, no_parser):
    src = _small_xlsx(tmp_path)
    part = sheet_part(src, "Log")
    evil = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
            b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData/></worksheet>')
    path = rewrite(src, tmp_path / "dtd.xlsx", {part: evil})
    with pytest.raises(WorkbookError, match="DOCTYPE"):
        read_workbook(path)
    utf16 = rewrite(src, tmp_path / "dtd16.xlsx", {"docProps/app.xml": evil.decode().encode("utf-16")})
    with pytest.raises(WorkbookError, match="DOCTYPE"):
        precheck(utf16.read_bytes())


def test_dimension_bomb_is_refused_before_calamine(tmp_path, no_parser):
    src = _small_xlsx(tmp_path)
    part = sheet_part(src, "Log")

    def bomb(xml: bytes) -> bytes:
        out = re.sub(rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1:XFD1048576"/>', xml)
        assert out != xml
        return out

    path = rewrite(src, tmp_path / "bomb.xlsx", {part: bomb})
    assert path.stat().st_size < 10_000
    with pytest.raises(WorkbookError, match="XFD"):
        read_workbook(path)


def test_far_cell_reference_is_refused(tmp_path, no_parser):
    src = _small_xlsx(tmp_path)
    part = sheet_part(src, "Log")
    far = b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData>'
    path = rewrite(src, tmp_path / "far.xlsx", {part: lambda xml: xml.replace(b"</sheetData>", far)})
    with pytest.raises(WorkbookError, match="cell XFD1048576, beyond the 50,000 rows and 80 columns"):
        read_workbook(path)
    # Too many columns, within the rows.
    wide = b'<row r="3"><c r="CZ3"><v>1</v></c></row></sheetData>'
    path = rewrite(src, tmp_path / "wide.xlsx", {part: lambda xml: xml.replace(b"</sheetData>", wide)})
    with pytest.raises(WorkbookError, match="cell CZ3"):
        read_workbook(path)


def test_far_cell_on_a_sheet_never_parsed_is_left_to_the_generic_checks(tmp_path):
    src = write_xlsx(tmp_path / "two.xlsx", {"Log": minimal_log(rows=[["OAK-1", "OAK", None, None]]),
                                              "Notes": [["anything"]]})
    part = sheet_part(src, "Notes")
    far = b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData>'
    path = rewrite(src, tmp_path / "far-notes.xlsx", {part: lambda xml: xml.replace(b"</sheetData>", far)})
    assert read_workbook(path).records.incidents["incident_ref"].tolist() == ["OAK-1"]
    with pytest.raises(WorkbookError, match="Notes"):
        precheck(path.read_bytes())  # every sheet is checked when none are named


def test_too_many_rows_without_numbers_are_refused(tmp_path, no_parser):
    src = _small_xlsx(tmp_path)
    part = sheet_part(src, "Log")
    rows = b"".join(b"<row><c><v>%d</v></c></row>" % i for i in range(reader.MAX_ROWS + 1)) + b"</sheetData>"
    path = rewrite(src, tmp_path / "rows.xlsx", {part: lambda xml: xml.replace(b"</sheetData>", rows)})
    with pytest.raises(WorkbookError, match="row 50,00"):
        read_workbook(path)


def test_limit_patterns_match_exactly_what_is_beyond():
    inside = [b"A1", b"CB50000", b"BZ49999", b"Z50000"]
    beyond = [b"CC1", b"AAA1", b"A50001", b"A100000", b"XFD1048576", b"cc1"]
    for quote in (b'"', b"'"):
        for ref in inside:
            assert reader._cell_beyond(b"<c r=" + quote + ref + quote + b">") is None, ref
        for ref in beyond:
            assert reader._cell_beyond(b"<c r=" + quote + ref + quote + b">") is not None, ref


def test_zip_bomb_and_unsafe_paths(tmp_path, no_parser):
    src = _small_xlsx(tmp_path)
    bomb = rewrite(src, tmp_path / "zbomb.xlsx", {}, extra={"xl/media/big.xml": b" " * (4 * 2**20)})
    with pytest.raises(WorkbookError, match="compressed"):
        read_workbook(bomb)
    unsafe = rewrite(src, tmp_path / "slip.xlsx", {}, extra={"../../evil.xml": b"<x/>"})
    with pytest.raises(WorkbookError, match="unsafe path"):
        read_workbook(unsafe)


def test_a_sheet_part_not_named_xml_is_checked_too(tmp_path, no_parser):
    """The relationships may point the Log at any part name; calamine follows them (and aborts on XFD1048576)."""
    src = _small_xlsx(tmp_path)
    part = sheet_part(src, "Log")
    with zipfile.ZipFile(src) as zf:
        far = zf.read(part).replace(b"</sheetData>", b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
                                                      b"</sheetData>")
        names = [i.filename for i in zf.infolist()]
    renamed = part.replace(".xml", ".bin")
    out = tmp_path / "renamed.xlsx"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for name in names:
            body = zin.read(name)
            if name == part:
                zout.writestr(renamed, far)
            else:
                zout.writestr(name, body.replace(part.split("/", 1)[1].encode(), renamed.split("/", 1)[1].encode()))
    assert precheck(out.read_bytes(), sheets=[]).sheets["Log"] == renamed  # the Log is that part
    with pytest.raises(WorkbookError, match="cell XFD1048576"):
        read_workbook(out)
    # A DTD in a part whose name does not say XML is found by its first bytes.
    dtd = rewrite(src, tmp_path / "dtd-bin.xlsx", {}, extra={"xl/extra.bin": b'<?xml version="1.0"?><!DOCTYPE x>'})
    with pytest.raises(WorkbookError, match="DOCTYPE"):
        read_workbook(dtd)


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_parts_named_twice_or_with_backslashes_are_refused(tmp_path, no_parser):
    """calamine's zip reader reads the later of two parts, and 'xl\\worksheets\\sheet1.xml' as the sheet."""
    src = _small_xlsx(tmp_path)
    part = sheet_part(src, "Log")
    hostile = b'<worksheet><sheetData><row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData></worksheet>'
    twice = rewrite(src, tmp_path / "twice.xlsx", {}, extra={part: hostile})
    with pytest.raises(WorkbookError, match="two parts called"):
        read_workbook(twice)
    case = rewrite(src, tmp_path / "case.xlsx", {}, extra={part.upper(): hostile})
    with pytest.raises(WorkbookError, match="two parts called"):
        read_workbook(case)
    backslash = rewrite(src, tmp_path / "backslash.xlsx", {}, extra={part.replace("/", "\\"): hostile})
    with pytest.raises(WorkbookError, match="unsafe path"):
        read_workbook(backslash)


def test_shared_strings_bombs_are_refused(tmp_path, no_parser):
    src = _small_xlsx(tmp_path)
    part = sheet_part(src, "Log")
    # A declared count calamine reserves room for (4 billion entries: it aborts).
    counted = rewrite(src, tmp_path / "count.xlsx", {"xl/sharedStrings.xml": lambda xml: re.sub(
        rb'uniqueCount="\d+"', b'uniqueCount="4000000000"', xml)})
    with pytest.raises(WorkbookError, match="4,000,000,000 entries"):
        read_workbook(counted)
    # 100,000 cells pointing at one 1 MB text: a 200 KB file that unpacks to 100 GB.
    letters = [chr(65 + j) for j in range(20)]
    rows = b"".join(b'<row r="%d">' % r + b"".join(b'<c r="%s%d" t="s"><v>0</v></c>' % (c.encode(), r)
                                                    for c in letters) + b"</row>" for r in range(1, 5001))
    sheet = b"<worksheet><sheetData>" + rows + b"</sheetData></worksheet>"
    sst = b'<sst count="1" uniqueCount="1"><si><t>' + b"a" * 1_000_000 + b"</t></si></sst>"
    bomb = rewrite(src, tmp_path / "sst.xlsx", {part: sheet, "xl/sharedStrings.xml": sst})
    assert bomb.stat().st_size < 300_000
    with pytest.raises(WorkbookError, match="repeats long texts"):
        read_workbook(bomb)
    # Written another way (attribute order, quotes), the cells are still counted.
    odd = rewrite(src, tmp_path / "sst-odd.xlsx", {part: sheet.replace(b' t="s"', b" t='s'"),
                                                   "xl/sharedStrings.xml": sst})
    with pytest.raises(WorkbookError, match="repeats long texts"):
        read_workbook(odd)
    # A long text used a few times is fine.
    few = rewrite(src, tmp_path / "sst-few.xlsx", {"xl/sharedStrings.xml": lambda xml: xml.replace(
        b"<t>OAK-1</t>", b"<t>OAK-1" + b" " * 30_000 + b"</t>")})
    assert read_workbook(few).records.incidents["incident_ref"].tolist() == ["OAK-1"]


def test_cells_without_references_are_placed_and_checked(tmp_path, no_parser):
    """<c> without r= follows the cell before: a few KB of them make calamine size a grid of gigabytes."""
    src = _small_xlsx(tmp_path)
    part = sheet_part(src, "Log")
    wide = (b'<worksheet><dimension ref="A1:B2"/><sheetData><row>' + b"<c><v>1</v></c>" * (reader.MAX_COLUMNS + 1)
            + b"</row>" + b"<row><c><v>1</v></c></row>" * 1000 + b"</sheetData></worksheet>")
    path = rewrite(src, tmp_path / "noref.xlsx", {part: wide})
    with pytest.raises(WorkbookError, match=f"cell {reader.column_letter(reader.MAX_COLUMNS)}1, beyond"):
        read_workbook(path)
    # Cells after a referenced one follow it.
    after = (b'<worksheet><sheetData><row r="2"><c r="CA2"><v>1</v></c><c><v>2</v></c><c><v>3</v></c></row>'
             b"</sheetData></worksheet>")
    with pytest.raises(WorkbookError, match="cell CC2"):
        read_workbook(rewrite(src, tmp_path / "after.xlsx", {part: after}))


def test_precheck_is_fast_and_reports_what_it_saw(synthetic):
    _, path = synthetic
    report = precheck(path.read_bytes())
    assert list(report.sheets)[:4] == ["Guide", "Site", "Log", "Actions"]
    assert report.used["Log"][1] == len(INCIDENTS.fields)
    assert report.formulas_without_value["Log"] == []  # the builder saves a result with each formula
    assert not report.has_macros


# --- several files ----------------------------------------------------------------------------------------------

def test_read_workbooks_keeps_order_and_captures_failures(tmp_path, synthetic):
    _, good = synthetic
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"a,b\n1,2\n")
    missing = tmp_path / "missing.xlsx"
    seen = []
    results = read_workbooks([good, bad, missing, good], threads=2, on_done=seen.append)
    assert [r.file for r in results] == ["OAK.xlsx", "bad.xlsx", "missing.xlsx", "OAK.xlsx"]
    assert [r.ok for r in results] == [True, False, False, True]
    assert "CSV" in results[1].error and "cannot be opened" in results[2].error
    assert len(seen) == 4
    assert len(results[0].records.incidents) == len(results[3].records.incidents) > 0


def test_contract_labels_are_unique_per_sheet():
    """The reader maps headers by label or name; two fields sharing one would be ambiguous."""
    for fields in (INCIDENTS.fields, ACTIONS.fields, SITE_FIELDS, EXPOSURE_FIELDS):
        keys = [reader._norm(f.label) for f in fields] + [reader._norm(f.name) for f in fields]
        owners = {}
        for f in fields:
            for k in {reader._norm(f.label), reader._norm(f.name)}:
                assert owners.setdefault(k, f.name) == f.name, k
        assert len(keys) >= len(fields)
