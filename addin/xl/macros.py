"""The ribbon's actions: Check log, Refresh trends, Import existing log, Submit to area.

Each action is a plain function over an :class:`~.excel_io.ExcelIO` adapter (the "body"), so
the tests run it on Linux against an openpyxl workbook; the ``@xw.sub`` entry points only build
the xlwings adapter from ``xw.Book.caller()`` and call the body.

The add-in's ribbon has one button (see docs/excel-addin.md for why): it runs the quickstart
VBA's ``RunMain``, i.e. ``import nearmiss; nearmiss.main()``, and :func:`main` asks which action
to run (:func:`choose_action`, at most three yes/no/cancel questions in Excel's own message box).
Each action can also be run directly from VBA, e.g. from a button a user adds to a .xlsm::

    RunPython "import addin.xl.macros as m; m.check_log()"
    RunPython "import addin.xl.macros as m; m.refresh_trends()"
    RunPython "import addin.xl.macros as m; m.import_log()"
    RunPython "import addin.xl.macros as m; m.submit_to_area()"

The actions read the workbook as it is on screen (unsaved edits included): the Log, Actions and
Site sheets' values are copied into an in-memory .xlsx and read by :func:`addin.reader.read_workbook`,
so the add-in, the command line and the server read a workbook the same way and report the
same cells.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import tempfile
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xlwings as xw

from workbook_templates.codelists import CODE_LISTS
from workbook_templates.contract import ACTIONS, INCIDENTS, SITE_SHEET

from . import checked_copy, trends_sheet
from .excel_io import ExcelIO, XlwingsIO, plain_value, safe_text
from .submit import SubmitResult, load_settings, missing_settings_message, submit_workbook

TITLE = "nearmiss"
LABELS = {
    "check_log": "Check log",
    "refresh_trends": "Refresh trends",
    "import_log": "Import existing log",
    "submit_to_area": "Submit to area",
}
LIVE_SHEETS = (INCIDENTS.sheet, ACTIONS.sheet, SITE_SHEET)
NOT_A_LOG = ("This workbook is not a nearmiss log (it has no '{sheet}' sheet). Open your site's log first, or use "
             "Import existing log to bring an old log into a new nearmiss workbook.")
SITE_CODE = re.compile(r"^[A-Z0-9]{2,8}$")
MAX_REVIEW_LINES = 8


# --- reading the workbook on screen ---------------------------------------------------------------------

def find_sheet(xl: ExcelIO, name: str) -> str | None:
    """The workbook's own spelling of sheet ``name`` (any case), or None."""
    wanted = name.strip().casefold()
    return next((s for s in xl.sheet_names if s.strip().casefold() == wanted), None)


def is_log(xl: ExcelIO) -> bool:
    return find_sheet(xl, INCIDENTS.sheet) is not None


def _cell_value(value: Any) -> Any:
    value = plain_value(value)
    if isinstance(value, dt.datetime) and value.year < 1900:
        return value.time()  # Excel hands a time-only cell over as 30/12/1899 hh:mm
    return value


def live_workbook_bytes(xl: ExcelIO) -> bytes:
    """The Log, Actions and Site sheets' values as they are on screen, as an .xlsx in memory.

    Text goes in as text (never a formula); everything else (formatting, other sheets) is left out.
    """
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for wanted in LIVE_SHEETS:
        actual = find_sheet(xl, wanted)
        if actual is None:
            continue
        ws = wb.create_sheet(actual)
        for r, row in enumerate(xl.read_sheet(actual), start=1):
            for c, value in enumerate(row, start=1):
                value = _cell_value(value)
                if value is None or value == "":
                    continue
                cell = ws.cell(row=r, column=c)
                if isinstance(value, str):
                    cell.value = safe_text(value)
                    cell.data_type = "s"
                else:
                    cell.value = value
                    if isinstance(value, dt.datetime):
                        cell.number_format = "dd/mm/yyyy"
                    elif isinstance(value, dt.time):
                        cell.number_format = "hh:mm"
    if not wb.worksheets:
        wb.create_sheet("Sheet1")
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def read_live(xl: ExcelIO):
    """:func:`addin.reader.read_workbook` over the workbook on screen."""
    from addin.reader import read_workbook

    return read_workbook(live_workbook_bytes(xl), name=xl.name)


def live_findings(xl: ExcelIO, *, today: dt.date | None = None) -> list:
    """Every finding for the workbook on screen (structure and rules), as validate_workbook gives for a file."""
    from addin.validate import validate_result

    return validate_result(read_live(xl), today=today)


# --- the four actions ---------------------------------------------------------------------------------------

def check_log_body(xl: ExcelIO, *, today: dt.date | None = None, now: dt.datetime | None = None) -> list:
    """Check log: findings to the Checks sheet (links to the cells), the cells highlighted."""
    if not is_log(xl):
        xl.alert(NOT_A_LOG.format(sheet=INCIDENTS.sheet), TITLE)
        return []
    findings = live_findings(xl, today=today)
    checked_copy.write_checks(xl, findings, file=xl.name, checked_at=now)
    line = checked_copy.summary_line(findings, xl.name, now or dt.datetime.now())
    more = " See the Checks sheet: click a cell reference to go to it." if findings else ""
    xl.alert(line + more, TITLE)
    return findings


