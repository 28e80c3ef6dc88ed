"""Hostile and broken uploads through POST /api/v1/submissions, read the way the server reads them.

Every file here is built in the test (zipfile, xlsxwriter, os.urandom, msoffcrypto), most of them
from a real nearmiss workbook, and is small on disk.  Each goes through the Flask test client
with a site token and the server's own isolated parse path (a forkserver worker process with a
memory cap and a time limit; the parsers are blocked in this process, so a parse here would fail
the test).  Each answer is checked for:

- its status (422 for a file that is not a usable workbook, 413 over the upload limit) and a
  JSON message in plain words that says what to do (key words per case);
- the time (a generous 10 s: a safety check, not a performance target);
- memory: this process's peak resident memory (VmHWM, reset before the request) grows little,
  and the worker's own peak, which it reports to the log, stays within its cap;
- nothing stored: the rows of every table but the audit log, and the upload folder (no file,
  no ``.part`` leftover);
- ``/healthz`` still answering 200.

Two workbooks that look odd but are usable (an .xlsm with macros, formulas without saved
values) are stored, with findings that say so.  The last tests make the worker itself blow up
(memory, time, a bug) and check the answer and that the server goes on serving.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msoffcrypto.format.ooxml
import pytest
import xlsxwriter
from flask import Flask
from sqlalchemy import func, inspect, select, table

import addin.reader as reader
from server import ingest
from server.config import isolation
from server.db import get_db
from server.models import AuditEvent

from .support import site_token, upload

pytestmark = pytest.mark.fresh_parse  # every upload read for real, in the worker process

SECONDS = 10.0  # a safety bound per upload, not a performance target
PARENT_GROWTH_MB = 64  # this process's peak resident memory may grow by this much for one upload
WORKER_GROWTH_MB = 768  # the worker's peak over its resident memory at start (it refuses in the pre-check)
SAFE = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
MAIN_NS = b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'


# --- building the files ------------------------------------------------------------------------------

def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def rezip(data: bytes, edits: dict[str, bytes | Callable[[bytes], bytes]] | None = None,
          extra: dict[str, bytes] | None = None, *, rename: dict[str, str] | None = None) -> bytes:
    """A copy of a zip with members replaced (bytes or a function of the old bytes), renamed or added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            body = zin.read(info)
            edit = (edits or {}).get(info.filename)
            if edit is not None:
                body = edit(body) if callable(edit) else edit
            zout.writestr((rename or {}).get(info.filename, info.filename), body)
        for name, body in (extra or {}).items():
            zout.writestr(name, body)
    return out.getvalue()


def log_part(data: bytes) -> str:
    """The zip member of the Log sheet (from the workbook's relationships, as the pre-check finds it)."""
    return reader.precheck(data, sheets=[]).sheets["Log"]


def add_to_log(data: bytes, rows: bytes, *, dimension: bytes | None = None) -> bytes:
    """The workbook with ``rows`` appended to the Log's sheetData (and its <dimension> replaced if given)."""
    def edit(xml: bytes) -> bytes:
        if dimension is not None:
            xml = re.sub(rb'<dimension ref="[^"]*"/>', b'<dimension ref="' + dimension + b'"/>', xml)
        return xml.replace(b"</sheetData>", rows + b"</sheetData>")
    return rezip(data, {log_part(data): edit})


def last_log_row(data: bytes) -> int:
    return max(int(n) for n in re.findall(rb'<row r="(\d+)"', members(data)[log_part(data)]))


