"""A real ``nearmiss serve`` for the tests that need one: a subprocess on a free 127.0.0.1 port.

:class:`LiveServer` starts ``nearmiss serve`` (waitress) with a given environment (the test's
instance folder and database), waits for ``/healthz``, and always stops it: ``stop()`` ends
the process and then its whole process group (the fork server and any reader processes), so a
test leaves nothing running.  ``kill()`` is SIGKILL, as a crash would be.  Requests go to
127.0.0.1 only (:func:`http`).

Also here: the independent expectations of a workbook (what plain pandas reads from the file)
and the checks that every stored submission is whole (its rows, its file, no ``.part`` files).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.models import Action, ExposureMonth, Incident, SiteSheet, Submission

START_TIMEOUT_S = 60
MONTHS = [f"{m:%Y-%m}" for m in pd.date_range("2025-11-01", "2026-10-01", freq="MS")]  # 12 months to DATA_END


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nearmiss_cmd(*args: str) -> list[str]:
    exe = shutil.which("nearmiss")
    return [exe, *args] if exe else [sys.executable, "-m", "server.cli", *args]


class LiveServer:
    """``nearmiss serve --host 127.0.0.1 --port <free> --threads N`` with ``env``; its output in ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path, *, threads: int = 8) -> None:
        self.env, self.log_path, self.threads = env, log_path, threads
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiveServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                nearmiss_cmd("serve", "--host", "127.0.0.1", "--port", str(self.port), "--threads", str(self.threads)),
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # its own process group: stop() ends its children too
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"nearmiss serve did not start:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc is None or self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"the server never logged {text!r}:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server process alone (a crash), then clear away what it leaves running."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._end_group()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._end_group()

    def _end_group(self) -> None:
        # The fork server and reader processes of the server (same process group) must not outlive it.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_environment(instance: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    """os.environ without any NEARMISS_* setting, plus this test's instance folder and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEARMISS_")}
    env.update(NEARMISS_INSTANCE=str(instance), NEARMISS_SECURE_COOKIES="0", **extra)
    if database_url:
        env["NEARMISS_DATABASE_URL"] = database_url
    return env


# --- HTTP on 127.0.0.1 -----------------------------------------------------------------------------

def multipart(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    body.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
               "Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet\r\n\r\n".encode())
    body.write(data)
    body.write(f"\r\n--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def http_bytes(method: str, url: str, *, token: str, body: bytes | None = None, content_type: str | None = None,
               timeout: float = 120) -> tuple[int, bytes]:
    """One request to the loopback server with a bearer token: the status and the body as sent."""
    assert url.startswith("http://127.0.0.1:"), "loopback only"
    request = urllib.request.Request(url, data=body, method=method, headers={"Authorization": f"Bearer {token}"})
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http(method: str, url: str, *, token: str, body: bytes | None = None, content_type: str | None = None,
         timeout: float = 120) -> tuple[int, dict]:
    """:func:`http_bytes` with the body read as JSON."""
    status, raw = http_bytes(method, url, token=token, body=body, content_type=content_type, timeout=timeout)
    return status, json.loads(raw or b"{}")


def upload(server: LiveServer, token: str, data: bytes, name: str, timeout: float = 120) -> tuple[int, dict]:
    body, content_type = multipart(data, name)
    return http("POST", f"{server.url}/api/v1/submissions", token=token, body=body, content_type=content_type,
                timeout=timeout)


# --- what pandas reads from a workbook -----------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    """A workbook's figures read with plain pandas (not the product's reader)."""

    code: str
    version: int
    data: bytes
    sha256: str
    incidents: int
    actions: int
    exposure_months: int
    monthly: dict[str, list[int]]  # all_reports / near_misses / incidents per month of MONTHS
    by_category: dict[str, int]
    action_status: dict[str, int]


