"""Submit to area: the settings it needs and the upload to the nearmiss server.

Settings (server URL, the site's token, and the site's code, name and setting for Import) are
looked up in this order, first found wins:

1. environment variables ``NEARMISS_SERVER_URL``, ``NEARMISS_TOKEN``, ``NEARMISS_SITE_CODE``,
   ``NEARMISS_SITE_NAME``, ``NEARMISS_SETTING`` (for IT-managed machines);
2. the add-in's conf sheet (``myaddin.conf`` inside ``nearmiss.xlam``): an area lead may build
   the add-in with the area's server URL in it (``python -m addin.excel.build_addin --server-url``);
3. the user config file the installer writes (:func:`user_conf_path`): the same file the add-in's
   VBA reads ``Interpreter_Win``/``Interpreter_Mac``, ``PYTHONPATH`` and ``UDF Modules`` from.

The token is never read from a workbook's own sheet: a workbook is e-mailed and shared, a token
must not travel with it.

Why "myaddin": the add-in's VBA is xlwings' quickstart VBA, unchanged (see docs/excel-addin.md);
its ``PROJECT_NAME`` constant is "myaddin", and that constant names the conf sheet and the user
config file.  :data:`CONF_NAME` is checked against the shipped VBA by the tests.

The file format is the one xlwings' VBA reads and writes (``Write #``): one ``"KEY","VALUE"``
line per setting; keys are compared without case.

:func:`submit_workbook` posts the workbook (multipart field ``file``, ``Authorization: Bearer``)
to ``POST <server>/api/v1/submissions`` with :mod:`urllib.request` and turns every outcome
(201/200, 400, 401, 403, 413, 415, 422, 5xx, no connection, timeout) into a sentence a care
manager can act on.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONF_NAME = "myaddin"  # PROJECT_NAME of the quickstart VBA (see the module docstring)
ADDIN_NAME = "nearmiss.xlam"
ADDIN_CONF_SHEET = f"{CONF_NAME}.conf"
SERVER_KEY = "NEARMISS_SERVER_URL"
TOKEN_KEY = "NEARMISS_TOKEN"
SITE_KEYS = {"site_code": "NEARMISS_SITE_CODE", "site_name": "NEARMISS_SITE_NAME", "setting": "NEARMISS_SETTING"}
KEYS = (SERVER_KEY, TOKEN_KEY, *SITE_KEYS.values())
SUBMISSIONS_PATH = "/api/v1/submissions"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TIMEOUT_S = 60


# --- settings -------------------------------------------------------------------------------------------

def user_conf_path(platform: str | None = None, home: str | Path | None = None) -> Path:
    """Where the add-in's VBA reads its user settings (GetConfigFilePath in the xlwings VBA).

    Windows: ``%USERPROFILE%\\.myaddin\\myaddin.conf``; Mac: Excel's sandbox,
    ``~/Library/Containers/com.microsoft.Excel/Data/myaddin.conf``; elsewhere (no Excel, tests)
    ``~/.myaddin/myaddin.conf``.
    """
    platform = platform or sys.platform
    home = Path(home) if home is not None else Path.home()
    if platform == "darwin":
        return home / "Library" / "Containers" / "com.microsoft.Excel" / "Data" / f"{CONF_NAME}.conf"
    return home / f".{CONF_NAME}" / f"{CONF_NAME}.conf"


def read_conf_file(path: str | Path) -> dict[str, str]:
    """``"KEY","VALUE"`` lines as {KEY: value}, keys upper-cased; {} when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[0].strip():
            out.setdefault(row[0].strip().upper(), row[1].strip())
    return out


def conf_lines(values: Mapping[str, str]) -> str:
    """The file's text: one ``"KEY","VALUE"`` line per setting, as VBA's ``Write #`` writes it."""
    lines = []
    for key, value in values.items():
        value = str(value)
        if '"' in value or '"' in key or "\n" in value:
            raise ValueError(f"{key}: a setting cannot contain quotes or line breaks")
        lines.append(f'"{key}","{value}"')
    return "\r\n".join(lines) + "\r\n"


