"""The pre-check's fast path for plain sheets gives exactly what the exact checks give.

A sheet the fast path takes as plain gets its answers (used range, formulas without a saved
value, refusals and their messages) from a few look-ups; every other sheet goes through the
exact checks.  So the property that matters: wherever the look-ups would answer differently
from the exact checks, the sheet is not plain.  It is checked on crafted sheets (each kind of
oddity, and clean ones at exactly the limits), on random sheets, and on whole workbooks.
"""

from __future__ import annotations

import random
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

import addin.reader as reader
from addin.reader import WorkbookError, precheck
from tests.conftest import DATA_END
from tests.test_reader import minimal_log, rewrite, sheet_part, write_xlsx
from workbook_templates.builder import build_workbook
from workbook_templates.synthetic import make_site

PART = "xl/worksheets/sheet1.xml"
HEAD = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="http://schemas.openxmlformats.'
        b'org/spreadsheetml/2006/main"><dimension ref="A1:C3"/><cols><col min="1" max="3" width="9"/></cols>')
TAIL = (b'<conditionalFormatting sqref="A2:A9"><cfRule type="colorScale" priority="1"><colorScale><cfvo type="min"/>'
        b'<color rgb="FF000000"/></colorScale></cfRule></conditionalFormatting><rowBreaks count="1"><brk id="2"/>'
        b"</rowBreaks></worksheet>")


def sheet(rows: bytes, *, head: bytes = HEAD, tail: bytes = TAIL) -> bytes:
    return head + b"<sheetData>" + rows + b"</sheetData>" + tail


def rows_of(*cells_by_row: list[bytes], first: int = 1) -> bytes:
    """Rows numbered from ``first``, each with its cells' XML."""
    return b"".join(b'<row r="%d" spans="1:3">' % (first + i) + b"".join(cells) + b"</row>"
                    for i, cells in enumerate(cells_by_row))


def cell(ref: str, value: str = "1") -> bytes:
    return b'<c r="%s" s="1"><v>%s</v></c>' % (ref.encode(), value.encode())


CLEAN = sheet(rows_of([cell("A1"), cell("B1"), b'<c r="C1" t="s"><v>0</v></c>'],
                      [cell("A2"), b'<c r="B2"><f>A2*2</f><v>2</v></c>']))


def outcome(compute):  # noqa: ANN001, ANN201
    """What a check gives: its answer, or the refusal's type and message."""
    try:
        return compute()
    except Exception as exc:  # noqa: BLE001 - any difference counts, a crash too
        return type(exc).__name__, str(exc)


def exact(xml: bytes):  # noqa: ANN201
    """The exact checks of a parsed sheet, as precheck runs them for a sheet that is not plain."""
    def run():  # noqa: ANN202
        reader._check_no_dtd(PART, xml)
        return reader._check_sheet_extent("Log", xml), reader._formulas_without_value(xml)
    return outcome(run)


def looked_up(xml: bytes):  # noqa: ANN201
    """The fast path's answers, whether or not the sheet is plain."""
    return outcome(lambda: (reader._plain_sheet_extent("Log", xml), []))


def assert_same_as_exact(xml: bytes) -> tuple[bool, bool]:
    """precheck's answer for the sheet is the exact one, and where the look-ups would differ, it is not plain.

    Returns (whether the sheet is plain, whether the look-ups differ from the exact checks).
    """
    expected = exact(xml)
    assert outcome(lambda: reader._check_sheet("Log", PART, xml)) == expected
    plain, differ = reader._is_plain_sheet(xml), looked_up(xml) != expected
    assert not (plain and differ)
    return plain, differ


# --- crafted sheets ---------------------------------------------------------------------------------------------

def with_cell(xml_cell: bytes) -> bytes:
    return sheet(rows_of([cell("A1"), xml_cell]))