def patch_central_and_local(data: bytes, name: str, **fields: int) -> bytes:
    """Overwrite a member's flags, CRC or declared uncompressed size in both its local and central headers."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name)
        central = zf.start_dir
    local_at = {"flags": ("<H", 6), "crc": ("<I", 14), "file_size": ("<I", 22)}
    central_at = {"flags": ("<H", 8), "crc": ("<I", 16), "file_size": ("<I", 24)}
    for key, value in fields.items():
        form, offset = local_at[key]
        struct.pack_into(form, out, info.header_offset + offset, value)
    at = central
    while out[at:at + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack_from("<HHH", out, at + 28)
        if out[at + 46:at + 46 + n].decode() == name:
            for key, value in fields.items():
                form, offset = central_at[key]
                struct.pack_into(form, out, at + offset, value)
        at += 46 + n + m + k
    return bytes(out)


def zip_bomb_declared(base: bytes, tmp: Path) -> bytes:
    """300 MB of zeros in one member (about 300 KB on disk): over the declared-size limit per member."""
    out = io.BytesIO(base)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as zf, \
            zf.open("xl/media/image1.png", "w", force_zip64=True) as fh:
        chunk = bytes(2**20)
        for _ in range(300):
            fh.write(chunk)
    return out.getvalue()


def zip_bomb_ratio(base: bytes, tmp: Path) -> bytes:
    """A 40 MB sheet of spaces compressed about 1000 times over: under the size limits, over the ratio."""
    return rezip(base, extra={"xl/worksheets/sheet99.xml": b" " * (40 * 2**20)})


def zip_bomb_lying_size(base: bytes, tmp: Path) -> bytes:
    """The Log sheet says it unpacks to 1,000 bytes; it unpacks to 30 MB (the readers stop at the declared size)."""
    part = log_part(base)
    bomb = rezip(base, {part: lambda xml: xml.replace(b"<sheetData>", b"<sheetData>" + b" " * (30 * 2**20))})
    return patch_central_and_local(bomb, part, file_size=1000)


def billion_laughs(base: bytes, tmp: Path) -> bytes:
    lol = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
           + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                      for i in range(1, 10))
           + b"]><worksheet " + MAIN_NS + b"><sheetData><row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>&lol9;"
           + b"</t></is></c></row></sheetData></worksheet>")
    return rezip(base, {log_part(base): lol})


def external_entity(base: bytes, tmp: Path) -> bytes:
    """XXE in the workbook part: a sheet name that would be /etc/passwd."""
    def edit(xml: bytes) -> bytes:
        xml = xml.replace(b"?>", b'?><!DOCTYPE wb [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', 1)
        return xml.replace(b'name="Guide"', b'name="&xxe;"', 1)
    return rezip(base, {"xl/workbook.xml": edit})


def external_entity_utf16(base: bytes, tmp: Path) -> bytes:
    """The same in the shared strings, written in UTF-16 (a byte search for "<!DOCTYPE" does not see it)."""
    evil = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE sst [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>&xxe;</t></si></sst>')
    return rezip(base, {"xl/sharedStrings.xml": evil.encode("utf-16")})


def million_rows(base: bytes, tmp: Path) -> bytes:
    """The real Log with empty rows down to Excel's last row, 1,048,576 (about 1 MB on disk)."""
    first = last_log_row(base) + 1
    rows = b"".join(b'<row r="%d"/>' % r for r in range(first, 1_048_577))
    return add_to_log(base, rows)


def dimension_huge(base: bytes, tmp: Path) -> bytes:
    """The Log's <dimension> claims A1:XFD1048576 (calamine sizes its grid by it: 512 GiB)."""
    return add_to_log(base, b"", dimension=b"A1:XFD1048576")


def dimension_understated(base: bytes, tmp: Path) -> bytes:
    """The <dimension> says A1:C3 while rows run on to 60,000."""
    first = last_log_row(base) + 1
    rows = b"".join(b'<row r="%d"><c r="A%d"><v>1</v></c></row>' % (r, r) for r in range(first, 60_001))
    return add_to_log(base, rows, dimension=b"A1:C3")