def write_conf_file(path: str | Path, values: Mapping[str, str]) -> Path:
    """Merge ``values`` into the conf file (other settings kept; an empty value removes a setting)."""
    path = Path(path)
    current: dict[str, str] = {}
    if path.is_file():
        for row in csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig", errors="replace"))):
            if len(row) >= 2 and row[0].strip():
                current[row[0].strip()] = row[1]
    upper = {k.upper(): k for k in current}
    for key, value in values.items():
        existing = upper.get(key.upper(), key)
        if value in (None, ""):
            current.pop(existing, None)
        else:
            current[existing] = str(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(conf_lines(current), encoding="utf-8", newline="")
    return path


def conf_sheet_values(rows: Sequence[Sequence[Any]]) -> dict[str, str]:
    """A conf sheet (keys in column A, values in column B) as {KEY: value}; blank values skipped."""
    out: dict[str, str] = {}
    for row in rows or []:
        if len(row) >= 2 and isinstance(row[0], str) and row[0].strip() and row[1] not in (None, ""):
            out.setdefault(row[0].strip().upper(), str(row[1]).strip())
    return out


@dataclass
class Settings:
    server_url: str = ""
    token: str = ""
    site_code: str = ""
    site_name: str = ""
    setting: str = ""
    sources: dict[str, str] = field(default_factory=dict)  # key -> where it was found

    @property
    def missing(self) -> list[str]:
        return [k for k, v in ((SERVER_KEY, self.server_url), (TOKEN_KEY, self.token)) if not v]


def load_settings(*, env: Mapping[str, str] | None = None, addin_rows: Sequence[Sequence[Any]] | None = None,
                  conf_path: str | Path | None = None) -> Settings:
    """The settings from the environment, then the add-in's conf sheet, then the user conf file."""
    env = os.environ if env is None else env
    layers = [
        ("environment", {k: env[k].strip() for k in KEYS if env.get(k, "").strip()}),
        (f"the add-in's {ADDIN_CONF_SHEET} sheet", conf_sheet_values(addin_rows or [])),
        (str(conf_path or user_conf_path()), read_conf_file(conf_path or user_conf_path())),
    ]
    found: dict[str, str] = {}
    sources: dict[str, str] = {}
    for where, values in layers:
        for key in KEYS:
            if key not in found and values.get(key):
                found[key] = values[key]
                sources[key] = where
    return Settings(server_url=found.get(SERVER_KEY, ""), token=found.get(TOKEN_KEY, ""),
                    site_code=found.get(SITE_KEYS["site_code"], ""), site_name=found.get(SITE_KEYS["site_name"], ""),
                    setting=found.get(SITE_KEYS["setting"], ""), sources=sources)


def missing_settings_message(settings: Settings) -> str:
    names = " and ".join("the server address" if k == SERVER_KEY else "this site's token" for k in settings.missing)
    return (f"nearmiss does not know {names} yet, so it cannot submit. Ask your area lead for the server "
            f"address and your site's token, then run the installer again (it asks for them), or add these "
            f"lines to {user_conf_path()}:\n"
            f'"{SERVER_KEY}","https://..."\n"{TOKEN_KEY}","..."')


# --- the upload --------------------------------------------------------------------------------------------

@dataclass
class SubmitResult:
    ok: bool
    status: int | None  # HTTP status; None when the server was not reached
    message: str  # for the care manager
    body: dict | None = None  # the server's JSON answer, when there was one


def submissions_url(server_url: str) -> str:
    url = (server_url or "").strip().rstrip("/")
    if not url.lower().startswith(("https://", "http://")):
        raise ValueError(f"The server address must start with https:// (got {url[:60]!r}).")
    if url.endswith(SUBMISSIONS_PATH):
        return url
    return url + SUBMISSIONS_PATH


def multipart_body(data: bytes, filename: str, boundary: str) -> bytes:
    """A multipart/form-data body with one file field called ``file``."""
    safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "") or "workbook.xlsx"
    head = (f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
            f"Content-Type: {XLSX_TYPE}\r\n\r\n").encode("utf-8")
    return head + data + f"\r\n--{boundary}--\r\n".encode("ascii")


def _server_error(raw: bytes) -> tuple[str, dict | None]:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "", None
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or ""), body
    return "", None


