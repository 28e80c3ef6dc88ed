"""Nothing lost: 20 clients upload at once to a real ``nearmiss serve``, on SQLite (WAL) and PostgreSQL.

Per backend, one module-scoped run (:func:`race`): a fresh instance folder and database, ten
sites in two areas made with ``nearmiss admin add-site`` and two area-lead tokens with
``nearmiss admin add-token``, then ``nearmiss serve`` (waitress, 24 threads) on a free
127.0.0.1 port.  Twenty client threads start together at a barrier, two per site, each with a
fixed list of uploads (bounded in count, and every request and the whole run in time):

- every site's workbook is sent by both of its clients at once (racing duplicates);
- RA1 and RB1 have three versions: each of their two clients sends v1, v2 then v3, so the
  versions race one another and v3 must end current (an older copy sent again after a newer one
  becomes current again, and is then superseded by the client's next upload).

A reader polls both areas' summaries meanwhile.  The tests then check the answers, the
database and the uploads folder against what plain pandas reads from each workbook file.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, event, make_url, select, text
from sqlalchemy.orm import Session, sessionmaker

from server.cli import main
from server.db import Database, make_engine, write_session
from server.models import AuditEvent, Site, Submission
from server.recovery import recover_uploads

from .live import MONTHS, Expected, LiveServer, add_up, check_whole, expected_from_file, http, server_environment, \
    summary_figures, upload

AREAS = {"North": ["RA1", "RA2", "RA3", "RA4", "RA5"], "South": ["RB1", "RB2", "RB3", "RB4", "RB5"]}
SITE_AREA = {code: area for area, codes in AREAS.items() for code in codes}
VERSIONS = {"RA1": 3, "RB1": 3}  # the others have one
CLIENTS_PER_SITE = 2
RUN_TIMEOUT_S = 150  # the whole race; each request has 120 s
RANGE = f"from={MONTHS[0]}&to={MONTHS[-1]}"


@dataclass
class Answer:
    code: str
    version: int
    client: int
    status: int
    body: dict
    seconds: float


@dataclass
class Race:
    backend: str
    url: str
    upload_folder: Path
    expected: dict[tuple[str, int], Expected]
    answers: list[Answer] = field(default_factory=list)
    seen_totals: list[tuple[str, int]] = field(default_factory=list)  # (site, reports total) seen while racing
    summaries: dict[str, dict] = field(default_factory=dict)  # area -> final summary JSON
    seconds: float = 0.0
    recovery_in_use: int = 0  # .part files of running ingests that recovery saw (and left alone) meanwhile
    recovery_completed: list[str] = field(default_factory=list)
    engine: Engine | None = None

    def session(self) -> Session:
        if self.engine is None:
            self.engine = make_engine(self.url)
        return Session(self.engine)


@pytest.fixture(scope="module")
def versions(workbooks) -> dict[tuple[str, int], Expected]:  # noqa: ANN001
    """Each site's workbooks (12 months, ~100 rows), built once, with what pandas reads from them."""
    out = {}
    for code in SITE_AREA:
        for version in range(1, VERSIONS.get(code, 1) + 1):
            seed = 100 * (list(SITE_AREA).index(code) + 1) + version
            path = workbooks.path(code, seed, reports_per_month=8.0)
            out[code, version] = expected_from_file(path, code, version)
    assert len({e.sha256 for e in out.values()}) == len(out)  # every workbook distinct
    return out


