from click.testing import CliRunner

from server.cli import main

VERBS = ("template", "convert", "validate", "consolidate", "return", "serve", "admin")


def test_help_lists_every_verb():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for verb in VERBS:
        assert f"  {verb} " in result.output


def test_template_writes_a_workbook(tmp_path):
    out = tmp_path / "oak.xlsx"
    result = CliRunner().invoke(main, ["template", "--site-code", "oak", "--site-name", "Oakview", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:2] == b"PK"


def test_template_refuses_to_overwrite(tmp_path):
    out = tmp_path / "oak.xlsx"
    out.write_bytes(b"keep me")
    result = CliRunner().invoke(main, ["template", "--site-code", "OAK", "--site-name", "Oakview", "--out", str(out)])
    assert result.exit_code != 0
    assert "already exists" in result.output
    assert out.read_bytes() == b"keep me"


def test_template_rejects_a_bad_site_code(tmp_path):
    result = CliRunner().invoke(main, ["template", "--site-code", "oak view!", "--site-name", "x",
                                       "--out", str(tmp_path / "x.xlsx")])
    assert result.exit_code == 2
    assert "capital letters" in result.output


def test_the_command_line_starts_without_the_heavy_libraries():
    """`nearmiss --help` and the admin verbs must not wait for pandas, pyarrow, openpyxl or Flask to load
    (about a second); each verb imports what it needs when it runs."""
    import json
    import subprocess
    import sys

    heavy = ("pandas", "pyarrow", "numpy", "openpyxl", "xlsxwriter", "fastexcel", "flask", "sqlalchemy")
    probe = f"import json, sys, server.cli; print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                       check=True).stdout)
    assert loaded == []
