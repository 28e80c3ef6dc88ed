"""Imported once by the fork server of the reader workers (``server.ingest.PRELOAD``).

It reads and checks one small synthetic log, so every worker forked from that server starts with
the reader's and validator's first-use work already done (compiled patterns, pyarrow kernels,
pandas' lazy set-up) instead of doing it again for each upload: measured, a third of a worker's
CPU time.  A failure here only costs that speed, never the fork server.
"""

from __future__ import annotations

import gc
import logging
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


def warm_up() -> None:
    from workbook_templates.builder import build_workbook
    from workbook_templates.synthetic import make_site

    from .ingest import read_and_validate

    with tempfile.TemporaryDirectory(prefix="nearmiss-warmup-") as folder:
        path = build_workbook(Path(folder) / "warmup.xlsx", make_site("WARM", "Warm-up", months=3, seed=1))
        read_and_validate(path.read_bytes(), name="warmup.xlsx")


def prepare_fork_server() -> None:
    try:
        warm_up()
    except Exception:  # noqa: BLE001 - logged; the workers then warm up one by one, as before
        logger.exception("warming up the reader workers failed")
    # Everything made so far lives as long as the fork server: kept out of the collector, so a worker's
    # collections do not write to (and copy) the pages it shares with the fork server.
    gc.freeze()


prepare_fork_server()