def calamine_crash(base: bytes, tmp: Path) -> bytes:
    """The 2 KB file of security.md: cells at A1 and XFD1048576 on a sheet called Log."""
    path = tmp / "crash.xlsx"
    workbook = xlsxwriter.Workbook(str(path), SAFE)
    sheet = workbook.add_worksheet("Log")
    sheet.write_string(0, 0, "Incident ref")
    sheet.write_number(1_048_575, 16_383, 1)
    workbook.close()
    return path.read_bytes()


def shared_strings_bomb(base: bytes, tmp: Path) -> bytes:
    """100,000 Log cells pointing at one 0.9 MB shared string appended to the real table: 90 GB once read."""
    files = members(base)
    sst = files["xl/sharedStrings.xml"]
    index = sst.count(b"<si>")
    sst = re.sub(rb'(count|uniqueCount)="\d+"', lambda m: m.group(1) + b'="%d"' % (index + 1), sst)
    sst = sst.replace(b"</sst>", b"<si><t>" + b"x" * 900_000 + b"</t></si></sst>")  # under the ratio check's floor
    first = last_log_row(base) + 1
    rows = b"".join(b'<row r="%d">' % r + b"".join(b'<c r="%s%d" t="s"><v>%d</v></c>' % (col, r, index)
                                                    for col in (b"F", b"G", b"H", b"I", b"J", b"K", b"L", b"M",
                                                                b"N", b"O"))
                    + b"</row>" for r in range(first, first + 10_000))
    return rezip(add_to_log(base, rows), {"xl/sharedStrings.xml": sst})


def shared_strings_count(base: bytes, tmp: Path) -> bytes:
    """A table of texts declaring 4 billion entries (calamine reserves room for them and aborts)."""
    return rezip(base, {"xl/sharedStrings.xml": lambda xml: re.sub(rb'uniqueCount="\d+"', b'uniqueCount="4000000000"',
                                                                   xml)})


def cells_without_references(base: bytes, tmp: Path) -> bytes:
    """Cells with no r= attribute follow one another: 20,000 of them in one row run far past column CB."""
    return add_to_log(base, b"<row>" + b"<c><v>1</v></c>" * 20_000 + b"</row>")


def dotdot_member(base: bytes, tmp: Path) -> bytes:
    return rezip(base, extra={"../../../etc/cron.d/evil": b"* * * * * root true\n"})


def backslash_member(base: bytes, tmp: Path) -> bytes:
    """A second Log under 'xl\\worksheets\\...': calamine's zip reader takes it for the sheet."""
    part = log_part(base)
    far = members(base)[part].replace(b"</sheetData>", b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
                                                        b"</sheetData>")
    return rezip(base, extra={part.replace("/", "\\"): far})


def duplicate_member(base: bytes, tmp: Path) -> bytes:
    """The Log part twice: the first as built, the second (which calamine reads) reaching XFD1048576."""
    part = log_part(base)
    far = members(base)[part].replace(b"</sheetData>", b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
                                                        b"</sheetData>")
    with pytest.warns(UserWarning, match="Duplicate name"):
        return rezip(base, extra={part: far})


def renamed_sheet_part(base: bytes, tmp: Path) -> bytes:
    """The Log's part called sheet3.bin (the relationships say so): checked all the same."""
    part = log_part(base)
    new = part[:-len(".xml")] + ".bin"
    short_old, short_new = part.split("/", 1)[1].encode(), new.split("/", 1)[1].encode()
    return rezip(base, {part: lambda xml: xml.replace(b"</sheetData>", b'<row r="1048576"><c r="XFD1048576"><v>1</v>'
                                                                         b"</c></row></sheetData>"),
                        "xl/_rels/workbook.xml.rels": lambda xml: xml.replace(short_old, short_new)},
                 rename={part: new})


def too_many_members(base: bytes, tmp: Path) -> bytes:
    return rezip(base, extra={f"xl/media/image{i}.png": b"\x89PNG" for i in range(2_100)})