ODDITIES = {
    # DTDs, however written
    "doctype": sheet(rows_of([cell("A1")]), head=HEAD.replace(b"<worksheet", b"<!DOCTYPE w><worksheet")),
    "entity lower case": sheet(rows_of([cell("A1")]), head=HEAD + b'<!entity x "y">'),
    "doctype spaced": sheet(rows_of([cell("A1")]), tail=b"<! \n DocType w>" + TAIL),
    "doctype in sheetData": sheet(rows_of([cell("A1")]) + b"<!DOCTYPE w>"),
    # references beyond the limits, the usual way
    "column beyond": with_cell(cell("CC1")),
    "far corner": with_cell(cell("XFD1048576")),
    "row beyond in a cell": with_cell(cell("A50001")),
    "row number beyond": sheet(rows_of([cell("A1")]) + b'<row r="50001"><c r="A50001"><v>1</v></c></row>'),
    "row number beyond, later attribute": sheet(b'<row spans="1:1" r="60000"><c r="A1"><v>1</v></c></row>'),
    "beyond in the tail": sheet(rows_of([cell("A1")]), tail=b'<hyperlinks><hyperlink r="XFD9"/></hyperlinks>' + TAIL),
    # references written another way
    "single quotes": with_cell(b"<c r='B1'><v>1</v></c>"),
    "single quotes beyond": with_cell(b"<c r='CC1'><v>1</v></c>"),
    "closing single quote beyond": with_cell(b"<c r=\"CC1'><v>1</v></c>"),
    "spaces around =": with_cell(b'<c r = "CC1"><v>1</v></c>'),
    "space after =": with_cell(b'<c r= "B1"><v>1</v></c>'),
    "tab before r": with_cell(b'<c\tr="CC1"><v>1</v></c>'),
    "newline before r": with_cell(b'<c s="1"\nr="CC1"><v>1</v></c>'),
    "vertical tab before R": with_cell(b'<c s="1"\x0bR="CC1"><v>1</v></c>'),
    "tab before r on a row": sheet(b'<row r="1"\tr="CC1"><c r="A1"><v>1</v></c></row>'),
    "reference attribute misspelt": with_cell(b'<c rr="B1"><v>1</v></c>'),
    "upper-case R": with_cell(b'<c R="CC1"><v>1</v></c>'),
    "upper-case R on a row": sheet(b'<row r="1" R="CC1"><c r="A1"><v>1</v></c></row>'),
    "space before = outside a cell": sheet(rows_of([cell("A1")]), tail=b'<x r ="XFD9"/>' + TAIL),
    "lower-case letters": with_cell(b'<c r="cc1"><v>1</v></c>'),
    "mixed-case letters": with_cell(b'<c r="Cc1"><v>1</v></c>'),
    "lower-case, inside the limits": with_cell(b'<c r="b1"><v>1</v></c>'),
    # cells without their reference first
    "cell without reference": with_cell(b"<c><v>1</v></c>"),
    "empty cell element": with_cell(b"<c/>"),
    "reference not first": with_cell(b'<c s="1" r="B1"><v>1</v></c>'),
    "cell opening at the end of sheetData": sheet(rows_of([cell("A1")]) + b"<c"),
    "rich text in an inline string": with_cell(b'<c r="B1" t="inlineStr"><is><r><rPr><color rgb="FF0000"/></rPr>'
                                               b"<t>x</t></r></is></c>"),
    "many cells without references": sheet(b"<row>" + b"<c><v>1</v></c>" * 81 + b"</row>"),
    # namespace prefixes
    "prefixed row": sheet(b'<x:row r="1"><c r="A1"><v>1</v></c></x:row>'),
    "prefixed sheetData": HEAD + b'<x:sheetData><row r="1"><c r="A1"><v>1</v></c></row></x:sheetData>' + TAIL,
    "prefixed sheetData beside a plain one": (HEAD + b"<sheetData></sheetData><x:sheetData><row>" + b"<x:c/>" * 81
                                              + b"</row></x:sheetData>" + TAIL),
    # formulas without a saved value
    "formula without value": with_cell(b'<c r="B1"><f>A1*2</f></c>'),
    "shared formula without value": with_cell(b'<c r="B1"><f t="shared" si="0"/></c>'),
    "prefixed formula without value": with_cell(b'<x:c r="B1"><x:f>A1</x:f></x:c>'),
    # the parts of a sheet the fast path relies on, missing or odd
    "no sheetData": HEAD + b"<sheetView/>" + TAIL,
    "tag open before sheetData": HEAD + b'<c r="B5"><f x="1" <sheetData/></c></sheetData>' + TAIL,
    "UTF-16": CLEAN.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"),
    "UTF-16 DTD before an ASCII sheet": "<!DOCTYPE x>".encode("utf-16") + CLEAN + b" " * (len(CLEAN) % 2),
}

