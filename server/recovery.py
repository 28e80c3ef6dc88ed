"""Start-up recovery of uploads that a killed server left half done.

:func:`server.ingest.submit` writes an upload to ``uploads/.<stored_name>.part`` (fsynced, and
flock-ed while the ingest runs), stores its rows in one transaction, then renames the file to
``<stored_name>``.  A server killed on the way leaves a ``.part`` file that nobody holds:

- its submission never committed (killed before or inside the transaction): no row names it,
  so the file is removed (``upload.part_removed``);
- its submission committed but the rename did not happen: the row names it, so the rename is
  finished (``upload.part_completed``), and the submission has its file again.

A ``.part`` file whose flock is held belongs to an ingest still running (in this process or
another one on the same instance, e.g. ``nearmiss admin`` started while the server takes
uploads) and is left alone.  Ingests make and lock their files under a shared flock of the
uploads folder, taken exclusively here while looking, so a file is never caught unlocked in
the moment between being made and being locked (tests/server/test_concurrent_uploads.py
caught exactly that before).  The decision is made inside a write transaction that first locks
every site row (PostgreSQL; on SQLite ``BEGIN IMMEDIATE`` takes the write lock): an ingest
transaction holds its site's row, so a transaction of the killed process that the database has
not yet finished (committed or rolled back) is waited for rather than guessed at.

:func:`recover_uploads` runs in the app factory, so ``nearmiss serve`` does it on every start.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from .admin import audit
from .db import Database, write_session
from .ingest import finish_part
from .models import Site, Submission

log = logging.getLogger(__name__)
WHO = "system:recovery"
PART = re.compile(r"^\.(?P<stored>[0-9a-f]{32}\.xlsx)\.part$")  # ingest.part_name of a generated stored name


@dataclass
class Recovered:
    completed: list[str] = field(default_factory=list)  # stored names renamed into place
    removed: list[str] = field(default_factory=list)  # .part files of uncommitted uploads
    in_use: list[str] = field(default_factory=list)  # .part files a running ingest holds


def recover_uploads(db: Database, upload_folder: str | Path) -> Recovered:
    """Finish or remove the ``.part`` files no running ingest holds (see the module docstring)."""
    folder = Path(upload_folder)
    result = Recovered()
    if not folder.is_dir():
        return result
    held: dict[str, tuple[Path, int]] = {}  # stored name -> (.part path, descriptor holding its flock)
    directory = os.open(folder, os.O_RDONLY)
    try:
        # Ingests make and lock their .part files under a shared lock of the folder (ingest._write_part):
        # with it held exclusively here, an unlocked .part file is never one about to be locked.
        fcntl.flock(directory, fcntl.LOCK_EX)
        for path in sorted(folder.iterdir()):
            match = PART.match(path.name)
            if match is None:
                continue
            fd = _lock_if_abandoned(path)
            if fd is None:
                result.in_use.append(path.name)
            elif fd >= 0:
                held[match["stored"]] = (path, fd)
        os.close(directory)
        directory = -1
        if not held:
            return result
        with write_session(db) as session:
            session.execute(select(Site.id).with_for_update()).all()  # wait for any unfinished ingest
            committed = {s.stored_name: s for s in session.scalars(
                select(Submission).where(Submission.stored_name.in_(list(held))))}
            for stored_name, (path, _fd) in held.items():
                submission = committed.get(stored_name)
                size = path.stat().st_size
                if submission is not None:
                    finish_part(path, folder / stored_name)
                    result.completed.append(stored_name)
                    audit(session, WHO, "upload.part_completed", f"submission:{submission.id}",
                          file_sha256=submission.file_sha256, stored_name=stored_name, size=size,
                          reason="the server stopped after storing the submission, before renaming its file")
                    log.warning("recovery: submission %s was stored but its file was still %s; renamed it",
                                submission.id, path.name)
                else:
                    path.unlink()
                    result.removed.append(path.name)
                    audit(session, WHO, "upload.part_removed", path.name, size=size,
                          reason="the server stopped before this upload's submission was stored")
                    log.warning("recovery: removed %s, an upload whose submission was never stored", path.name)
    finally:
        if directory >= 0:
            os.close(directory)
        for _path, fd in held.values():
            os.close(fd)
    return result


def _lock_if_abandoned(path: Path) -> int | None:
    """A descriptor holding ``path``'s flock when no ingest holds it; None when one does; -1 when it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # renamed or removed by its ingest just now
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:  # its ingest finished with it between the listing and the lock
        os.close(fd)
        return -1
    return fd


def recover_app(app) -> Recovered:  # noqa: ANN001 - flask.Flask
    """:func:`recover_uploads` for an app's database and upload folder (called by create_app)."""
    from .db import get_db

    return recover_uploads(get_db(app), app.config["UPLOAD_FOLDER"])
