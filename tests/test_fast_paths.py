"""The fast paths of consolidation give what the plain ways give."""

from __future__ import annotations

import pandas as pd

from addin import identifiers
from addin.reader import read_workbook
from server.report_commands import _frames, _Read
from tests.conftest import DATA_END
from workbook_templates.builder import build_workbook
from workbook_templates.synthetic import make_site

TEXTS = pd.Series(["Mrs Jones fell", None, "NHS 943 476 5919, DOB 01/02/1940", "nothing here", "", "SW1A 1AA",
                   "room 12", "Mr X"], index=[5, 3, 9, 0, 1, 2, 7, 8])


def test_scan_candidates_is_scan_at_the_rows_it_keeps_and_the_rest_hold_nothing():
    full = identifiers.scan(TEXTS)
    some = identifiers.scan_candidates(TEXTS)
    assert set(some.index) <= set(TEXTS.index)
    pd.testing.assert_frame_equal(some, full.loc[some.index])
    assert full.drop(index=some.index).isna().all().all()
    assert {2, 5, 9} <= set(some.index)  # the postcode, the name, the NHS number and date of birth


def test_scan_candidates_of_text_without_identifiers_is_empty():
    assert identifiers.scan_candidates(pd.Series(["no", "digits", None])).empty
    assert identifiers.scan_candidates(pd.Series([], dtype=object)).empty


def _sites(records_list) -> _Read:
    return _Read(sites=[{"code": f"S{i}", "file": f"s{i}.xlsx", "records": r, "saved": None}
                        for i, r in enumerate(records_list)])


def _per_site_stack(read: _Read, kind: str) -> pd.DataFrame:
    """The plain way: each site's frame reindexed to the contract's columns with its code, then concatenated."""
    from workbook_templates.records import field_names

    names = [n for n in field_names(kind) if n != "site_code"]
    parts = [getattr(s["records"], kind).reindex(columns=names).assign(site_code=s["code"]) for s in read.sites]
    return pd.concat(parts, ignore_index=True)[["site_code", *names]]


def test_frames_stack_sites_as_the_per_site_reindex_does(tmp_path):
    records = []
    for seed in (1, 2, 3):
        path = tmp_path / f"s{seed}.xlsx"
        build_workbook(path, make_site(site_code=f"S{seed}", end=DATA_END, seed=seed, months=4, flaw_rate=0.2))
        records.append(read_workbook(path).records)
    read = _sites(records)
    incidents, actions, exposure, _ = _frames(read)
    for kind, got in (("incidents", incidents), ("actions", actions), ("exposure", exposure)):
        pd.testing.assert_frame_equal(got, _per_site_stack(read, kind), check_exact=True)
    # A site whose frame lacks a column (or types it otherwise) takes the per-site way, with the same result.
    odd = records[1].incidents.drop(columns=["notes"])
    odd["consequence"] = odd["consequence"].astype("float64")
    records[1].incidents = odd
    read = _sites(records)
    pd.testing.assert_frame_equal(_frames(read)[0], _per_site_stack(read, "incidents"), check_exact=True)


def test_the_date_of_birth_prefilters_keep_every_row_the_pattern_matches():
    texts = pd.Series(["DOB 01/02/1940", "d.o.b: 3 March 1941", "D. O. B 01/02/40", "Date of Birth is 1/2/1933",
                       "born on 12 Jan 1930", "12/01/1930 (dob)", "BIRTH DATE 1950-01-02", "birthdate: 1/1/1950",
                       "dob\u00a001/02/1940", "d\u00a0o\u00a0b 01/02/1940", "DATE OF B\u0130RTH 1/1/1940",
                       "d.\no.\nb 1/1/1940", "Born 1st May 1940", "no cue 01/02/1940", "dob unknown", None])
    plain = texts.where(texts.notna(), None).astype("str").str.extract(identifiers.DOB_PATTERN)
    expected = plain[0].fillna(plain[1])
    pd.testing.assert_series_equal(identifiers.find_dates_of_birth(texts), expected, check_names=False)
    assert expected.notna().sum() == 13