# Sheets the fast path takes (nothing unusual), some at exactly the limits, some refused all the same.
PLAIN = {
    "builder-like": CLEAN,
    "last column and row": with_cell(cell("CB50000")),
    "row 50,000": sheet(rows_of([cell("A1")]) + b'<row r="50000"><c r="CB50000"><v>1</v></c></row>'),
    "dimension at the limits": sheet(rows_of([cell("A1")]), head=HEAD.replace(b"A1:C3", b"A1:CB50000")),
    "dimension beyond": sheet(rows_of([cell("A1")]), head=HEAD.replace(b"A1:C3", b"A1:XFD1048576")),
    "dimension one column beyond": sheet(rows_of([cell("A1")]), head=HEAD.replace(b"A1:C3", b"A1:CC3")),
    "no dimension": sheet(rows_of([cell("A1")]), head=HEAD.replace(b'<dimension ref="A1:C3"/>', b"")),
    "dimension late": sheet(rows_of([cell("A1")]), head=HEAD.replace(b'<dimension ref="A1:C3"/>', b""),
                            tail=b" " * 70_000 + b'<dimension ref="A1:CC9"/>' + TAIL),
    "no rows": sheet(b""),
    "rows without numbers": sheet(b'<row><c r="A1"><v>1</v></c></row>' * 3),
    "rows out of order": sheet(rows_of([cell("A1")], first=9) + rows_of([cell("A2")], first=2)),
    "row number with leading zeros": sheet(rows_of([cell("A1")]) + b'<row r="050001"><c r="A2"><v>1</v></c></row>'),
    "50,000 rows": sheet(b'<row r="1"/>' * 50_000, tail=b"</worksheet>"),
    "50,001 rows": sheet(b'<row r="1"/>' * 50_001, tail=b"</worksheet>"),
    "50,000 rows and row breaks": sheet(b'<row r="1"/>' * 50_000),  # "<rowBreaks" of TAIL is counted as a row
    "comment": sheet(rows_of([cell("A1")]), head=HEAD + b"<!-- made by hand -->"),
    "formula with value": with_cell(b'<c r="B1"><f>A1*2</f><v>2</v></c>'),
    "prefixed cell with its reference": with_cell(b'<x:c r="B1"><x:v>1</x:v></x:c>'),  # no "<c" to walk
    "sheetData not closed": HEAD + b"<sheetData>" + rows_of([cell("A1")]),
    "text with odd words": with_cell(b'<c r="B1" t="inlineStr"><is><t>:row, \'s\', "s", sheetData</t></is></c>'),
    # sheetData the cheaper looks cannot tell (white space, "!"), which the full scan then finds plain
    "text with a line break and a !": with_cell(b'<c r="B1" t="inlineStr"><is><t>Fell!\r\nRoom 2 </t></is></c>'),
    "formula with a tab": with_cell(b'<c r="B1"><f>A1\t*2</f><v>2</v></c>'),
}


