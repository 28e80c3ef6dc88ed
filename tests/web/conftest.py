"""Fixtures of the web tests.

- ``app``/``client`` (and the rest of tests/server/conftest.py): Flask's test client on SQLite and
  PostgreSQL, for the security and access tests.
- ``browser``: Debian's chromium driven by Playwright (one per session and xdist worker; never
  ``playwright install``).
- ``live``: the app served on 127.0.0.1 at a free port from a background thread (werkzeug
  ``make_server``), on SQLite, with sites, users and two sites' workbooks already stored.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from server import create_app, ingest
from server.db import get_db
from tests.conftest import DATA_END
from tests.server.conftest import (  # noqa: F401  (fixtures shared with the server tests)
    ENV_VARS, app, backend, client, database_url, instance, make_app, postgres_admin, postgres_admin_url,
    server_env, workbooks,
)
from workbook_templates.builder import build_workbook
from workbook_templates.synthetic import make_site

from .support import add_sites_and_users

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh does)", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Live:
    app: Flask
    url: str
    files: dict[str, Path]  # workbooks for the browser to upload
    screenshots: Path


def _workbook(folder: Path, code: str, name: str, **kwargs) -> Path:  # noqa: ANN003
    records = make_site(code, name, end=DATA_END, seed=kwargs.pop("seed"), months=12, **kwargs)
    return build_workbook(folder / f"{code.lower()}-log.xlsx", records)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from werkzeug.serving import make_server

    root = tmp_path_factory.mktemp("live")
    files = root / "files"
    files.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for name in ENV_VARS:
            mp.delenv(name, raising=False)
        mp.setenv("NEARMISS_INSTANCE", str(root / "instance"))
        app = create_app({"TESTING": True})
        add_sites_and_users(app)
        stored = {"ELM": _workbook(files, "ELM", "Elmfield Homecare", setting="homecare", seed=3, flaw_rate=0.06),
                  "BIR": _workbook(files, "BIR", "Birchwood Supported Living", setting="supported_living", seed=5)}
        for code, path in stored.items():
            ingest.submit(get_db(app), data=path.read_bytes(), original_name=path.name, who="test", site_code=code,
                          upload_folder=app.config["UPLOAD_FOLDER"])
        upload_dir = root / "to-upload"
        upload_dir.mkdir()
        to_upload = {"OAK": _workbook(upload_dir, "OAK", "Oakview House", seed=1, flaw_rate=0.05),
                     "ELM": _workbook(upload_dir, "ELM", "Elmfield Homecare", setting="homecare", seed=4)}
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="nearmiss-live", daemon=True)
        thread.start()
        screenshots = Path(os.environ.get("NEARMISS_SCREENSHOTS") or root / "screenshots")
        screenshots.mkdir(parents=True, exist_ok=True)
        try:
            yield Live(app=app, url=f"http://127.0.0.1:{server.server_port}", files=to_upload,
                       screenshots=screenshots)
        finally:
            server.shutdown()
            thread.join(10)
            get_db(app).dispose()


@pytest.fixture
def page(browser, live: Live) -> Iterator:  # noqa: ANN001
    context = browser.new_context(accept_downloads=True, viewport={"width": 1366, "height": 900}, locale="en-GB")
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors: list[str] = []  # script errors and CSP violations show up as console errors
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    expected = ("status of 400", "status of 401")  # the pages a test provokes: a refused return, a failed login
    assert not [e for e in errors if not any(x in e for x in expected)], errors
