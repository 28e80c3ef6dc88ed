"""GET /api/v1/incidents.csv and /api/v1/actions.csv: columns, dates, neutralising, scope."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from server.db import get_db
from server.models import AuditEvent
from server.queries import neutralise_cell
from workbook_templates.contract import ACTIONS, INCIDENTS

from .support import admin_token, area_token, bearer, site_token, upload


def read_csv(response) -> list[dict[str, str]]:  # noqa: ANN001
    assert response.status_code == 200, response.data[:500]
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.data.decode("utf-8"))))


@pytest.fixture
def two_areas(app: Flask, client: FlaskClient, workbooks) -> dict:  # noqa: ANN001
    """OAK and ELM in North, BIR in South, each with one uploaded workbook."""
    for code, area, seed in (("OAK", "North", 1), ("ELM", "North", 3), ("BIR", "South", 5)):
        setting = "homecare" if code == "ELM" else "care_home"
        token = site_token(app, code, name=f"{code} House", area=area, setting=setting)
        path = workbooks.path(code, seed=seed, **({"setting": setting} if code == "ELM" else {}))
        assert upload(client, token, path).status_code == 201
    return {"North": area_token(app, "North"), "South": area_token(app, "South")}


def test_incidents_csv_has_contract_columns_and_iso_dates(app: Flask, client: FlaskClient, two_areas: dict,
                                                          workbooks) -> None:  # noqa: ANN001
    rows = read_csv(client.get("/api/v1/incidents.csv?area=North", headers=bearer(two_areas["North"])))
    assert list(rows[0]) == INCIDENTS.names  # contract order, site_code included, derived worked out
    oak = workbooks.records("OAK", seed=1).incidents
    elm = workbooks.records("ELM", seed=3, setting="homecare").incidents
    assert len(rows) == len(oak) + len(elm)
    assert {r["site_code"] for r in rows} == {"OAK", "ELM"}
    first = next(r for r in rows if r["incident_ref"] == oak["incident_ref"].iloc[0])
    assert first["occurred_at"] == oak["occurred_at"].iloc[0].strftime("%Y-%m-%d")
    assert pd.Timestamp(first["reported_at"]).date() == oak["reported_at"].iloc[0].date()
    assert first["occurred_time"] == oak["occurred_time"].iloc[0]
    assert int(first["risk_score"]) == int(oak["consequence"].iloc[0]) * int(oak["likelihood"].iloc[0])
    assert first["risk_band"] in ("low", "moderate", "high", "extreme")
    blank = next(r for r in rows if r["closed_date"] == "")
    assert blank["status"] != "closed"


def test_actions_csv_has_site_code_then_contract_columns(app: Flask, client: FlaskClient, two_areas: dict,
                                                         workbooks) -> None:  # noqa: ANN001
    rows = read_csv(client.get("/api/v1/actions.csv?area=South", headers=bearer(two_areas["South"])))
    assert list(rows[0]) == ["site_code", *ACTIONS.names]
    bir = workbooks.records("BIR", seed=5).actions
    assert len(rows) == len(bir)
    assert {r["site_code"] for r in rows} == {"BIR"}
    assert rows[0]["raised_date"] == bir["raised_date"].iloc[0].strftime("%Y-%m-%d")
    assert {r["overdue"] for r in rows} <= {"", "overdue"}
    with get_db(app).sessions() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert event.action == "download.actions_csv" and event.detail["area"] == "South"
    assert event.detail["rows"] == len(bir)


def test_area_defaults_to_the_tokens_area_and_site_filters(client: FlaskClient, two_areas: dict) -> None:
    rows = read_csv(client.get("/api/v1/incidents.csv", headers=bearer(two_areas["North"])))
    assert {r["site_code"] for r in rows} == {"OAK", "ELM"}
    rows = read_csv(client.get("/api/v1/incidents.csv?area=north&site=elm", headers=bearer(two_areas["North"])))
    assert {r["site_code"] for r in rows} == {"ELM"}


def test_admin_reads_every_area(app: Flask, client: FlaskClient, two_areas: dict) -> None:
    token = admin_token(app)
    rows = read_csv(client.get("/api/v1/actions.csv", headers=bearer(token)))
    assert {r["site_code"] for r in rows} == {"OAK", "ELM", "BIR"}
    assert client.get("/api/v1/actions.csv?area=West", headers=bearer(token)).status_code == 404


@pytest.mark.parametrize("path", ["/api/v1/incidents.csv", "/api/v1/actions.csv"])
def test_out_of_scope_reads_are_403(app: Flask, client: FlaskClient, two_areas: dict, path: str) -> None:
    north = bearer(two_areas["North"])
    assert client.get(f"{path}?area=South", headers=north).status_code == 403
    assert client.get(f"{path}?area=West", headers=north).status_code == 403
    assert client.get(f"{path}?site=BIR", headers=north).status_code == 403
    site = site_token(app, "OAK")
    response = client.get(f"{path}?area=North", headers=bearer(site))
    assert response.status_code == 403 and "error" in response.get_json()
    assert client.get(path).status_code == 401


def test_formula_like_text_is_neutralised(app: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    attacks = ["=HYPERLINK(\"http://x\",\"click\")", "+44 1234", "-2+3", "@SUM(A1)", "\tindent", "plain text"]

    def edit(records) -> None:  # noqa: ANN001
        for i, text in enumerate(attacks):
            records.incidents.loc[records.incidents.index[i], "description"] = text
        records.actions.loc[records.actions.index[0], "evidence"] = "=cmd|' /C calc'!A0"

    path = workbooks.path("OAK", seed=1, edit=edit, tag="attacks")
    token = site_token(app)
    assert upload(client, token, path).status_code == 201
    rows = read_csv(client.get("/api/v1/incidents.csv", headers=bearer(area_token(app))))
    described = [r["description"] for r in rows[: len(attacks)]]
    assert described[:4] == ["'" + a for a in attacks[:4]]
    assert described[4] in ("'\tindent", "indent")  # the reader may strip the tab itself
    assert described[5] == "plain text"
    actions = read_csv(client.get("/api/v1/actions.csv", headers=bearer(area_token(app))))
    assert actions[0]["evidence"] == "'=cmd|' /C calc'!A0"


def test_neutralise_cell() -> None:
    for text in ("=1+1", "+1", "-1", "@x", "\tx", "\rx", "\nx"):
        assert neutralise_cell(text) == "'" + text
    assert neutralise_cell("safe = text") == "safe = text"
    assert neutralise_cell("") == ""
    assert neutralise_cell(-3) == -3  # numbers are numbers, not text
    assert neutralise_cell(None) is None