def test_column_helpers_give_what_pandas_gives():
    import numpy as np

    from addin import checks

    frame = pd.DataFrame({"status": pd.array(["open", None, "closed", "Open", ""], dtype="str"),
                          "when": pd.to_datetime(["2026-01-01", None, "2026-02-01", None, None]),
                          "_raw_when": pd.array([None, "soon", None, None, None], dtype="str"),
                          "n": pd.array([1, None, 3, 4, None], dtype="Int64")}, index=[4, 2, 9, 1, 0])
    for name in ("status", "when", "n", "missing"):
        expected = checks.col(frame, name).notna() | checks.raw(frame, name).notna()
        pd.testing.assert_series_equal(checks.present(frame, name), expected.astype(bool))
    for values in (("open", "closed"), ("none",), ()):
        pd.testing.assert_series_equal(checks.isin_values(frame["status"], values),
                                       frame["status"].isin(values).astype(bool), check_names=False)
    assert checks.equals(frame, "missing", "x").tolist() == [False] * 5
    tier = checks.select_text([np.array([1, 0, 0, 1, 0], bool), np.array([0, 1, 0, 1, 0], bool)], ["a", "b"], None,
                              frame.index)
    pd.testing.assert_series_equal(tier, pd.Series(["a", "b", None, "a", None], index=frame.index, dtype="str"))
    mapped = checks.map_text(frame["status"], {"open": 14, "closed": 60})
    assert mapped.astype(float).fillna(0).tolist() == [14.0, 0, 60.0, 0, 0]
    pd.testing.assert_series_equal(mapped.astype(float), frame["status"].map({"open": 14, "closed": 60}).astype(float))


def test_findings_of_makes_what_make_finding_makes():
    from addin.findings import findings_of, make_finding

    values = ("fall", "12", "fall", "")  # a value twice: its message is formatted once, and still right
    for rule, label in (("NM002", "Category"), ("NM082", ""), ("NM044", "Status")):
        made = findings_of(rule, label, "a.xlsx", "Log", ["G3"] * len(values), ["OAK-1"] * len(values), values)
        for finding, value in zip(made, values, strict=True):
            assert finding == make_finding(
                rule, file="a.xlsx", sheet="Log", cell="G3", ref="OAK-1", label=label, value=value)


def test_the_exposure_frame_of_plain_cells_is_what_normalise_frame_gives():
    """Random exposure tables (plain cells and others): wherever the plain way builds a frame, it is the general one."""
    import datetime as dt
    import random

    import numpy as np

    from addin import reader

    blank = [None, "", "  ", "\u00a0"]
    plain = {"date": [dt.date(2026, 1, 1), dt.date(1900, 1, 1), dt.date(2199, 12, 31)],
             "int": [12.0, 0.0, -3.0, 1e15, 2.0**53 - 1], "number": [12.0, 2.5, -0.1, 1e300]}
    odd = ["text", "12", True, 3, dt.datetime(2026, 1, 1, 12), dt.date(1899, 12, 31), dt.date(2200, 1, 1),
           float("nan"), float("inf"), 2.0**53, 2.5, "\x1c", dt.time(12), dt.date(2026, 1, 1), 1.0]
    kinds = {f.name: f.type for f in reader.EXPOSURE_FIELDS}
    # A NaN number is a blank cell to the general way (a row of them is dropped): not a plain cell.
    assert reader._plain_exposure([[float("nan")], [1.0]], {"care_hours": 0}, 0) is None
    rng = random.Random(5)
    built = fell_back = 0
    for _ in range(400):
        columns = {name: 3 + j for j, name in enumerate(rng.sample(list(kinds), rng.randint(1, len(kinds))))}
        fields = {j: name for name, j in columns.items()}
        width = max(columns.values()) + 1 - rng.choice([0, 0, 0, 1])  # a short row now and then
        odd_rate = rng.choice([0, 0, 0.05])

        def cell(j):  # noqa: ANN001, ANN202
            if rng.random() < odd_rate:
                return rng.choice(odd)
            return rng.choice(blank + plain[kinds[fields[j]]] * 2) if j in fields else rng.choice(blank + odd)

        body = [[cell(j) for j in range(width)] for _ in range(rng.randint(0, 8))]
        header = rng.randint(0, 3)
        fast = reader._plain_exposure(body, columns, header)
        if fast is None:
            fell_back += 1
            continue
        general = reader._normalised_exposure(body, columns, header)
        pd.testing.assert_frame_equal(fast, general, check_exact=True, check_index_type=True)
        assert type(fast.index) is type(general.index) and np.array_equal(fast.index, general.index)
        built += 1
    assert built > 200 and fell_back > 50, (built, fell_back)


