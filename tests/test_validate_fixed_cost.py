"""The shortcuts that cut validation's fixed cost per call give what the plain ways give.

Each building block is compared with the pandas (or per-column) way it replaces, on values
chosen to reach its edges: missing, out of range, non-ASCII text, columns of the wrong type.
No timing is asserted.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from addin import checks
from addin.reader import normalise_frame, risk_bands
from workbook_templates.synthetic import make_site

END = dt.date(2026, 10, 31)


def _scores_frame(typed: bool) -> pd.DataFrame:
    consequence = [1, 5, 3, None, 0, 6, 4, 2, 5, 3, 4, None]
    likelihood = [1, 5, 4, 2, 3, 1, 3, None, 3, 2, 2, None]
    if typed:
        return pd.DataFrame({"consequence": pd.array(consequence, dtype="Int64"),
                             "likelihood": pd.array(likelihood, dtype="Int64")})
    return pd.DataFrame({"consequence": pd.Series([str(v) if v is not None else "x" for v in consequence],
                                                  dtype=object),
                         "likelihood": pd.Series(likelihood, dtype=object)})


@pytest.mark.parametrize("typed", [True, False])
def test_risk_band_flags_are_risk_bands(typed):
    frame = _scores_frame(typed)
    bands = tuple(band for _, _, band in checks.RISK_BANDS)
    flags = checks.risk_band_flags(checks.Table(frame), bands)
    plain = risk_bands(frame)
    for band in bands:
        assert flags[band].tolist() == (plain == band).fillna(False).tolist(), band


def test_risk_band_flags_of_synthetic_incidents():
    frame = normalise_frame(make_site(site_code="R", end=END, seed=5, months=6, flaw_rate=0.3).incidents,
                            "incidents")
    flags = checks.risk_band_flags(checks.Table(frame), ("extreme", "high"))
    plain = risk_bands(frame)
    assert flags["extreme"].tolist() == (plain == "extreme").fillna(False).tolist()
    assert flags["high"].tolist() == (plain == "high").fillna(False).tolist()


PLAIN_SITES = [
    dict(site_code="  oak ", setting="CARE_HOME", people_supported=12, provider=""),
    dict(site_code="x\x1c", setting="Homecare ", people_supported=None, site_name="  "),
    dict(site_name="\u00dfite", setting="\u017fupported_living", people_supported=-3, commissioners=" a\u2003"),
    {}, None, dict(setting=None, site_code=float("nan"), cqc_location_id="1-23"),
]


@pytest.mark.parametrize("sites", [PLAIN_SITES, PLAIN_SITES[::-1], [PLAIN_SITES[0]], [None], []])
def test_site_frame_of_plain_sites_is_normalise_frame(sites):
    from addin.validate import _plain_site_frame, site_frame_of

    rows = [dict(s or {}) for s in sites]
    assert _plain_site_frame(rows) is not None  # the shortcut is what is compared
    plain = normalise_frame(pd.DataFrame(rows, index=pd.RangeIndex(len(rows)), dtype=object), "site")
    pd.testing.assert_frame_equal(site_frame_of(sites), plain)


KEYS = ["A", " b ", None, "", "\u00df", "\u0130x", "x\x1c", "\u2003Ab\u2003", "a", "B", "ss", None, "A "]


@pytest.mark.parametrize("keys", [KEYS, KEYS[:4], ["a", "b"], [None, None], []])
@pytest.mark.parametrize("dtype", ["str", object])
def test_casefolded_and_duplicated_key_are_the_pandas_ways(keys, dtype):
    text = pd.Series(keys, dtype=dtype, index=np.arange(len(keys)) * 2 + 1)
    key = checks.casefolded(text)
    pd.testing.assert_series_equal(key, text.astype("str").str.strip().str.casefold())
    alone = pd.DataFrame(index=text.index)
    assert checks.duplicated_key(alone, key).tolist() == (key.notna() & key.duplicated(keep="first")).tolist()
    sites = [0, 2, 1][:len(keys)] * (len(keys) // 3 + 1)
    stacked = pd.DataFrame({checks.SITE: sites[:len(keys)]}, index=text.index)
    seen, plain = set(), []
    for site, k in zip(stacked[checks.SITE], key.tolist()):
        given = isinstance(k, str)
        plain.append(given and (site, k) in seen)
        seen.add((site, k))
    assert checks.duplicated_key(stacked, key).tolist() == plain
