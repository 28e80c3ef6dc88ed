"""No formulas from user text, end to end (../shared/spec/security.md, workbook_templates/text_safety.py).

One synthetic site with hostile text in every free-text field (and in a code field, so that finding
messages quote it) goes through every writer of the project: the template (``nearmiss template`` and
the builder with records), ``nearmiss convert`` of a legacy log, the checked copy, the Trends sheet,
``nearmiss consolidate`` (governance workbook and both CSV files), ``nearmiss return``, and on the
server the API's CSV files and return, the web CSV downloads, the web governance workbook and the
web checked copy.  Every workbook is read back twice, as XML from the zip and with openpyxl (not
``data_only``), and every CSV with the csv module:

- no cell holding user text is a formula (no ``<f>``, openpyxl ``data_type`` "s", never "f"), and no
  formula anywhere holds a hostile payload;
- no hyperlink relationship at all, and no hyperlink whose location holds user text;
- every hostile value is there as text (nothing was silently dropped): exactly, or as the step that
  wrote it is documented to normalise it (the reader trims cells, convert collapses white space,
  learning themes are trimmed tags in lower case);
- in CSV no cell starts with ``= + - @``, tab, CR or LF; text that did begins with ``'`` and is
  otherwise unchanged, and all other text is exactly what the reader read.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import openpyxl
import pandas as pd
import pytest
from click.testing import CliRunner

from addin.reader import read_workbook
from addin.validate import validate_workbook
from addin.xl import checked_copy, trends_sheet
from addin.xl.excel_io import OpenpyxlIO, SheetContent
from server.cli import main
from tests.conftest import DATA_END
from tests.server.conftest import (  # noqa: F401  (the server tests' fixtures: app, client and what they need)
    app, backend, client, database_url, instance, make_app, postgres_admin, postgres_admin_url, server_env,
)
from tests.server.support import area_token, bearer, upload
from tests.test_template_text_safety import TRICKY
from tests.web.support import PASSWORD, login
from workbook_templates.builder import build_workbook
from workbook_templates.records import SiteRecords
from workbook_templates.synthetic import make_site
from workbook_templates.text_safety import (
    CUT_MARKER, FORMULA_TRIGGERS, MAX_CELL_TEXT, cell_text, csv_cell, utf16_len, was_cut,
)

HOSTILE = [
    "=1+1",
    '=HYPERLINK("http://example.invalid","x")',
    "+44 1234",
    "-2+3",
    "@SUM(A1)",
    "\t=1",
    "\r=1",
    "external:\\\\host\\share",
    "http://example.invalid",
]
ALL = list(dict.fromkeys(HOSTILE + TRICKY))
SITE_CODE = "HOS"
SITE_NAME = '=HYPERLINK("http://example.invalid","site")'
PROVIDER = "+44 1234 Care Ltd"
COMMISSIONER = "=1+1 County Council"
COMMISSIONERS = f"{COMMISSIONER}, @SUM(A1) ICB"
AREA = "@SUM(A1) area"
PERIOD = "2026-Q3"
Q3 = (pd.Timestamp("2026-07-01"), pd.Timestamp("2026-09-30"))
INCIDENT_TEXT = ["description", "immediate_action", "person_ref", "staff_role", "notes", "tier_override_reason",
                 "riddor_ref", "learning_theme"]
ACTION_TEXT = ["action", "owner_role", "evidence", "incident_refs"]
# What hostile text would leave in a formula if a writer let it become one (its "=" / "+" / "@" dropped).
PAYLOADS = sorted({p for p in (re.sub(r"^[=+\-@\s]+", "", h) for h in ALL) if len(p) >= 3}, key=len)
DISTINCT = [t for t in dict.fromkeys(" ".join(h.split()) for h in ALL) if len(t) >= 4]
MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"


# --- the hostile site ---------------------------------------------------------------------------------

def rotated(k: int, n: int) -> list[str]:
    return [ALL[(i + k) % len(ALL)] for i in range(n)]


def hostile_records() -> SiteRecords:
    """A synthetic site whose every free-text field holds the hostile values (each value in every field)."""
    records = make_site(SITE_CODE, SITE_NAME, end=DATA_END, seed=7, months=13, reports_per_month=10.0,
                        provider=PROVIDER, commissioners=COMMISSIONERS)
    inc, act = records.incidents, records.actions
    n = len(ALL)
    for k, name in enumerate(INCIDENT_TEXT[:-1]):
        inc.loc[inc.index[:n], name] = rotated(k, n)
    # Code fields: the findings' messages quote the values.  Refs are typed too: the findings' Ref cells on
    # the Checks sheet are then user text from the first character.
    inc.loc[inc.index[n:n + 2], "incident_ref"] = ["-2+3", "@SUM(A1)"]
    inc.loc[inc.index[n:n + 2], "location"] = ["=1+1", "@SUM(A1)"]
    # Reviews closed in the return's period, tagged with hostile themes.
    in_q3 = inc.index[(inc["occurred_at"] >= Q3[0]) & (inc["occurred_at"] <= Q3[1] - pd.Timedelta(days=5))][:n]
    assert len(in_q3) == n
    inc.loc[in_q3, "status"] = "closed"
    inc.loc[in_q3, "closed_date"] = inc.loc[in_q3, "occurred_at"] + pd.Timedelta(days=3)
    inc.loc[in_q3, "learning_theme"] = ALL
    # Open actions past their due date, so the governance workbook lists their text and owner.
    first = act.index[:n]
    for k, name in enumerate(ACTION_TEXT):
        act.loc[first, name] = rotated(k, n)
    act.loc[first, "status"] = "open"
    act.loc[first, "completed_date"] = pd.NaT
    act.loc[first, "effective"] = None
    act.loc[first, "effectiveness_check_date"] = pd.NaT
    act.loc[first, "raised_date"] = pd.Timestamp("2026-08-01")
    act.loc[first, "due_date"] = pd.Timestamp("2026-09-01")
    act.loc[act.index[n], ["action_ref", "action_type"]] = ["=1+1", "-2+3"]
    return records


@dataclass
class Site:
    records: SiteRecords
    path: Path
    read: SiteRecords  # as the reader reads the workbook back (cells trimmed)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    records = hostile_records()
    path = build_workbook(tmp_path_factory.mktemp("hostile") / "hos.xlsx", records)
    read = read_workbook(path)
    assert read.ok, read.error
    return Site(records, path, read.records)


# --- reading workbooks back ---------------------------------------------------------------------------

def unescape(text: str) -> str:
    """OOXML's _xHHHH_ escapes (xlsxwriter writes CR so; openpyxl reads it back escaped) as characters."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def canon(text: str) -> str:
    """Text compared with white space collapsed (XML turns CR into LF; the reader trims cells)."""
    return " ".join(unescape(text).split())