def test_arrow_helpers_of_the_table_fast_path_give_what_the_plain_arrow_calls_give():
    """Times by lookup, codes by one is_in, blank text as missing, rows kept, columns into pandas."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from addin import reader
    from workbook_templates.codelists import CODE_LISTS

    rng = np.random.default_rng(8)
    for unit, span in (("s", 10**10), ("ms", 10**13), ("us", 10**16), ("ns", 9 * 10**18)):
        values = np.concatenate([rng.integers(-span, span, 5000), [0, -1, 1, -86_400_000, -86_400_001]])
        stamps = pa.array(values, pa.timestamp(unit), mask=rng.random(len(values)) < 0.05)
        assert reader._arrow_times(stamps).equals(pc.strftime(stamps, format="%H:%M")), unit

    for list_name, codes in CODE_LISTS.items():
        words = [*codes, *(c.upper() for c in codes), *(c.title() for c in codes), "other", "", None]
        text = pa.array([words[i] for i in rng.integers(0, len(words), 300)], pa.string())
        expected = reader.match_codes(pd.Series(text.to_pylist(), dtype="str"), list_name)
        got = reader._arrow_codes(text, list_name).to_pylist()
        assert [None if v is None or v != v else v for v in expected] == got, list_name
        listed = pa.array([c for c in (*codes, None) for _ in range(3)], pa.string())
        assert reader._arrow_codes(listed, list_name) is listed  # nothing to map: the array itself

    pieces = ["", " ", "\u00a0", "\t", "\u2028", "a", " a", "b ", " c d ", "é", None]
    for _ in range(30):
        text = pa.array([pieces[i] for i in rng.integers(0, len(pieces), 50)], pa.string())
        trimmed = pc.utf8_trim_whitespace(text)
        for strip in (True, False):
            plain = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, text.type), trimmed if strip else text)
            assert reader._blank_as_null(text, strip=strip).equals(plain)

    for _ in range(30):
        columns = [pa.array(rng.integers(0, 9, 40), mask=rng.random(40) < rng.choice([0.0, 0.5, 0.95]))
                   for _ in range(int(rng.integers(0, 4)))]
        valid = np.zeros(40, dtype=bool)
        for column in columns:
            valid |= column.is_valid().to_numpy(zero_copy_only=False)
        assert np.array_equal(reader._nonblank_rows(columns, 40), np.flatnonzero(valid))

    arrays = {"text": pa.array(["a", None, "b"]), "large": pa.array(["a", None, "c"], pa.large_string()),
              "whole": pa.array([1, None, 3]), "number": pa.array([1.5, None, 3.0]),
              "date": pa.array([0, None, 86_400_000_000], pa.timestamp("us")), "none": pa.nulls(3, pa.string()),
              "no date": pa.nulls(3, pa.timestamp("us")), "no number": pa.nulls(3, pa.int64())}
    index = pd.Index([2, 5, 9], dtype="int64")
    expected = pa.table(arrays).to_pandas(types_mapper=reader._ARROW_PANDAS_TYPES.get).set_axis(index)
    got = pd.DataFrame({name: reader._pandas_array(array) for name, array in arrays.items()}, index=index)
    pd.testing.assert_frame_equal(got, expected, check_exact=True, check_column_type=True, check_index_type=True)


def test_finding_to_dict_is_every_field_with_the_ref_named_by_its_sheet() -> None:
    import dataclasses

    from addin.findings import Finding

    for sheet, key in (("Actions", "action_ref"), ("Log", "incident_ref"), ("", "incident_ref")):
        finding = Finding("a.xlsx", sheet, "B7", "R-1", "NM022", "error", "Fill it in.")
        expected = dataclasses.asdict(finding)
        expected[key] = expected.pop("ref")
        assert finding.to_dict() == expected
        assert list(finding.to_dict()) == list(expected)  # the same key order in the JSON answers
