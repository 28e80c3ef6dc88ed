"""A log of 5,000 rows with blank rows in the middle: it builds, LibreOffice opens and recalculates it,
the Dashboard counts exactly what pandas counts, and nothing anywhere shows an error value."""

from __future__ import annotations

import datetime as dt

import numpy as np
import openpyxl
import pandas as pd
import pytest

from tests.conftest import DATA_END
from tests.test_template_dashboard import (
    assert_dashboard_matches, convert_once, dashboard_figures, errors_in, expected_figures, typed_rows,
)
from workbook_templates import dashboard
from workbook_templates.builder import build_workbook
from workbook_templates.contract import ACTIONS, INCIDENTS, LIMITS
from workbook_templates.records import SiteRecords
from workbook_templates.synthetic import make_site

# One worker per module under `--dist loadgroup` (scripts/test.sh): the workbooks are built and
# recalculated once, in one LibreOffice call.
pytestmark = pytest.mark.xdist_group("template_scale")

ROWS = LIMITS["template_rows"]  # 5,000
BLANK_EVERY = 1000


def with_blank_rows(frame: pd.DataFrame, every: int) -> pd.DataFrame:
    """The frame with an all-blank row after every ``every`` rows (as when a manager skips a line)."""
    parts = []
    for start in range(0, len(frame), every):
        parts.append(frame.iloc[start:start + every])
        parts.append(pd.DataFrame({c: [np.nan] for c in frame.columns}).astype(object))
    return pd.concat(parts[:-1], ignore_index=True)


@pytest.fixture(scope="module")
def big(libreoffice, tmp_path_factory):
    records = make_site(end=DATA_END, seed=8, months=24, reports_per_month=ROWS / 24 * 1.05)
    incidents = records.incidents.iloc[:ROWS].reset_index(drop=True)
    assert len(incidents) == ROWS
    spaced = SiteRecords(site=records.site, incidents=with_blank_rows(incidents, BLANK_EVERY),
                         actions=with_blank_rows(records.actions, 200), exposure=records.exposure)
    assert int(spaced.incidents.isna().all(axis=1).sum()) == ROWS // BLANK_EVERY - 1

    def write(folder):
        build_workbook(folder / "big.xlsx", spaced, dashboard_month=DATA_END)

    _, [converted] = convert_once(libreoffice, tmp_path_factory, "scale", ["big.xlsx"], write)
    wb = openpyxl.load_workbook(converted, data_only=True)
    exposure = dict(zip(records.exposure["month"].dt.date, records.exposure["occupied_bed_days"]))
    want = expected_figures(typed_rows(incidents, INCIDENTS), typed_rows(records.actions, ACTIONS), exposure,
                            DATA_END, dt.date.today())
    return wb, spaced, want


@pytest.mark.libreoffice
def test_dashboard_of_5000_rows_with_blank_rows_matches_pandas(big):
    wb, _, want = big
    got = dashboard_figures(wb)
    assert_dashboard_matches(got, want)
    assert want["total"][2] > ROWS / 3  # a year of a two-year log
    assert errors_in(wb[dashboard.SHEET]) == []


@pytest.mark.libreoffice
def test_no_error_values_and_blank_derived_cells_on_blank_rows(big):
    wb, spaced, _ = big
    for sheet, frame in ((INCIDENTS, spaced.incidents), (ACTIONS, spaced.actions)):
        ws = wb[sheet.sheet]
        assert ws.max_row >= len(frame) + 1
        assert errors_in(ws) == [], sheet.sheet
        derived = [f.name for f in sheet.fields if f.type == "derived"]
        blank_rows = [i + 2 for i in np.flatnonzero(frame.isna().all(axis=1).to_numpy())]
        assert blank_rows
        for r in blank_rows:
            for name in derived:
                assert ws[f"{sheet.column_letter(name)}{r}"].value in (None, ""), (sheet.sheet, r, name)
    # Filled rows around a blank row still get their risk worked out.
    log = wb[INCIDENTS.sheet]
    r = BLANK_EVERY + 1  # the last row before the first blank row
    c, l = (log[f"{INCIDENTS.column_letter(n)}{r}"].value for n in ("consequence", "likelihood"))
    assert log[f"{INCIDENTS.column_letter('risk_score')}{r}"].value == c * l
    assert log[f"{INCIDENTS.column_letter('risk_score')}{r + 2}"].value == (
        log[f"{INCIDENTS.column_letter('consequence')}{r + 2}"].value
        * log[f"{INCIDENTS.column_letter('likelihood')}{r + 2}"].value)