@dataclass
class Cell:
    sheet: str
    ref: str
    type: str | None
    formula: str | None
    text: str


def _text_of(node) -> str:  # noqa: ANN001
    return "".join(t.text or "" for t in node.iter(f"{MAIN}t"))


def xlsx_cells(path: Path) -> tuple[list[Cell], list[str]]:
    """Every cell of every sheet from the XML (type, formula, text), and problems with hyperlinks."""
    cells: list[Cell] = []
    link_problems: list[str] = []
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        shared = []
        if "xl/sharedStrings.xml" in names:
            shared = [_text_of(si) for si in ElementTree.fromstring(z.read("xl/sharedStrings.xml"))
                      if si.tag == f"{MAIN}si"]
        book = ElementTree.fromstring(z.read("xl/workbook.xml"))
        rels = {r.get("Id"): r.get("Target") for r in ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels"))}
        for sheet in book.find(f"{MAIN}sheets"):
            part = "xl/" + rels[sheet.get(f"{REL_NS}id")].lstrip("/").removeprefix("xl/")
            xml = ElementTree.fromstring(z.read(part))
            for c in xml.iter(f"{MAIN}c"):
                f, v, inline = c.find(f"{MAIN}f"), c.find(f"{MAIN}v"), c.find(f"{MAIN}is")
                if c.get("t") == "s" and v is not None:
                    text = shared[int(v.text)]
                elif inline is not None:
                    text = _text_of(inline)
                else:
                    text = v.text or "" if v is not None else ""
                cells.append(Cell(sheet.get("name"), c.get("r"), c.get("t"), None if f is None else f.text or "",
                                  text))
            for link in xml.iter(f"{MAIN}hyperlink"):
                where = link.get("location") or ""
                if link.get(f"{REL_NS}id") or any(canon(h) in canon(where) for h in ALL):
                    link_problems.append(f"{sheet.get('name')}!{link.get('ref')}: {link.attrib}")
            sheet_rels = part.replace("worksheets/", "worksheets/_rels/") + ".rels"
            if sheet_rels in names:
                for rel in ElementTree.fromstring(z.read(sheet_rels)):
                    if rel.get("Type", "").endswith("/hyperlink"):
                        link_problems.append(f"{sheet.get('name')}: hyperlink relationship to {rel.get('Target')}")
        if "xl/externalLinks" in {n.rsplit("/", 1)[0] for n in names}:
            link_problems.append("external links part")
    return cells, link_problems


def holds_hostile(text: str) -> bool:
    """Whether ``text`` holds one of the hostile values (those long enough not to occur by chance, e.g. "<=1")."""
    t = canon(text)
    return any(h in t for h in DISTINCT)


def check_workbook(path: Path | bytes, expected: list[str], tmp_path: Path, name: str) -> list[Cell]:
    """The assertions every produced workbook must pass; returns its cells for further checks."""
    if isinstance(path, (bytes, bytearray)):
        target = tmp_path / f"{name}.xlsx"
        target.write_bytes(path)
        path = target
    cells, link_problems = xlsx_cells(path)
    assert not link_problems, link_problems
    formulas = [c for c in cells if c.formula is not None]
    bad = [c for c in formulas if any(p in unescape(c.formula) for p in PAYLOADS) or holds_hostile(c.text)]
    assert not bad, f"{name}: user text inside a formula: {bad[:5]}"
    hostile_cells = [c for c in cells if holds_hostile(c.text)]
    assert hostile_cells, f"{name}: no hostile text at all"
    not_text = [c for c in hostile_cells if c.formula is not None or c.type not in ("s", "inlineStr")]
    assert not not_text, f"{name}: user text not stored as text: {not_text[:5]}"
    texts = [canon(c.text) for c in cells if c.type in ("s", "inlineStr")]
    missing = [h for h in expected if not any(canon(h) in t for t in texts)]
    assert not missing, f"{name}: hostile values missing (silently dropped?): {missing}"

    wb = openpyxl.load_workbook(path)  # formulas as formulas, not their saved values
    seen = 0
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if cell.data_type == "f":
                    assert not any(p in str(cell.value) for p in PAYLOADS), (name, ws.title, cell.coordinate)
                    assert not holds_hostile(str(cell.value)), (name, ws.title, cell.coordinate)
                elif isinstance(cell.value, str) and holds_hostile(cell.value):
                    assert cell.data_type == "s", (name, ws.title, cell.coordinate, cell.data_type)
                    seen += 1
                if cell.hyperlink is not None:
                    assert not cell.hyperlink.target, (name, ws.title, cell.coordinate, cell.hyperlink.target)
                    assert not holds_hostile(cell.hyperlink.location or ""), (name, ws.title, cell.coordinate)
    assert seen == len(hostile_cells), name
    return cells


def sheet_texts(cells: list[Cell], sheet: str) -> list[str]:
    return [canon(c.text) for c in cells if c.sheet == sheet and c.type in ("s", "inlineStr")]


def theme(text: str) -> str:
    """A learning theme as the summaries tag it: trimmed, lower case."""
    return " ".join(text.split()).lower()


# --- reading CSV back ---------------------------------------------------------------------------------

def check_csv(text: str, read: pd.DataFrame, key: str, fields: list[str], name: str) -> list[dict[str, str]]:
    """No cell starts with a formula character; free text is the reader's text, with ``'`` only where due."""
    text = text.removeprefix("\ufeff")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, body = rows[0], rows[1:]
    starts = [(i, cell) for i, row in enumerate(rows) for cell in row if cell.startswith(FORMULA_TRIGGERS)]
    assert not starts, f"{name}: cells a spreadsheet would run: {starts[:5]}"
    records = [dict(zip(header, row)) for row in body]
    by_key = {r[key]: r for r in records}
    assert len(by_key) == len(records) == len(read), name
    seen: set[str] = set()
    for _, want in read.iterrows():
        got = by_key[csv_cell(str(want[key]))]  # the key itself may be hostile text
        for f in [key, *fields]:
            value = want[f]
            value = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
            assert got[f] == csv_cell(value), (name, want[key], f, got[f], value)
            if value.startswith(FORMULA_TRIGGERS):
                assert got[f] == "'" + value
            else:
                assert got[f] == value
            seen.add(value)
    missing = [h for h in ALL if h.strip() not in seen]
    assert not missing, f"{name}: hostile values missing: {missing}"
    return records


# --- the writers --------------------------------------------------------------------------------------

def run(*args) -> object:  # noqa: ANN002
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_text_safety_rules() -> None:
    for h in ALL:
        assert csv_cell(h) == ("'" + h if h[0] in "=+-@\t\r\n" else h)
    assert csv_cell("safe = text") == "safe = text" and csv_cell(-3) == -3 and csv_cell(None) is None
    long = "x" * (MAX_CELL_TEXT + 10)
    cut = cell_text(long)
    assert utf16_len(cut) == MAX_CELL_TEXT and cut.endswith(CUT_MARKER) and was_cut(long, cut)
    emoji = "\U0001F600" * 20_000  # 40,000 UTF-16 units in 20,000 characters: Excel counts the units
    cut = cell_text(emoji)
    assert utf16_len(cut) <= MAX_CELL_TEXT and cut.endswith(CUT_MARKER)
    assert cell_text("=1+1") == "=1+1" and not was_cut("=1+1", "=1+1")


def test_template_command(tmp_path: Path) -> None:
    out = tmp_path / "template.xlsx"
    result = run("template", "--site-code", SITE_CODE, "--site-name", SITE_NAME, "--provider", PROVIDER,
                 "--out", out)
    assert result.exit_code == 0, result.output
    cells = check_workbook(out, [SITE_NAME, PROVIDER], tmp_path, "template")
    assert {canon(SITE_NAME), canon(PROVIDER)} <= set(sheet_texts(cells, "Site"))


def test_site_workbook_with_records(site: Site, tmp_path: Path) -> None:
    cells = check_workbook(site.path, [*ALL, SITE_NAME, PROVIDER, COMMISSIONERS], tmp_path, "site workbook")
    log = sheet_texts(cells, "Log")
    assert all(canon(h) in log for h in ALL)
    assert all(canon(h) in sheet_texts(cells, "Actions") for h in ALL)
    # Exactly as typed, tab and CR included: the reader of the XML gets every character back.
    exact = {unescape(c.text) for c in cells if c.sheet == "Log" and c.type == "s"}
    assert set(ALL) <= exact


def test_long_text_is_cut_with_a_marker(tmp_path: Path) -> None:
    """Text over a cell's 32,767 UTF-16 units ends with CUT_MARKER in every writer, never cut silently."""
    from server.reports.xlsx import new_workbook, write_value
    from workbook_templates.contract import INCIDENTS

    long, emoji = "=" + "y" * 40_000, "\U0001F600" * 20_000  # the emoji: 20,000 characters, 40,000 units
    records = make_site(SITE_CODE, SITE_NAME, end=DATA_END, seed=7, months=3, reports_per_month=6.0)
    records.incidents.loc[records.incidents.index[:2], "description"] = [long, emoji]
    site_book = build_workbook(tmp_path / "long.xlsx", records)
    column = INCIDENTS.column_letter("description")
    got = [openpyxl.load_workbook(site_book)["Log"][f"{column}{r}"] for r in (2, 3)]

    report = tmp_path / "report.xlsx"
    wb = new_workbook(report, "t", "t")
    ws = wb.add_worksheet("Report")
    write_value(ws, 0, 0, long)
    write_value(ws, 1, 0, emoji)
    wb.close()
    got += [openpyxl.load_workbook(report)["Report"][f"A{r}"] for r in (1, 2)]

    book = openpyxl.Workbook()
    OpenpyxlIO(book).write_sheet("Checks", SheetContent(rows=[[long], [emoji]]))
    book.save(tmp_path / "copy.xlsx")
    got += [openpyxl.load_workbook(tmp_path / "copy.xlsx")["Checks"][f"A{r}"] for r in (1, 2)]

    for cell in got:
        assert cell.data_type == "s" and cell.value.endswith(CUT_MARKER), cell
        assert MAX_CELL_TEXT - 2 <= utf16_len(cell.value) <= MAX_CELL_TEXT, cell
        assert cell.value[:100] in (long[:100], emoji[:100])


def write_legacy(path: Path) -> Path:
    """An old log whose text cells (and one column header) hold the hostile values, stored as text."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Incidents"
    headers = ["Date of incident", "What happened", "Action taken", "Type of incident", "Harm", "Notes",
               '=HYPERLINK("http://example.invalid","header")']
    rows = [headers]
    for i, h in enumerate(ALL):
        rows.append([dt.datetime(2026, 9, 1 + i), h, ALL[(i + 1) % len(ALL)], "Fall", "No harm",
                     ALL[(i + 2) % len(ALL)], ALL[(i + 3) % len(ALL)]])
    for r, values in enumerate(rows, start=1):
        for c, value in enumerate(values, start=1):
            cell = ws.cell(r, c)
            cell.value = value
            if isinstance(value, str):
                cell.data_type = "s"  # text in the old log, as someone typed it (not a formula)
    wb.save(path)
    return path


def test_convert_output(tmp_path: Path) -> None:
    legacy = write_legacy(tmp_path / "old log.xlsx")
    out = tmp_path / "converted.xlsx"
    result = run("convert", legacy, "--site-code", SITE_CODE, "--site-name", SITE_NAME, "--out", out)
    assert result.exit_code == 0, result.output
    header = '=HYPERLINK("http://example.invalid","header")'
    cells = check_workbook(out, [*ALL, SITE_NAME, header], tmp_path, "converted")
    log = " | ".join(sheet_texts(cells, "Log"))
    assert all(canon(h) in log for h in ALL)
    assert canon(f"{header}: {ALL[3]}") in log  # the unmatched column's header, kept in Notes with its value


def test_checked_copy_and_trends_sheet(site: Site, tmp_path: Path) -> None:
    findings = validate_workbook(site.path, today=DATA_END)
    quoting = [f.message for f in findings if holds_hostile(f.message)]
    assert any("=1+1" in m for m in quoting) and any("@SUM(A1)" in m for m in quoting)
    data = checked_copy.write_checked_copy(site.path.read_bytes(), findings, file="hos.xlsx")
    cells = check_workbook(data, [*ALL, SITE_NAME, *quoting], tmp_path, "checked copy")
    checks = sheet_texts(cells, checked_copy.SHEET)
    assert all(canon(m) in checks for m in quoting)
    refs = {f.ref for f in findings}
    assert {"-2+3", "@SUM(A1)", "=1+1"} <= refs  # written as the Checks sheet's Ref cells, whole
    ref_cells = {c.text: c for c in cells if c.sheet == checked_copy.SHEET and c.ref.startswith("C")}
    assert all(ref_cells[r].type in ("s", "inlineStr") and ref_cells[r].formula is None
               for r in ("-2+3", "@SUM(A1)", "=1+1"))

    # The openpyxl backend both sheets are written through, with nothing but user text in its cells.
    wb = openpyxl.Workbook()
    OpenpyxlIO(wb).write_sheet("Text", SheetContent(rows=[[h, f"{h} and more"] for h in ALL], header_row=None))
    wb.save(tmp_path / "backend.xlsx")
    cells = check_workbook(tmp_path / "backend.xlsx", ALL, tmp_path, "openpyxl backend")
    assert {unescape(c.text).replace("\n", "\r") for c in cells if c.ref.startswith("A")} == set(ALL)

    results = trends_sheet.measures_for(site.read, today=DATA_END)
    alone = trends_sheet.write_trends_workbook(None, results, site=SITE_NAME, today=DATA_END)
    cells = check_workbook(alone, [SITE_NAME], tmp_path, "trends workbook")
    assert any(canon(SITE_NAME) in t for t in sheet_texts(cells, trends_sheet.SHEET))

    wb = openpyxl.load_workbook(site.path)
    trends_sheet.add_trends_sheet(wb, results, site=SITE_NAME, today=DATA_END)
    wb.save(tmp_path / "with-trends.xlsx")
    check_workbook(tmp_path / "with-trends.xlsx", [*ALL, SITE_NAME], tmp_path, "workbook with trends")


def test_consolidate_and_return_commands(site: Site, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    log = shutil.copy(site.path, folder / "=1+1 log.xlsx")
    broken = folder / "@SUM(A1).xlsx"
    broken.write_bytes(b"not a workbook")
    out, inc_csv, act_csv = tmp_path / "gov.xlsx", tmp_path / "incidents.csv", tmp_path / "actions.csv"
    result = run("consolidate", log, broken, "--out", out, "--csv", inc_csv, "--actions-csv", act_csv,
                 "--area", AREA, "--today", DATA_END.isoformat())
    assert result.exit_code == 2, result.output  # the broken file is reported, the rest written
    expected = [SITE_NAME, AREA, log.name, broken.name, *map(theme, ALL), *ALL]  # ALL: overdue actions' text
    cells = check_workbook(out, expected, tmp_path, "governance")
    assert all(canon(h) in sheet_texts(cells, "Overdue actions") for h in ALL)  # action text and owner role
    assert all(canon(theme(h)) in sheet_texts(cells, "Themes") for h in ALL)
    assert canon(SITE_NAME) in sheet_texts(cells, "Sites") and canon(log.name) in sheet_texts(cells, "Sites")
    assert canon(broken.name) in sheet_texts(cells, "Data quality")

    check_csv(inc_csv.read_text(encoding="utf-8-sig"), site.read.incidents, "incident_ref", INCIDENT_TEXT,
              "consolidate --csv")
    check_csv(act_csv.read_text(encoding="utf-8-sig"), site.read.actions, "action_ref", ACTION_TEXT,
              "consolidate --actions-csv")

    ret = tmp_path / "return.xlsx"
    result = run("return", log, "--period", PERIOD, "--commissioner", COMMISSIONER, "--out", ret,
                 "--today", DATA_END.isoformat())
    assert result.exit_code == 0, result.output
    cells = check_workbook(ret, [COMMISSIONER, PROVIDER, SITE_NAME, *map(theme, ALL)], tmp_path, "return")
    assert all(canon(theme(h)) in sheet_texts(cells, "Return") for h in ALL)


def test_server_outputs(app, client, site: Site, tmp_path: Path) -> None:  # noqa: ANN001
    from server.admin import add_site, add_user
    from server.db import get_db

    with get_db(app).sessions() as session:
        _, _, issued = add_site(session, code=SITE_CODE, name=SITE_NAME, area="North", setting="care_home",
                                who="test")
        add_user(session, username="admin", password=PASSWORD, role="admin", area=None, site=None, who="test")
        session.commit()
        site_secret = issued.secret
    sent = upload(client, site_secret, site.path, name="=1+1 log.xlsx")
    assert sent.status_code == 201, sent.data[:500]
    submission_id = sent.json["submission_id"]
    lead = bearer(area_token(app, "North"))

    for table, frame, key, fields in (("incidents", site.read.incidents, "incident_ref", INCIDENT_TEXT),
                                      ("actions", site.read.actions, "action_ref", ACTION_TEXT)):
        response = client.get(f"/api/v1/{table}.csv?site={SITE_CODE}", headers=lead)
        assert response.status_code == 200, response.data[:300]
        check_csv(response.get_data(as_text=True), frame, key, fields, f"API {table}.csv")

    response = client.get("/api/v1/returns", headers=lead,
                          query_string={"site": SITE_CODE, "period": PERIOD, "commissioner": COMMISSIONER})
    assert response.status_code == 200, response.data[:300]
    check_workbook(response.data, [COMMISSIONER, PROVIDER, SITE_NAME, *map(theme, ALL)], tmp_path, "API return")

    people = app.test_client()
    assert login(people, "admin").status_code == 302
    for table, frame, key, fields in (("incidents", site.read.incidents, "incident_ref", INCIDENT_TEXT),
                                      ("actions", site.read.actions, "action_ref", ACTION_TEXT)):
        response = people.get(f"/sites/{SITE_CODE}/{table}.csv")
        assert response.status_code == 200
        check_csv(response.get_data(as_text=True), frame, key, fields, f"web {table}.csv")
    response = people.get(f"/sites/{SITE_CODE}/governance.xlsx")
    assert response.status_code == 200
    cells = check_workbook(response.data, [SITE_NAME, *map(theme, ALL), *ALL], tmp_path, "web governance")
    assert all(canon(h) in sheet_texts(cells, "Overdue actions") for h in ALL)
    response = people.get(f"/submissions/{submission_id}/checked-copy")
    assert response.status_code == 200
    check_workbook(response.data, [*ALL, SITE_NAME, "=1+1"], tmp_path, "web checked copy")
