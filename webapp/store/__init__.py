"""The ratings store: SQLAlchemy models, engines, sessions and start-up migrations."""

from __future__ import annotations

from webapp.store.db import (
    data_dir,
    database_url,
    downgrade,
    make_engine,
    migrate,
    session_scope,
)
from webapp.store.models import (
    ABChoice,
    Assignment,
    Base,
    Condition,
    Item,
    Participant,
    Rating,
    Stimulus,
    Study,
)

__all__ = [
    "ABChoice",
    "Assignment",
    "Base",
    "Condition",
    "Item",
    "Participant",
    "Rating",
    "Stimulus",
    "Study",
    "data_dir",
    "database_url",
    "downgrade",
    "make_engine",
    "migrate",
    "session_scope",
]
