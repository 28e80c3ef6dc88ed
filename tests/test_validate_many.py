"""validate_results over many workbooks at once gives, for each, exactly what validate_result gives alone."""

from __future__ import annotations

import copy

import pytest

from addin.reader import ReadResult, default_layout, read_workbook
from addin.validate import validate_result, validate_results
from tests.conftest import DATA_END
from tests.test_validate import CASES, _rows, _site_rows, base_records, changed
from workbook_templates.builder import build_workbook
from workbook_templates.synthetic import make_site


def _as_result(records, file: str) -> ReadResult:
    """Records built by hand, as if read from a workbook laid out as the template lays it out."""
    return ReadResult(file=file, records=copy.deepcopy(records), layout=default_layout())


def _same_alone_and_together(results: list[ReadResult]) -> list[list]:
    together = validate_results(results, today=DATA_END)
    alone = [validate_result(r, today=DATA_END) for r in results]
    assert len(together) == len(alone)
    for r, t, a in zip(results, together, alone):
        assert t == a, r.file  # the same findings (file, sheet, cell, ref, rule, message), in the same order
    return together


def test_every_rule_case_checked_together_equals_each_alone():
    # One "site" per rule case (each breaks its rule once) and one clean site; rows of the same
    # refs in many sites must not count as duplicates or answer each other's refs.
    results = [_as_result(base_records(), "clean.xlsx")]
    results += [_as_result(changed(*edits), f"{rule}-{i}.xlsx") for i, (rule, edits, *_rest) in enumerate(CASES)]
    together = _same_alone_and_together(results)
    assert together[0] == []
    assert {f.rule for found in together for f in found} >= {case[0] for case in CASES}


def test_synthetic_workbooks_read_and_checked_together_equal_each_alone(tmp_path):
    paths = []
    for seed, setting in ((4, "care_home"), (5, "homecare"), (6, "supported_living"), (4, "care_home")):
        path = tmp_path / f"site{len(paths)}.xlsx"
        build_workbook(path, make_site(site_code=f"S{seed}", end=DATA_END, seed=seed, setting=setting,
                                       months=6, flaw_rate=0.15))
        paths.append(path)
    results = [read_workbook(p) for p in paths]
    together = _same_alone_and_together(results)
    assert all(found for found in together)


def test_moved_columns_and_missing_sheets_checked_together_equal_each_alone(tmp_path):
    from tests.test_reader import write_xlsx

    records = changed()
    inc = records.incidents.copy()
    inc.loc[1, "category"] = "fall"
    inc.loc[0, "notes"] = "Mrs Jones"
    names = ["category"] + [c for c in inc.columns if c not in ("category", "person_ref")]  # a column left out
    moved = [["Near-miss log"], []] + [names] + inc[names].astype(object).where(inc[names].notna(), None).values.tolist()
    write_xlsx(tmp_path / "moved.xlsx", {"Log": moved, "Actions": _rows(records.actions),
                                         "Site": _site_rows(records)})
    write_xlsx(tmp_path / "no_actions.xlsx", {"Log": _rows(records.incidents), "Site": _site_rows(records)})
    build_workbook(tmp_path / "plain.xlsx", records)
    results = [read_workbook(tmp_path / name) for name in ("moved.xlsx", "no_actions.xlsx", "plain.xlsx")]
    together = _same_alone_and_together(results)
    assert {f.rule for f in together[1]} >= {"NM090"}


def test_no_results_and_unreadable_results():
    assert validate_results([], today=DATA_END) == []
    with pytest.raises(ValueError):
        validate_results([ReadResult(file="bad.xlsx", error="damaged")], today=DATA_END)