def refresh_trends_body(xl: ExcelIO, *, today: dt.date | None = None) -> list:
    """Refresh trends: the key measures' XmR tables and charts on the Trends sheet."""
    if not is_log(xl):
        xl.alert(NOT_A_LOG.format(sheet=INCIDENTS.sheet), TITLE)
        return []
    today = today or dt.date.today()
    result = read_live(xl)
    results = trends_sheet.measures_for(result.records, today=today)
    site = result.records.site.get("site_name") or result.records.site.get("site_code") or ""
    trends_sheet.write_trends(xl, results, site=str(site), today=today)
    signals = [r.signal for r in results if r.latest_point_type not in (None, "common_cause")]
    if not any(r.latest_month is not None for r in results):
        xl.alert("The Log has no records yet, so the Trends sheet has no charts: refresh it once there are some.",
                 TITLE)
        return results
    text = f"The Trends sheet now shows {len(results)} measures up to {today:%B %Y}."
    if signals:
        text += " Signals in the latest month:\n- " + "\n- ".join(signals)
    else:
        text += " No measure shows a signal in its latest month."
    xl.alert(text, TITLE)
    return results


def _ask_site(xl: ExcelIO, settings) -> tuple[str, str, str] | None:
    code = settings.site_code or xl.ask_text("Site code for the new workbook (2-8 capital letters or digits, "
                                             "e.g. OAK):", TITLE, "")
    if code is None:
        return None
    code = code.strip().upper()
    if not SITE_CODE.match(code):
        xl.alert(f"'{code[:20]}' is not a site code: use 2 to 8 capital letters or digits, e.g. OAK.", TITLE)
        return None
    name = settings.site_name or xl.ask_text("Site name (e.g. Oakview House):", TITLE, "")
    if name is None or not name.strip():
        return None
    setting = (settings.setting or xl.ask_text(
        "Setting: " + ", ".join(CODE_LISTS["setting"]), TITLE, "care_home") or "").strip().lower()
    if setting not in CODE_LISTS["setting"]:
        xl.alert(f"'{setting[:30]}' is not a setting: use one of {', '.join(CODE_LISTS['setting'])}.", TITLE)
        return None
    return code, name.strip(), setting


def output_path(source: str | Path) -> Path:
    """"<folder>/<name> - nearmiss.xlsx" beside the old log, numbered when that exists."""
    source = Path(source)
    candidate = source.with_name(f"{source.stem} - nearmiss.xlsx")
    n = 2
    while candidate.exists():
        candidate = source.with_name(f"{source.stem} - nearmiss ({n}).xlsx")
        n += 1
    return candidate


def import_log_body(xl: ExcelIO, *, source: str | Path | None = None, settings=None,
                    today: dt.date | None = None) -> Path | None:
    """Import existing log: convert an old log into a new nearmiss workbook beside it, and open that."""
    from addin.convert import MappingFileError, convert_legacy, write_conversion
    from addin.legacy import LegacyReadError
    from addin.pseudonym import PseudonymKeyError

    if source is None and not is_log(xl) and xl.path:
        answer = xl.alert(f"Import {xl.name} into a new nearmiss workbook?\n\nYes: this workbook (as last saved)\n"
                          "No: choose another file\nCancel: do nothing", TITLE, "yes_no_cancel")
        if answer == "cancel":
            return None
        source = xl.path if answer == "yes" else None
    if source is None:
        source = xl.choose_file("Choose the existing log to import (an Excel workbook)")
        if not source:
            return None
    settings = settings if settings is not None else load_settings(addin_rows=_addin_rows(xl))
    site = _ask_site(xl, settings)
    if site is None:
        return None
    code, name, setting = site
    try:
        result = convert_legacy(source, site_code=code, site_name=name, setting=setting, today=today)
        out = write_conversion(result, output_path(source))
    except PseudonymKeyError as exc:
        xl.alert(f"The old log has a column of people's names; nearmiss replaces them with pseudonymous refs and "
                 f"needs your provider's pseudonym key for that. Ask your area lead.\n\n({exc})", TITLE)
        return None
    except (LegacyReadError, MappingFileError, FileExistsError, OSError, ValueError) as exc:
        xl.alert(f"The old log could not be imported: {exc}", TITLE)
        return None
    lines = result.needs_review
    text = (f"Imported {result.rows_out} rows from {Path(source).name} into {out.name} (in the same folder); "
            f"{sum(result.rows_skipped.values())} blank or total rows were skipped.")
    if lines:
        shown = "\n- ".join(lines[:MAX_REVIEW_LINES])
        more = f"\n(and {len(lines) - MAX_REVIEW_LINES} more)" if len(lines) > MAX_REVIEW_LINES else ""
        text += f"\n\nPlease check:\n- {shown}{more}\n\nThen run Check log in the new workbook."
    xl.open_workbook(str(out))
    xl.alert(text, TITLE)
    return out