@pytest.mark.parametrize("name", list(ODDITIES))
def test_each_oddity_takes_the_exact_checks(name):
    xml = ODDITIES[name]
    assert not reader._is_plain_sheet(xml)
    assert_same_as_exact(xml)


@pytest.mark.parametrize("name", list(PLAIN))
def test_plain_sheets_get_the_exact_answers_from_the_look_ups(name):
    xml = PLAIN[name]
    assert reader._is_plain_sheet(xml)
    assert looked_up(xml) == exact(xml)


def test_the_refusals_of_plain_sheets_are_the_exact_ones():
    assert exact(PLAIN["dimension beyond"]) == looked_up(PLAIN["dimension beyond"])
    assert "reaches cell XFD1048576" in exact(PLAIN["dimension beyond"])[1]
    assert "reaches row 50,001" in looked_up(PLAIN["50,001 rows"])[1]
    assert "reaches row 50,001" in looked_up(PLAIN["50,000 rows and row breaks"])[1]
    assert "reaches row 50,001" in looked_up(PLAIN["row number with leading zeros"])[1]
    assert looked_up(PLAIN["50,000 rows"]) == ((3, 3), [])  # the dimension's rows: every row is numbered 1
    assert looked_up(PLAIN["row 50,000"]) == ((50_000, 3), [])


# --- the cheaper looks at sheetData ---------------------------------------------------------------------------
# Each look of _plain_sheet_data, and a crafted oddity that it alone catches: without that look, the oddity
# would be taken as plain (test_each_oddity_takes_the_exact_checks would fail).

def sheet_data(xml: bytes) -> tuple[int, int]:
    start = xml.find(b"<sheetData")
    end = xml.rfind(b"</sheetData>")
    return start, len(xml) if end < start else end


LOOKS = {
    "no !": lambda xml, start, end: xml.find(b"!", start, end) < 0,
    "no white space but spaces": lambda xml, start, end: min(xml[start:end]) >= 0x20,
    "every <c followed by r": lambda xml, start, end: (reader._count(xml, b"<c", start, end)
                                                       == reader._count(xml, b"<c r", start, end)),
    **{f"RE2 {pattern[:12]}": (lambda xml, start, end, pattern=pattern:
                               not reader._re2_found(xml, pattern, start=start, end=end))
       for pattern in reader._RE2_PLAIN_DATA_ODD},
}
CAUGHT_ONLY_BY = dict(zip(LOOKS, ["doctype in sheetData", "tab before r on a row", "cell without reference",
                                  "lower-case letters", "prefixed row", "formula without value"]))


def test_the_looks_are_the_ones_tested():
    assert len(LOOKS) == 6
    for name in PLAIN:
        if name not in ("text with a line break and a !", "formula with a tab"):
            assert all(look(PLAIN[name], *sheet_data(PLAIN[name])) for look in LOOKS.values()), name
    assert reader._plain_sheet_data(CLEAN, *sheet_data(CLEAN))


@pytest.mark.parametrize("look", list(LOOKS))
def test_each_look_alone_catches_an_oddity(look):
    xml = ODDITIES[CAUGHT_ONLY_BY[look]]
    start, end = sheet_data(xml)
    assert [name for name, other in LOOKS.items() if not other(xml, start, end)] == [look]
    assert not reader._plain_sheet_data(xml, start, end)


@pytest.mark.parametrize("name", ["text with a line break and a !", "formula with a tab"])
def test_sheet_data_the_looks_cannot_tell_gets_the_full_scan(name):
    xml = PLAIN[name]
    assert not reader._plain_sheet_data(xml, *sheet_data(xml)) and reader._is_plain_sheet(xml)


# --- random sheets ----------------------------------------------------------------------------------------------

CLEAN_PIECES = [cell("A1"), cell("B2"), cell("CB9"), b'<c r="C3" t="s"><v>7</v></c>', b'<c r="A9"><f>1</f><v>1</v></c>',
                b'<c r="D4" s="2"/>', b" ", b'"s"', b"<v>1</v>"]
