"""`nearmiss validate`: summaries, the findings table, --json and exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from server.cli import main
from tests.conftest import DATA_END
from tests.test_validate import A, I, base_records, changed, edit
from workbook_templates.builder import build_workbook

TODAY = ["--today", DATA_END.isoformat()]


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    clean = build_workbook(folder / "OAK.xlsx", base_records())
    flawed = build_workbook(folder / "ELM.xlsx", changed(edit(I, 1, category="fall"), edit(A, 0, due_date=None),
                                                           edit(A, 1, due_date=DATA_END.replace(day=29))))
    broken = folder / "BROKEN.xlsx"
    broken.write_bytes(b"Incident ref,Date\nOAK-1,03/04/2026\n")
    return clean, flawed, broken


def run(*args: str):
    return CliRunner().invoke(main, ["validate", *args])


def test_clean_workbook_exits_0(books):
    clean, _, _ = books
    result = run(str(clean), *TODAY)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "OAK.xlsx: 0 errors, 0 warnings"


def test_errors_exit_1_with_a_summary_and_a_table(books):
    _, flawed, _ = books
    result = run(str(flawed), *TODAY)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "ELM.xlsx: 2 errors, 1 warning"
    assert lines[1].split() == ["Cell", "Ref", "Severity", "Rule", "Message"]
    assert any(line.startswith("Log!G3") and "OAK-2026-0002" in line and "NM002" in line for line in lines)
    assert any(line.startswith("Actions!G2") and "NM060" in line and "Fill in Due date" in line for line in lines)
    assert any(line.startswith("Actions!G3") and "warning" in line and "Overdue by 2 days" in line for line in lines)


def test_json_lists_every_finding_with_its_reference(books):
    _, flawed, _ = books
    result = run(str(flawed), "--json", *TODAY)
    assert result.exit_code == 1
    findings = json.loads(result.stdout)
    assert [(f["sheet"], f["cell"], f["rule"]) for f in findings] == [
        ("Log", "G3", "NM002"), ("Actions", "G2", "NM060"), ("Actions", "G3", "NM066")]
    assert set(findings[0]) == {"file", "sheet", "cell", "incident_ref", "rule", "severity", "message"}
    assert set(findings[1]) == {"file", "sheet", "cell", "action_ref", "rule", "severity", "message"}
    assert findings[0]["incident_ref"] == "OAK-2026-0002" and findings[1]["action_ref"] == "OAK-A-0001"
    assert findings[0]["file"] == "ELM.xlsx" and findings[0]["severity"] == "error"


def test_json_of_a_clean_workbook_is_an_empty_list(books):
    clean, _, _ = books
    result = run("--json", str(clean), *TODAY)
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_an_unreadable_file_exits_2_and_the_others_are_still_checked(books):
    clean, flawed, broken = books
    result = run(str(broken), str(clean), str(flawed), *TODAY)
    assert result.exit_code == 2
    assert "BROKEN.xlsx cannot be read: This is a text (CSV) file" in result.stderr
    assert "OAK.xlsx: 0 errors, 0 warnings" in result.stdout
    assert "ELM.xlsx: 2 errors, 1 warning" in result.stdout


def test_a_missing_file_exits_2(tmp_path, books):
    clean, _, _ = books
    result = run(str(tmp_path / "nowhere.xlsx"), str(clean), "--json", *TODAY)
    assert result.exit_code == 2
    assert "nowhere.xlsx cannot be read" in result.stderr
    assert json.loads(result.stdout) == []


def test_many_files_show_progress_on_stderr(books):
    clean, flawed, _ = books
    result = run(*([str(clean)] * 3 + [str(flawed)]), "--json", *TODAY)
    assert result.exit_code == 1
    assert "Reading workbooks" in result.stderr
    assert len(json.loads(result.stdout)) == 3  # progress never mixes into the JSON on stdout


def test_today_matters(books):
    clean, _, _ = books
    later = run(str(clean), "--today", "2027-06-30")
    assert later.exit_code == 0 and "NM066" in later.stdout  # overdue actions are warnings
    assert run(str(clean), "--today", "30/06/2027").exit_code == 2  # click usage error


def test_no_files_is_a_usage_error():
    result = run()
    assert result.exit_code == 2 and "FILES" in result.output
