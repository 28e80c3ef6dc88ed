"""The Dashboard's figures, recalculated by LibreOffice, against a plain pandas count of the same rows.

Two workbooks, converted by LibreOffice in one call:

- the empty template filled through openpyxl the way a person's typing looks
  (real dates, strings, whole numbers), with blank rows in between, rows
  below the table's initial extent and a few rows a drop-down would have
  refused (pasted in), and the "last month shown" cell set to a mid-month date;
- a workbook written by ``build_workbook(path, records)`` directly, whose
  charts must survive LibreOffice.

The expected figures are worked out here from the rows, plainly, without the
dashboard module's formulas.  "Overdue" and "past review target" depend on
TODAY(), so they are worked out with today's date.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from tests.conftest import DATA_END
from workbook_templates import dashboard
from workbook_templates.builder import BLANK_TABLE_ROWS, build_workbook
from workbook_templates.codelists import CODE_LISTS, EXPOSURE_UNIT_BY_SETTING, REVIEW_TARGET_DAYS
from workbook_templates.contract import (
    ACTIONS, EXPOSURE_FIELDS, EXPOSURE_FIRST_COLUMN, EXPOSURE_MONTHS, INCIDENTS, SITE_FIELDS, column_letter,
)
from workbook_templates.synthetic import make_site

# One worker per module under `--dist loadgroup` (scripts/test.sh): the workbooks are built and
# recalculated once, in one LibreOffice call.
pytestmark = pytest.mark.xdist_group("template_dashboard")

HARM = ("low", "moderate", "severe", "fatal")
FILLED_LAST_MONTH = dt.datetime(2026, 9, 17)  # mid-month on purpose: the dashboard shows Oct 2025 .. Sep 2026
TEMPLATE_FIRST_MONTH = dt.date(2024, 4, 1)


# --- writing rows the way Excel stores a person's typing ----------------------------------------------

def typed(value):
    """A frame value as a cell typed in Excel holds it: None for blank, datetime, int, float or str."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        value = value.item()
    if isinstance(value, str):
        if value == "":
            return None
        if re.fullmatch(r"\d\d:\d\d", value):  # a typed time becomes a time
            return dt.time(int(value[:2]), int(value[3:]))
    return value


def typed_rows(frame: pd.DataFrame, sheet) -> list[dict]:
    fields = [f.name for f in sheet.input_fields]
    return [{name: typed(row[name]) for name in fields} for row in frame.to_dict("records")]


def write_rows(ws, sheet, rows: list[dict | None]) -> None:
    """Write rows from sheet row 2 down; ``None`` leaves a blank row."""
    for offset, record in enumerate(rows):
        if record is None:
            continue
        r = 2 + offset
        for name, value in record.items():
            if value is None:
                continue
            cell = ws[f"{sheet.column_letter(name)}{r}"]
            cell.value = value
            if isinstance(value, dt.datetime):
                cell.number_format = "dd/mm/yyyy"


def with_blank_rows(rows: list[dict], every: int) -> list[dict | None]:
    out: list[dict | None] = []
    for i, row in enumerate(rows, start=1):
        out.append(row)
        if i % every == 0:
            out.append(None)
    return out


def odd_rows(month: dt.datetime) -> list[dict]:
    """Rows a drop-down would have refused but a paste lets in: they must count where they belong only."""
    day = month + dt.timedelta(days=3)
    base = {"incident_ref": None, "site_code": "OAK", "occurred_at": day, "reported_at": day, "status": "open",
            "description": "Pasted row"}
    return [
        {**base, "incident_ref": "OAK-X-1", "event_type": "near_miss", "physical_harm": "none"},  # no category
        {**base, "incident_ref": "OAK-X-2", "event_type": "incident", "category": "slips", "physical_harm": "low",
         "response_tier": "moderate", "status": None},  # category not in the list; status left blank
        {**base, "incident_ref": "OAK-X-3", "event_type": "incident", "category": "falls", "physical_harm": "low",
         "occurred_at": "31/13/2026"},  # a date typed as text: counted in no month
        {**base, "incident_ref": "OAK-X-4", "event_type": "Near Miss", "category": "medication",
         "physical_harm": "none"},  # event type not in the list: a report, but neither near miss nor incident
    ]