def cli(env: dict[str, str], *args: str) -> str:
    """Run ``nearmiss <args>`` (click's runner) against ``env``'s instance and database; its last line."""
    overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("NEARMISS_")}
    overrides.update({k: v for k, v in env.items() if k.startswith("NEARMISS_")})
    result = CliRunner().invoke(main, list(args), env=overrides)
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def race(request: pytest.FixtureRequest, versions, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    backend = request.param
    folder = tmp_path_factory.mktemp(f"race-{backend}")
    instance = folder / "instance"
    database_url, admin = None, None
    if backend == "postgresql":
        admin = request.getfixturevalue("postgres_admin")
        name = f"nearmiss_t_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        database_url = make_url(admin.url).set(database=name).render_as_string(hide_password=False)
    try:
        env = server_environment(instance, database_url)
        tokens = {code: cli(env, "admin", "add-site", "--code", code, "--name", f"{code} House", "--area", area,
                            "--setting", "care_home") for code, area in SITE_AREA.items()}
        leads = {area: cli(env, "admin", "add-token", "--role", "area_lead", "--area", area, "--label", "race")
                 for area in AREAS}
        result = Race(backend=backend, upload_folder=instance / "uploads", expected=versions,
                      url=database_url or f"sqlite:///{instance / 'nearmiss.db'}")
        with LiveServer(env, folder / "serve.log", threads=24) as server:
            run_race(server, result, tokens, leads)
            for area in AREAS:
                status, body = http("GET", f"{server.url}/api/v1/summary?area={area}&{RANGE}", token=leads[area])
                assert status == 200, body
                result.summaries[area] = body
        print(f"\n[{backend}] {len(result.answers)} uploads by {len(tokens) * CLIENTS_PER_SITE} clients in "
              f"{result.seconds:.1f} s; slowest answer {max(a.seconds for a in result.answers):.1f} s; "
              f"{len(result.seen_totals)} summary readings meanwhile; recovery passes saw {result.recovery_in_use} "
              "running ingests' .part files")
        yield result
        if result.engine is not None:
            result.engine.dispose()
    finally:
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run_race(server: LiveServer, result: Race, tokens: dict[str, str], leads: dict[str, str]) -> None:
    clients = [(code, i) for code in SITE_AREA for i in range(CLIENTS_PER_SITE)]
    start = threading.Barrier(len(clients) + 2)  # the clients, the reader and this thread
    done = threading.Event()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client(code: str, number: int) -> None:
        try:
            start.wait(30)
            for version in range(1, VERSIONS.get(code, 1) + 1):  # bounded: at most three uploads
                assert time.monotonic() < deadline, "the race ran out of time"
                e = result.expected[code, version]
                began = time.monotonic()
                status, body = upload(server, tokens[code], e.data, f"{code.lower()}-v{version}.xlsx")
                with lock:
                    result.answers.append(Answer(code, version, number, status, body, time.monotonic() - began))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def reader() -> None:
        try:
            start.wait(30)
            for _ in range(100):  # bounded, and stops when the uploads are done
                if done.is_set() or time.monotonic() > deadline:
                    return
                for area, token in leads.items():
                    status, body = http("GET", f"{server.url}/api/v1/summary?area={area}&{RANGE}", token=token)
                    assert status == 200, body
                    with lock:
                        result.seen_totals.extend((code, block["reports"]["total"])
                                                  for code, block in body["per_site"].items())
                time.sleep(0.3)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=client, args=c, daemon=True) for c in clients]
    threads.append(threading.Thread(target=reader, daemon=True))
    for t in threads:
        t.start()
    start.wait(30)
    began = time.monotonic()
    recover_meanwhile(result, threads[:-1], deadline)
    for t in threads[:-1]:
        t.join(max(deadline - time.monotonic(), 0.1))
    result.seconds = time.monotonic() - began
    done.set()
    threads[-1].join(30)
    assert not [t for t in threads if t.is_alive()], "a client did not finish in time"
    assert not errors, errors


def recover_meanwhile(result: Race, clients: list[threading.Thread], deadline: float) -> None:
    """Start-up recovery run again and again while the uploads are in flight, as ``nearmiss admin`` does.

    Every ``nearmiss`` command makes the app and so runs :func:`server.recovery.recover_uploads`;
    it must leave the ``.part`` files of running ingests alone (they hold a flock on them).
    """
    engine = make_engine(result.url)
    database = Database(engine=engine, sessions=sessionmaker(bind=engine, expire_on_commit=False))
    try:
        for _ in range(2000):  # bounded; ends when the clients are done
            if not any(t.is_alive() for t in clients) or time.monotonic() > deadline:
                return
            found = recover_uploads(database, result.upload_folder)
            result.recovery_in_use += len(found.in_use)
            result.recovery_completed += found.completed
            time.sleep(0.02)
    finally:
        engine.dispose()


# --- the checks --------------------------------------------------------------------------------------

def test_every_upload_is_answered_stored_once_or_duplicate(race: Race) -> None:
    sent = sum(VERSIONS.get(code, 1) for code in SITE_AREA) * CLIENTS_PER_SITE
    assert len(race.answers) == sent == 28
    by_workbook = defaultdict(list)
    for a in race.answers:
        assert a.status in (200, 201), (a.code, a.version, a.status, a.body)
        by_workbook[a.code, a.version].append(a)
    assert set(by_workbook) == set(race.expected)
    for key, answers in by_workbook.items():
        e = race.expected[key]
        assert sorted(a.status for a in answers) == [200, 201], key  # stored once, the other a duplicate
        assert [a.body["duplicate"] for a in answers if a.status == 200] == [True]
        assert [a.body["duplicate"] for a in answers if a.status == 201] == [False]
        assert len({a.body["submission_id"] for a in answers}) == 1, key  # the same submission
        for a in answers:
            assert a.body["site_code"] == e.code
            assert a.body["counts"] == {"incidents": e.incidents, "actions": e.actions}, key


