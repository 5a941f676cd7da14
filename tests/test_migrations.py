"""The Alembic migrations: one head, upgrade from empty, match the models, round-trip."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from webapp.store import Base, downgrade, make_engine, migrate
from webapp.store.db import REPO_ROOT as REPO
from webapp.store.db import alembic_config


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'ratings.db'}")
    yield engine
    engine.dispose()


def schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_exactly_one_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"


def test_upgrade_from_empty_creates_every_table(engine: Engine) -> None:
    assert inspect(engine).get_table_names() == []
    migrate(engine)
    tables = set(inspect(engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_models_match_migrations(engine: Engine) -> None:
    migrate(engine)
    assert schema_differences(engine) == []


def test_empty_database_differs_from_models(engine: Engine) -> None:
    # Guards the check above: compare_metadata does see a missing schema.
    assert schema_differences(engine) != []


def test_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    migrate(engine)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    migrate(engine)
    assert schema_differences(engine) == []


def test_migrate_is_idempotent_and_works_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    url = f"sqlite:///{tmp_path / 'by-url.db'}"
    migrate(url)
    migrate(url)
    engine = make_engine(url)
    try:
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def start_replicas(url: str, count: int) -> None:
    """Runs `migrate(url)` in `count` separate processes at once, as app replicas would."""
    code = "import sys; from webapp.store import migrate; migrate(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", code, url], cwd=REPO, env=env, stderr=subprocess.PIPE
        )
        for _ in range(count)
    ]
    for replica in replicas:
        _, stderr = replica.communicate(timeout=120)
        assert replica.returncode == 0, stderr.decode(errors="replace")[-2000:]


def test_replicas_starting_together_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    start_replicas(url, 3)
    engine = make_engine(url)
    try:
        assert schema_differences(engine) == []
    finally:
        engine.dispose()
