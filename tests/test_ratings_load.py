"""Concurrent rating submissions: no error, no lost and no duplicated row.

SQLite (a WAL-mode file, as the app runs by default) always; PostgreSQL when its server
binaries are installed: a throwaway server is started on 127.0.0.1 for the test.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from webapp import studies as st
from webapp.store import (
    Assignment,
    Base,
    Participant,
    Rating,
    Stimulus,
    downgrade,
    make_engine,
    migrate,
    session_scope,
)
from webapp.store.db import REPO_ROOT

ADMIN = "load-test-admin-secret"
N_PARTICIPANTS = 50
N_ITEMS = 5
CONDITIONS = ("full", "no-sac")  # 5 items x 2 tracks = 10 ratings per participant
WORKERS = 24
RESUBMIT_EVERY = 2  # every 2nd answer is re-submitted with new scores


@dataclass(frozen=True)
class LoadReport:
    submissions: int
    seconds: float
    resubmissions: int
    resubmit_seconds: float

    def line(self, database: str) -> str:
        return (
            f"{database}: {self.submissions} concurrent submissions ({WORKERS} threads) in "
            f"{self.seconds:.2f} s = {self.submissions / self.seconds:.0f}/s; "
            f"{self.resubmissions} re-submits in {self.resubmit_seconds:.2f} s = "
            f"{self.resubmissions / self.resubmit_seconds:.0f}/s"
        )


def scores_for(participant: int, trial: int, round_: int) -> tuple[int, int, int]:
    return (1 + (participant + trial) % 5, 1 + (participant * 3 + trial + round_) % 5, 1 + round_)


def run_in_threads(calls: list[Callable[[], None]]) -> float:
    """Runs every call on a thread pool; re-raises the first error; returns wall seconds."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()
    return time.perf_counter() - start


def submit(
    engine: Engine, token: str, key: str, scores: tuple[int, int, int]
) -> Callable[[], None]:
    def call() -> None:
        with session_scope(engine) as session:
            st.submit_rating(session, token, key, *scores)

    return call


def join(engine: Engine, slug: str, tokens: list[str]) -> Callable[[], None]:
    def call() -> None:
        with session_scope(engine) as session:
            tokens.append(st.join(session, slug))

    return call


def trial_keys(engine: Engine, token: str) -> list[str]:
    with session_scope(engine) as session:
        query = (
            select(Stimulus.key)
            .join(Assignment, Assignment.stimulus_id == Stimulus.id)
            .join(Participant, Participant.id == Assignment.participant_id)
            .where(Participant.token == token)
            .order_by(Assignment.position)
        )
        return list(session.scalars(query))


def stored_scores(engine: Engine) -> dict[tuple[str, str], tuple[int, int, int]]:
    with session_scope(engine) as session:
        query = (
            select(Participant.token, Stimulus.key, Rating.musicality, Rating.fit, Rating.overall)
            .join(Participant, Participant.id == Rating.participant_id)
            .join(Stimulus, Stimulus.id == Rating.stimulus_id)
        )
        return {
            (token, key): (musicality, fit, overall)
            for token, key, musicality, fit, overall in session.execute(query)
        }


def load_test(engine: Engine) -> LoadReport:
    """50 participants join at once, rate 10 tracks each (500 submissions, every one of a
    hundred sent twice at the same time), then re-submit half with new scores."""
    with session_scope(engine) as session:
        items = [
            st.ItemSpec(f"clip-{i}", f"v/{i}.mp4", {c: f"a/{i}{c}.wav" for c in CONDITIONS})
            for i in range(N_ITEMS)
        ]
        slug = st.create_study(session, ADMIN, "Load", "likert", CONDITIONS, items).slug
    tokens: list[str] = []
    run_in_threads([join(engine, slug, tokens) for _ in range(N_PARTICIPANTS)])
    assert len(set(tokens)) == N_PARTICIPANTS
    plan = [
        (p, t, token, key)
        for p, token in enumerate(tokens)
        for t, key in enumerate(trial_keys(engine, token))
    ]
    assert len(plan) == N_PARTICIPANTS * N_ITEMS * len(CONDITIONS)

    expected = {(token, key): scores_for(p, t, 0) for p, t, token, key in plan}
    first = [submit(engine, token, key, expected[(token, key)]) for _, _, token, key in plan]
    racing_twins = first[::5]  # the same answer sent twice concurrently must stay one row
    seconds = run_in_threads(first + racing_twins)

    again = [(p, t, token, key) for p, t, token, key in plan if (p + t) % RESUBMIT_EVERY == 0]
    for p, t, token, key in again:
        expected[(token, key)] = scores_for(p, t, 1)
    resubmit_seconds = run_in_threads(
        [submit(engine, token, key, expected[(token, key)]) for _, _, token, key in again]
    )

    with session_scope(engine) as session:
        assert session.scalar(select(func.count(Rating.id))) == len(plan)
    assert stored_scores(engine) == expected
    return LoadReport(len(first) + len(racing_twins), seconds, len(again), resubmit_seconds)


def test_concurrent_ratings_on_sqlite_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(st.ADMIN_TOKEN_ENV, ADMIN)
    engine = make_engine(f"sqlite:///{tmp_path / 'ratings.db'}")
    try:
        migrate(engine)
        report = load_test(engine)
    finally:
        engine.dispose()
    print("\n" + report.line("SQLite (WAL file)"))


# --- PostgreSQL --------------------------------------------------------------------------


def postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql"
        )
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed (psycopg[binary])")
    # PostgreSQL refuses to run as root; then the server runs as the 'postgres' user.
    run_as: int | None = None
    if os.geteuid() == 0:
        try:
            run_as = pwd.getpwnam("postgres").pw_uid
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
    workdir = Path(tempfile.mkdtemp(prefix="diffbgm-pg-"))
    if run_as is not None:
        os.chown(workdir, run_as, -1)
    data, port = workdir / "data", free_port()
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, user=run_as, timeout=60)

    try:
        run(initdb, "-D", str(data), "-U", "diffbgm", "--auth=trust", "-E", "UTF8", "--no-sync")
        run(
            pg_ctl, "-D", str(data), "-l", str(workdir / "server.log"), "-o", options, "-w", "start"
        )
        yield f"postgresql+psycopg://diffbgm@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(workdir, ignore_errors=True)


def test_migrations_on_postgresql(postgres_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(postgres_url)
    try:
        migrate(engine)
        downgrade(engine, "base")
        migrate(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_concurrent_ratings_on_postgresql(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(st.ADMIN_TOKEN_ENV, ADMIN)
    engine = make_engine(postgres_url)
    try:
        migrate(engine)
        report = load_test(engine)
    finally:
        engine.dispose()
    print("\n" + report.line("PostgreSQL"))


def test_replicas_starting_together_migrate_once_on_postgresql(postgres_url: str) -> None:
    admin = make_engine(postgres_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql("CREATE DATABASE replicas")
    finally:
        admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/replicas"
    # Separate processes, as real replicas are (Alembic's context is global to a process).
    code = "import sys; from webapp.store import migrate; migrate(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", code, url], cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    for replica in replicas:
        _, stderr = replica.communicate(timeout=120)
        assert replica.returncode == 0, stderr.decode(errors="replace")[-2000:]
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            assert session.scalar(select(func.count()).select_from(Rating)) == 0
    finally:
        engine.dispose()
