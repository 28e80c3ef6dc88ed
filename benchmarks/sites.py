"""Synthetic site workbooks for the benchmarks, built through the project's own template and cached.

Each site is ``make_site(...)`` written by ``build_workbook``, exactly as a care manager's
workbook would come out of ``nearmiss template`` and a year or more of use.  Files are kept in
``benchmarks/output/`` (git-ignored) under a folder named after the rows, months and last
month of data, so a later run reuses them; site ``i`` is the same file whatever ``--sites`` is.

    python benchmarks/sites.py --sites 200 --rows 2000      # build (or top up) the cache only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "output"
FLAW_RATE = 0.02  # a few typical mistakes per site, so validation has findings to report, as in real logs


def data_end(today: dt.date | None = None) -> dt.date:
    """The last day of the previous month: the data runs up to it, so the last month is complete."""
    today = today or dt.date.today()
    return today.replace(day=1) - dt.timedelta(days=1)


def site_code(i: int) -> str:
    return f"S{i:03d}"


def setting_of(i: int) -> str:
    return "homecare" if i % 4 == 0 else "care_home"  # both exposure units, as a mixed provider has


def cache_dir(rows: int, months: int, end: dt.date) -> Path:
    return OUTPUT / f"sites_r{rows}_m{months}_{end:%Y%m}"


def _build_one(args: tuple[int, int, int, str, str]) -> tuple[str, int, int, float]:
    i, rows, months, end_iso, folder = args
    from workbook_templates.builder import build_workbook
    from workbook_templates.synthetic import make_site

    start = time.perf_counter()
    records = make_site(site_code(i), f"Site {i:03d}", setting=setting_of(i), months=months,
                        reports_per_month=rows / months, end=dt.date.fromisoformat(end_iso), seed=i,
                        flaw_rate=FLAW_RATE, beds=30 + i % 30)
    path = Path(folder) / f"{site_code(i)}.xlsx"
    tmp = path.with_suffix(".part.xlsx")
    build_workbook(tmp, records)
    os.replace(tmp, path)
    return str(path), len(records.incidents), len(records.actions), time.perf_counter() - start


def ensure_sites(n: int, rows: int, months: int, *, workers: int = 2, end: dt.date | None = None,
                 log=print) -> list[Path]:
    """Paths of sites 1..n, building (in a process pool) the ones not cached yet."""
    end = end or data_end()
    folder = cache_dir(rows, months, end)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{site_code(i)}.xlsx" for i in range(1, n + 1)]
    todo = [i for i, p in enumerate(paths, start=1) if not p.exists()]
    if todo:
        log(f"building {len(todo)} site workbook(s) of ~{rows:,} rows over {months} months in {folder} "
            f"({workers} processes; cached for later runs) ...")
        start = time.perf_counter()
        done = 0
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_build_one, (i, rows, months, end.isoformat(), str(folder))) for i in todo]
            for future in as_completed(futures):
                future.result()
                done += 1
                if done % 20 == 0 or done == len(todo):
                    log(f"  {done}/{len(todo)} built, {time.perf_counter() - start:.0f} s")
        manifest = {"rows_per_site": rows, "months": months, "data_end": end.isoformat(), "flaw_rate": FLAW_RATE,
                    "sites_built": len(list(folder.glob("S*.xlsx")))}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    paths = ensure_sites(args.sites, args.rows, args.months, workers=args.workers)
    print(f"{len(paths)} site workbooks in {paths[0].parent}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