def test_every_workbook_is_one_whole_submission(race: Race) -> None:
    stored = {a.body["submission_id"]: (a.code, a.version) for a in race.answers if a.status == 201}
    with race.session() as session:
        submissions = check_whole(session, race.upload_folder)  # rows, files, no .part left
        codes = dict(session.execute(select(Site.id, Site.code)).all())
    assert len(submissions) == len(race.expected) == 14
    assert {s.id for s in submissions} == set(stored)
    for s in submissions:
        e = race.expected[stored[s.id]]
        assert codes[s.site_id] == e.code
        assert s.file_sha256 == e.sha256
        assert (s.n_incidents, s.n_actions) == (e.incidents, e.actions)  # what pandas reads from the file
    assert Counter(codes[s.site_id] for s in submissions) == {code: VERSIONS.get(code, 1) for code in SITE_AREA}


def test_each_site_has_one_current_submission_the_last_sent(race: Race) -> None:
    with race.session() as session:
        submissions = session.scalars(select(Submission)).all()
        codes = dict(session.execute(select(Site.id, Site.code)).all())
        events = session.execute(select(AuditEvent.action, AuditEvent.what, AuditEvent.detail)
                                 .where(AuditEvent.action.like("submission.%")).order_by(AuditEvent.id)).all()
    current = defaultdict(list)
    for s in submissions:
        if s.is_current:
            current[codes[s.site_id]].append(s)
    assert {code: len(subs) for code, subs in current.items()} == {code: 1 for code in SITE_AREA}
    for code in SITE_AREA:
        last = race.expected[code, VERSIONS.get(code, 1)]
        assert current[code][0].file_sha256 == last.sha256, code  # every client's last upload was the newest
    # The audit trail agrees: the last submission stored or made current again at each site is its current one.
    made_current = {}
    for action, what, detail in events:
        if action in ("submission.stored", "submission.reinstated"):
            made_current[detail["site"]] = int(what.split(":")[1])
    assert made_current == {code: subs[0].id for code, subs in current.items()}
    actions = Counter(action for action, _, _ in events)
    assert actions["submission.stored"] == 14
    assert actions["submission.duplicate"] + actions["submission.reinstated"] == 14
    assert actions["submission.refused"] == 0


def test_summary_counts_equal_the_current_workbooks_read_with_pandas(race: Race) -> None:
    for area, codes in AREAS.items():
        summary = race.summaries[area]
        assert summary["months"] == MONTHS
        assert sorted(summary["per_site"]) == codes
        current = [race.expected[code, VERSIONS.get(code, 1)] for code in codes]
        assert summary_figures(summary) == add_up(current), area
        for e in current:
            assert summary_figures(summary["per_site"][e.code]) == add_up([e]), e.code
            assert summary["submissions"][e.code]["incidents"] == e.incidents
            assert summary["submissions"][e.code]["actions"] == e.actions


def test_recovery_meanwhile_left_running_ingests_alone(race: Race) -> None:
    assert race.recovery_completed == []  # a committed upload is renamed by its own ingest
    with race.session() as session:
        events = session.scalars(select(AuditEvent.action).where(AuditEvent.who == "system:recovery")).all()
    assert events == []
    # (every upload answered and whole: the tests above; a .part removed under a running ingest would fail them)


def test_readers_meanwhile_saw_only_whole_submissions(race: Race) -> None:
    assert race.seen_totals, "the reader took no readings"
    whole = defaultdict(lambda: {0})  # nothing yet, or one of the site's workbooks in full
    for (code, _), e in race.expected.items():
        whole[code].add(e.incidents)
    for code, total in race.seen_totals:
        assert total in whole[code], (code, total, sorted(whole[code]))



def test_sqlite_runs_in_wal_mode_with_a_busy_timeout_and_writes_begin_immediate(tmp_path: Path) -> None:
    """../shared/spec/security.md: deferred check-then-insert lost rows under 8 writers; BEGIN IMMEDIATE lost none."""
    engine = make_engine(f"sqlite:///{tmp_path / 'nearmiss.db'}")
    statements: list[str] = []
    event.listen(engine, "connect", lambda dbapi, _record: dbapi.set_trace_callback(statements.append))
    database = Database(engine=engine, sessions=sessionmaker(bind=engine))
    try:
        with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA busy_timeout").scalar() == 30_000
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            pragma("CREATE TABLE t (x INTEGER)")
            connection.commit()
        statements.clear()
        with write_session(database) as session:
            session.execute(text("INSERT INTO t VALUES (1)"))
        assert statements == ["BEGIN IMMEDIATE", "INSERT INTO t VALUES (1)", "COMMIT"]
        statements.clear()
        with database.sessions() as session:  # a read: an ordinary deferred BEGIN, no write lock
            assert session.execute(text("SELECT count(*) FROM t")).scalar() == 1
        assert statements[0] == "BEGIN"
    finally:
        engine.dispose()