# --- the expected figures, worked out plainly --------------------------------------------------------

def month_start(d: dt.date) -> dt.date:
    return dt.date(d.year, d.month, 1)


def add_months(d: dt.date, n: int) -> dt.date:
    y, m = divmod(d.month - 1 + n, 12)
    return dt.date(d.year + y, m + 1, 1)


def as_date(value):
    """A cell value as a date when Excel would treat it as one (a real date), else None."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return None


def expected_figures(incidents: list[dict], actions: list[dict], exposure: dict[dt.date, float],
                     last_month: dt.date, today: dt.date) -> dict:
    inc = pd.DataFrame(incidents)
    for col in ("event_type", "category", "physical_harm", "response_tier", "status"):
        if col not in inc:
            inc[col] = None
    inc["occurred"] = inc["occurred_at"].map(as_date)
    inc["reported"] = inc["reported_at"].map(as_date)
    months = [add_months(month_start(last_month), k) for k in range(-11, 1)]
    out: dict = {"months": months, "monthly": [], "categories": {c: [] for c in CODE_LISTS["category"]},
                 "uncoded": []}
    for m in months:
        in_month = inc["occurred"].map(lambda d, m=m: d is not None and m <= d < add_months(m, 1))
        rows = inc[in_month]
        near_misses = int((rows["event_type"] == "near_miss").sum())
        incidents_n = int((rows["event_type"] == "incident").sum())
        all_reports = len(rows)
        with_harm = int(((rows["event_type"] == "incident") & rows["physical_harm"].isin(HARM)).sum())
        share = near_misses / all_reports if all_reports else None
        units = exposure.get(m, 0) or 0
        rate = round(all_reports / units * 1000, 2) if units > 0 else None
        out["monthly"].append([near_misses, incidents_n, all_reports, with_harm, share, units, rate])
        coded = 0
        for c in CODE_LISTS["category"]:
            n = int((rows["category"] == c).sum())
            out["categories"][c].append(n)
            coded += n
        out["uncoded"].append(all_reports - coded)
    cols = list(zip(*out["monthly"]))
    nm, inc_n, all_n, harm_n, units = (sum(cols[i]) for i in (0, 1, 2, 3, 5))
    with_units = sum(row[2] for row in out["monthly"] if row[5] > 0)
    out["total"] = [nm, inc_n, all_n, harm_n, nm / all_n if all_n else None, units,
                    round(with_units / units * 1000, 2) if units > 0 else None]

    act = pd.DataFrame(actions)
    act["due"] = act["due_date"].map(as_date)
    act["completed"] = act["completed_date"].map(as_date) if "completed_date" in act else None
    counts = {s: int((act["status"] == s).sum()) for s in CODE_LISTS["action_status"]}
    counts["overdue"] = int((act["status"].isin(["open", "in_progress"])
                             & act["due"].map(lambda d: d is not None and d < today)).sum())
    done = act[act["status"] == "done"]
    counts["done by due date"] = int(sum(c is not None and d is not None and c <= d
                                         for c, d in zip(done["completed"], done["due"])))
    counts["% done by due date"] = counts["done by due date"] / counts["done"] if counts["done"] else None
    out["actions"] = counts

    tiers = {}
    for tier in CODE_LISTS["response_tier"]:
        is_open = (inc["response_tier"] == tier) & (inc["status"] != "closed")
        past = is_open & inc["reported"].map(
            lambda d, t=tier: d is not None and d < today - dt.timedelta(days=REVIEW_TARGET_DAYS[t]))
        tiers[tier] = (int(is_open.sum()), int(past.sum()))
    out["tiers"] = tiers
    return out


# --- reading the recalculated Dashboard ----------------------------------------------------------------

def blank(value):
    return None if value in (None, "") else value


def dashboard_figures(wb: openpyxl.Workbook) -> dict:
    ws = wb[dashboard.SHEET]
    cell = lambda row, col: blank(ws.cell(row=row + 1, column=col + 1).value)  # noqa: E731 - 0-based
    first = dashboard.FIRST_MONTH_ROW
    out: dict = {"months": [cell(first + k, 0).date() for k in range(dashboard.MONTHS)]}
    out["monthly"] = [[cell(first + k, c) for c in range(1, 8)] for k in range(dashboard.MONTHS)]
    out["total"] = [cell(dashboard.TOTAL_ROW, c) for c in range(1, 8)]
    rows = dashboard.category_rows()
    assert [cell(rows[c], 0) for c in CODE_LISTS["category"]] == list(CODE_LISTS["category"])
    out["categories"] = {c: [cell(rows[c], 1 + k) for k in range(dashboard.MONTHS)] for c in CODE_LISTS["category"]}
    out["uncoded"] = [cell(rows[dashboard.UNCODED_LABEL], 1 + k) for k in range(dashboard.MONTHS)]
    out["category_header"] = [cell(dashboard.CATEGORY_HEADER_ROW, 1 + k) for k in range(dashboard.MONTHS)]
    out["category_totals"] = {label: cell(row, dashboard.CATEGORY_TOTAL_COL) for label, row in rows.items()}
    out["category_total_row"] = [cell(rows["Total"], 1 + k) for k in range(dashboard.MONTHS)]
    a_rows = dashboard.action_rows()
    assert [cell(r, 0) for r in a_rows.values()] == list(a_rows)
    out["actions"] = {label: cell(row, 1) for label, row in a_rows.items()}
    t0 = dashboard.TIER_FIRST_COL
    out["tiers"] = {tier: (cell(row, t0 + 2), cell(row, t0 + 3)) for tier, row in dashboard.tier_rows().items()}
    assert [cell(row, t0) for row in dashboard.tier_rows().values()] == list(CODE_LISTS["response_tier"])
    return out


def errors_in(ws) -> list[tuple[str, str]]:
    return [(c.coordinate, c.value) for row in ws.iter_rows() for c in row
            if isinstance(c.value, str) and c.value.startswith("#")]


def assert_dashboard_matches(got: dict, want: dict) -> None:
    assert got["months"] == want["months"]
    for k, month in enumerate(want["months"]):
        g, w = got["monthly"][k], want["monthly"][k]
        assert g[:4] == w[:4], f"{month:%b %Y}: near misses, incidents, all reports, with harm"
        assert g[4] == (pytest.approx(w[4]) if w[4] is not None else None), f"{month:%b %Y}: near-miss share"
        assert g[5] == pytest.approx(w[5]), f"{month:%b %Y}: exposure"
        assert g[6] == (pytest.approx(w[6], abs=1e-9) if w[6] is not None else None), f"{month:%b %Y}: rate"
    g, w = got["total"], want["total"]
    assert g[:4] == w[:4]
    assert g[4] == (pytest.approx(w[4]) if w[4] is not None else None)
    assert g[5] == pytest.approx(w[5])
    assert g[6] == (pytest.approx(w[6], abs=1e-9) if w[6] is not None else None)
    for c, counts in want["categories"].items():
        assert got["categories"][c] == counts, c
        assert got["category_totals"][c] == sum(counts), c
    assert got["uncoded"] == want["uncoded"]
    assert [h.date() for h in got["category_header"]] == want["months"]
    assert got["category_total_row"] == [m[2] for m in want["monthly"]]
    assert got["category_totals"]["Total"] == want["total"][2]
    for label, value in want["actions"].items():
        assert got["actions"][label] == (pytest.approx(value) if value is not None else None), label
    assert got["tiers"] == want["tiers"]


# --- the two workbooks, recalculated in one LibreOffice call -------------------------------------------

def filled_data() -> dict:
    """The rows a person types into the empty template (and the bed days typed on the Site sheet)."""
    records = make_site(end=DATA_END, seed=11)
    incidents = typed_rows(records.incidents, INCIDENTS) + odd_rows(dt.datetime(2026, 5, 1))
    actions = typed_rows(records.actions, ACTIONS)
    assert len(incidents) > 3 * BLANK_TABLE_ROWS and len(actions) > 3 * BLANK_TABLE_ROWS
    bed_days = dict(zip(records.exposure["month"].dt.date, records.exposure["occupied_bed_days"]))
    template_months = {add_months(TEMPLATE_FIRST_MONTH, k) for k in range(EXPOSURE_MONTHS)}
    exposure = {m: int(v) for m, v in bed_days.items() if m in template_months}
    return {"incidents": incidents, "actions": actions, "exposure": exposure}


def write_filled(path: Path, data: dict) -> None:
    """Build the empty template, then fill it through openpyxl as typing would."""
    template = build_workbook(path.with_name("template.xlsx"),
                              site={"site_code": "OAK", "site_name": "Oakview House", "setting": "care_home"},
                              first_month=TEMPLATE_FIRST_MONTH)
    wb = openpyxl.load_workbook(template)
    write_rows(wb[INCIDENTS.sheet], INCIDENTS, with_blank_rows(data["incidents"], every=7))
    write_rows(wb[ACTIONS.sheet], ACTIONS, with_blank_rows(data["actions"], every=4))
    # Bed days typed into the Site sheet's exposure table, against the months already there.
    site = wb["Site"]
    month_col = EXPOSURE_FIRST_COLUMN + 1
    beds_col = month_col + [f.name for f in EXPOSURE_FIELDS].index("occupied_bed_days")
    typed_months = set()
    for r in range(2, site.max_row + 1):
        month = site.cell(r, month_col).value
        if isinstance(month, dt.datetime) and month.date() in data["exposure"]:
            site.cell(r, beds_col).value = data["exposure"][month.date()]
            typed_months.add(month.date())
    assert typed_months == set(data["exposure"])
    wb[dashboard.SHEET]["B3"].value = FILLED_LAST_MONTH
    wb.save(path)


def direct_records():
    return make_site(end=DATA_END, seed=5, setting="homecare", site_code="ELM", site_name="Elm Homecare")


def direct_data(records) -> dict:
    exposure = dict(zip(records.exposure["month"].dt.date, records.exposure["care_hours"]))
    return {"incidents": typed_rows(records.incidents, INCIDENTS), "actions": typed_rows(records.actions, ACTIONS),
            "exposure": exposure}


def convert_once(libreoffice, tmp_path_factory, name: str, names: list[str], write) -> tuple[list[Path], list[Path]]:
    """Write workbooks ``names`` with ``write(folder)`` and recalculate them in one LibreOffice call, once a run.

    Under pytest-xdist the workers of a run share one folder and a lock, so
    whichever worker comes first does the work and the others read its results.
    ``write`` must be deterministic; each worker works out its expected figures itself.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / f"shared-{name}"
    folder.mkdir(exist_ok=True)
    paths = [folder / n for n in names]
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / ".done"
        if done.exists():
            out = [folder / "out" / n for n in names]
        else:
            write(folder)
            out = libreoffice.convert(paths, folder / "out")
            done.touch()
    return paths, out


