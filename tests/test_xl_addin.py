"""The shipped add-in: its ribbon, the VBA it calls, its settings sheet, the build and the installer."""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
import xlwings

from addin.excel import build_addin, install
from addin.xl import macros
from addin.xl.submit import ADDIN_CONF_SHEET, ADDIN_NAME, CONF_NAME, read_conf_file

ADDIN = Path(build_addin.__file__).parent / "nearmiss.xlam"
NS = {"ui": "http://schemas.microsoft.com/office/2006/01/customui"}


@pytest.fixture(scope="module")
def vba() -> dict[str, str]:
    """Module name -> VBA source of the shipped add-in, as olevba extracts it."""
    with warnings.catch_warnings():  # oletools' pyparsing use is deprecated (not our code)
        warnings.simplefilter("ignore", DeprecationWarning)
        import oletools.olevba as olevba
    parser = olevba.VBA_Parser(str(ADDIN))
    try:
        return {Path(name).stem: code for _, _, name, code in parser.extract_macros()}
    finally:
        parser.close()


@pytest.fixture(scope="module")
def ribbon() -> ET.Element:
    with zipfile.ZipFile(ADDIN) as z:
        return ET.fromstring(z.read("customUI/customUI.xml"))


def test_the_ribbon_in_the_addin_is_the_committed_source(ribbon):
    assert ET.tostring(ribbon) == ET.tostring(ET.parse(build_addin.RIBBON).getroot())
    assert ADDIN.name == ADDIN_NAME


def test_ribbon_button_calls_a_callback_that_exists_in_the_vba(ribbon, vba):
    [tab] = ribbon.findall(".//ui:tab", NS)
    assert tab.get("label") == "nearmiss"
    buttons = ribbon.findall(".//ui:button", NS)
    assert len(buttons) == 1  # option (b): one button, a chooser behind it (docs/excel-addin.md)
    for button in buttons:
        module, _, sub = button.get("onAction").partition(".")
        assert module in vba, f"no VBA module {module}"
        assert re.search(rf"^Sub {sub}\(control As IRibbonControl\)", vba[module], re.M), f"no {sub} in {module}"
    tip = buttons[0].get("screentip") + buttons[0].get("supertip")
    for label in macros.LABELS.values():  # the button names the four actions it offers
        assert label in tip


def test_runmain_imports_the_module_named_after_the_addin(vba):
    code = vba["RibbonMyAddin"]
    assert "mymodule = Left(ThisWorkbook.Name" in code
    assert 'RunPython "import " & mymodule & ";" & mymodule & ".main()"' in code
    # ... so Excel runs `import nearmiss; nearmiss.main()`, which is the chooser:
    import addin.excel.nearmiss as module
    assert Path(module.__file__).stem == Path(ADDIN_NAME).stem
    assert module.main is macros.main


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> Path:
    """What `xlwings quickstart nearmiss --addin --ribbon` writes, with the installed xlwings."""
    return build_addin.quickstart_xlam(tmp_path_factory.mktemp("quickstart"))


def test_the_vba_is_xlwings_quickstart_vba_unchanged(quickstart):
    with zipfile.ZipFile(quickstart) as a, zipfile.ZipFile(ADDIN) as b:
        assert a.read("xl/vbaProject.bin") == b.read("xl/vbaProject.bin")


def test_conf_name_matches_the_vba_project_name(vba):
    [name] = re.findall(r'Public Const PROJECT_NAME As String = "(\w+)"', vba["xlwings"])
    assert name == CONF_NAME == "myaddin"
    assert 'Set sht = wb.Sheets(PROJECT_NAME & ".conf")' in vba["xlwings"]


def test_settings_sheet_holds_only_machine_independent_keys():
    with zipfile.ZipFile(ADDIN) as z:
        workbook = z.read("xl/workbook.xml").decode()
        sheet = z.read("xl/worksheets/sheet1.xml").decode()
    assert f'name="{ADDIN_CONF_SHEET}"' in workbook and "_myaddin.conf" not in workbook
    assert 'codeName="Sheet2"' in sheet  # the sheet keeps its VBA document module
    cells = re.findall(r'<c r="([AB]\d+)" t="inlineStr"><is><t[^>]*>([^<]*)</t>', sheet)
    assert cells == [("A1", "UDF Modules"), ("B1", "addin.xl.udfs"),
                     ("A2", build_addin.VERSION_KEY), ("B2", cells[3][1])]
    assert build_addin.addin_settings(ADDIN) == {"UDF Modules": "addin.xl.udfs",
                                                 build_addin.VERSION_KEY: cells[3][1]}


