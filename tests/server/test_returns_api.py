"""GET /api/v1/returns: the commissioner return as .xlsx, its counts checked against pandas; auth rules."""

from __future__ import annotations

import io

import openpyxl
import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from server.db import get_db
from server.models import AuditEvent
from workbook_templates.codelists import CODE_LISTS, HARM_LEVELS

from .support import admin_token, area_token, bearer, site_token, upload

PERIOD = "2026-Q3"
START, END = pd.Timestamp("2026-07-01"), pd.Timestamp("2026-09-30")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def north(app: Flask, client: FlaskClient, workbooks) -> dict:  # noqa: ANN001
    """OAK (care home) and ELM (homecare) in North, BIR in South, each with its workbook uploaded."""
    records = {}
    for code, area, setting, seed in (("OAK", "North", "care_home", 1), ("ELM", "North", "homecare", 3),
                                      ("BIR", "South", "supported_living", 5)):
        token = site_token(app, code, name=f"{code} House", area=area, setting=setting)
        path, records[code] = workbooks.get(code, seed, setting=setting)
        assert upload(client, token, path).status_code == 201
    return {"records": records, "north": area_token(app, "North"), "south": area_token(app, "South"),
            "site": site_token(app, "OAK")}


def table(wb: openpyxl.Workbook, key: str) -> pd.DataFrame:
    """A table of the return by its defined name ``tbl_<key>``: the first row is the header."""
    sheet, ref = wb.defined_names[f"tbl_{key}"].attr_text.split("!")
    rows = [[c.value for c in row] for row in wb[sheet.strip("'")][ref.replace("$", "")]]
    return pd.DataFrame(rows[1:], columns=rows[0]).set_index(rows[0][0])


def header_rows(wb: openpyxl.Workbook) -> dict:
    sheet, ref = wb.defined_names["tbl_header"].attr_text.split("!")
    return {row[0].value: row[1].value for row in wb[sheet.strip("'")][ref.replace("$", "")]}


def in_period(dates: pd.Series) -> pd.Series:
    return (dates >= START) & (dates <= END)


def test_return_counts_match_pandas(app: Flask, client: FlaskClient, north: dict) -> None:
    response = client.get(f"/api/v1/returns?area=North&period={PERIOD}", headers=bearer(north["north"]))
    assert response.status_code == 200, response.data[:300]
    assert response.mimetype == XLSX
    assert 'filename="return-North-2026-Q3.xlsx"' in response.headers["Content-Disposition"]
    wb = openpyxl.load_workbook(io.BytesIO(response.data))
    assert wb.sheetnames == ["Return"]

    rec = north["records"]
    inc = pd.concat([rec["OAK"].incidents, rec["ELM"].incidents], ignore_index=True)
    act = pd.concat([rec["OAK"].actions, rec["ELM"].actions], ignore_index=True)
    p = inc[in_period(inc["occurred_at"])]

    harm = table(wb, "category_harm")
    assert harm.loc["Total", "Total"] == len(p)
    assert harm.loc["Total", "Near misses"] == int((p["event_type"] == "near_miss").sum())
    categories = CODE_LISTS["category"]
    assert harm["Total"].iloc[:len(categories)].tolist() == [int((p["category"] == c).sum()) for c in categories]

    falls = table(wb, "falls")["Reports"].tolist()
    is_falls = p["category"] == "falls"
    assert falls == [int(is_falls.sum()),
                     int((is_falls & (p["event_type"] == "incident") & p["physical_harm"].isin(HARM_LEVELS)).sum())]

    actions = table(wb, "actions")["Number"]
    assert actions["Actions opened in the period"] == int(in_period(act["raised_date"]).sum())
    done = (act["status"] == "done") & in_period(act["completed_date"])
    assert actions["Actions completed in the period"] == int(done.sum())

    closed = inc[(inc["status"] == "closed") & in_period(inc["closed_date"])]
    themes = closed["learning_theme"].fillna("").str.strip().str.lower()
    assert table(wb, "themes").loc["Total", "Reviews closed"] == int((themes != "").sum())

    header = header_rows(wb)
    assert header["Site(s)"] == "ELM House (ELM); OAK House (OAK)"  # North's sites only
    assert header["Period"].startswith("Q3 2026")

    with get_db(app).sessions() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert event.action == "download.return" and event.detail["period"] == PERIOD
    assert event.detail["sites"] == ["ELM", "OAK"]


def test_return_of_a_site_with_suppression_and_commissioner(client: FlaskClient, north: dict) -> None:
    lead = bearer(north["north"])
    response = client.get(f"/api/v1/returns?site=OAK&period={PERIOD}&suppress_below=8"
                          "&commissioner=northshire county council", headers=lead)
    assert response.status_code == 200, response.data[:300]
    wb = openpyxl.load_workbook(io.BytesIO(response.data))
    harm = table(wb, "category_harm")
    values = harm.to_numpy().ravel().tolist()
    assert all(v == "*" or (isinstance(v, int) and v % 5 == 0) for v in values), values
    oak = north["records"]["OAK"].incidents
    true_total = int(in_period(oak["occurred_at"]).sum())
    assert harm.loc["Total", "Total"] == int(5 * round(true_total / 5))  # totals rounded from the true total

    unknown = client.get(f"/api/v1/returns?area=North&period={PERIOD}&commissioner=Nobody", headers=lead)
    assert unknown.status_code == 400 and "Northshire County Council" in unknown.json["error"]


def test_return_auth_and_bad_requests(app: Flask, client: FlaskClient, north: dict) -> None:
    url = f"/api/v1/returns?area=North&period={PERIOD}"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=bearer("nope")).status_code == 401
    assert client.get(url, headers=bearer(north["site"])).status_code == 403
    assert client.get(url, headers=bearer(north["south"])).status_code == 403
    assert client.get(f"/api/v1/returns?site=OAK&period={PERIOD}", headers=bearer(north["south"])).status_code == 403
    lead = bearer(north["north"])
    for query, words in (("area=North", "period"), (f"area=North&period=2026-Q5", "quarter"),
                         ("area=North&period=2099-Q1", "not started"),
                         (f"area=North&period={PERIOD}&suppress_below=x", "suppress_below"),
                         (f"area=North&period={PERIOD}&suppress_below=2", "3 or more")):
        response = client.get(f"/api/v1/returns?{query}", headers=lead)
        assert response.status_code == 400 and words in response.json["error"], (query, response.json)
    admin = bearer(admin_token(app))
    no_scope = client.get(f"/api/v1/returns?period={PERIOD}", headers=admin)
    assert no_scope.status_code == 400 and "area" in no_scope.json["error"]
    assert client.get(f"/api/v1/returns?area=South&period={PERIOD}", headers=admin).status_code == 200