@pytest.fixture(scope="module")
def recalculated(libreoffice, tmp_path_factory):
    filled_rows = filled_data()
    records = direct_records()
    direct_rows = direct_data(records)

    def write(folder: Path) -> None:
        write_filled(folder / "filled.xlsx", filled_rows)
        build_workbook(folder / "direct.xlsx", records)

    (filled, direct), out = convert_once(libreoffice, tmp_path_factory, "dashboard",
                                         ["filled.xlsx", "direct.xlsx"], write)
    return {
        "filled": (filled, openpyxl.load_workbook(out[0], data_only=True), filled_rows),
        "direct": (direct, openpyxl.load_workbook(out[1], data_only=True), direct_rows, out[1]),
    }


@pytest.mark.libreoffice
def test_dashboard_of_a_template_filled_by_typing_matches_pandas(recalculated):
    _, wb, rows = recalculated["filled"]
    want = expected_figures(rows["incidents"], rows["actions"], rows["exposure"],
                            FILLED_LAST_MONTH.date(), dt.date.today())
    got = dashboard_figures(wb)
    assert errors_in(wb[dashboard.SHEET]) == []
    assert_dashboard_matches(got, want)
    # The figures are not trivially zero: the window holds reports, exposure and a pasted odd row.
    assert want["total"][2] > 50 and want["total"][5] > 0 and sum(want["uncoded"]) == 2
    may = want["months"].index(dt.date(2026, 5, 1))
    assert want["monthly"][may][2] == want["monthly"][may][0] + want["monthly"][may][1] + 1  # "Near Miss"
    assert want["tiers"]["moderate"][0] > 0 and want["actions"]["done"] > 0
    assert wb[dashboard.SHEET]["G6"].value == "Bed days"


