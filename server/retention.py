"""Retention: remove the stored upload files of superseded submissions after a number of days.

``NEARMISS_RETENTION_DAYS=N`` (``app.config["RETENTION_DAYS"]``; unset keeps every file) lets
:func:`purge` delete the file under ``instance/uploads`` of each submission that was superseded
more than N days ago.  The current submission of a site is never touched, and nothing is deleted
from the database: the submission's row, its incidents, actions and findings and every audit
event stay, the submission is marked ``file_removed_at``, and each removal writes its own audit
event (``retention.purge``, with the file's SHA-256).  The checked copy of such a submission
answers 410 with a message saying why.

It runs when ``nearmiss serve`` starts and from ``nearmiss admin purge [--days N] [--dry-run]``.
Each submission is handled in its own write transaction with its site's row locked (as
``server/ingest.py`` does), so an older workbook sent again at the same moment, which makes that
submission current again, either happens first (and the file stays) or after (and finds the
row marked).  The file is moved aside before the commit and deleted after it, and moved back
when the commit fails, so the row and the folder never disagree; a ``.<name>.purge`` file that a
killed server left behind is finished (row marked: deleted) or put back (row not marked) by the next run.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from .admin import audit
from .db import Database, write_session
from .ingest import iso_utc
from .models import Site, Submission, utcnow

ACTION = "retention.purge"
ASIDE = re.compile(r"^\.(?P<stored>[0-9a-f]{32}\.xlsx)\.purge$")  # a file moved aside by _purge_one
log = logging.getLogger(__name__)


@dataclass
class Removed:
    submission_id: int
    site: str
    original_name: str
    file_sha256: str
    superseded_at: str | None  # ISO UTC
    file_found: bool = True  # False: the file had already gone (the row is marked all the same)


@dataclass
class PurgeResult:
    days: int
    cutoff: dt.datetime
    dry_run: bool
    removed: list[Removed] = field(default_factory=list)  # with dry_run: what would be removed

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        n = len(self.removed)
        return (f"retention ({self.days} day{'s' if self.days != 1 else ''}): {verb} {n} stored "
                f"file{'s' if n != 1 else ''} of submissions superseded before {iso_utc(self.cutoff)}")


def _due(cutoff: dt.datetime):  # noqa: ANN202 - the WHERE clause of a submission whose file may go
    return (Submission.is_current.is_(False), Submission.superseded_at.is_not(None),
            Submission.superseded_at < cutoff, Submission.file_removed_at.is_(None))


def purge(db: Database, *, upload_folder: str | Path, days: int, who: str, now: dt.datetime | None = None,
          dry_run: bool = False) -> PurgeResult:
    """Remove the files of submissions superseded more than ``days`` days before ``now``."""
    if days < 0:
        raise ValueError("days must be 0 or more")
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=days)
    result = PurgeResult(days=days, cutoff=cutoff, dry_run=dry_run)
    folder = Path(upload_folder)
    if not dry_run:
        _finish_aside(db, folder)
    with db.sessions() as session:
        due = session.execute(select(Submission.id, Submission.site_id).where(*_due(cutoff))
                              .order_by(Submission.id)).all()
    for submission_id, site_id in due:
        if dry_run:
            with db.sessions() as session:
                row = session.get(Submission, submission_id)
                result.removed.append(_removed(row, folder))
            continue
        removed = _purge_one(db, submission_id, site_id, folder=folder, cutoff=cutoff, now=now, who=who,
                             days=days)
        if removed is not None:
            result.removed.append(removed)
    if result.removed and not dry_run:
        log.info("%s", result.summary())
    return result


def _finish_aside(db: Database, folder: Path) -> None:
    """Files moved aside by a purge that was killed before it could delete them or put them back."""
    aside = {m["stored"]: folder / m.string for m in map(ASIDE.match, _names(folder)) if m}
    if not aside:
        return
    with db.sessions() as session:
        marked = dict(session.execute(select(Submission.stored_name, Submission.file_removed_at)
                                      .where(Submission.stored_name.in_(list(aside)))).all())
    for stored_name, path in aside.items():
        if marked.get(stored_name) is not None or stored_name not in marked:
            path.unlink(missing_ok=True)  # the removal was committed (or no row names the file)
        elif not (folder / stored_name).exists():
            os.replace(path, folder / stored_name)  # the removal never committed: the file is still kept
        log.warning("retention: finished %s left by an interrupted purge", path.name)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _removed(row: Submission, folder: Path) -> Removed:
    return Removed(submission_id=row.id, site=row.site.code, original_name=row.original_name,
                   file_sha256=row.file_sha256, superseded_at=iso_utc(row.superseded_at),
                   file_found=(folder / row.stored_name).is_file())


def _purge_one(db: Database, submission_id: int, site_id: int, *, folder: Path, cutoff: dt.datetime,
               now: dt.datetime, who: str, days: int) -> Removed | None:
    path = hidden = None
    try:
        with write_session(db) as session:
            session.scalar(select(Site.id).where(Site.id == site_id).with_for_update())  # as ingest does
            row = session.scalar(select(Submission).where(Submission.id == submission_id, *_due(cutoff)))
            if row is None:  # made current again (or purged) since the list was read
                return None
            removed = _removed(row, folder)
            row.file_removed_at = now
            audit(session, who, ACTION, f"submission:{row.id}", file_sha256=row.file_sha256, site=removed.site,
                  original_name=row.original_name, superseded_at=removed.superseded_at, retention_days=days,
                  file_found=removed.file_found, size=row.size)
            session.flush()
            if removed.file_found:
                path = folder / row.stored_name
                hidden = folder / f".{row.stored_name}.purge"
                os.replace(path, hidden)
    except BaseException:
        if hidden is not None and hidden.exists():
            os.replace(hidden, path)  # the row was not marked: the file stays
        raise
    if hidden is not None:
        hidden.unlink(missing_ok=True)
    return removed


def purge_configured(app, *, who: str) -> PurgeResult | None:  # noqa: ANN001 - a Flask app
    """:func:`purge` with the app's ``RETENTION_DAYS`` (None when the setting is not given)."""
    from .db import get_db

    days = app.config.get("RETENTION_DAYS")
    if days is None:
        return None
    return purge(get_db(app), upload_folder=app.config["UPLOAD_FOLDER"], days=int(days), who=who)