def crc_corrupted(base: bytes, tmp: Path) -> bytes:
    part = log_part(base)
    with zipfile.ZipFile(io.BytesIO(base)) as zf:
        crc = zf.getinfo(part).CRC
    return patch_central_and_local(base, part, crc=crc ^ 0xFFFFFFFF)


def encrypted_member(base: bytes, tmp: Path) -> bytes:
    """The workbook part flagged as encrypted (zip's own password scheme, as some zip tools offer)."""
    with zipfile.ZipFile(io.BytesIO(base)) as zf:
        flags = zf.getinfo("xl/workbook.xml").flag_bits
    return patch_central_and_local(base, "xl/workbook.xml", flags=flags | 0x1)


def truncated(base: bytes, tmp: Path) -> bytes:
    return base[: len(base) // 2]


def truncated_end(base: bytes, tmp: Path) -> bytes:
    return base[:-300]  # the central directory cut off


def password_protected(base: bytes, tmp: Path) -> bytes:
    """The real workbook encrypted with a password, as Excel does it (an OLE2 file)."""
    out = io.BytesIO()
    msoffcrypto.format.ooxml.OOXMLFile(io.BytesIO(base)).encrypt("Secret-123", out)
    return out.getvalue()


def old_xls(base: bytes, tmp: Path) -> bytes:
    return reader.OLE2_SIGNATURE + bytes(4096)


def csv_renamed(base: bytes, tmp: Path) -> bytes:
    return b"Incident ref,Site code,Date occurred\nOAK-2026-0001,OAK,03/04/2026\nOAK-2026-0002,OAK,04/04/2026\n"


def random_bytes(base: bytes, tmp: Path) -> bytes:
    return os.urandom(64 * 1024)


def empty(base: bytes, tmp: Path) -> bytes:
    return b""


def html_renamed(base: bytes, tmp: Path) -> bytes:
    return b"<html><body><table><tr><td>Incident ref</td></tr><tr><td>OAK-1</td></tr></table></body></html>"


def _zip_of(parts: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, text in parts.items():
            zf.writestr(name, text)
    return out.getvalue()


def word_renamed(base: bytes, tmp: Path) -> bytes:
    return _zip_of({"[Content_Types].xml": "<Types/>", "word/document.xml": "<document/>"})


def ods_renamed(base: bytes, tmp: Path) -> bytes:
    return _zip_of({"mimetype": "application/vnd.oasis.opendocument.spreadsheet",
                    "content.xml": "<office:document-content/>"})


def not_a_log(base: bytes, tmp: Path) -> bytes:
    """A real workbook, just not a nearmiss log."""
    path = tmp / "rota.xlsx"
    workbook = xlsxwriter.Workbook(str(path), SAFE)
    sheet = workbook.add_worksheet("Rota")
    for r, row in enumerate([["Name", "Shift"], ["A. Carer", "Early"], ["B. Carer", "Late"]]):
        for c, value in enumerate(row):
            sheet.write_string(r, c, value)
    workbook.close()
    return path.read_bytes()


def over_upload_limit(base: bytes, tmp: Path) -> bytes:
    return b"PK\x03\x04" + os.urandom(int(1.5 * 2**20))  # the server of this case accepts 1 MB


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[bytes, Path], bytes]
    status: int
    words: tuple[str, ...]  # each must be in the message (any case)
    worker: bool = True  # the upload reaches the worker process (not refused before reading)
    upload_mb: float | None = None  # NEARMISS_MAX_UPLOAD_MB for the case's server


CASES = [
    Case("zip-bomb-declared-size", zip_bomb_declared, 422, ("unpack", "MB", "not opened", "right file")),
    Case("zip-bomb-ratio", zip_bomb_ratio, 422, ("compressed", "times over", "not opened")),
    Case("zip-bomb-lying-size", zip_bomb_lying_size, 422, ("damaged", "save it again")),
    Case("xml-billion-laughs", billion_laughs, 422, ("DOCTYPE or ENTITY", "not opened", "save it again")),
    Case("xml-external-entity", external_entity, 422, ("DOCTYPE or ENTITY", "xl/workbook.xml", "save it again")),
    Case("xml-external-entity-utf16", external_entity_utf16, 422, ("DOCTYPE or ENTITY", "save it again")),
    Case("million-row-sheet", million_rows, 422, ("row 1,048,576", "50,000 rows", "Delete the empty rows")),
    Case("dimension-claims-XFD1048576", dimension_huge, 422, ("cell XFD1048576", "Delete the empty rows")),
    Case("dimension-understated", dimension_understated, 422, ("cell A50001", "50,000 rows", "try again")),
    Case("calamine-crash-file", calamine_crash, 422, ("cell XFD1048576", "80 columns", "Delete")),
    Case("shared-strings-bomb", shared_strings_bomb, 422, ("repeats long texts", "MB of text", "right file")),
    Case("shared-strings-count", shared_strings_count, 422, ("4,000,000,000 entries", "save it again")),
    Case("cells-without-references", cells_without_references, 422, ("beyond", "80 columns", "Delete")),
    Case("dotdot-member", dotdot_member, 422, ("unsafe path", "../../../etc/cron.d/evil", "not opened")),
    Case("backslash-member", backslash_member, 422, ("unsafe path", "not opened")),
    Case("duplicate-member", duplicate_member, 422, ("two parts", "save it again")),
    Case("sheet-part-not-named-xml", renamed_sheet_part, 422, ("cell XFD1048576", "Delete the empty rows")),
    Case("too-many-members", too_many_members, 422, ("parts", "2,000", "right file")),
    Case("crc-corrupted", crc_corrupted, 422, ("damaged", "does not read back", "save it again")),
    Case("zip-encrypted-member", encrypted_member, 422, ("encrypted", "Remove the password", "File > Info")),
    Case("truncated-zip", truncated, 422, ("damaged or incomplete", "Copy it again")),
    Case("truncated-central-directory", truncated_end, 422, ("damaged or incomplete", "Copy it again")),
    Case("password-protected", password_protected, 422, ("password", "File > Info > Protect Workbook")),
    Case("old-xls-ole2", old_xls, 422, ("Excel 97-2003", "Save As", "Excel Workbook (.xlsx)")),
    Case("csv-renamed", csv_renamed, 422, ("CSV", "Save As", "Excel Workbook (.xlsx)")),
    Case("random-bytes", random_bytes, 422, ("not an Excel workbook", "right file")),
    Case("empty-file", empty, 422, ("empty", "Send the saved .xlsx"), worker=False),
    Case("html-renamed", html_renamed, 422, ("web page", "Save As")),
    Case("word-renamed", word_renamed, 422, ("Word document", "right file")),
    Case("ods-renamed", ods_renamed, 422, ("OpenDocument", "Excel Workbook (.xlsx)")),
    Case("workbook-not-a-log", not_a_log, 422, ("not a nearmiss log", "Log, Actions and Site")),
    Case("over-upload-limit", over_upload_limit, 413, ("larger than this server accepts", "1 MB"),
         worker=False, upload_mb=1),
]


# --- measuring -----------------------------------------------------------------------------------------

def status_mb(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    raise AssertionError(f"no {key} in /proc/self/status")


def reset_peak() -> bool:
    """Reset this process's peak resident memory (VmHWM) to its current RSS (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def table_counts(app: Flask) -> dict[str, int]:
    """Rows of every table but the audit log (and Alembic's version row)."""
    engine = get_db(app).engine
    names = [n for n in inspect(engine).get_table_names() if n not in (AuditEvent.__tablename__, "alembic_version")]
    with engine.connect() as connection:
        return {n: connection.execute(select(func.count()).select_from(table(n))).scalar_one() for n in names}


def upload_folder_files(app: Flask) -> list[str]:
    return sorted(p.name for p in Path(app.config["UPLOAD_FOLDER"]).rglob("*"))


def last_audit(app: Flask) -> AuditEvent | None:
    with get_db(app).sessions() as session:
        return session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()


PLAIN_WORDS_NOT = ("Traceback", "Exception", "Errno", "BadZipFile", "zlib", "calamine", "fastexcel", "KeyError",
                   "b'", "None", "CRC-32", "File is not a zip file")


def assert_plain(message: str) -> None:
    """A message for a care manager: a sentence or three, no programmer's words."""
    assert 20 < len(message) < 450, message
    assert message.rstrip().endswith("."), message
    for word in PLAIN_WORDS_NOT:
        assert word not in message, (word, message)


@pytest.fixture(scope="module")
def base_workbook(workbooks) -> bytes:  # noqa: ANN001
    """A real nearmiss log from the template (synthetic data), the start of most hostile files."""
    return workbooks.path("OAK", seed=1).read_bytes()


@pytest.fixture(scope="module", autouse=True)
def warm_worker() -> None:
    """Start the fork server once (it imports pandas and the reader): a one-off cost, not an upload's."""
    assert ingest.run_isolated(int, "7", isolation=ingest.Isolation(timeout_s=60, memory_mb=4096)) == 7


@pytest.fixture
def parent_cannot_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any parse in the test (server) process fails the test: the worker must do it."""
    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a workbook was parsed in the server process, not in the worker")

    monkeypatch.setattr(reader, "CalamineWorkbook", type("Refuse", (), {"from_filelike": staticmethod(refuse),
                                                                        "from_path": staticmethod(refuse)}))
    monkeypatch.setattr(reader.fastexcel, "read_excel", refuse)
    monkeypatch.setattr(ingest, "read_and_validate", refuse)


@pytest.fixture
def worker_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """The calls to ingest.run_isolated (the real one runs)."""
    calls: list[tuple] = []
    real = ingest.run_isolated

    def spy(fn, *args, isolation):  # noqa: ANN001, ANN002, ANN202
        calls.append((fn, isolation))
        return real(fn, *args, isolation=isolation)

    monkeypatch.setattr(ingest, "run_isolated", spy)
    return calls


def worker_record(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    records = [r for r in caplog.records if r.name == "server.ingest" and hasattr(r, "worker_pid")]
    assert len(records) == 1, [r.getMessage() for r in records]
    return records[0]


# --- the hostile files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_upload_is_refused_quickly_with_nothing_stored(
        case: Case, make_app, base_workbook: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
        caplog: pytest.LogCaptureFixture, parent_cannot_parse: None, worker_calls: list) -> None:
    if case.upload_mb is not None:
        monkeypatch.setenv("NEARMISS_MAX_UPLOAD_MB", str(case.upload_mb))
    app = make_app()
    client = app.test_client()
    limits = isolation(app)
    assert limits is not None and app.config["PARSE_ISOLATED"] is True  # the server's real, isolated path
    data = case.build(base_workbook, tmp_path)
    assert len(data) < 3 * 2**20, f"{case.id} is {len(data):,} bytes on disk"
    token = site_token(app)
    before = table_counts(app)
    assert upload_folder_files(app) == []
    caplog.set_level(logging.INFO, logger="server.ingest")

    measured = reset_peak()
    rss_before = status_mb("VmRSS")
    started = time.monotonic()
    response = upload(client, token, data, name="Oakview log.xlsx")
    elapsed = time.monotonic() - started
    growth = (status_mb("VmHWM") if measured else status_mb("VmRSS")) - rss_before

    body = response.get_json()
    assert response.status_code == case.status, body
    assert body["status"] == case.status
    message = body["error"]
    for word in case.words:
        assert word.lower() in message.lower(), (word, message)
    assert_plain(message)
    assert elapsed < SECONDS, f"{case.id} took {elapsed:.1f} s"
    assert growth < PARENT_GROWTH_MB, f"{case.id}: this process grew by {growth} MB"

    if case.worker:  # read in the worker process, which refused it within its limits
        assert [isolation_ for _, isolation_ in worker_calls] == [limits]
        record = worker_record(caplog)
        assert record.worker_pid != os.getpid() and record.worker_status == "refused"
        usage = record.worker_usage
        assert usage["peak_mb"] < limits.memory_mb
        assert usage["peak_mb"] - usage["start_mb"] < WORKER_GROWTH_MB, usage
    else:  # refused before any reading
        assert worker_calls == []

    assert table_counts(app) == before  # nothing stored ...
    assert upload_folder_files(app) == []  # ... no file, no .part leftover
    if case.status != 413:  # a refusal is audited (413 is answered before the request is read)
        event = last_audit(app)
        assert event.action == "submission.refused"
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["status"] == "ok"
    print(f"\n{case.id}: {response.status_code} in {elapsed:.2f} s, server +{growth} MB"
          + (f", worker peak {usage['peak_mb']} MB (start {usage['start_mb']} MB)" if case.worker else "")
          + f": {message}")


def test_every_case_is_small_on_disk_and_the_builders_make_what_they_say(base_workbook: bytes,
                                                                         tmp_path: Path) -> None:
    """The files are what their names say (read with zipfile only, never a parser)."""
    sizes = {c.id: len(c.build(base_workbook, tmp_path)) for c in CASES if c.id != "duplicate-member"}
    assert max(sizes.values()) < 3 * 2**20, sizes
    with zipfile.ZipFile(io.BytesIO(zip_bomb_declared(base_workbook, tmp_path))) as zf:
        assert zf.getinfo("xl/media/image1.png").file_size == 300 * 2**20
    lying = zip_bomb_lying_size(base_workbook, tmp_path)
    with zipfile.ZipFile(io.BytesIO(lying)) as zf:
        info = zf.getinfo(log_part(base_workbook))
    n, m = struct.unpack_from("<HH", lying, info.header_offset + 26)
    start = info.header_offset + 30 + n + m
    assert info.file_size == 1000
    assert len(zlib.decompress(lying[start:start + info.compress_size], -15)) > 30 * 2**20
    assert members(million_rows(base_workbook, tmp_path))[log_part(base_workbook)].count(b"<row") == 1_048_576
    assert password_protected(base_workbook, tmp_path).startswith(reader.OLE2_SIGNATURE)
    with zipfile.ZipFile(io.BytesIO(encrypted_member(base_workbook, tmp_path))) as zf:
        assert zf.getinfo("xl/workbook.xml").flag_bits & 0x1
    assert len(zipfile.ZipFile(io.BytesIO(too_many_members(base_workbook, tmp_path))).infolist()) > 2_000


# --- odd but usable: stored, with findings that say so -------------------------------------------------

def test_xlsm_with_macros_is_stored_and_the_macros_ignored(app: Flask, base_workbook: bytes,  # noqa: ANN001
                                                           parent_cannot_parse: None) -> None:
    """The decision (security.md): macros are never run or kept in the data; the finding NM094 says so."""
    data = rezip(base_workbook, extra={"xl/vbaProject.bin": b"\xd0\xcf\x11\xe0" + os.urandom(512)})
    response = upload(app.test_client(), site_token(app), data, name="Oakview log.xlsm")
    assert response.status_code == 201, response.get_json()
    macros = [f for f in response.get_json()["findings"] if f["rule"] == "NM094"]
    assert len(macros) == 1 and "macros" in macros[0]["message"] and "ignored" in macros[0]["message"]


def test_formulas_without_saved_values_are_stored_as_findings(app: Flask, base_workbook: bytes,  # noqa: ANN001
                                                              parent_cannot_parse: None) -> None:
    """A Log from the template whose input cells hold formulas never calculated (no <v>): NM093 per cell."""
    part = log_part(base_workbook)

    def formulas(xml: bytes) -> bytes:  # the Location (column F) of rows 2-4 becomes a formula with no result
        for row in (2, 3, 4):
            xml = re.sub(rb'<c r="F%d"([^>]*?)(?: t="\w+")?>.*?</c>' % row,
                         lambda m, row=row: b'<c r="F%d"%s><f>A%d&amp;"-"</f></c>' % (row, m.group(1), row), xml,
                         count=1)
        return xml

    data = rezip(base_workbook, {part: formulas})
    assert members(data)[part].count(b"</f></c>") >= 3
    response = upload(app.test_client(), site_token(app), data)
    assert response.status_code == 201, response.get_json()
    cells = sorted(f["cell"] for f in response.get_json()["findings"] if f["rule"] == "NM093")
    assert cells == ["F2", "F3", "F4"]


# --- the worker's own limits ------------------------------------------------------------------------------

def hog_memory(data: bytes, name: str, today) -> None:  # noqa: ANN001 - run in the worker in place of the reader
    held = []
    while True:  # 64 MB at a time, touched, until the cap stops it
        held.append(bytearray(64 * 2**20))


def stall(data: bytes, name: str, today) -> None:  # noqa: ANN001
    time.sleep(60)


def native_abort(data: bytes, name: str, today) -> None:  # noqa: ANN001 - as calamine does on a grid it cannot allocate
    os.abort()


def reader_bug(data: bytes, name: str, today) -> None:  # noqa: ANN001
    raise KeyError("a bug in the reader")


@pytest.mark.parametrize("blow_up, config, status, words", [
    (hog_memory, {}, 422, ("more memory", "right file")),  # the server's own cap (4096 MB of address space)
    (stall, {"PARSE_TIMEOUT_S": 3}, 422, ("longer than 3 seconds", "stopped", "right file")),
    (native_abort, {}, 422, ("stopped the reader", "save it again")),
    (reader_bug, {}, 500, ("fault on the server", "Nothing was stored", "administrator")),
], ids=["memory-cap", "timeout", "native-abort", "reader-bug"])
def test_the_worker_limits_stop_a_parse_that_blows_up(
        blow_up, config: dict, status: int, words: tuple, make_app, workbooks,  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, parent_cannot_parse: None) -> None:
    app = make_app(**config)
    limits = isolation(app)
    client = app.test_client()
    token = site_token(app)
    before = table_counts(app)
    caplog.set_level(logging.INFO, logger="server.ingest")
    with monkeypatch.context() as patch:
        patch.setattr(ingest, "_read_and_validate_args", blow_up)  # pickled by name: the worker runs it
        started = time.monotonic()
        response = upload(client, token, workbooks.path("OAK", seed=1))
        elapsed = time.monotonic() - started

    assert response.status_code == status, response.get_json()
    message = response.get_json()["error"]
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    assert_plain(message)
    assert elapsed < (limits.timeout_s + SECONDS), elapsed
    record = worker_record(caplog)
    assert record.worker_pid != os.getpid()
    if blow_up is hog_memory:  # the cap, not the machine, stopped it; the worker's peak stayed under its cap
        assert record.worker_status == "memory"
        assert record.worker_usage["peak_mb"] <= limits.memory_mb
    if blow_up is stall:
        assert record.worker_status == "timeout" and elapsed >= limits.timeout_s
    assert table_counts(app) == before and upload_folder_files(app) == []
    assert last_audit(app).action == "submission.refused"

    # The server goes on serving: health, and a real upload read by a new worker (with the usual time limit).
    assert client.get("/healthz").status_code == 200
    app.config["PARSE_TIMEOUT_S"] = 120
    good = upload(client, token, workbooks.path("OAK", seed=1))
    assert good.status_code == 201, good.get_json()
    print(f"\n{blow_up.__name__}: {response.status_code} in {elapsed:.2f} s, worker {record.worker_usage}: {message}")