@pytest.mark.libreoffice
def test_derived_columns_of_the_filled_template(recalculated):
    """Inside the table's first rows the calculated columns work out risk and overdue; blank rows stay blank."""
    _, wb, rows = recalculated["filled"]
    log = wb[INCIDENTS.sheet]
    written = with_blank_rows(rows["incidents"], every=7)
    for offset in range(BLANK_TABLE_ROWS):
        r = 2 + offset
        record = written[offset]
        score = blank(log[f"{INCIDENTS.column_letter('risk_score')}{r}"].value)
        band = blank(log[f"{INCIDENTS.column_letter('risk_band')}{r}"].value)
        if record is None:
            assert (score, band) == (None, None), f"blank row {r}"
            continue
        c, l = record["consequence"], record["likelihood"]
        assert score == c * l
        assert band == ("low" if c * l <= 3 else "moderate" if c * l <= 6 else "high" if c * l <= 12 else "extreme")
    acts = wb[ACTIONS.sheet]
    written = with_blank_rows(rows["actions"], every=4)
    today = dt.date.today()
    for offset in range(BLANK_TABLE_ROWS):
        r = 2 + offset
        record = written[offset]
        overdue = blank(acts[f"{ACTIONS.column_letter('overdue')}{r}"].value)
        is_overdue = (record is not None and record["status"] in ("open", "in_progress")
                      and as_date(record["due_date"]) is not None and as_date(record["due_date"]) < today)
        assert overdue == ("overdue" if is_overdue else None), f"row {r}"
    assert errors_in(log) == [] and errors_in(acts) == []