def _addin_rows(xl: ExcelIO) -> list[list]:
    getter = getattr(xl, "addin_conf_rows", None)
    try:
        return getter() if callable(getter) else []
    except Exception:  # noqa: BLE001 - settings then come from the environment and the conf file
        return []


def submit_body(xl: ExcelIO, *, settings=None, opener: Callable[..., Any] = urllib.request.urlopen,
                timeout: float = 60) -> SubmitResult | None:
    """Submit to area: save the workbook and post it to the area server with the site's token."""
    if not is_log(xl):
        xl.alert(NOT_A_LOG.format(sheet=INCIDENTS.sheet), TITLE)
        return None
    settings = settings if settings is not None else load_settings(addin_rows=_addin_rows(xl))
    if settings.missing:
        xl.alert(missing_settings_message(settings), TITLE)
        return None
    if not xl.path:
        xl.alert("Save the workbook on this computer first (File > Save As), then submit it.", TITLE)
        return None
    answer = xl.alert(f"Save {xl.name} and send it to the area server ({settings.server_url})?", TITLE, "ok_cancel")
    if answer != "ok":
        return None
    xl.save()
    result = submit_workbook(xl.path, server_url=settings.server_url, token=settings.token, filename=xl.name,
                             opener=opener, timeout=timeout)
    xl.alert(result.message, TITLE)
    return result


BODIES: dict[str, Callable[..., Any]] = {
    "check_log": check_log_body,
    "refresh_trends": refresh_trends_body,
    "import_log": import_log_body,
    "submit_to_area": submit_body,
}


# --- the chooser behind the single ribbon button ---------------------------------------------------------

def chooser_questions(log: bool) -> list[tuple[str, str, str | None, str | None]]:
    """The chooser's questions: (message, buttons, action on Yes/OK, action on No)."""
    if not log:
        return [("This workbook is not a nearmiss log, so only Import existing log can run here.\n\n"
                 "OK: Import existing log (make a new nearmiss workbook from an old log)\nCancel: do nothing",
                 "ok_cancel", "import_log", None)]
    return [
        ("What should nearmiss do?\n\nYes: Check log (list problems on a Checks sheet and highlight the cells)\n"
         "No: more choices (Refresh trends, Import existing log, Submit to area)\nCancel: nothing",
         "yes_no_cancel", "check_log", None),
        ("Yes: Refresh trends (charts of the key measures on the Trends sheet)\n"
         "No: more choices (Import existing log, Submit to area)\nCancel: nothing",
         "yes_no_cancel", "refresh_trends", None),
        ("Yes: Import existing log (make a new nearmiss workbook from an old log)\n"
         "No: Submit to area (send this workbook to the area server)\nCancel: nothing",
         "yes_no_cancel", "import_log", "submit_to_area"),
    ]


def choose_action(ask: Callable[[str, str], str], *, log: bool = True) -> str | None:
    """Which action the person picks; ``ask(message, buttons)`` returns "yes", "no", "ok" or "cancel"."""
    for message, buttons, on_yes, on_no in chooser_questions(log):
        answer = (ask(message, buttons) or "cancel").lower()
        if answer in ("yes", "ok"):
            return on_yes
        if answer != "no":
            return None
        if on_no is not None:
            return on_no
    return None


def main_body(xl: ExcelIO, **kwargs: Any) -> str | None:
    """The ribbon button: ask which action, then run it; returns the action's name (None if cancelled)."""
    choice = choose_action(lambda message, buttons: xl.alert(message, TITLE, buttons), log=is_log(xl))
    if choice is not None:
        BODIES[choice](xl, **kwargs.get(choice, {}))
    return choice


# --- xlwings entry points (RunPython) -------------------------------------------------------------------

def caller_io() -> XlwingsIO:
    """The adapter over the workbook that called Python (``xw.Book.caller()``)."""
    return XlwingsIO(xw.Book.caller())


def _run(body: Callable[[ExcelIO], Any], xl: ExcelIO | None = None) -> Any:
    xl = xl or caller_io()
    try:
        return body(xl)
    except Exception as exc:  # noqa: BLE001 - a person gets a message, the details go to a log file
        log = Path(tempfile.gettempdir()) / "nearmiss-addin-error.log"
        try:
            log.write_text(traceback.format_exc(), encoding="utf-8")
        except OSError:
            pass
        xl.alert(f"nearmiss stopped unexpectedly ({type(exc).__name__}: {str(exc)[:300]}). Nothing else was "
                 f"changed. The details are in {log}: please send that file to your area lead.", TITLE)
        return None


@xw.sub
def main():
    """The ribbon button (RunMain): choose an action and run it."""
    return _run(main_body)


@xw.sub
def check_log():
    return _run(check_log_body)


@xw.sub
def refresh_trends():
    return _run(refresh_trends_body)


@xw.sub
def import_log():
    return _run(import_log_body)


@xw.sub
def submit_to_area():
    return _run(submit_body)


ENTRY_POINTS = {"check_log": check_log, "refresh_trends": refresh_trends, "import_log": import_log,
                "submit_to_area": submit_to_area}
