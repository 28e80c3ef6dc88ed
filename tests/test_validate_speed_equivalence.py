"""The fast validation paths give exactly what the plain ways gave.

``validate_expected.json`` holds the findings (every field, in order) that validation gave
before its per-call overhead was cut (issue 5), for synthetic sites built here in memory (no
workbook is read, so reader changes do not move them).  Each site is checked alone and all
of them in one call; both must still give those findings.  The building blocks the checks
now share (:class:`addin.checks.Table`, the site frame, the identifier scan, the site-aware
lookups) are compared with the plain pandas ways they replace.  No timing is asserted.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from addin import checks, identifiers
from addin.reader import ReadResult, default_layout, normalise_frame
from addin.validate import validate_result, validate_results
from workbook_templates.records import SiteRecords
from workbook_templates.synthetic import make_site

EXPECTED = Path(__file__).with_name("validate_expected.json")
END = dt.date(2026, 10, 31)
TODAYS = (END, dt.date(2027, 3, 1))  # the data's end, and months later (overdue actions and reviews)


def expected_sites() -> list[ReadResult]:
    """Synthetic sites of every setting with many flaws, and a few made-up oddities."""
    sites = [make_site(site_code=f"Q{seed}", site_name=f"Site {seed}", end=END, seed=seed, setting=setting,
                       months=3, flaw_rate=0.25)
             for seed, setting in ((11, "care_home"), (12, "homecare"), (13, "supported_living"),
                                   (14, "complex_care_at_home"))]
    odd = copy.deepcopy(sites[0])
    inc, act = odd.incidents, odd.actions
    inc.loc[0, "description"] = "Mr John Smith, NHS 943 476 5919, DOB 01/02/1940, lives at SW1A 1AA."
    inc.loc[1, "notes"] = "Seen by Dr. Patel; born 3rd March 1931"
    inc.loc[2, "immediate_action"] = "Called 01632 960001 (not an NHS number); Mr X was fine"
    inc.loc[3, "incident_ref"] = inc.loc[4, "incident_ref"].lower()  # a duplicate, in other case
    inc.loc[5, "site_code"] = "elsewhere"
    act.loc[0, "incident_refs"] = f"{inc.loc[6, 'incident_ref']}; NOPE-1,\nNOPE-2"
    act.loc[1, "evidence"] = "Audit by Mrs Jones"
    odd.site = dict(odd.site, site_code=f"  {odd.site['site_code'].lower()} ", setting="Care_Home")
    no_exposure = copy.deepcopy(sites[1])
    no_exposure.exposure = no_exposure.exposure.iloc[:2]
    return [ReadResult(file=f"site{i}.xlsx", records=_as_read(r), layout=default_layout())
            for i, r in enumerate([*sites, odd, no_exposure])]


def _as_read(records: SiteRecords) -> SiteRecords:
    """The records typed as the reader gives them (blank text missing, each column of its contract type)."""
    tables = {kind: normalise_frame(getattr(records, kind).reset_index(drop=True), kind)
              for kind in ("incidents", "actions", "exposure")}
    return SiteRecords(site=dict(records.site), **tables)


def as_rows(findings) -> list[list[str]]:
    return [list(dataclasses.astuple(f)) for f in findings]


def findings_now() -> dict[str, list]:
    """Per today: each site's findings alone (each must equal the same site's in one call of all)."""
    out = {}
    for today in TODAYS:
        alone = [as_rows(validate_results([r], today=today)[0]) for r in expected_sites()]
        together = [as_rows(found) for found in validate_results(expected_sites(), today=today)]
        assert alone == together
        out[str(today)] = alone
    return out


def test_findings_are_the_ones_validation_gave_before_alone_and_together():
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    for today in TODAYS:
        alone = [as_rows(validate_results([r], today=today)[0]) for r in expected_sites()]
        together = [as_rows(found) for found in validate_results(expected_sites(), today=today)]
        for site, want in enumerate(expected[str(today)]):
            assert alone[site] == want, f"{today}, site {site} alone"
            assert together[site] == want, f"{today}, site {site} in one call with the others"
        assert len(alone) == len(together) == len(expected[str(today)])
    assert {row[4] for found in expected[str(END)] for row in found} >= {
        "NM003", "NM004", "NM050", "NM051", "NM052", "NM053", "NM063", "NM082"}


def test_validate_result_equals_validate_results_for_the_same_sites():
    for r, together in zip(expected_sites(), validate_results(expected_sites(), today=END)):
        assert validate_result(r, today=END) == together, r.file


# --- the building blocks, against the plain ways -----------------------------------------------------

def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "status": pd.Series(["open", None, "closed", "Open", "done", None], dtype="str"),
        "when": pd.to_datetime(["2026-01-05", None, "2026-03-01", "2025-12-31", "2026-02-28", "2026-02-01"]),
        "since": pd.to_datetime(["2026-01-01", "2026-01-01", None, "2026-01-02", "2026-03-01", "2026-02-01"]),
        "_raw_when": pd.Series([None, "soon", None, None, None, None], dtype="str"),
        "score": pd.array([1, None, 7, 25, 0, 3], dtype="Int64"),
        "loose": pd.Series(["open", 3, None, "done", np.nan, "x"], dtype=object),
        "empty": pd.Series([None] * 6, dtype="str"),
    }).set_axis([10, 11, 12, 13, 14, 15])


@pytest.mark.parametrize("name", ["status", "when", "since", "score", "loose", "empty", "absent"])
def test_table_columns_are_the_pandas_helpers_as_arrays(name):
    frame, today = _frame(), pd.Timestamp("2026-02-15")
    table = checks.Table(frame)
    assert table.valid(name).tolist() == checks.col(frame, name).notna().tolist()
    assert table.present(name).tolist() == checks.present(frame, name).tolist()
    assert table.blank(name).tolist() == checks.blank(frame, name).tolist()
    assert table.unreadable(name).tolist() == checks.raw(frame, name).notna().tolist()
    for values in (("open",), ("open", "done"), ("nothing",)):
        assert table.equals(name, *values).tolist() == checks.equals(frame, name, *values).tolist()
    if name in ("when", "since", "empty", "absent"):
        plain = checks.dates(frame, name)
        assert pd.Series(table.dates(name)).equals(pd.Series(plain.to_numpy()))
        assert table.before(name, "since").tolist() == checks.before(frame, name, "since").tolist()
        days = table.days_to(name, today.to_datetime64())
        pd.testing.assert_series_equal(pd.Series(days, index=frame.index),
                                       checks.days_between(frame, name, today).astype(float), check_names=False)
    assert table.folded(name).equals(checks.casefolded(checks.col(frame, name)))


def test_tier_and_notification_conditions_are_the_converters_judgements():
    records = make_site(site_code="T", end=END, seed=21, months=6, flaw_rate=0.3)
    frame = normalise_frame(records.incidents, "incidents")
    table = checks.Table(frame)
    serious, moderate = checks.tier_conditions(table)
    tier = checks.suggested_tier(frame)
    assert (tier == "serious").tolist() == serious.tolist()
    assert (tier == "moderate").tolist() == (moderate & ~serious).tolist()
    expected = checks.expected_notification(frame)
    pick = np.select(checks.notification_conditions(table), np.arange(4), 4)
    assert [None if pd.isna(v) else v for v in expected] == [(*checks.NOTIFICATIONS, None)[p] for p in pick]


SITES = [
    dict(site_code="  oak ", setting="CARE_HOME", people_supported=12, provider=""),
    dict(site_code="x\x1c", setting="Homecare ", people_supported=None, site_name="  "),
    dict(site_code=None, setting="nonsense", people_supported=3.0),
    dict(setting="care_home", people_supported="12", cqc_location_id=1234),
    dict(setting="\u017fupported_living", people_supported=2**60, commissioners="\u00df"),
    {}, None, dict(people_supported=True, site_name=dt.date(2026, 1, 1)),
    dict(_raw_people_supported="lots", people_supported=None, setting="care_home"),
    dict(extra="x", setting=np.nan, site_code=float("nan")),
]


@pytest.mark.parametrize("sites", [SITES, SITES[::-1], *[[s] for s in SITES]])
def test_site_frame_is_normalise_frame_of_the_values_as_typed(sites):
    from addin.validate import site_frame_of

    plain = normalise_frame(pd.DataFrame([dict(s or {}) for s in sites], dtype=object), "site")
    pd.testing.assert_frame_equal(site_frame_of(sites), plain)


TEXTS = ["Mrs Jones fell", None, "NHS 943 476 5919, DOB 01/02/1940", "nothing here", "", "SW1A 1AA",
         "room 12", "Mr X", "MS flare; Mr. A. Brown and Miss Amy", "943-476-5918 then 9434765919",
         "born on 3rd March 1931 (b10 2nd floor)", "1111111111", "12 943 476 5919 0", "D.O.B: 4 Jan 39",
         "Dr And Mr The Smith", "postcode ec1a1bb", "\u0669\u0664\u0663 476 5919"]


def test_identifier_scan_is_each_finder_on_every_text():
    """Pre-filters only skip rows: the first match per row is each finder's own on the whole text."""
    text = pd.Series(TEXTS, index=range(100, 100 + len(TEXTS)))
    array = identifiers.text_array(text)
    some, found = identifiers.scan_array(array)
    for kind, first in identifiers.FIRST.items():
        plain = {i: first(t) for i, t in enumerate(TEXTS) if t is not None and first(t) is not None}
        positions, values = found[kind]
        assert dict(zip(positions.tolist(), values)) == plain, kind
        assert set(plain) <= set(some.tolist())
        assert [None if pd.isna(v) else v for v in identifiers.FINDERS[kind](text)] == \
            [plain.get(i) for i in range(len(TEXTS))], kind