def expected_from_file(path: Path, code: str, version: int) -> Expected:
    sheets = pd.read_excel(path, sheet_name=["Log", "Actions", "Site"], engine="openpyxl")
    log = sheets["Log"].dropna(subset=["Incident ref"])
    actions = sheets["Actions"].dropna(subset=["Action ref"])
    site = sheets["Site"]
    month_column = next(c for c in site.columns if str(c).strip().lower() == "month")
    month = pd.to_datetime(log["Date occurred"]).dt.to_period("M").astype(str)
    kind = log["Near miss or incident"]

    def per_month(mask: pd.Series) -> list[int]:
        counts = month[mask].value_counts()
        return [int(counts.get(m, 0)) for m in MONTHS]

    data = path.read_bytes()
    return Expected(
        code=code, version=version, data=data, sha256=hashlib.sha256(data).hexdigest(),
        incidents=len(log), actions=len(actions), exposure_months=int(site[month_column].notna().sum()),
        monthly={"all_reports": per_month(pd.Series(True, index=log.index)), "near_misses": per_month(kind == "near_miss"),
                 "incidents": per_month(kind == "incident")},
        by_category={str(k): int(v) for k, v in log["Category"].value_counts().items()},
        action_status={str(k): int(v) for k, v in actions["Status"].value_counts().items()},
    )


def add_up(expected: list[Expected]) -> dict:
    """The figures of several workbooks together, in the summary's terms."""
    monthly = {k: [sum(e.monthly[k][i] for e in expected) for i in range(len(MONTHS))]
               for k in ("all_reports", "near_misses", "incidents")}
    by_category: dict[str, int] = {}
    status: dict[str, int] = {}
    for e in expected:
        for k, v in e.by_category.items():
            by_category[k] = by_category.get(k, 0) + v
        for k, v in e.action_status.items():
            status[k] = status.get(k, 0) + v
    return {"monthly": monthly, "total": sum(e.incidents for e in expected), "by_category": by_category,
            "actions": sum(e.actions for e in expected), "action_status": status}


def summary_figures(block: dict) -> dict:
    """The same figures from a summary block (area or per_site) of GET /api/v1/summary."""
    rep = block["reports"]
    now = block["actions"]["now"]
    return {"monthly": {k: rep[k] for k in ("all_reports", "near_misses", "incidents")}, "total": rep["total"],
            "by_category": {c["category"]: c["total"] for c in block["by_category"] if c["total"]},
            "actions": now["total"],
            "action_status": {s: now[s] for s in ("open", "in_progress", "done", "cancelled") if now[s]}}


# --- whole submissions ---------------------------------------------------------------------------------

def check_whole(session: Session, upload_folder: Path) -> list[Submission]:
    """Assert every submission is whole and nothing is left over; return the submissions.

    Each submission has as many incident, action and exposure rows as it says, one Site sheet
    row and its stored file (whose SHA-256 is the one recorded); no row belongs to no
    submission; the uploads folder holds exactly the submissions' files and no ``.part`` file.
    """
    submissions = session.scalars(select(Submission).order_by(Submission.id)).all()
    ids = [s.id for s in submissions]

    def per_submission(model) -> dict[int, int]:  # noqa: ANN001
        rows = session.execute(select(model.submission_id, func.count()).group_by(model.submission_id)).all()
        return {sid: n for sid, n in rows}

    incidents, actions = per_submission(Incident), per_submission(Action)
    exposure, sheets = per_submission(ExposureMonth), per_submission(SiteSheet)
    for counts in (incidents, actions, exposure, sheets):
        assert set(counts) <= set(ids), f"rows of no submission: {set(counts) - set(ids)}"
    for s in submissions:
        assert incidents.get(s.id, 0) == s.n_incidents, (s.id, incidents.get(s.id), s.n_incidents)
        assert actions.get(s.id, 0) == s.n_actions, (s.id, actions.get(s.id), s.n_actions)
        assert exposure.get(s.id, 0) > 0 and sheets.get(s.id) == 1, (s.id, exposure.get(s.id), sheets.get(s.id))
        stored = upload_folder / s.stored_name
        assert stored.is_file(), f"submission {s.id} has no file {s.stored_name}"
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == s.file_sha256
    names = sorted(p.name for p in upload_folder.iterdir())
    assert not [n for n in names if n.endswith(".part")], names
    assert names == sorted(s.stored_name for s in submissions)
    return list(submissions)