def explain_status(status: int, server_message: str = "") -> str:
    """What an HTTP error means for the care manager (the server's own words appended)."""
    said = f"\n\nThe server said: {server_message}" if server_message else ""
    if status == 401:
        return ("The server did not accept this site's token (it is missing, mistyped, or has been withdrawn). "
                "Ask your area lead for a new token and run the installer again." + said)
    if status == 403:
        return ("This token may not submit this workbook (it belongs to another site, or is not a site token). "
                "Check that you opened your own site's log, or ask your area lead." + said)
    if status == 413:
        return ("The workbook is larger than the server accepts. Send the site's log workbook on its own "
                "(not a copy with pictures or extra sheets), or ask your area lead." + said)
    if status in (400, 415, 422):
        return "The server could not take this workbook." + (said or " Check that it is the saved .xlsx log.")
    if status == 404:
        return ("The server address looks wrong (there is no submissions page there). Check the server address "
                "with your area lead." + said)
    if status >= 500:
        return ("The server had a problem and did not store the workbook. Try again later; if it keeps "
                "happening, tell your area lead." + said)
    return f"The server answered with an unexpected status ({status})." + said


def success_message(body: dict | None) -> str:
    if not body:
        return "Submitted to the area server."
    if body.get("duplicate"):
        return "The server already had this version of the log: nothing changed."
    counts = body.get("counts") or {}
    parts = [f"Submitted {body.get('site_code', 'the site')}'s log to the area server"]
    if counts:
        parts.append(f": {counts.get('incidents', 0)} incidents and {counts.get('actions', 0)} actions")
    text = "".join(parts) + "."
    errors, warnings = body.get("errors"), body.get("warnings")
    if errors or warnings:
        text += (f" The server found {errors or 0} errors and {warnings or 0} warnings: run Check log to see "
                 "and fix them, then submit again.")
    return text


def submit_workbook(source: str | Path | bytes, *, server_url: str, token: str, filename: str | None = None,
                    timeout: float = TIMEOUT_S,
                    opener: Callable[..., Any] = urllib.request.urlopen) -> SubmitResult:
    """Post the workbook to the server; never raises for a network or server problem."""
    try:
        url = submissions_url(server_url)
    except ValueError as exc:
        return SubmitResult(False, None, str(exc))
    if not token:
        return SubmitResult(False, None, "This site's token is not set, so the server would refuse the workbook.")
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), filename or "workbook.xlsx"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            return SubmitResult(False, None, f"The workbook file cannot be read ({exc.strerror or exc}). "
                                             "Save it on this computer and try again.")
        name = filename or path.name
    boundary = "nearmiss-" + uuid.uuid4().hex
    request = urllib.request.Request(url, data=multipart_body(data, name, boundary), method="POST", headers={
        "Authorization": f"Bearer {token}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Accept": "application/json",
        "User-Agent": "nearmiss-excel-addin",
    })
    try:
        with opener(request, timeout=timeout) as response:
            status = response.status
            raw = response.read()
    except urllib.error.HTTPError as exc:
        message, body = _server_error(exc.read() or b"")
        return SubmitResult(False, exc.code, explain_status(exc.code, message), body)
    except (TimeoutError, socket.timeout):
        return SubmitResult(False, None, f"The server at {url} did not answer within {timeout:g} seconds. "
                                         "Check the internet connection and try again later.")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return SubmitResult(False, None, f"The server at {url} did not answer within {timeout:g} seconds. "
                                             "Check the internet connection and try again later.")
        if "CERTIFICATE" in str(reason).upper():
            return SubmitResult(False, None, f"The server at {url} could not prove who it is (certificate "
                                             f"problem: {reason}). Tell your area lead; do not send data there.")
        return SubmitResult(False, None, f"Could not reach the server at {url} ({reason}). Check the internet "
                                         "connection and the server address, then try again.")
    except OSError as exc:
        return SubmitResult(False, None, f"Could not reach the server at {url} ({exc}). Check the internet "
                                         "connection and the server address, then try again.")
    message, body = _server_error(raw)
    if status in (200, 201):
        return SubmitResult(True, status, success_message(body), body)
    return SubmitResult(False, status, explain_status(status, message), body)
