"""Consolidation benchmark: many site workbooks read, checked and summarised, against the alternatives.

    python benchmarks/consolidation.py                      # 100 sites x 2,000 rows, 3 repeats
    python benchmarks/consolidation.py --sites 200 --skip-naive
    python benchmarks/consolidation.py --sites 20 --rows 500 --repeats 1      # a quick look

Not part of the test suite (pytest collects ``tests/`` only).  It builds N site workbooks through
the project's own template (``synthetic.make_site`` + ``builder.build_workbook``, cached in
``benchmarks/output/``), then times, each in its own subprocess so that peak memory is per thing:

(a) ``nearmiss consolidate`` on all of them: the real CLI (read + pre-check, validate every rule,
    trends and SPC for the area and each site, the governance workbook);
(b) the naive way: ``pandas.read_excel(engine="openpyxl")`` of every sheet of every file, then the
    Log and Actions frames concatenated (nothing checked, nothing summarised);
(c) the floor: bare fastexcel reads into Arrow of the sheets consolidate needs (Log, Actions, Site)
    in 2 threads, nothing else;
(c2) the same reads after ``addin.reader``'s pre-check of each file (imports included): the least a
    reader does that keeps a hostile workbook from aborting the process (``../shared/spec/security.md``);
(d) uploading every workbook to a running ``nearmiss serve`` (127.0.0.1 only, temporary
    instance, sites and tokens made with ``nearmiss admin``), 2 concurrent clients;
(e) ``GET /api/v1/summary`` of the area after (d), over 36 months: cold (computed) and warm (cached);
    and the area's page (HTML with its SPC charts), as the area lead logged in through the login form;
(f) one workbook's path stage by stage (``--stage-sites`` of them, CPU time of one thread, medians):
    the floor's reads, the pre-check, the rest of the reader, validation in consolidate's batches and
    of one site alone, and an upload's whole worker part; each also as a multiple of the floor.

(a), (c) and (c2) run interleaved, one of each per repeat, so that a slow spell of the machine
slows all three alike; the ratios are given by wall time and by CPU time.

Wall times are medians over ``--repeats`` (the naive run once, in full).  CPU is user + system
time of the subprocess; peak memory is its max RSS from ``wait4`` (for the server: the peak of
the proportional set size summed over the server, its fork server and reader processes,
sampled every 0.1 s).  The machine's load average is printed with each row: other work on the
machine slows wall times, CPU times much less.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.cookiejar
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from sites import OUTPUT, data_end, ensure_sites, setting_of  # noqa: E402
from server.report_commands import VALIDATE_BATCH  # noqa: E402
from tests.server.live import LiveServer, http_bytes, multipart, nearmiss_cmd  # noqa: E402 - the tests' loopback helpers

PAGE_PASSWORD = "benchmark-only-password-1"  # a throwaway login on the temporary instance

NAIVE = r"""
import sys, time, pandas as pd
frames = {"Log": [], "Actions": []}
start = time.perf_counter()
for path in sys.argv[1:]:
    sheets = pd.read_excel(path, sheet_name=None, engine="openpyxl")   # every sheet, as an analyst would
    for name in frames:
        frames[name].append(sheets[name].assign(file=path))
log = pd.concat(frames["Log"], ignore_index=True)
actions = pd.concat(frames["Actions"], ignore_index=True)
print(f"{len(log)} log rows, {len(actions)} action rows in {time.perf_counter() - start:.2f} s")
"""

# The floor's reads of each file in 2 threads; PREPARE may look at the file's bytes before fastexcel does.
READS = r"""
import sys, time
from concurrent.futures import ThreadPoolExecutor
import fastexcel
{imports}
def read(path):
    data = open(path, "rb").read()
    {prepare}
    book = fastexcel.read_excel(data)
    return [book.load_sheet(name, eager=True).num_rows for name in ("Log", "Actions", "Site")]
start = time.perf_counter()
with ThreadPoolExecutor(max_workers=2) as pool:
    rows = list(pool.map(read, sys.argv[1:]))
print(f"{{sum(r[0] for r in rows)}} log rows, {{sum(r[1] for r in rows)}} action rows in "
      f"{{time.perf_counter() - start:.2f}} s")