def test_same_site_isin_compares_keys_of_one_site_only():
    frame = pd.DataFrame({checks.SITE: [0, 0, 1, 1, 2, 2]})
    keys = pd.Series(["a", "b", "a", None, "c", "d"], dtype="str")
    other = pd.DataFrame({checks.SITE: [1, 0, 2, 2]}, index=[7, 8, 9, 9])
    other_keys = pd.Series(["a", "b", None, "d"], index=[7, 8, 9, 9], dtype="str")
    plain = [bool(k is not None and not pd.isna(k)
                  and ((other_keys == k) & (other[checks.SITE] == s).to_numpy()).fillna(False).any())
             for k, s in zip(keys.tolist(), frame[checks.SITE])]
    assert checks.same_site_isin(frame, keys, other, other_keys).tolist() == plain == [False, True, True, False,
                                                                                        False, True]
    one = pd.DataFrame({checks.SITE: [3] * 6})
    assert checks.same_site_isin(one, keys, one.iloc[:4].set_axis(other.index), other_keys).tolist() == \
        keys.isin(["a", "b", "d"]).tolist()


def test_findings_of_is_make_finding_of_each_cell():
    from addin.findings import findings_of, make_finding

    cells, refs, values = ["G3", "G4", ""], ["OAK-1", "", "OAK-3"], ["fall", "12", "fall"]
    for rule, label in (("NM002", "Category"), ("NM082", ""), ("NM044", "Status")):
        assert findings_of(rule, label, "a.xlsx", "Log", cells, refs, values) == [
            make_finding(rule, file="a.xlsx", sheet="Log", cell=c, ref=r, label=label, value=v)
            for c, r, v in zip(cells, refs, values)]


