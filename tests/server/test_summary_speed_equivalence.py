"""GET /api/v1/summary gives byte for byte what it gave before the summary was made fast (issue 5).

``summary_expected.json`` holds the sha256 of the JSON bodies (keys sorted, as served) that the
server answered before, for synthetic sites uploaded here: three sites (one with typical
mistakes, so data quality has findings) in two areas, with overdue actions, and a registered site
that never sent.  Times of receipt (``received_at``, ``last_sent_at``) are the only parts that
differ run to run; they are blanked before hashing.  No timing is asserted.

Regenerate (only when the summary is MEANT to change) with
``NEARMISS_WRITE_EXPECTED=1 python -m pytest tests/server/test_summary_speed_equivalence.py -m "not postgres"``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import orjson
import pytest
from flask import Flask

from .support import admin_token, area_token, bearer, site_token, upload

EXPECTED = Path(__file__).with_name("summary_expected.json")
TODAY = "2026-11-15"
SITES = {  # code: (area, setting, seed, flaw_rate)
    "OAK": ("North", "care_home", 1, 0.0),
    "ELM": ("North", "homecare", 3, 0.08),
    "BIR": ("South", "supported_living", 5, 0.0),
}
QUERIES = {  # name -> (query string, whose token)
    "all_default": ("", "admin"),
    "all_months": ("?from=2025-06&to=2026-11", "admin"),
    "north": ("?area=North&from=2025-11&to=2026-10", "north"),
    "site": ("?area=North&site=ELM", "north"),
}
TIMES = ("received_at", "last_sent_at")


def digest(body: bytes) -> str:
    """sha256 of a summary body with its times of receipt blanked (and keys sorted, as served)."""
    summary = json.loads(body)
    for entry in summary["submissions"].values():
        entry.update({k: "<time>" for k in TIMES if entry[k] is not None})
    return hashlib.sha256(orjson.dumps(summary, option=orjson.OPT_SORT_KEYS)).hexdigest()


@pytest.fixture
def bodies(make_app, workbooks) -> dict[str, bytes]:  # noqa: ANN001
    app: Flask = make_app(NEARMISS_TODAY=TODAY)
    client = app.test_client()
    for code, (area, setting, seed, flaws) in SITES.items():
        token = site_token(app, code, name=f"{code} House", area=area, setting=setting)
        path = workbooks.path(code, seed, setting=setting, flaw_rate=flaws, months=20)
        assert upload(client, token, path, name=f"{code.lower()}.xlsx").status_code == 201
    site_token(app, "ASH", name="Ash House", area="North")  # registered, nothing sent
    tokens = {"admin": admin_token(app), "north": area_token(app, "North")}
    out = {}
    for name, (query, who) in QUERIES.items():
        response = client.get(f"/api/v1/summary{query}", headers=bearer(tokens[who]))
        assert response.status_code == 200, response.get_data(as_text=True)
        out[name] = response.get_data()
    return out


def test_summary_bodies_are_byte_for_byte_the_ones_before(bodies: dict[str, bytes]) -> None:
    now = {name: digest(body) for name, body in bodies.items()}
    if os.environ.get("NEARMISS_WRITE_EXPECTED"):
        EXPECTED.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    changed = [name for name in expected if now.get(name) != expected[name]]
    assert sorted(now) == sorted(expected) and not changed, f"summaries changed: {changed}"


def test_the_pinned_summaries_have_what_they_are_meant_to_have(bodies: dict[str, bytes]) -> None:
    everything = json.loads(bodies["all_default"])
    assert everything["overdue_actions"] and everything["data_quality"]["errors"] + everything[
        "data_quality"]["warnings"] > 0
    assert everything["not_submitted_this_month"] == ["ASH"]
    assert json.loads(bodies["site"])["site"] == "ELM"