"""
FLOOR = READS.format(imports="", prepare="pass")
# What security.md asks before any parser sees a file.
SAFE_FLOOR = READS.format(imports="from addin.reader import READ_SHEETS, precheck",
                          prepare="precheck(data, sheets=READ_SHEETS)")

# (f): one workbook's path, stage by stage, in one thread (CPU time of that thread, medians).
STAGES = r"""
import datetime as dt, json, statistics, sys, time
import fastexcel
from addin.reader import READ_SHEETS, precheck, read_workbook
from addin.validate import validate_results
from server.ingest import read_and_validate
from server.report_commands import VALIDATE_BATCH
paths, today = sys.argv[2:], dt.date.fromisoformat(sys.argv[1])
times = {}
def timed(stage, fn, *args, per=1, **kwargs):
    start = time.thread_time()
    out = fn(*args, **kwargs)
    times.setdefault(stage, []).append((time.thread_time() - start) / per)
    return out
def floor(data):
    book = fastexcel.read_excel(data)
    return [book.load_sheet(name, eager=True) for name in ("Log", "Actions", "Site")]
results = []
for path in paths:
    data = open(path, "rb").read()
    timed("floor", floor, data)
    timed("precheck", precheck, data, sheets=READ_SHEETS)
    results.append(timed("read", read_workbook, data))
    timed("validate_alone", validate_results, results[-1:], today=today)
    timed("upload_worker", read_and_validate, data, name="site.xlsx", today=today)
for at in range(0, len(results) - VALIDATE_BATCH + 1, VALIDATE_BATCH):
    timed("validate_batched", validate_results, results[at:at + VALIDATE_BATCH], today=today, per=VALIDATE_BATCH)
print(json.dumps({stage: 1000 * statistics.median(values) for stage, values in times.items()}))
"""

ADD_SITES = r"""
import json, sys
from click.testing import CliRunner
from server.cli import main
tokens = {}
runner = CliRunner()
for code, setting in json.loads(sys.argv[1]):
    result = runner.invoke(main, ["admin", "add-site", "--code", code, "--name", f"Site {code}", "--area", "Bench",
                                  "--setting", setting])
    assert result.exit_code == 0, result.output
    tokens[code] = result.output.strip().splitlines()[-1]
result = runner.invoke(main, ["admin", "add-token", "--role", "area_lead", "--area", "Bench", "--label", "benchmark"])
assert result.exit_code == 0, result.output
tokens["_area_lead"] = result.output.strip().splitlines()[-1]
result = runner.invoke(main, ["admin", "add-user", "--username", "bench-lead", "--role", "area_lead", "--area", "Bench",
                              "--password-stdin"], input=sys.argv[2] + "\n")
assert result.exit_code == 0, result.output
print(json.dumps(tokens))
"""


# --- running and measuring subprocesses ---------------------------------------------------------------

def run_measured(cmd: list[str], *, env: dict | None = None, timeout: float = 3600) -> dict:
    """Run ``cmd`` to the end; wall time, CPU time and peak RSS of that process alone (wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                raise TimeoutError(f"{cmd[:3]} took more than {timeout} s")
            time.sleep(0.01)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024,
            "rc": proc.returncode, "stdout": stdout, "stderr": stderr, "load": load}