def test_findings_of_rows_not_grouped_by_site_still_go_to_their_own_site():
    """Frames stacked by hand with sites out of order: each site's findings stay its own, in row order."""
    from addin.validate import _by_site

    runs = _by_site(np.array([0, 0, 2, 2, 2, 5]))
    assert runs == [(0, slice(0, 2)), (2, slice(2, 5)), (5, slice(5, 6))]
    assert _by_site(np.array([1, 0, 1, 0])) == [(1, [0, 2]), (0, [1, 3])]
    assert _by_site(np.array([4, 4])) == [(4, slice(None))]


def test_hand_built_frames_with_labels_and_gaps_give_the_records_findings():
    records = make_site(site_code="G", end=END, seed=31, months=3, flaw_rate=0.3)
    shuffled = SiteRecords(site=dict(records.site), incidents=records.incidents.set_axis(
        np.arange(len(records.incidents)) * 3 + 7), actions=records.actions, exposure=records.exposure)
    plain = ReadResult(file="g.xlsx", records=records, layout=default_layout())
    relabelled = ReadResult(file="g.xlsx", records=shuffled, layout=default_layout())
    assert validate_results([relabelled], today=END) == validate_results([plain], today=END)


if __name__ == "__main__":  # python tests/test_validate_speed_equivalence.py: write the expected findings
    import addin

    print("expected findings from", addin.__file__)
    EXPECTED.write_text(json.dumps(findings_now(), ensure_ascii=False, indent=None, separators=(",", ":")) + "\n",
                        encoding="utf-8")
