"""User text is written as text: never a formula, a link or a number (../shared/spec/security.md)."""

from __future__ import annotations

import re
import zipfile
from xml.etree import ElementTree

import openpyxl

from tests.conftest import DATA_END
from workbook_templates.builder import build_workbook
from workbook_templates.contract import INCIDENTS
from workbook_templates.synthetic import make_site

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"

TRICKY = [
    "=1+1",
    '=HYPERLINK("http://example.invalid/x","click")',
    "http://example.invalid/report",
    "https://example.invalid/a?b=c",
    "external:\\\\host\\share",
    "mailto:someone@example.invalid",
    "+44 1234 567890",
    "-5 degrees in the garden",
    "@SUM(A1:A2)",
    "=cmd|' /C calc'!A0",
]


def sheet_xml(path, sheet_name: str) -> tuple[ElementTree.Element, list[str]]:
    """The sheet's XML and the relationship types of its part."""
    with zipfile.ZipFile(path) as z:
        book = ElementTree.fromstring(z.read("xl/workbook.xml"))
        rid = next(s.get(REL) for s in book.find("m:sheets", NS) if s.get("name") == sheet_name)
        rels = ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels"))
        target = next(r.get("Target") for r in rels if r.get("Id") == rid)
        part = "xl/" + target.lstrip("/").removeprefix("xl/")
        sheet_rels = part.replace("worksheets/", "worksheets/_rels/") + ".rels"
        types = []
        if sheet_rels in z.namelist():
            types = [r.get("Type") for r in ElementTree.fromstring(z.read(sheet_rels))]
        return ElementTree.fromstring(z.read(part)), types


def test_text_that_looks_like_a_formula_or_link_stays_text(tmp_path):
    records = make_site(end=DATA_END, seed=4)
    n = len(TRICKY)
    records.incidents.loc[: n - 1, "description"] = TRICKY
    records.incidents.loc[: n - 1, "immediate_action"] = list(reversed(TRICKY))
    records.incidents.loc[0, "person_ref"] = "0123"  # leading zero: a reference, not a number
    records.actions.loc[0, "action"] = "=2*3"
    path = build_workbook(tmp_path / "tricky.xlsx", records)

    xml, rel_types = sheet_xml(path, INCIDENTS.sheet)
    assert xml.find("m:hyperlinks", NS) is None
    assert not [t for t in rel_types if t.endswith("/hyperlink")]
    description = INCIDENTS.column_letter("description")
    for r in range(2, n + 2):
        c = xml.find(f".//m:c[@r='{description}{r}']", NS)
        assert c.get("t") == "s" and c.find("m:f", NS) is None, r
    formulas = [c.get("r") for c in xml.iter(f"{{{NS['m']}}}c") if c.find("m:f", NS) is not None]
    derived = {INCIDENTS.column_letter(f.name) for f in INCIDENTS.fields if f.type == "derived"}
    assert {re.match(r"[A-Z]+", ref).group() for ref in formulas} == derived

    wb = openpyxl.load_workbook(path)
    ws = wb[INCIDENTS.sheet]
    assert [ws[f"{description}{r}"].value for r in range(2, n + 2)] == TRICKY
    assert all(ws[f"{description}{r}"].hyperlink is None for r in range(2, n + 2))
    assert ws[f"{INCIDENTS.column_letter('person_ref')}2"].value == "0123"
    assert wb["Actions"]["C2"].value == "=2*3" and wb["Actions"]["C2"].data_type == "s"
