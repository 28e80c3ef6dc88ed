"""`nearmiss convert`: what it prints, what it writes, and what it refuses."""

from __future__ import annotations

import re

import openpyxl
import pytest
from click.testing import CliRunner

from server.cli import main
from tests.legacy_factory import make_legacy_log

KEY = "cli-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    return make_legacy_log(tmp_path_factory.mktemp("cli-legacy") / "old log.xlsx", reports_per_month=6)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("NEARMISS_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("NEARMISS_INSTANCE", str(tmp_path / "instance"))
    return tmp_path


def run(*args: str):
    result = CliRunner().invoke(main, ["convert", *map(str, args)])
    return result, result.output + (result.stderr if result.stderr_bytes is not None else "")


def site_args(legacy, out):
    return [legacy.path, "--site-code", "oak", "--site-name", "Oakview House", "--out", out]


def names_pattern(names):
    parts = {p for n in names for p in n.split()}
    return re.compile(r"(?i:" + "|".join(map(re.escape, names)) + r")|\b(?:" + "|".join(map(re.escape, parts)) + r")\b")


def test_convert_prints_the_mapping_and_what_needs_a_person(legacy, env):
    out = env / "oak.xlsx"
    result, text = run(*site_args(legacy, out))
    assert result.exit_code == 0, text
    for heading in ("Sheets found:", "Column mapping used", "Value fixes:", "Rows:", "Needs a person's eye:"):
        assert heading in text
    assert re.search(r"Date of Incident\s+-> occurred_at", text)
    assert re.search(r"Resident name\s+-> person_ref \(pseudonymised", text)
    assert re.search(r"Reported by\s+-> left out \(holds names\)", text)
    assert "'Slip/trip/fall' -> falls" in text
    assert re.search(r"Summary\s+not converted", text)
    assert "Wobbly moment" in text  # the unmatched category is named for the person to fix
    assert f"{legacy.blank_rows} blank" in text and f"{legacy.total_rows} total row" in text
    assert "Checks of the new workbook" in text
    assert not names_pattern(legacy.names).search(text)
    wb = openpyxl.load_workbook(out)
    assert wb["Log"].max_row == len(legacy.rows) + 1
    assert wb["Site"]["B2"].value == "OAK"
    assert sorted(p.name for p in env.iterdir()) == ["oak.xlsx"]  # no temporary file left, no key made


def test_convert_never_overwrites_without_force(legacy, env):
    out = env / "oak.xlsx"
    out.write_bytes(b"keep me")
    result, text = run(*site_args(legacy, out))
    assert result.exit_code == 1
    assert "already exists" in text
    assert out.read_bytes() == b"keep me"
    result, text = run(*site_args(legacy, out), "--force")
    assert result.exit_code == 0, text
    assert out.read_bytes()[:2] == b"PK"


@pytest.mark.parametrize("content, message", [
    (b"Date,Category\n01/05/2026,Fall\n", "CSV"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "EncryptedPackage".encode("utf-16-le") + b"\0" * 512, "password"),
    (b"PK\x03\x04 cut short", "damaged"),
])
def test_an_unreadable_file_exits_2_with_a_reason(env, content, message):
    bad = env / "bad.xlsx"
    bad.write_bytes(content)
    out = env / "out.xlsx"
    result, text = run(bad, "--site-code", "OAK", "--site-name", "Oak", "--out", out)
    assert result.exit_code == 2
    assert message in text
    assert "Traceback" not in text
    assert not out.exists()


def test_a_missing_file_and_a_bad_mapping_exit_2(legacy, env):
    result, text = run(env / "nope.xlsx", "--site-code", "OAK", "--site-name", "Oak", "--out", env / "o.xlsx")
    assert result.exit_code == 2 and "does not exist" in text
    mapping = env / "map.csv"
    mapping.write_text("Harm,harm_level\n")
    result, text = run(*site_args(legacy, env / "o.xlsx"), "--mapping", mapping)
    assert result.exit_code == 2 and "not a field" in text
    assert not (env / "o.xlsx").exists()


def test_a_mapping_file_is_used(legacy, env):
    mapping = env / "map.csv"
    mapping.write_text("source_header,field\nRoom,location\n")
    result, text = run(*site_args(legacy, env / "o.xlsx"), "--mapping", mapping)
    assert result.exit_code == 0, text
    assert re.search(r"Room\s+-> location \(mapping file\) \[hidden column\]", text)


def test_a_key_is_made_once_in_the_instance_folder(legacy, env, monkeypatch):
    monkeypatch.delenv("NEARMISS_PSEUDONYM_KEY")
    result, text = run(*site_args(legacy, env / "a.xlsx"))
    assert result.exit_code == 0, text
    key = env / "instance" / "pseudonym.key"
    assert key.is_file() and "Made a new pseudonym key" in text
    result, text = run(*site_args(legacy, env / "b.xlsx"))
    assert result.exit_code == 0 and "Made a new pseudonym key" not in text

    def refs(path):
        ws = openpyxl.load_workbook(path)["Log"]
        col = [c.value for c in ws[1]].index("Person ref") + 1
        return [ws.cell(r, col).value for r in range(2, ws.max_row + 1)]

    assert refs(env / "a.xlsx") == refs(env / "b.xlsx")
    other = env / "other.key"
    other.write_text("a-different-key-0123456789\n")
    result, text = run(*site_args(legacy, env / "c.xlsx"), "--key-file", other)
    assert result.exit_code == 0, text
    assert not set(refs(env / "c.xlsx")) & set(refs(env / "a.xlsx"))
    other.write_text("short")
    result, text = run(*site_args(legacy, env / "d.xlsx"), "--key-file", other)
    assert result.exit_code == 2 and "too short" in text and "short\n" not in text


def test_bad_site_code_and_out_name(legacy, env):
    result, text = run(legacy.path, "--site-code", "oak view!", "--site-name", "x", "--out", env / "x.xlsx")
    assert result.exit_code == 2 and "capital letters" in text
    result, text = run(legacy.path, "--site-code", "OAK", "--site-name", "x", "--out", env / "x.csv")
    assert result.exit_code == 2 and ".xlsx" in text
