"""``nearmiss serve`` itself: what it starts before the first request."""

from __future__ import annotations

import time
from pathlib import Path

from .live import LiveServer, server_environment


def _process_tree(pid: int) -> list[str]:
    """Command lines of ``pid``'s descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            out.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
        todo += children.get(child, [])
    return out


def test_serve_starts_the_reader_workers_before_any_upload(tmp_path: Path) -> None:
    env = server_environment(tmp_path / "instance", None)
    with LiveServer(env, tmp_path / "serve.log", threads=2) as server:
        assert "2 reader workers starting" in server.log()
        # The fork server and, forked from it (so with its command line), the 2 idle reader workers.
        deadline = time.monotonic() + 60
        while sum("multiprocessing.forkserver" in c for c in _process_tree(server.proc.pid)) < 3:
            assert time.monotonic() < deadline, _process_tree(server.proc.pid)
            time.sleep(0.1)