ODD_PIECES = [
    b'<c>', b'<c/>', b'<c s="1" r="A1">', b'<c\n', b'<c', b'<color/>', b'<col/>', b'</c>', b'<f>1</f></c>',
    b'<f/></c>', b'<f/>', b'</f>', b'</x:f></x:c>', b" r='A1'", b" r='CC1'", b'\tr="A1"', b'\nR="CC1"', b' R="B1"',
    b' r = "Z9"', b' r= "CC1"', b' r ="CC1"', b' R="CC1"', b' r="a1"', b' r="Cc1"', b' r="CC1"', b' r="CB50001"',
    b' r="A050001"', b' r="XFD1048576"', b' r="60000"', b' r="CC1\'', b':row ', b'<x:row ', b'<x:row r="2">',
    b'<x:c ', b':sheetData', b'<sheetData>', b'</sheetData>', b'<!DOCTYPE x>', b'<!entity', b'<!-- c -->', b'<!',
    b'<row r="1">', b'<row r="50001">', b'<row r="0050001">', b'<row>', b'<row/>', b'</row>', b'<rowBreaks/>',
    b'<dimension ref="A1:C3"/>', b'<dimension ref="A1:XFD1"/>', b'<dimension ref="A1:CB50000"/>', b"'s'", b'\x00',
    b'\xff\xfe', b'>', b'<', b'r', b'="', b'1', b'A',
]


def random_sheet(rng: random.Random) -> bytes:
    """A sheet of clean rows with, now and then, an odd piece spliced in anywhere (even into another piece)."""
    rows = []
    for r in range(rng.randint(0, 6)):
        pieces = [rng.choice(CLEAN_PIECES) for _ in range(rng.randint(0, 5))]
        rows.append(b'<row r="%d">' % (r + 1) + b"".join(pieces) + b"</row>")
    xml = bytearray(sheet(b"".join(rows), head=rng.choice([HEAD, HEAD[:40] + HEAD[-60:]]),
                          tail=rng.choice([TAIL, b"</worksheet>", b""])))
    for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
        at = rng.randint(0, len(xml))
        xml[at:at] = rng.choice(ODD_PIECES)
    return bytes(xml)


def test_random_sheets_get_the_exact_answers():
    rng = random.Random(20261105)
    plain = differing = looked_plain = 0
    for _ in range(2000):
        xml = random_sheet(rng)
        is_plain, differ = assert_same_as_exact(xml)
        assert reader._count(xml, b"<row") == xml.count(b"<row")
        start, end = sheet_data(xml)
        if start >= 0 and reader._plain_sheet_data(xml, start, end):  # the looks prove what the full scan finds
            looked_plain += 1
            assert not reader._re2_found(xml, reader._RE2_ODD_CELLS, start=start, end=end)
        assert xml.count(b'"s"') + xml.count(b"'s'") <= len(xml) // 3  # the bound _check_text_volume takes first
        plain += is_plain
        differing += differ
    # Both kinds were met often: the look-ups answer differently for many sheets that are not plain.
    assert plain > 500 and differing > 200 and looked_plain > 300, (plain, differing, looked_plain)


def test_not_followed_by_is_a_negative_lookahead():
    pattern = reader._not_followed_by("<c", ' r="')
    rng = random.Random(7)
    for _ in range(2000):
        text = bytes(rng.choice(b'<c r="x ') for _ in range(rng.randint(0, 12)))
        assert reader._re2_found(text, pattern) == (re.search(rb'<c(?! r=")', text) is not None), text


def test_re2_found_looks_only_between_start_and_end():
    xml = b"<a>xyz<b>"
    assert reader._re2_found(xml, "xyz", start=3, end=6)
    assert not reader._re2_found(xml, "xyz", start=4)
    assert not reader._re2_found(xml, "xyz", end=5)
    assert reader._re2_found(xml, "z$", end=6) and not reader._re2_found(xml, "z$")
    assert reader._re2_found(b"<c\xff", "<c[^ ]")  # bytes that are not UTF-8 are characters too


