"""The web pages in a real browser (Debian chromium through Playwright): log in, upload, summary, return."""

from __future__ import annotations

import re

import openpyxl
import pytest
from playwright.sync_api import expect

from server.summary import Scope, get_summary, today_for
from server.db import get_db
from server.web.charts import signal_text

from .conftest import Live
from .support import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def opened(download, folder) -> openpyxl.Workbook:  # noqa: ANN001
    """The downloaded workbook, saved under its suggested name (openpyxl wants the .xlsx ending)."""
    path = folder / download.suggested_filename
    download.save_as(path)
    return openpyxl.load_workbook(path)


def log_in(page, live: Live, username: str, password: str = PASSWORD) -> None:  # noqa: ANN001
    page.goto(f"{live.url}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_site_manager_logs_in_uploads_two_workbooks_and_downloads_a_checked_copy(page, live: Live, tmp_path) -> None:  # noqa: ANN001
    log_in(page, live, "oak-manager", "not the password")
    assert page.get_by_role("alert").inner_text().startswith("The username or password is not right")
    log_in(page, live, "oak-manager")
    page.wait_for_url(f"{live.url}/sites/OAK")
    assert page.get_by_role("heading", level=1).inner_text() == "Oakview House (OAK)"
    assert "No workbook has been received from this site yet." in page.content()

    page.get_by_role("link", name="Send workbooks").click()
    page.wait_for_url(f"{live.url}/upload")
    dropped = page.evaluate_handle("""() => {
        const files = new DataTransfer();
        files.items.add(new File(["x"], "dropped.xlsx"));
        return files; }""")
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})  # drag and drop fills the file input
    assert page.locator("#chosen li").all_inner_texts() == ["dropped.xlsx (1 KB)"]
    page.set_input_files("#files", [str(live.files["OAK"]), str(live.files["ELM"])])
    assert page.locator("#chosen li").count() == 2  # the page lists what was chosen
    page.get_by_role("button", name="Check and send").click()
    results = page.locator("article.result")
    expect(results).to_have_count(2, timeout=30_000)  # waits for the answer page: click() returns once the post is sent
    oak, elm = results.nth(0), results.nth(1)
    assert oak.locator("h3").inner_text() == "oak-log.xlsx"
    assert "Stored as OAK's current log" in oak.inner_text()
    rows = oak.locator("table.findings-table tbody tr")
    assert rows.count() > 0  # the flawed workbook's findings, each with its cell and message
    assert oak.locator("table.findings-table tbody tr.sev-error").count() > 0
    first = rows.first.locator("td")
    assert first.nth(2).inner_text()  # a cell address
    assert first.nth(5).inner_text()  # what to do
    assert "Not stored." in elm.inner_text() and "This workbook is for site ELM" in elm.inner_text()

    with page.expect_download() as info:
        oak.get_by_role("link", name="Download checked copy").click()
    download = info.value
    assert download.suggested_filename == "oak-log-checked.xlsx"
    wb = opened(download, tmp_path)
    assert "Checks" in wb.sheetnames and "Log" in wb.sheetnames
    checks = wb["Checks"]
    listed = [r for r in checks.iter_rows(min_row=6, values_only=True) if r[0] or r[5]]
    assert len(listed) == rows.count()


def test_area_lead_sees_the_summary_with_svg_charts(page, live: Live, tmp_path) -> None:  # noqa: ANN001
    log_in(page, live, "north-lead")
    page.wait_for_url(f"{live.url}/areas/North")
    assert page.get_by_role("heading", level=1).inner_text() == "North area"

    with live.app.app_context(), get_db(live.app).sessions() as session:
        summary = get_summary(session, Scope(area="North"), today=today_for(live.app))
    charts = page.locator("svg.xmr")
    assert charts.count() == len(summary["key_measures"]) == 8
    for m in summary["key_measures"]:
        figure = page.locator(f"#chart-{m['name']}-fig")
        svg = figure.locator("svg.xmr")
        assert svg.get_attribute("role") == "img"
        assert svg.locator("title").first.text_content().endswith("SPC chart")
        assert "Monthly" in svg.locator("desc").text_content()
        assert svg.locator("polyline.value").count() >= 1 and svg.locator("polyline.mean").count() >= 1
        assert svg.locator("circle.pt").count() == sum(v is not None for v in m["values"])
        assert signal_text(m) in figure.locator("figcaption").inner_text()
    special = page.locator("circle.special-cause-concern, circle.special-cause-improvement")
    flagged = sum(t in ("special_cause_concern", "special_cause_improvement")
                  for m in summary["key_measures"] for t in m["spc"]["point_type"])
    assert special.count() == flagged

    # the sites that have not sent their log this month, and the data quality table
    notice = page.get_by_role("region", name=re.compile(r"not sent (its|their) log")).inner_text()
    assert "ASH" in summary["not_submitted_this_month"]
    for code in summary["not_submitted_this_month"]:
        assert f"{summary['submissions'][code]['site_name']} ({code})" in notice
    assert page.get_by_role("heading", name="Data quality").is_visible()
    assert page.get_by_role("table", name="Findings by check and site").is_visible()

    shot = live.screenshots / "north-summary.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    with page.expect_download() as info:
        page.locator("#governance-link").click()
    wb = opened(info.value, tmp_path)
    assert "Summary" in wb.sheetnames and "Data quality" in wb.sheetnames


def test_area_lead_downloads_a_return(page, live: Live, tmp_path) -> None:  # noqa: ANN001
    log_in(page, live, "north-lead")
    page.get_by_role("link", name="Commissioner return").first.click()
    page.wait_for_url(f"{live.url}/returns")
    page.get_by_label("Period").fill("2099-Q1")  # well formed (the browser checks the form) but not started
    page.get_by_role("button", name="Download the return (.xlsx)").click()
    assert "has not started yet" in page.get_by_role("alert").inner_text()  # a clear message, not a broken file

    page.get_by_label("Period").fill("2026-Q3")
    page.get_by_label("Suppress small numbers").check()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the return (.xlsx)").click()
    download = info.value
    assert download.suggested_filename == "return-North-2026-Q3.xlsx"
    wb = opened(download, tmp_path)
    ws = wb["Return"]
    assert "Q3 2026" in ws["A1"].value
    header, *body = ws[wb.defined_names["tbl_category_harm"].attr_text.split("!")[1].replace("$", "")]
    values = [c.value for row in body for c in row[1:]]
    assert values and all(v == "*" or (isinstance(v, int) and v % 5 == 0) for v in values), values
