"""Headless LibreOffice as the independent spreadsheet that opens and recalculates our workbooks.

LibreOffice does not recalculate .xlsx formulas on load by default, so a
private profile turns "always recalculate" on (../shared/spec/testing.md).
One LibreOffice process per profile at a time: each pytest worker gets its own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import openpyxl

RECALC_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse">\
<value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" oor:op="fuse">\
<value>0</value></prop></item>
</oor:items>
"""


class LibreOffice:
    def __init__(self, profile_dir: Path):
        self.binary = shutil.which("soffice") or shutil.which("libreoffice")
        if not self.binary:
            raise RuntimeError("LibreOffice is not installed: run scripts/setup.sh --test")
        self.profile = profile_dir
        (profile_dir / "user").mkdir(parents=True, exist_ok=True)
        (profile_dir / "user" / "registrymodifications.xcu").write_text(RECALC_PROFILE)

    def convert(self, paths: list[Path], outdir: Path, to: str = "xlsx", timeout: float = 180) -> list[Path]:
        """Open each file in LibreOffice, recalculate, and save it as ``to`` in ``outdir``."""
        outdir.mkdir(parents=True, exist_ok=True)
        cmd = [self.binary, f"-env:UserInstallation=file://{self.profile.resolve()}", "--headless", "--norestore",
               "--convert-to", to, "--outdir", str(outdir), *map(str, paths)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        out = [outdir / (Path(p).stem + "." + to.split(":")[0]) for p in paths]
        missing = [p for p in out if not p.exists()]
        if proc.returncode != 0 or missing:
            raise RuntimeError(f"LibreOffice could not convert {missing or paths}: {proc.stdout}\n{proc.stderr}")
        return out

    def recalculate(self, path: Path, outdir: Path) -> openpyxl.Workbook:
        """The workbook as LibreOffice computed it: values only, read back with openpyxl."""
        [converted] = self.convert([path], outdir)
        return openpyxl.load_workbook(converted, data_only=True)
