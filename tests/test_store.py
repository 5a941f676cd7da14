"""The ratings store: engine settings, constraints, cascades, sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError

from webapp.store import (
    Condition,
    Item,
    Participant,
    Rating,
    Stimulus,
    Study,
    database_url,
    make_engine,
    migrate,
    session_scope,
)
from webapp.store.db import normalise_url


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'ratings.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def add_study(engine: Engine) -> tuple[int, int]:
    """A one-item study with one participant; returns (participant id, stimulus id)."""
    with session_scope(engine) as session:
        study = Study(slug="s", title="S", kind="likert")
        condition = Condition(name="full", study=study)
        item = Item(name="clip", video_ref="v.mp4", study=study)
        stimulus = Stimulus(key="k" * 32, item=item, condition=condition, media_ref="a.wav")
        participant = Participant(token="0" * 36, study=study)
        session.add_all([study, stimulus, participant])
        session.flush()
        return participant.id, stimulus.id


def test_default_url_is_a_sqlite_file_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DIFFBGM_DATA_DIR", str(tmp_path / "appdata"))
    assert database_url() == f"sqlite:///{tmp_path / 'appdata' / 'diffbgm.db'}"
    assert (tmp_path / "appdata").is_dir()
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")
    assert database_url() == "postgresql+psycopg://u@h/db"


def test_normalise_url_keeps_explicit_drivers() -> None:
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_runs_in_wal_mode_with_foreign_keys(engine: Engine) -> None:
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


@pytest.mark.parametrize("column", ["musicality", "fit", "overall"])
@pytest.mark.parametrize("value", [0, 6])
def test_scores_outside_1_to_5_are_refused_by_the_database(
    engine: Engine, column: str, value: int
) -> None:
    participant_id, stimulus_id = add_study(engine)
    scores = {"musicality": 3, "fit": 3, "overall": 3, column: value}
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(Rating(participant_id=participant_id, stimulus_id=stimulus_id, **scores))


def test_one_rating_per_participant_and_stimulus(engine: Engine) -> None:
    participant_id, stimulus_id = add_study(engine)
    with session_scope(engine) as session:
        session.add(
            Rating(
                participant_id=participant_id,
                stimulus_id=stimulus_id,
                musicality=1,
                fit=2,
                overall=3,
            )
        )
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(
            Rating(
                participant_id=participant_id,
                stimulus_id=stimulus_id,
                musicality=1,
                fit=2,
                overall=3,
            )
        )


def test_unknown_study_kind_is_refused(engine: Engine) -> None:
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(Study(slug="bad", title="Bad", kind="mushra"))


def test_deleting_a_study_cascades_to_everything_below_it(engine: Engine) -> None:
    participant_id, stimulus_id = add_study(engine)
    with session_scope(engine) as session:
        session.add(
            Rating(
                participant_id=participant_id,
                stimulus_id=stimulus_id,
                musicality=4,
                fit=4,
                overall=4,
            )
        )
    with engine.begin() as connection:
        # Plain SQL, so the database's ON DELETE CASCADE does the work, not the ORM.
        connection.execute(text("DELETE FROM study"))
    with session_scope(engine) as session:
        for model in (Condition, Item, Stimulus, Participant, Rating):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(Participant(token="1" * 36, study_id=999))


def test_session_scope_rolls_back_on_error(engine: Engine) -> None:
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        session.add(Study(slug="gone", title="Gone", kind="ab"))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Study)) == 0
