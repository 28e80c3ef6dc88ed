"""Build ``addin/excel/nearmiss.xlam`` from committed sources: ``python -m addin.excel.build_addin``.

1. ``xlwings quickstart nearmiss --addin --ribbon`` (open-source xlwings; works on Linux: it only
   copies files) writes ``nearmiss.xlam`` in a temporary folder;
2. that add-in's ``customUI/customUI.xml`` (the ribbon) is replaced by ``customUI.xml`` here;
3. its settings sheet ``_myaddin.conf`` (disabled by the leading underscore) is renamed
   ``myaddin.conf`` and holds only machine-independent settings: ``UDF Modules`` =
   ``addin.xl.udfs``, the xlwings version the VBA came from (``NEARMISS_XLWINGS_VERSION``: the
   Python side must have the same version) and, with ``--server-url``, the area's server address.  Interpreter and
   PYTHONPATH are left to the user settings file the installer writes: a key on the sheet, even
   with a blank value, would hide the file's value (the VBA reads the sheet first);
4. every other part, ``xl/vbaProject.bin`` above all, is copied byte for byte.

The zip is written with fixed timestamps in a fixed order, so the same xlwings version and the
same sources give the same bytes (the tests rebuild it and compare).

Why the VBA is not changed: a ribbon with four buttons needs four VBA callbacks, and the
quickstart VBA has one (``RibbonMyAddin.RunMain``: ``import nearmiss; nearmiss.main()``).
Writing a new ``vbaProject.bin`` without Excel (the ``ms-ovba`` package, 0.0.1) cannot declare
the class module the xlwings VBA needs on Mac (``Dictionary``), and a VBA project Excel rejects
would leave the care manager with no add-in at all.  So the single button opens a chooser
(:func:`addin.xl.macros.choose_action`).  See docs/excel-addin.md.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
ADDIN = HERE / "nearmiss.xlam"
RIBBON = HERE / "customUI.xml"
PROJECT = "nearmiss"  # the add-in's file name; the VBA imports the module of this name
QUICKSTART_SHEET = "_myaddin.conf"
CONF_SHEET = "myaddin.conf"  # PROJECT_NAME "myaddin" of the quickstart VBA + ".conf"
UDF_MODULES = "addin.xl.udfs"
FIXED_TIME = (2024, 1, 1, 0, 0, 0)


def quickstart_xlam(workdir: Path) -> Path:
    """Run ``xlwings quickstart nearmiss --addin --ribbon`` in ``workdir``; the .xlam it wrote."""
    proc = subprocess.run([sys.executable, "-m", "xlwings.cli", "quickstart", PROJECT, "--addin", "--ribbon"],
                          cwd=workdir, capture_output=True, text=True, timeout=120)
    xlam = workdir / PROJECT / f"{PROJECT}.xlam"
    if proc.returncode != 0 or not xlam.is_file():
        raise RuntimeError(f"xlwings quickstart failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    return xlam


VERSION_KEY = "NEARMISS_XLWINGS_VERSION"  # the xlwings whose quickstart VBA is inside (the installer checks it)


def settings_rows(server_url: str | None = None) -> list[tuple[str, str]]:
    import xlwings

    rows = [("UDF Modules", UDF_MODULES), (VERSION_KEY, xlwings.__version__)]
    if server_url:
        if '"' in server_url or not server_url.startswith(("https://", "http://")):
            raise ValueError("the server URL must start with https:// and hold no quotes")
        rows.append(("NEARMISS_SERVER_URL", server_url))
    return rows


def _inline(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{escape(text)}</t></is></c>'


def conf_sheet_xml(original: str, rows: list[tuple[str, str]]) -> str:
    """The quickstart's settings sheet XML with its cells replaced by ``rows`` (key in A, value in B).

    The sheet's ``codeName`` (its VBA document module) and page setup are kept.
    """
    data = "".join(f'<row r="{i}">{_inline(f"A{i}", k)}{_inline(f"B{i}", v)}</row>'
                   for i, (k, v) in enumerate(rows, start=1))
    xml, n = re.subn(r"<sheetData>.*</sheetData>|<sheetData\s*/>", f"<sheetData>{data}</sheetData>", original,
                     flags=re.S)
    if n != 1:
        raise RuntimeError("unexpected quickstart sheet: no sheetData")
    xml = re.sub(r'<dimension ref="[^"]*"\s*/>', f'<dimension ref="A1:B{len(rows)}" />', xml)
    xml = re.sub(r"<cols>.*?</cols>", '<cols><col min="1" max="1" width="24" customWidth="1" />'
                                      '<col min="2" max="2" width="60" customWidth="1" /></cols>', xml, flags=re.S)
    return xml


def addin_settings(path: str | Path = ADDIN) -> dict[str, str]:
    """The settings sheet of a built add-in as {key: value}."""
    with zipfile.ZipFile(path) as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode("utf-8")
    cells = re.findall(r'<c r="([AB])(\d+)" t="inlineStr"><is><t[^>]*>([^<]*)</t></is></c>', sheet)
    rows: dict[str, dict[str, str]] = {}
    for col, row, text in cells:
        rows.setdefault(row, {})[col] = text
    from xml.sax.saxutils import unescape
    return {unescape(r["A"]): unescape(r.get("B", "")) for r in rows.values() if "A" in r}


def rebuild(source: Path, out: Path, ribbon: bytes, rows: list[tuple[str, str]]) -> Path:
    """Write ``out``: ``source`` with the ribbon and settings sheet replaced, everything else as is."""
    with zipfile.ZipFile(source) as zin:
        names = zin.namelist()
        parts = {n: zin.read(n) for n in names}
    workbook = parts["xl/workbook.xml"].decode("utf-8")
    if f'name="{QUICKSTART_SHEET}"' not in workbook:
        raise RuntimeError(f"unexpected quickstart add-in: no {QUICKSTART_SHEET} sheet")
    parts["xl/workbook.xml"] = workbook.replace(f'name="{QUICKSTART_SHEET}"', f'name="{CONF_SHEET}"').encode("utf-8")
    if "docProps/app.xml" in parts:
        parts["docProps/app.xml"] = parts["docProps/app.xml"].replace(QUICKSTART_SHEET.encode(), CONF_SHEET.encode())
    sheet = "xl/worksheets/sheet1.xml"
    parts[sheet] = conf_sheet_xml(parts[sheet].decode("utf-8"), rows).encode("utf-8")
    if "customUI/customUI.xml" not in parts:
        raise RuntimeError("unexpected quickstart add-in: no customUI/customUI.xml (was --ribbon given?)")
    parts["customUI/customUI.xml"] = ribbon
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".xlam.tmp")
    with zipfile.ZipFile(tmp, "w") as zout:
        for name in names:  # the quickstart's order; [Content_Types].xml stays first
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zout.writestr(info, parts[name], compresslevel=9)
    tmp.replace(out)
    return out


def build(out: str | Path = ADDIN, *, server_url: str | None = None, ribbon: str | Path = RIBBON) -> Path:
    """Build the add-in into ``out`` (default: the committed ``addin/excel/nearmiss.xlam``)."""
    ribbon_bytes = Path(ribbon).read_bytes()
    import xml.etree.ElementTree as ET
    ET.fromstring(ribbon_bytes)  # a malformed ribbon makes Excel drop the whole tab silently
    with tempfile.TemporaryDirectory() as tmp:
        source = quickstart_xlam(Path(tmp))
        return rebuild(source, Path(out), ribbon_bytes, settings_rows(server_url))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m addin.excel.build_addin", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ADDIN), help="where to write the add-in (default: %(default)s)")
    parser.add_argument("--server-url", default=None,
                        help="bake the area's server address into the add-in's settings sheet (never a token)")
    args = parser.parse_args(argv)
    path = build(args.out, server_url=args.server_url)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