@pytest.mark.libreoffice
def test_dashboard_of_a_workbook_built_from_records_matches_pandas(recalculated):
    _, wb, rows, _ = recalculated["direct"]
    # No date typed in the "last month shown" cell: it is this month.
    want = expected_figures(rows["incidents"], rows["actions"], rows["exposure"], dt.date.today(), dt.date.today())
    assert_dashboard_matches(dashboard_figures(wb), want)
    assert errors_in(wb[dashboard.SHEET]) == []
    assert wb[dashboard.SHEET]["G6"].value == "Care hours"  # homecare: rates per 1,000 care hours


@pytest.mark.libreoffice
def test_built_workbook_keeps_its_native_charts(recalculated):
    path, _, _, converted = recalculated["direct"]
    with zipfile.ZipFile(path) as z:
        charts = sorted(n for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n))
        assert len(charts) == 3
        xml = "".join(z.read(n).decode() for n in charts)
        drawing_rels = [n for n in z.namelist() if n.startswith("xl/drawings/_rels/")]
        assert len(drawing_rels) == 1  # all three on the Dashboard's one drawing
    assert "<c:barChart>" in xml and xml.count("<c:ser>") == 2 + len(CODE_LISTS["category"]) + 1
    # Every series reads the Dashboard's own cells: no external or cached-only data.
    assert set(re.findall(r"<c:f>(.*?)!", xml)) == {dashboard.SHEET}
    # LibreOffice opened it, recalculated it and wrote the charts back out.
    with zipfile.ZipFile(converted) as z:
        assert len([n for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]) == 3


def test_site_setting_cell_is_the_one_the_dashboard_reads():
    row = 2 + [f.name for f in SITE_FIELDS].index("setting")
    assert dashboard._setting_cell() == f"'Site'!$B${row}"
    assert set(EXPOSURE_UNIT_BY_SETTING) == set(CODE_LISTS["setting"])


def test_month_column_letters():
    assert column_letter(0) == "A" and column_letter(25) == "Z" and column_letter(26) == "AA"