def test_the_recorded_xlwings_version_is_the_vbas(vba):
    [version] = re.findall(r'XLWINGS_VERSION As String = "([^"]+)"', vba["xlwings"])
    assert build_addin.addin_settings(ADDIN)[build_addin.VERSION_KEY] == version
    if version == xlwings.__version__:
        assert install.version_warning() is None


def test_build_is_reproducible_and_matches_the_committed_addin(tmp_path, vba, quickstart):
    one = build_addin.build(tmp_path / "a.xlam")  # end to end, its own quickstart run
    two = build_addin.rebuild(quickstart, tmp_path / "b.xlam", build_addin.RIBBON.read_bytes(),
                              build_addin.settings_rows())
    assert one.read_bytes() == two.read_bytes()
    [version] = re.findall(r'XLWINGS_VERSION As String = "([^"]+)"', vba["xlwings"])
    if version != xlwings.__version__:
        pytest.skip(f"the add-in was built with xlwings {version}, this is {xlwings.__version__}: "
                    "run `python -m addin.excel.build_addin` and commit the result")
    assert one.read_bytes() == ADDIN.read_bytes()


def test_build_can_bake_in_the_server_url(tmp_path, quickstart):
    out = build_addin.rebuild(quickstart, tmp_path / "area.xlam", build_addin.RIBBON.read_bytes(),
                              build_addin.settings_rows("https://nearmiss.example.org"))
    with zipfile.ZipFile(out) as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode()
    assert "NEARMISS_SERVER_URL" in sheet and "https://nearmiss.example.org" in sheet
    with pytest.raises(ValueError):
        build_addin.settings_rows('https://x" onload="')


def test_installer_copies_the_addin_and_writes_the_settings(tmp_path):
    xlstart = tmp_path / "XLSTART"
    conf = tmp_path / "home" / ".myaddin" / "myaddin.conf"
    target, written = install.install(xlstart=xlstart, conf=conf, platform="win32",
                                      executable=r"C:\Users\me\AppData\Local\nearmiss\venv\Scripts\python.exe",
                                      server_url="https://nearmiss.example.org", token="tok-123", site_code="oak",
                                      site_name="Oakview House", setting="care_home")
    assert target == xlstart / "nearmiss.xlam" and target.read_bytes() == ADDIN.read_bytes()
    values = read_conf_file(written)
    assert values["INTERPRETER_WIN"].endswith(r"venv\Scripts\python.exe")
    assert Path(values["PYTHONPATH"]) == ADDIN.parent  # where nearmiss.py is, for `import nearmiss`
    assert values["UDF MODULES"] == "addin.xl.udfs"
    assert (values["NEARMISS_SERVER_URL"], values["NEARMISS_TOKEN"], values["NEARMISS_SITE_CODE"]) == (
        "https://nearmiss.example.org", "tok-123", "OAK")


def test_installer_knows_excels_startup_folders(tmp_path):
    assert install.xlstart_dir("win32", tmp_path, {"APPDATA": r"C:\Users\me\AppData\Roaming"}) == Path(
        r"C:\Users\me\AppData\Roaming") / "Microsoft" / "Excel" / "XLSTART"
    assert install.xlstart_dir("darwin", tmp_path) == (tmp_path / "Library" / "Group Containers" /
                                                       "UBF8T346G9.Office" / "User Content.localized" /
                                                       "Startup.localized" / "Excel")
    assert install.xlstart_dir("linux", tmp_path) is None
    assert install.interpreter("darwin", "/Users/me/.nearmiss/venv/bin/python")[0] == "Interpreter_Mac"


def test_install_scripts_run_the_python_installer():
    here = ADDIN.parent
    ps1 = (here / "install-addin.ps1").read_text()
    sh = (here / "install-addin.sh").read_text()
    assert ps1.lstrip().startswith("#") and "param(" in ps1
    for script in (ps1, sh):
        assert "-m addin.excel.install" in script and "-m pip install" in script and "venv" in script


def test_installer_warns_when_xlwings_versions_differ(monkeypatch):
    monkeypatch.setattr(xlwings, "__version__", "9.9.9")
    warning = install.version_warning()
    assert "this Python has xlwings 9.9.9" in warning and "pip install xlwings==" in warning