def test_count_rows_counts_as_bytes_count_does():
    for xml in (b"", b"<ro", b"<row", b"x<row", b"<row<row", b"<rowx<row" * 7, bytes(range(256)) * 3 + b"<row"):
        assert reader._count(xml, b"<row") == xml.count(b"<row")
        start, end = sheet_data(xml)
        if start >= 0 and reader._plain_sheet_data(xml, start, end):  # the looks prove what the full scan finds
            looked_plain += 1
            assert not reader._re2_found(xml, reader._RE2_ODD_CELLS, start=start, end=end)
    rng = np.random.default_rng(3)
    for _ in range(50):
        xml = bytes(rng.choice(np.frombuffer(b"<row", dtype=np.uint8), size=int(rng.integers(0, 400))))
        assert reader._count(xml, b"<row") == xml.count(b"<row")
        start, end = sheet_data(xml)
        if start >= 0 and reader._plain_sheet_data(xml, start, end):  # the looks prove what the full scan finds
            looked_plain += 1
            assert not reader._re2_found(xml, reader._RE2_ODD_CELLS, start=start, end=end)


# --- whole workbooks --------------------------------------------------------------------------------------------

def precheck_outcome(data: bytes):  # noqa: ANN201
    return outcome(lambda: precheck(data, sheets=reader.READ_SHEETS))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return build_workbook(tmp_path_factory.mktemp("fast") / "OAK.xlsx",
                          make_site(end=DATA_END, seed=5, months=4, flaw_rate=0.2))


def test_a_built_workbook_takes_the_fast_path_for_every_parsed_sheet(built, monkeypatch):
    calls = []
    monkeypatch.setattr(reader, "_check_sheet_extent", lambda *a: calls.append(a))
    report = precheck(built.read_bytes(), sheets=reader.READ_SHEETS)
    assert calls == [] and set(report.used) == set(reader.READ_SHEETS)


def test_workbooks_get_the_same_precheck_either_way(built, tmp_path, monkeypatch):
    """Whole pre-checks (used ranges, formulas, refusals) of workbooks with each crafted Log, fast path or not."""
    plain_log = write_xlsx(tmp_path / "plain.xlsx", {"Log": minimal_log(rows=[["OAK-1", "OAK", None, None]]),
                                                     "Notes": [["anything"]]})
    part = sheet_part(built, "Log")
    books = [built.read_bytes(), plain_log.read_bytes()]
    books += [rewrite(built, tmp_path / f"odd{i}.xlsx", {part: xml}).read_bytes()
              for i, xml in enumerate([*ODDITIES.values(), *PLAIN.values()])]
    with zipfile.ZipFile(built) as zf:  # a formula of the real Log without its saved value
        log = zf.read(part)
    no_value = re.sub(rb"(</f>)<v>[^<]*</v>", rb"\1", log, count=3)
    books.append(rewrite(built, tmp_path / "novalue.xlsx", {part: no_value}).read_bytes())
    fast = [precheck_outcome(data) for data in books]
    monkeypatch.setattr(reader, "_is_plain_sheet", lambda xml: False)
    assert fast == [precheck_outcome(data) for data in books]
    assert isinstance(fast[0], reader.Precheck) and isinstance(fast[-1], reader.Precheck)
    assert fast[-1].formulas_without_value["Log"]  # the exact checks ran for that Log
    assert sum(isinstance(result, tuple) for result in fast) >= len(ODDITIES) // 2  # many were refused


def test_workbook_error_is_what_the_plain_path_raises():
    with pytest.raises(WorkbookError, match="reaches row 50,001"):
        reader._check_sheet("Log", PART, PLAIN["50,001 rows"])