def python_cmd(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def median_of(runs: list[dict]) -> dict:
    out = {"wall": statistics.median(r["wall"] for r in runs), "wall_min": min(r["wall"] for r in runs),
           "cpu": statistics.median(r["cpu"] for r in runs), "peak_mb": max(r["peak_mb"] for r in runs),
           "load": statistics.median(r["load"] for r in runs), "runs": len(runs),
           "walls": [round(r["wall"], 2) for r in runs]}
    reads = [re.search(r" in ([\d.]+) s$", r.get("stdout", "").strip()) for r in runs]
    if runs and all(reads):  # the read scripts also print their time after their imports
        out["after_imports"] = statistics.median(float(m.group(1)) for m in reads)
    return out


# --- (a)-(c) ---------------------------------------------------------------------------------------------

def run_consolidate(paths: list[Path], out: Path, today: dt.date, i: int, log) -> dict:
    r = run_measured(nearmiss_cmd("consolidate", *map(str, paths), "--out", str(out), "--force",
                                  "--today", today.isoformat()))
    if r["rc"] not in (0, 2):  # 2: some file unreadable (reported); anything else failed
        raise RuntimeError(f"nearmiss consolidate failed ({r['rc']}):\n{r['stderr'][-3000:]}")
    log(f"  (a) consolidate run {i + 1}: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU, "
        f"{r['peak_mb']:.0f} MB peak; {r['stdout'].strip().splitlines()[-1][:120]}")
    return r


def run_read(script: str, label: str, paths: list[Path], i: int, log) -> dict:
    r = run_measured(python_cmd(script, *map(str, paths)))
    if r["rc"]:
        raise RuntimeError(f"{label} failed:\n{r['stderr'][-3000:]}")
    log(f"  {label} run {i + 1}: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU, {r['peak_mb']:.0f} MB; "
        f"{r['stdout'].strip()}")
    return r


def bench_reads(paths: list[Path], repeats: int, today: dt.date, log) -> dict[str, dict]:
    """(a), (c) and (c2), interleaved run by run: a slow spell of the machine then slows all three alike."""
    runs: dict[str, list[dict]] = {"consolidate": [], "floor": [], "safe_floor": []}
    with tempfile.TemporaryDirectory(prefix="nm-bench-") as folder:
        out = Path(folder) / "governance.xlsx"
        for i in range(repeats):
            runs["consolidate"].append(run_consolidate(paths, out, today, i, log))
            runs["floor"].append(run_read(FLOOR, "(c) floor", paths, i, log))
            runs["safe_floor"].append(run_read(SAFE_FLOOR, "(c2) pre-check + floor", paths, i, log))
        size = out.stat().st_size
    results = {key: median_of(key_runs) for key, key_runs in runs.items()}
    results["consolidate"]["output_kb"] = size / 1024
    return results


def bench_naive(paths: list[Path], log) -> dict:
    r = run_measured(python_cmd(NAIVE, *map(str, paths)))
    if r["rc"]:
        raise RuntimeError(f"naive read failed:\n{r['stderr'][-3000:]}")
    log(f"  (b) naive run: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU, {r['peak_mb']:.0f} MB; {r['stdout'].strip()}")
    return median_of([r])


def bench_stages(paths: list[Path], today: dt.date, log) -> dict[str, float]:
    """(f) ms of CPU per workbook of each stage, in one thread: where the time beyond the floor goes."""
    r = run_measured(python_cmd(STAGES, today.isoformat(), *map(str, paths)))
    if r["rc"]:
        raise RuntimeError(f"stage timing failed:\n{r['stderr'][-3000:]}")
    stages = json.loads(r["stdout"].strip().splitlines()[-1])
    log(f"  (f) {len(paths)} workbooks stage by stage: " + ", ".join(f"{k} {v:.1f} ms" for k, v in stages.items()))
    return stages


def stage_rows(stages: dict[str, float]) -> list[tuple]:
    """(f) as table rows: each stage's ms per workbook and as a multiple of the floor's."""
    floor = stages["floor"]
    beyond = stages["read"] - stages["precheck"] - floor
    rows = [
        ("floor: fastexcel Log+Actions+Site", stages["floor"]),
        ("pre-check (zipfile, before any parser)", stages["precheck"]),
        ("reader beyond both: typing, Site sheet, findings", beyond),
        ("  = the whole reader (read_workbook)", stages["read"]),
        (f"validation, per site in batches of {VALIDATE_BATCH} (consolidate)", stages.get("validate_batched", float("nan"))),
        ("validation of one site alone (an upload)", stages["validate_alone"]),
        ("upload worker: read + validate + rows for storing + hash", stages["upload_worker"]),
    ]
    return [(name, f"{ms:.1f}", f"{ms / floor:.2f}x") for name, ms in rows]


# --- (d) and (e): the server ------------------------------------------------------------------------------

def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total / 1024


class Sampler(threading.Thread):
    """Peak summed PSS of a process tree, sampled every 0.1 s until stopped."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak, self._stop_event = root, 0.0, threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, pss_mb(tree_pids(self.root)))
            self._stop_event.wait(0.1)

    def stop(self) -> float:
        self._stop_event.set()
        self.join(5)
        return self.peak


class Server:
    """``nearmiss serve`` on 127.0.0.1 with a temporary instance; sites and tokens made with ``nearmiss admin``."""

    def __init__(self, paths: list[Path], log) -> None:
        self.paths, self.log = paths, log
        self.folder = Path(tempfile.mkdtemp(prefix="nm-bench-server-"))
        self.env = {**os.environ, "NEARMISS_INSTANCE": str(self.folder / "instance"),
                    "NEARMISS_SECURE_COOKIES": "0"}
        self.server: LiveServer | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def proc(self) -> subprocess.Popen:
        return self.server.proc

    def __enter__(self) -> "Server":
        sites = [[p.stem, setting_of(int(p.stem[1:]))] for p in self.paths]
        start = time.perf_counter()
        r = run_measured(python_cmd(ADD_SITES, json.dumps(sites), PAGE_PASSWORD), env=self.env)
        if r["rc"]:
            raise RuntimeError(f"nearmiss admin failed:\n{r['stderr'][-3000:]}")
        self.tokens = json.loads(r["stdout"].strip().splitlines()[-1])
        self.log(f"  (d) {len(sites)} sites and tokens made with `nearmiss admin add-site` "
                 f"in {time.perf_counter() - start:.1f} s")
        self.server = LiveServer(self.env, self.folder / "serve.log", threads=4).start()  # the tests' own
        return self

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def upload_all(self, clients: int = 2) -> dict:
        sampler = Sampler(self.proc.pid)
        sampler.start()
        load = os.getloadavg()[0]
        cpu0 = self.cpu_seconds()
        statuses: list[int] = []

        def send(path: Path) -> int:
            body, content_type = multipart(path.read_bytes(), path.name)
            status, payload = http_bytes("POST", f"{self.url}/api/v1/submissions", token=self.tokens[path.stem],
                                   body=body, content_type=content_type)
            if status not in (200, 201):
                raise RuntimeError(f"upload of {path.name}: HTTP {status} {payload[:300]!r}")
            return status

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:  # bounded: each file once, then done
            statuses = list(pool.map(send, self.paths))
        wall = time.perf_counter() - start
        peak = sampler.stop()
        return {"wall": wall, "cpu": self.cpu_seconds() - cpu0, "peak_mb": peak, "load": load,
                "stored": sum(s == 201 for s in statuses)}

    def cpu_seconds(self) -> float:
        """CPU time of the server's process tree so far (own and reaped children's, from /proc)."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in tree_pids(self.proc.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15]) / tick  # utime, stime, cutime, cstime
            except (OSError, IndexError, ValueError):
                continue
        return total

    def log_in(self) -> None:
        """A browser's session of the area lead (cookie jar), logged in through the login form."""
        self.browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = self.browser.open(f"{self.url}/login", timeout=60).read().decode()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"username": "bench-lead", "password": PAGE_PASSWORD, "csrf_token": csrf})
        with self.browser.open(f"{self.url}/login", data=form.encode(), timeout=60) as response:
            if response.status != 200 or "/login" in response.url:
                raise RuntimeError(f"logging in to the area page failed: HTTP {response.status} at {response.url}")

    def page(self, first: str, last: str) -> tuple[float, int]:
        """GET the area's summary page (HTML with its SPC charts) as the logged-in area lead."""
        start = time.perf_counter()
        with self.browser.open(f"{self.url}/areas/Bench?from={first}&to={last}", timeout=600) as response:
            body = response.read()
            status = response.status
        wall = time.perf_counter() - start
        if status != 200:
            raise RuntimeError(f"area page: HTTP {status} {body[:300]!r}")
        return wall, len(body)

    def summary(self, first: str, last: str) -> tuple[float, int]:
        start = time.perf_counter()
        status, body = http_bytes("GET", f"{self.url}/api/v1/summary?from={first}&to={last}",
                            token=self.tokens["_area_lead"])
        wall = time.perf_counter() - start
        if status != 200:
            raise RuntimeError(f"summary: HTTP {status} {body[:300]!r}")
        return wall, len(body)


