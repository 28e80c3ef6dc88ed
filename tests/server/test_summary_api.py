"""GET /api/v1/summary: every count checked against pandas over the same synthetic workbooks; auth rules.

The workbooks are made by ``workbook_templates.synthetic.make_site`` (12 months ending at
``DATA_END``), uploaded through the API, and the summary JSON is compared with counts worked
out here directly from the synthetic records with plain pandas (not with addin.trends).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient

from server.summary import cache_for
from workbook_templates.codelists import CODE_LISTS, HARM_LEVELS

from .support import admin_token, area_token, bearer, site_token, upload

FROM, TO = "2025-11", "2026-10"
MONTHS = [f"{m:%Y-%m}" for m in pd.date_range("2025-11-01", "2026-10-01", freq="MS")]
SITES = {  # code: (area, setting, seed, flaw_rate)
    "OAK": ("North", "care_home", 1, 0.0),
    "ELM": ("North", "homecare", 3, 0.06),
    "BIR": ("South", "supported_living", 5, 0.0),
}


@pytest.fixture
def uploaded(app: Flask, client: FlaskClient, workbooks) -> dict:  # noqa: ANN001
    """OAK and ELM (with typical mistakes) in North, BIR in South, each uploaded; ASH in North never sends."""
    answers, records = {}, {}
    for code, (area, setting, seed, flaws) in SITES.items():
        token = site_token(app, code, name=f"{code} House", area=area, setting=setting)
        path, rec = workbooks.get(code, seed, setting=setting, flaw_rate=flaws)
        response = upload(client, token, path, name=f"{code.lower()}.xlsx")
        assert response.status_code == 201, response.json
        answers[code], records[code] = response.json, rec
    site_token(app, "ASH", name="Ash House", area="North")  # registered, nothing sent
    return {"answers": answers, "records": records, "north": area_token(app, "North"),
            "south": area_token(app, "South"), "site": site_token(app, "OAK")}


def not_json(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


def month_counts(frame: pd.DataFrame, mask: pd.Series | None = None) -> list[int]:
    rows = frame if mask is None else frame[mask]
    counts = rows["occurred_at"].dt.to_period("M").astype(str).value_counts()
    return [int(counts.get(m, 0)) for m in MONTHS]


def expected_block(incidents: pd.DataFrame, actions: pd.DataFrame, today: pd.Timestamp) -> dict:
    """The summary figures of a site (or of sites concatenated), in plain pandas."""
    inc = incidents[incidents["occurred_at"].dt.to_period("M").astype(str).isin(MONTHS)]
    event, harm = inc["event_type"], inc["physical_harm"]
    with_harm = (event == "incident") & harm.isin(HARM_LEVELS)
    falls_with_harm = with_harm & (inc["category"] == "falls")
    status = actions["status"]
    late = status.isin(["open", "in_progress"]) & (actions["due_date"] < today)
    closed = inc[(inc["status"] == "closed")]
    themes = closed["learning_theme"].fillna("").str.strip().str.lower()
    theme_counts = themes[themes != ""].value_counts()
    return {
        "all_reports": month_counts(inc),
        "near_misses": month_counts(inc, event == "near_miss"),
        "incidents": month_counts(inc, event == "incident"),
        "incidents_with_harm": month_counts(inc, with_harm),
        "falls_with_harm": month_counts(inc, falls_with_harm),
        "total": len(inc),
        "by_category": {c: int((inc["category"] == c).sum()) for c in CODE_LISTS["category"]},
        "now": {s: int((status == s).sum()) for s in ("open", "in_progress", "done", "cancelled")}
               | {"overdue": int(late.sum()), "total": len(actions)},
        "overdue_refs": sorted(actions.loc[late, "action_ref"]),
        "themes": {t: int(n) for t, n in theme_counts.items()},
    }


def check_block(block: dict, want: dict) -> None:
    rep = block["reports"]
    for key in ("all_reports", "near_misses", "incidents", "incidents_with_harm"):
        assert rep[key] == want[key], key
    assert rep["total"] == want["total"] == sum(want["all_reports"])
    assert {c["category"]: c["total"] for c in block["by_category"] if c["category"] in want["by_category"]} \
        == want["by_category"]
    assert block["actions"]["now"] == want["now"]
    assert {t["theme"]: t["count"] for t in block["learning_themes"]} == want["themes"]
    falls = next(m for m in block["key_measures"] if m["name"] == "falls_with_harm") if block["key_measures"] else None
    if falls is not None:
        assert falls["values"] == [float(v) for v in want["falls_with_harm"]]
        # XmR: the mean of all the points (no fixed baseline), the same for every month
        assert falls["spc"]["mean"][0] == pytest.approx(np.mean(want["falls_with_harm"]))


def test_summary_counts_match_pandas(client: FlaskClient, uploaded: dict) -> None:
    response = client.get(f"/api/v1/summary?area=North&from={FROM}&to={TO}", headers=bearer(uploaded["north"]))
    assert response.status_code == 200, response.json
    s = json.loads(response.get_data(as_text=True), parse_constant=not_json)  # no NaN or Infinity
    today = pd.Timestamp(s["today"])
    rec = uploaded["records"]
    assert s["months"] == MONTHS and s["area"] == "North" and s["range"]["from"] == FROM
    assert [x["site_code"] for x in s["sites"]] == ["ASH", "ELM", "OAK"]

    north_inc = pd.concat([rec["OAK"].incidents, rec["ELM"].incidents], ignore_index=True)
    north_act = pd.concat([rec["OAK"].actions, rec["ELM"].actions], ignore_index=True)
    check_block(s, expected_block(north_inc, north_act, today))
    for code in ("OAK", "ELM"):
        check_block(s["per_site"][code], expected_block(rec[code].incidents, rec[code].actions, today))
    assert s["per_site"]["ASH"]["reports"]["total"] == 0

    # overdue actions: the very rows pandas finds
    want = expected_block(north_inc, north_act, today)
    assert sorted(a["action_ref"] for a in s["overdue_actions"]) == want["overdue_refs"]
    assert all(a["days_overdue"] > 0 for a in s["overdue_actions"])

    # key measures: all eight, each with a plain-English signal and SPC points per month
    assert [m["name"] for m in s["key_measures"]] == [
        "all_reports", "near_misses", "near_miss_share", "incidents_with_harm", "falls_with_harm",
        "medication_errors_reached", "overdue_actions", "actions_on_time"]
    for m in s["key_measures"]:
        assert m["signal"].startswith(m["label"] + ":")
        assert len(m["spc"]["point_type"]) == len(MONTHS) == len(m["values"])

    # submissions: what each site sent, and who has not sent this month
    answers = uploaded["answers"]
    for code in ("OAK", "ELM"):
        sub = s["submissions"][code]
        assert sub["submission_id"] == answers[code]["submission_id"]
        assert (sub["errors"], sub["warnings"]) == (answers[code]["errors"], answers[code]["warnings"])
        assert sub["sent_this_month"] is True and sub["original_name"] == f"{code.lower()}.xlsx"
    assert s["submissions"]["ASH"]["submission_id"] is None
    assert s["not_submitted_this_month"] == ["ASH"]

    # data quality: the findings the upload answered with, by site and by rule
    dq = s["data_quality"]
    assert answers["ELM"]["errors"] > 0  # the flawed workbook
    for code in ("OAK", "ELM"):
        assert dq["by_site"][code] == {"errors": answers[code]["errors"], "warnings": answers[code]["warnings"]}
    assert dq["by_site"]["ASH"] == {"errors": 0, "warnings": 0}
    assert dq["errors"] == answers["OAK"]["errors"] + answers["ELM"]["errors"]
    want_rules = Counter((f["rule"], f["severity"], code) for code in ("OAK", "ELM")
                         for f in answers[code]["findings"])
    got_rules = Counter({(r["rule"], r["severity"], site): n for r in dq["by_rule"] for site, n in r["sites"].items()})
    assert got_rules == want_rules
    assert all(r["description"] for r in dq["by_rule"])


def test_summary_of_a_site_and_of_everything(app: Flask, client: FlaskClient, uploaded: dict) -> None:
    rec = uploaded["records"]
    s = client.get(f"/api/v1/summary?site=bir&from={FROM}&to={TO}", headers=bearer(admin_token(app))).json
    today = pd.Timestamp(s["today"])
    assert s["site"] == "BIR" and [x["site_code"] for x in s["sites"]] == ["BIR"]
    check_block(s, expected_block(rec["BIR"].incidents, rec["BIR"].actions, today))

    everything = client.get(f"/api/v1/summary?from={FROM}&to={TO}", headers=bearer(admin_token(app))).json
    assert everything["area"] is None and everything["scope_label"] == "All sites"
    assert {x["site_code"] for x in everything["sites"]} == {"ASH", "BIR", "ELM", "OAK"}
    assert everything["reports"]["total"] == sum(len(rec[c].incidents) for c in SITES)

    # without from/to: the complete months before this one, from the first month with data
    default = client.get("/api/v1/summary", headers=bearer(uploaded["north"])).json
    this_month = pd.Timestamp(default["today"]).to_period("M")
    assert default["range"]["is_default"] is True
    assert default["months"][0] == max(FROM, str(this_month - 24))  # at most 24 months, from the first data
    assert default["months"][-1] == str(this_month - 1)


def test_summary_auth_and_bad_months(client: FlaskClient, uploaded: dict) -> None:
    assert client.get("/api/v1/summary?area=North").status_code == 401
    bad = client.get("/api/v1/summary?area=North", headers=bearer("not-a-token"))
    assert bad.status_code == 401 and "invalid_token" in bad.headers["WWW-Authenticate"]
    assert client.get("/api/v1/summary?area=North", headers=bearer(uploaded["site"])).status_code == 403
    north = bearer(uploaded["north"])
    assert client.get("/api/v1/summary?area=South", headers=north).status_code == 403
    assert client.get("/api/v1/summary?site=BIR", headers=north).status_code == 403
    assert client.get("/api/v1/summary?area=Nowhere", headers=north).status_code == 403
    for query, words in (("from=2026-13", "YYYY-MM"), ("from=2026-05&to=2026-01", "after"),
                         ("to=2099-01", "after this month"), ("from=2000-01&to=2026-10", "at most")):
        response = client.get(f"/api/v1/summary?area=North&{query}", headers=north)
        assert response.status_code == 400 and words in response.json["error"], query


def test_summary_cache_follows_new_uploads(app: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    token = site_token(app, "OAK", name="OAK House", area="North")
    lead = bearer(area_token(app, "North"))
    first = upload(client, token, workbooks.path("OAK", 1)).json
    cache = cache_for(app)
    one = client.get(f"/api/v1/summary?from={FROM}&to={TO}", headers=lead).json
    hits = cache.hits
    two = client.get(f"/api/v1/summary?from={FROM}&to={TO}", headers=lead).json
    assert cache.hits == hits + 1 and one == two
    # the same log sent again: a new "last sent", the same figures
    again = upload(client, token, workbooks.path("OAK", 1)).json
    assert again["duplicate"] is True
    three = client.get(f"/api/v1/summary?from={FROM}&to={TO}", headers=lead).json
    assert three["submissions"]["OAK"]["last_sent_at"] >= one["submissions"]["OAK"]["last_sent_at"]
    assert three["reports"] == one["reports"]
    # a different log: new figures at once
    second = upload(client, token, workbooks.path("OAK", 2)).json
    assert second["submission_id"] != first["submission_id"]
    four = client.get(f"/api/v1/summary?from={FROM}&to={TO}", headers=lead).json
    assert four["submissions"]["OAK"]["submission_id"] == second["submission_id"]
    assert four["reports"]["total"] == len(workbooks.records("OAK", 2).incidents)


def test_the_summary_json_is_what_flask_would_write(app: Flask, client: FlaskClient, uploaded: dict) -> None:
    """orjson writes the summary: the same document as Flask's encoder, keys in the same order."""
    from server.summary import summary_json

    response = client.get(f"/api/v1/summary?area=North&from={FROM}&to={TO}", headers=bearer(uploaded["north"]))
    served = response.get_data(as_text=True)
    document = json.loads(served)
    with app.app_context():
        flask_text = app.json.dumps(document)
        assert json.loads(flask_text) == document
        assert json.dumps(json.loads(served)) == json.dumps(json.loads(flask_text))  # same key order
        # What orjson refuses goes to Flask's encoder instead of failing the request.
        assert json.loads(summary_json({"big": 2**70, "b": 1}, app)) == {"big": 2**70, "b": 1}
        assert summary_json({"b": [1.5, None], "a": "é"}, app) == '{"a":"é","b":[1.5,null]}'
