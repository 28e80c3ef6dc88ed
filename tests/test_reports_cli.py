"""`nearmiss consolidate` and `nearmiss return` through click's CliRunner."""

from __future__ import annotations

import shutil

import openpyxl
import pytest

from tests.test_reports_helpers import PERIOD, TODAY, read_table, run, site_workbooks


@pytest.fixture(scope="module")
def workbooks(tmp_path_factory):
    """Smaller logs than the other report tests use: 13 months, half as many reports."""
    return site_workbooks(tmp_path_factory, months=13, scale=0.5)


def test_outputs_are_never_overwritten_without_force(workbooks, tmp_path):
    _, paths = workbooks
    out = tmp_path / "gov.xlsx"
    out.write_bytes(b"keep me")
    result = run("consolidate", paths["OAK"], "--out", out, "--today", TODAY.isoformat())
    assert result.exit_code == 1 and "already exists" in result.output and "--force" in result.output
    assert out.read_bytes() == b"keep me"

    csv_out = tmp_path / "incidents.csv"
    csv_out.write_text("keep me too")
    result = run("consolidate", paths["OAK"], "--out", tmp_path / "new.xlsx", "--csv", csv_out)
    assert result.exit_code == 1 and "already exists" in result.output
    assert not (tmp_path / "new.xlsx").exists()  # refused before anything was written

    ret = tmp_path / "return.xlsx"
    ret.write_bytes(b"keep")
    result = run("return", paths["OAK"], "--period", PERIOD, "--out", ret, "--today", TODAY.isoformat())
    assert result.exit_code == 1 and "already exists" in result.output and ret.read_bytes() == b"keep"

    result = run("consolidate", paths["OAK"], "--out", out, "--today", TODAY.isoformat(), "--force")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:2] == b"PK"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gov.xlsx", "incidents.csv", "return.xlsx"]  # no temp left


def test_unreadable_files_are_reported_and_the_rest_consolidated(workbooks, tmp_path):
    _, paths = workbooks
    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(b"just some text")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a workbook")
    twin = tmp_path / "oak_copy.xlsx"
    shutil.copy(paths["OAK"], twin)
    out = tmp_path / "gov.xlsx"
    result = run("consolidate", paths["OAK"], bad, notes, twin, "--out", out, "--today", TODAY.isoformat())
    assert result.exit_code == 2
    assert "Could not read broken.xlsx:" in result.stderr
    assert "Could not read notes.txt: Not an Excel workbook" in result.stderr
    assert "Could not read oak_copy.xlsx: Site OAK is also in oak.xlsx" in result.stderr
    assert "3 file(s) could not be read" in result.stderr
    wb = openpyxl.load_workbook(out)  # still written, for the sites that could be read
    problems = [row[0].value for row in wb["Data quality"].iter_rows() if row[0].value in
                ("broken.xlsx", "notes.txt", "oak_copy.xlsx")]
    assert sorted(problems) == ["broken.xlsx", "notes.txt", "oak_copy.xlsx"]
    assert "1 site(s)" in result.stdout
    assert "Reading 3 workbook(s)" in result.stderr  # notes.txt is refused without being opened


def test_nothing_readable_writes_nothing(tmp_path):
    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)  # an old .xls or a password-protected file
    out = tmp_path / "gov.xlsx"
    result = run("consolidate", bad, "--out", out)
    assert result.exit_code == 2
    assert "Could not read broken.xlsx" in result.stderr and "nothing was written" in result.stderr
    assert not out.exists()


def test_return_needs_every_file(workbooks, tmp_path):
    _, paths = workbooks
    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(b"nope")
    out = tmp_path / "return.xlsx"
    result = run("return", paths["OAK"], bad, "--period", PERIOD, "--out", out, "--today", TODAY.isoformat())
    assert result.exit_code == 2
    assert "Could not read broken.xlsx" in result.stderr and "Nothing was written" in result.stderr
    assert not out.exists()


def test_return_options(workbooks, tmp_path):
    _, paths = workbooks
    out = tmp_path / "return.xlsx"
    base = ["return", paths["OAK"], "--out", out, "--today", TODAY.isoformat()]
    result = run(*base, "--period", "2025-Q5")
    assert result.exit_code == 2 and "calendar quarter like 2025-Q4" in result.output
    result = run(*base, "--period", PERIOD, "--suppress", "--suppress-below", "5")
    assert result.exit_code == 2 and "not both" in result.output
    result = run(*base, "--period", PERIOD, "--suppress-below", "2")
    assert result.exit_code == 2 and "--suppress-below" in result.output
    result = run(*base, "--period", "2027-Q1")
    assert result.exit_code == 2 and "has not started" in result.output
    result = run(*base, "--period", PERIOD, "--commissioner", "Nowhere")
    assert result.exit_code == 2 and "Northshire County Council" in result.output
    assert not out.exists()

    result = run("return", paths["OAK"], paths["RIV"], "--out", out, "--today", TODAY.isoformat(),
                 "--period", PERIOD, "--suppress-below", "5", "--commissioner", "Southshire ICB")
    assert result.exit_code == 0, result.output
    assert "Reading 2 workbook(s)" in result.stderr
    assert "1 site(s) (RIV), small numbers suppressed (1 to 4 shown as *)" in result.stdout
    table = read_table(openpyxl.load_workbook(out), "tbl_category_harm")
    values = table.to_numpy().ravel().tolist()
    assert "*" in values
    assert all(v == "*" or v % 5 == 0 for v in values)


def test_help_describes_the_commands():
    for verb, words in (("consolidate", ["--csv", "--actions-csv", "--today", "--force"]),
                        ("return", ["--period", "--commissioner", "--suppress-below", "--suppress", "--force"])):
        result = run(verb, "--help")
        assert result.exit_code == 0
        for word in words:
            assert word in result.output
