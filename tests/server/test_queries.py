"""server.queries.current_frames: the current rows, typed as the contract types them, in four queries."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from server.db import get_db
from server.queries import DATE_DTYPE, current_frames, typed_columns, wait_for_snapshots
from workbook_templates.contract import ACTIONS, EXPOSURE_FIELDS, INCIDENTS

from .support import send_three_sites, site_token, upload


def test_current_frames_types_and_rows(app: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    send_three_sites(app, client, workbooks)  # NEW is registered, nothing sent yet
    assert upload(client, site_token(app, "OAK"), workbooks.path("OAK", seed=2)).status_code == 201  # supersedes

    wait_for_snapshots(app)  # the uploads' background snapshots would run statements of their own
    statements: list[str] = []
    engine = get_db(app).engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        with get_db(app).sessions() as session:
            incidents, actions, exposure, sites = current_frames(session, area="North")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 4

    oak, elm = workbooks.records("OAK", seed=2), workbooks.records("ELM", seed=3, setting="homecare")
    assert len(incidents) == len(oak.incidents) + len(elm.incidents)
    assert len(actions) == len(oak.actions) + len(elm.actions)
    assert len(exposure) == len(oak.exposure) + len(elm.exposure)
    assert list(incidents.columns) == [f.name for f in INCIDENTS.input_fields] + ["_row"]
    assert list(actions.columns) == ["site_code"] + [f.name for f in ACTIONS.input_fields] + ["_row"]
    assert list(exposure.columns) == ["site_code"] + [f.name for f in EXPOSURE_FIELDS] + ["_row"]

    assert incidents["occurred_at"].dtype == "datetime64[us]"
    assert incidents["consequence"].dtype == "Int64"
    assert pd.api.types.is_string_dtype(incidents["category"])
    assert exposure["occupied_bed_days"].dtype == "float64" and exposure["visits"].dtype == "Int64"
    assert actions["due_date"].dtype == "datetime64[us]"

    # The stored rows equal what the site sent (the contract's types round-trip through the database).
    mine = incidents[incidents["site_code"] == "OAK"].drop(columns=["_row"]).reset_index(drop=True)
    sent = oak.incidents.reset_index(drop=True)
    for name in ("incident_ref", "occurred_at", "reported_at", "category", "consequence", "closed_date",
                 "occurred_time"):
        left, right = mine[name], sent[name]
        if name not in ("consequence", "occurred_at", "reported_at", "closed_date"):
            right = right.where(right.ne(""), None)
        pd.testing.assert_series_equal(left, right.astype(left.dtype), check_names=False)

    assert list(sites["site_code"]) == ["ELM", "NEW", "OAK"]
    assert list(sites["area"]) == ["North"] * 3
    by_code = sites.set_index("site_code")
    assert by_code.loc["ELM", "setting"] == "homecare"
    assert by_code.loc["OAK", "provider"] == "Synthetic Care Ltd"
    assert by_code.loc["OAK", "n_incidents"] == len(oak.incidents)
    assert pd.isna(by_code.loc["NEW", "submission_id"])


def test_current_frames_of_an_empty_database(app: Flask) -> None:
    with get_db(app).sessions() as session:
        incidents, actions, exposure, sites = current_frames(session)
    assert incidents.empty and actions.empty and exposure.empty and sites.empty
    assert incidents["occurred_at"].dtype == "datetime64[us]"
    assert incidents["consequence"].dtype == "Int64"


NAT = np.datetime64("NaT")


@pytest.mark.parametrize("values, dtype, expected", [
    ([dt.date(2026, 1, 2), None], DATE_DTYPE, pd.Series([np.datetime64("2026-01-02"), NAT], dtype=DATE_DTYPE)),
    ([None, None], DATE_DTYPE, pd.Series([NAT, NAT], dtype=DATE_DTYPE)),
    ([dt.datetime(2026, 1, 1, 13, 5), None], DATE_DTYPE,
     pd.Series([np.datetime64("2026-01-01T13:05"), NAT], dtype=DATE_DTYPE)),
    ([dt.date(2026, 1, 1), dt.datetime(2026, 1, 2, 3, 4)], DATE_DTYPE,  # mixed: the time is kept, not cut off
     pd.Series([np.datetime64("2026-01-01"), np.datetime64("2026-01-02T03:04")], dtype=DATE_DTYPE)),
    (["2026-01-02", None], DATE_DTYPE, pd.Series([np.datetime64("2026-01-02"), NAT], dtype=DATE_DTYPE)),
    ([dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), None], "datetime64[us, UTC]",
     pd.Series([pd.Timestamp("2026-01-01", tz="UTC"), pd.NaT], dtype="datetime64[us, UTC]")),
    ([None, 3, 2**40], "Int64", pd.Series([pd.NA, 3, 2**40], dtype="Int64")),
    ([None, 1, 2.5], "float64", pd.Series([np.nan, 1.0, 2.5])),
    ([None, "a", ""], "str", pd.Series([np.nan, "a", ""], dtype="str")),
    ([], "Int64", pd.Series([], dtype="Int64")),
])
def test_typed_columns_casts_plain_values_as_the_database_gives_them(values, dtype, expected) -> None:
    frame = typed_columns({"x": values}, {"x": dtype})
    pd.testing.assert_series_equal(frame["x"], expected, check_names=False)
