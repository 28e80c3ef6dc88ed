"""Submit to area: settings lookup, the conf file format, and the upload against a local stub server."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from addin.xl import submit
from addin.xl.submit import (
    Settings, conf_sheet_values, load_settings, read_conf_file, submit_workbook, user_conf_path, write_conf_file,
)


class Stub:
    """A one-route HTTP server on 127.0.0.1 that answers with a set status and JSON body."""

    def __init__(self):
        self.status = 201
        self.body: dict = {}
        self.delay = 0.0
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": raw})
                if stub.delay:
                    time.sleep(stub.delay)
                payload = json.dumps(stub.body).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = Stub()
    yield s
    s.close()


def parse_multipart(request: dict) -> tuple[str, str, bytes]:
    """(field name, file name, content) of the one part of a multipart/form-data body."""
    head = f"Content-Type: {request['headers']['Content-Type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + request["body"], policy=email.policy.HTTP)
    [part] = list(message.iter_parts())
    return part.get_param("name", header="content-disposition"), part.get_filename(), part.get_payload(decode=True)


# --- settings --------------------------------------------------------------------------------------------

def test_conf_file_is_the_format_the_vba_reads(tmp_path):
    path = tmp_path / ".myaddin" / "myaddin.conf"
    write_conf_file(path, {"Interpreter_Win": r"C:\Users\me\nearmiss\venv\Scripts\python.exe",
                           "UDF Modules": "addin.xl.udfs", "NEARMISS_TOKEN": "abc123"})
    text = path.read_bytes().decode()
    assert text.splitlines()[0] == r'"Interpreter_Win","C:\Users\me\nearmiss\venv\Scripts\python.exe"'
    assert text.endswith("\r\n")
    write_conf_file(path, {"nearmiss_token": "", "NEARMISS_SERVER_URL": "https://nm.example"})
    values = read_conf_file(path)
    assert values == {"INTERPRETER_WIN": r"C:\Users\me\nearmiss\venv\Scripts\python.exe",
                      "UDF MODULES": "addin.xl.udfs", "NEARMISS_SERVER_URL": "https://nm.example"}
    with pytest.raises(ValueError):
        write_conf_file(path, {"NEARMISS_TOKEN": 'a"b'})


def test_user_conf_path_is_where_the_vba_looks(tmp_path):
    assert user_conf_path("win32", tmp_path) == tmp_path / ".myaddin" / "myaddin.conf"
    assert user_conf_path("darwin", tmp_path) == (tmp_path / "Library" / "Containers" / "com.microsoft.Excel"
                                                  / "Data" / "myaddin.conf")


def test_settings_come_from_env_then_addin_sheet_then_file(tmp_path):
    conf = write_conf_file(tmp_path / "myaddin.conf", {"NEARMISS_SERVER_URL": "https://file.example",
                                                       "NEARMISS_TOKEN": "file-token", "NEARMISS_SITE_CODE": "OAK"})
    sheet = [["UDF Modules", "addin.xl.udfs"], ["NEARMISS_SERVER_URL", "https://sheet.example"],
             ["NEARMISS_TOKEN", None]]
    s = load_settings(env={}, addin_rows=sheet, conf_path=conf)
    assert (s.server_url, s.token, s.site_code) == ("https://sheet.example", "file-token", "OAK")
    assert s.missing == []
    s = load_settings(env={"NEARMISS_TOKEN": " env-token "}, addin_rows=sheet, conf_path=conf)
    assert s.token == "env-token" and s.sources["NEARMISS_TOKEN"] == "environment"
    empty = load_settings(env={}, addin_rows=[], conf_path=tmp_path / "none.conf")
    assert empty.missing == ["NEARMISS_SERVER_URL", "NEARMISS_TOKEN"]
    assert conf_sheet_values([["UDF Modules", "x"], ["", "y"], ["Blank", ""]]) == {"UDF MODULES": "x"}


# --- the upload ------------------------------------------------------------------------------------------

def test_submit_posts_the_workbook_with_the_token(stub, tmp_path):
    book = tmp_path / "oakview.xlsx"
    book.write_bytes(b"PK\x03\x04 pretend workbook \x00\xff")
    stub.body = {"submission_id": 7, "site_code": "OAK", "counts": {"incidents": 12, "actions": 4},
                 "errors": 0, "warnings": 2, "findings": [], "duplicate": False}
    result = submit_workbook(book, server_url=stub.url + "/", token="site-token-1")
    assert result.ok and result.status == 201 and result.body["submission_id"] == 7
    assert "12 incidents and 4 actions" in result.message and "2 warnings" in result.message
    [request] = stub.requests
    assert request["path"] == "/api/v1/submissions"
    assert request["headers"]["Authorization"] == "Bearer site-token-1"
    assert parse_multipart(request) == ("file", "oakview.xlsx", book.read_bytes())


def test_submit_duplicate_is_said_plainly(stub):
    stub.status, stub.body = 200, {"duplicate": True, "site_code": "OAK"}
    result = submit_workbook(b"PK..", server_url=stub.url, token="t", filename="x.xlsx")
    assert result.ok and "already had this version" in result.message


@pytest.mark.parametrize("status,words", [
    (401, "did not accept this site's token"),
    (403, "may not submit this workbook"),
    (413, "larger than the server accepts"),
    (400, "could not take this workbook"),
    (404, "server address looks wrong"),
    (500, "had a problem"),
])
def test_submit_errors_are_explained(stub, status, words):
    stub.status, stub.body = status, {"error": "server words here", "status": status}
    result = submit_workbook(b"PK..", server_url=stub.url, token="t")
    assert not result.ok and result.status == status
    assert words in result.message and "The server said: server words here" in result.message


def test_submit_when_the_server_cannot_be_reached():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = submit_workbook(b"PK..", server_url=f"http://127.0.0.1:{port}", token="t", timeout=5)
    assert not result.ok and result.status is None
    assert result.message.startswith(f"Could not reach the server at http://127.0.0.1:{port}/api/v1/submissions")


def test_submit_timeout(stub):
    stub.delay = 1.0
    result = submit_workbook(b"PK..", server_url=stub.url, token="t", timeout=0.3)
    assert not result.ok and "did not answer within 0.3 seconds" in result.message


def test_submit_refuses_bad_settings_without_a_request(tmp_path):
    assert "must start with https://" in submit_workbook(b"x", server_url="nearmiss.example", token="t").message
    assert "token is not set" in submit_workbook(b"x", server_url="https://x.example", token="").message
    missing = submit_workbook(tmp_path / "gone.xlsx", server_url="https://x.example", token="t")
    assert not missing.ok and "cannot be read" in missing.message


def test_missing_settings_message_names_what_is_missing():
    text = submit.missing_settings_message(Settings(server_url="https://x.example"))
    assert text.startswith("nearmiss does not know this site's token yet")
    assert '"NEARMISS_TOKEN"' in text


def test_stub_file_is_text(tmp_path: Path):
    # read_conf_file tolerates a byte-order mark (Notepad's UTF-8 with BOM)
    p = tmp_path / "c.conf"
    p.write_bytes('\ufeff"NEARMISS_TOKEN","abc"\r\n'.encode("utf-8"))
    assert read_conf_file(p) == {"NEARMISS_TOKEN": "abc"}