def month_code(day: dt.date, back: int) -> str:
    y, m = day.year, day.month - back
    while m <= 0:
        y, m = y - 1, m + 12
    return f"{y:04d}-{m:02d}"


def timed_gets(fetch, windows: list[tuple[str, str]], what: str, unit: str, log) -> list[dict]:
    """``fetch(first, last)`` of each window, timed; each logged with the size of its answer."""
    runs = []
    for first, last in windows:
        wall, size = fetch(first, last)
        runs.append({"wall": wall, "cpu": 0.0, "peak_mb": 0.0, "load": os.getloadavg()[0]})
        log(f"  (e) {what} to {last}: {wall:.3f} s, {size / 1024:.0f} KB {unit}")
    return runs


def bench_server(paths: list[Path], repeats: int, months: int, log) -> tuple[dict, dict]:
    uploads, summary = [], {}
    end = data_end()

    def windows(first_back: int, count: int) -> list[tuple[str, str]]:  # `months`-month windows, each ending earlier
        return [(month_code(end, months - 1 + k), month_code(end, k)) for k in range(first_back, first_back + count)]

    for i in range(repeats):
        with Server(paths, log) as server:
            r = server.upload_all()
            log(f"  (d) upload run {i + 1}: {r['wall']:.2f} s wall, {r['cpu']:.1f} s CPU (server tree), "
                f"{r['peak_mb']:.0f} MB peak PSS, {r['stored']} stored")
            uploads.append(r)
            if i == 0:  # (e) on the first server: windows not asked for yet (computed), then one again (cached)
                again = windows(0, 1) * max(repeats, 3)
                summary["cold"] = timed_gets(server.summary, windows(0, repeats), f"summary, {months} months, computed",
                                             "JSON", log)
                summary["warm"] = timed_gets(server.summary, again, "summary from the cache", "JSON", log)
                server.log_in()
                summary["page_cold"] = timed_gets(server.page, windows(repeats, repeats),
                                                  f"area page, {months} months, computed", "HTML", log)
                summary["page_warm"] = timed_gets(server.page, again, "area page, summary from the cache", "HTML", log)
                summary = {key: median_of(runs) for key, runs in summary.items()}
                summary["pss_after_mb"] = pss_mb(tree_pids(server.proc.pid))
                log(f"  (e) server tree PSS after the summaries: {summary['pss_after_mb']:.0f} MB")
    return median_of(uploads), summary


