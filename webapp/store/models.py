"""Tables of the ratings store: studies, their items and soundtracks, participants and answers.

No personal data lives here: a participant is a random UUID the browser keeps, nothing more
(no IP address, no user agent, no name). Media are referred to by paths relative to the
app's data folder, never by absolute paths.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Named constraints let Alembic's batch mode on SQLite (which copies tables) and downgrades
# find every constraint by a stable name on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STUDY_KINDS = ("likert", "ab")
SCALE_MIN = 1
SCALE_MAX = 5
SCALES = ("musicality", "fit", "overall")

SLUG_LENGTH = 64
NAME_LENGTH = 64
TITLE_LENGTH = 200
REF_LENGTH = 500
TOKEN_LENGTH = 36  # a UUID in its canonical text form
KEY_LENGTH = 32


def utc_now() -> datetime:
    """The current time in UTC; every timestamp in the store is UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Study(Base):
    """A listening study: 'likert' (rate each soundtrack 1-5) or 'ab' (blind preference)."""

    __tablename__ = "study"
    __table_args__ = (CheckConstraint("kind IN ('likert', 'ab')", name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(SLUG_LENGTH), unique=True)
    title: Mapped[str] = mapped_column(String(TITLE_LENGTH))
    kind: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    closed: Mapped[bool] = mapped_column(Boolean, default=False)

    conditions: Mapped[list[Condition]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True
    )
    items: Mapped[list[Item]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True
    )


class Condition(Base):
    """One system under test, e.g. 'full', 'no-sac' or 'real'; hidden from participants."""

    __tablename__ = "condition"
    __table_args__ = (UniqueConstraint("study_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))

    study: Mapped[Study] = relationship(back_populates="conditions")


class Item(Base):
    """One video of a study; its soundtracks (one per condition) are its stimuli."""

    __tablename__ = "item"
    __table_args__ = (UniqueConstraint("study_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    video_ref: Mapped[str] = mapped_column(String(REF_LENGTH))

    study: Mapped[Study] = relationship(back_populates="items")
    stimuli: Mapped[list[Stimulus]] = relationship(
        back_populates="item", cascade="all, delete-orphan", passive_deletes=True
    )


class Stimulus(Base):
    """The soundtrack of one condition for one item.

    `key` is a random opaque handle the browser uses, so that neither ids nor file names
    tell a participant which condition a track belongs to.
    """

    __tablename__ = "stimulus"
    __table_args__ = (UniqueConstraint("item_id", "condition_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_LENGTH), unique=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    condition_id: Mapped[int] = mapped_column(
        ForeignKey("condition.id", ondelete="CASCADE"), index=True
    )
    media_ref: Mapped[str] = mapped_column(String(REF_LENGTH))

    item: Mapped[Item] = relationship(back_populates="stimuli")
    condition: Mapped[Condition] = relationship()


class Participant(Base):
    """Someone taking a study, known only by a random UUID token kept by their browser."""

    __tablename__ = "participant"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(TOKEN_LENGTH), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    study: Mapped[Study] = relationship()


class Assignment(Base):
    """One trial in a participant's private random order, with its blind label.

    Likert: `stimulus` is the track rated, `label` reads e.g. 'Track 2'. A/B: `stimulus` is
    played as 'A' and `stimulus_b` as 'B'. The label-to-condition mapping never leaves the
    server.
    """

    __tablename__ = "assignment"
    __table_args__ = (
        UniqueConstraint("participant_id", "position"),
        UniqueConstraint("participant_id", "stimulus_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"), index=True)
    stimulus_id: Mapped[int] = mapped_column(
        ForeignKey("stimulus.id", ondelete="CASCADE"), index=True
    )
    stimulus_b_id: Mapped[int | None] = mapped_column(
        ForeignKey("stimulus.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(16))

    participant: Mapped[Participant] = relationship()
    item: Mapped[Item] = relationship()
    stimulus: Mapped[Stimulus] = relationship(foreign_keys=[stimulus_id])
    stimulus_b: Mapped[Stimulus | None] = relationship(foreign_keys=[stimulus_b_id])


class Rating(Base):
    """A participant's 1-5 scores for one soundtrack; a re-submit updates this row."""

    __tablename__ = "rating"
    __table_args__ = (
        UniqueConstraint("participant_id", "stimulus_id"),
        CheckConstraint(f"musicality BETWEEN {SCALE_MIN} AND {SCALE_MAX}", name="musicality_range"),
        CheckConstraint(f"fit BETWEEN {SCALE_MIN} AND {SCALE_MAX}", name="fit_range"),
        CheckConstraint(f"overall BETWEEN {SCALE_MIN} AND {SCALE_MAX}", name="overall_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"))
    stimulus_id: Mapped[int] = mapped_column(
        ForeignKey("stimulus.id", ondelete="CASCADE"), index=True
    )
    musicality: Mapped[int] = mapped_column(SmallInteger)
    fit: Mapped[int] = mapped_column(SmallInteger)
    overall: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    participant: Mapped[Participant] = relationship()
    stimulus: Mapped[Stimulus] = relationship()


class ABChoice(Base):
    """A participant's blind preference for one item; a re-submit updates this row."""

    __tablename__ = "ab_choice"
    __table_args__ = (UniqueConstraint("participant_id", "item_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"), index=True)
    chosen_condition_id: Mapped[int] = mapped_column(
        ForeignKey("condition.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    participant: Mapped[Participant] = relationship()
    item: Mapped[Item] = relationship()
    chosen_condition: Mapped[Condition] = relationship()


# An A/B answer names an item; this finds the participant's trial for it without a scan.
Index("ix_assignment_participant_item", Assignment.participant_id, Assignment.item_id)