# --- report --------------------------------------------------------------------------------------------------

def machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    try:
        kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    return (f"{platform.machine()}, {cpus} cores{mem}, Python {platform.python_version()}, "
            f"pandas {version('pandas')}, pyarrow {version('pyarrow')}, fastexcel {version('fastexcel')}, "
            f"python-calamine {version('python-calamine')}, openpyxl {version('openpyxl')}")


def table(rows: list[tuple], headers: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--rows", type=int, default=2000, help="log rows per site (about; Poisson)")
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--naive-sites", type=int, default=None,
                        help="run the naive read on only this many sites and scale up (labelled as such)")
    parser.add_argument("--build-workers", type=int, default=2)
    parser.add_argument("--stage-sites", type=int, default=32, help="workbooks timed stage by stage for (f)")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, flush=True)

    log(f"machine: {machine()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    paths = ensure_sites(args.sites, args.rows, args.months, workers=args.build_workers, log=log)
    today = dt.date.today()
    results: dict[str, dict] = {}
    log(f"{len(paths)} site workbooks, ~{args.rows:,} log rows each over {args.months} months; "
        f"{args.repeats} repeat(s)")
    results.update(bench_reads(paths, args.repeats, today, log))
    stages = bench_stages(paths[:args.stage_sites], today, log)
    if not args.skip_naive:
        naive_paths = paths[:args.naive_sites] if args.naive_sites else paths
        naive = bench_naive(naive_paths, log)
        if len(naive_paths) < len(paths):
            scale = len(paths) / len(naive_paths)
            naive = {**naive, "wall": naive["wall"] * scale, "cpu": naive["cpu"] * scale,
                     "note": f"EXTRAPOLATED from {len(naive_paths)} sites x{scale:.1f}"}
        results["naive"] = naive
    if not args.skip_server:
        results["ingest"], results["summary"] = bench_server(paths, args.repeats, args.months, log)

    def after_imports(key: str) -> str:
        r = results.get(key, {})
        return f"median; {r['after_imports']:.2f} s after its imports" if "after_imports" in r else "median"

    def row(name: str, key: str, note: str = "") -> tuple:
        r = results.get(key)
        if r is None:
            return (name, "skipped", "", "", "", note)
        return (name, f"{r['wall']:.2f}", f"{r['cpu']:.2f}" if r.get("cpu") else "-",
                f"{r['peak_mb']:.0f}" if r.get("peak_mb") else "-", f"{r['load']:.1f}", r.get("note", note))

    rows = [
        row(f"(a) nearmiss consolidate, {len(paths)} sites", "consolidate", "median; peak = max RSS"),
        row("(b) naive pandas.read_excel(openpyxl)", "naive", "1 full run"),
        row("(c) floor: fastexcel Log+Actions+Site, 2 thr", "floor", after_imports("floor")),
        row("(c2) addin.reader's pre-check + the same reads", "safe_floor", after_imports("safe_floor")),
        row("(d) server ingest, 2 clients", "ingest", "median; peak = PSS of server tree"),
    ]
    if "summary" in results:
        s = results["summary"]
        rows.append((f"(e) GET /api/v1/summary {args.months} months, computed", f"{s['cold']['wall']:.3f}", "-",
                     f"{s['pss_after_mb']:.0f}", f"{s['cold']['load']:.1f}", f"median of {s['cold']['runs']} windows"))
        rows.append(("(e) GET /api/v1/summary, cached", f"{s['warm']['wall']:.3f}", "-", "-",
                     f"{s['warm']['load']:.1f}", "median"))
        rows.append((f"(e) area page (HTML) {args.months} months, computed", f"{s['page_cold']['wall']:.3f}", "-", "-",
                     f"{s['page_cold']['load']:.1f}", f"median of {s['page_cold']['runs']} windows"))
        rows.append(("(e) area page, cached summary", f"{s['page_warm']['wall']:.3f}", "-", "-",
                     f"{s['page_warm']['load']:.1f}", "median"))
    log("")
    log(table(rows, ("measure", "wall s", "CPU s", "peak MB", "load", "note")))
    a = results["consolidate"]["wall"]
    ratios = [("consolidate vs naive (b/a)", results["naive"]["wall"] / a if "naive" in results else None, ">= 20x"),
              ("consolidate vs floor (a/c)", a / results["floor"]["wall"], "<= 1.5x"),
              ("ingest vs consolidate (d/a)", results["ingest"]["wall"] / a if "ingest" in results else None, "<= 2x"),
              ("consolidate vs pre-check + floor (a/c2)", a / results["safe_floor"]["wall"], "(no target)")]
    log("")
    cpu = {key: results[key]["cpu"] for key in ("consolidate", "floor", "safe_floor", "naive", "ingest")
           if key in results}
    by_cpu = [cpu["naive"] / cpu["consolidate"] if "naive" in cpu else None,
              cpu["consolidate"] / cpu["floor"],
              cpu["ingest"] / cpu["consolidate"] if "ingest" in cpu else None,
              cpu["consolidate"] / cpu["safe_floor"]]
    log(table([(name, "-" if v is None else f"{v:.1f}x", "-" if c is None else f"{c:.1f}x", target)
               for (name, v, target), c in zip(ratios, by_cpu)],
              ("ratio", "by wall time", "by CPU time", "target")))
    log("")
    log(f"(f) one workbook stage by stage, CPU ms in one thread (median of {min(len(paths), args.stage_sites)})")
    log(table(stage_rows(stages), ("stage", "ms", "x floor")))
    record = {"when": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
              "sites": len(paths), "rows": args.rows, "months": args.months, "repeats": args.repeats,
              "results": {k: {kk: vv for kk, vv in v.items() if kk not in ("stdout", "stderr")}
                          for k, v in results.items()}, "stages_ms": stages}
    OUTPUT.mkdir(parents=True, exist_ok=True)
    out = OUTPUT / f"consolidation_{len(paths)}x{args.rows}.json"
    out.write_text(json.dumps(record, indent=2, default=str))
    log(f"\n(figures saved in {out.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
