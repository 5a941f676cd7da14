"""Listening studies over the ratings store: create, join, blind trials, answers, results.

Plain functions over a SQLAlchemy Session (the caller commits, e.g. with
`webapp.store.session_scope`), so the web UI stays a thin layer on top.

Blindness: a participant sees tracks labelled 'Track 1', 'Track 2' ... (Likert) or 'A'/'B'
(A/B) in a random order seeded by their token, and addresses a track by a random stimulus
key; which condition a label stands for stays on the server. Admin actions (create, list,
results, export, close) need the token in `DIFFBGM_ADMIN_TOKEN`; without it they are off.
"""

from __future__ import annotations

import csv
import hmac
import io
import os
import random
import re
import secrets
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from diffbgm.errors import DiffBGMError
from webapp.settings import ADMIN_TOKEN_ENV, admin_token_problem
from webapp.stats import (
    DEFAULT_CONFIDENCE,
    MeanInterval,
    Proportion,
    binomial_p_value,
    mean_interval,
    proportion,
)
from webapp.store.db import data_dir
from webapp.store.models import (
    NAME_LENGTH,
    REF_LENGTH,
    SCALE_MAX,
    SCALE_MIN,
    SCALES,
    STUDY_KINDS,
    TITLE_LENGTH,
    ABChoice,
    Assignment,
    Base,
    Condition,
    Item,
    Participant,
    Rating,
    Stimulus,
    Study,
    utc_now,
)

AB_LABELS = ("A", "B")
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]*$")


class StudyError(DiffBGMError):
    """A study action cannot be done; the message says why in plain words."""


class AdminAccessError(StudyError):
    """Admin actions are disabled or the admin token is wrong."""


class NotFoundError(StudyError):
    """No such study, participant, track or item."""


class StudyClosedError(StudyError):
    """The study no longer takes answers."""


class InvalidAnswerError(StudyError):
    """A rating or choice is malformed (out of range, wrong kind of study, ...)."""


@dataclass(frozen=True)
class ItemSpec:
    """One video of a new study and its soundtracks, keyed by condition name.

    Refs are paths relative to the app's data folder (`DIFFBGM_DATA_DIR`).
    """

    name: str
    video_ref: str
    stimuli: Mapping[str, str]


@dataclass(frozen=True)
class StudyInfo:
    slug: str
    title: str
    kind: str
    closed: bool
    conditions: tuple[str, ...]
    n_items: int
    n_participants: int


@dataclass(frozen=True)
class BlindTrack:
    """A soundtrack as the participant sees it: a neutral label and an opaque key."""

    label: str
    stimulus_key: str
    media_ref: str


@dataclass(frozen=True)
class Trial:
    """The next thing a participant answers: a video with one (Likert) or two (A/B) tracks.

    `position` counts from 0 in the participant's own order; `answered` of `total` are done.
    """

    study_slug: str
    kind: str
    position: int
    total: int
    answered: int
    item_id: int
    video_ref: str
    tracks: tuple[BlindTrack, ...]


@dataclass(frozen=True)
class ConditionScores:
    """Likert results of one condition: n ratings and the mean/CI of each scale (1-5)."""

    condition: str
    n: int
    scales: Mapping[str, MeanInterval]


@dataclass(frozen=True)
class ConditionWins:
    """A/B results of one condition: how often it was preferred when it was played."""

    condition: str
    wins: Proportion


@dataclass(frozen=True)
class PairResult:
    """A/B results of one pair of conditions: how often `first` beat `second`."""

    first: str
    second: str
    first_wins: Proportion
    p_value: float | None


@dataclass(frozen=True)
class StudyResults:
    slug: str
    title: str
    kind: str
    confidence: float
    n_participants: int
    likert: tuple[ConditionScores, ...] = ()
    ab: tuple[ConditionWins, ...] = ()
    pairs: tuple[PairResult, ...] = field(default=())

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per condition (and per A/B pair), ready for a table or JSON."""
        rows: list[dict[str, Any]] = []
        for scores in self.likert:
            row: dict[str, Any] = {"condition": scores.condition, "n": scores.n}
            for scale, interval in scores.scales.items():
                row[f"{scale}_mean"] = interval.mean
                row[f"{scale}_low"] = interval.low
                row[f"{scale}_high"] = interval.high
            rows.append(row)
        for wins in self.ab:
            rows.append(_proportion_row({"condition": wins.condition}, wins.wins))
        for pair in self.pairs:
            row = _proportion_row({"condition": f"{pair.first} vs {pair.second}"}, pair.first_wins)
            row["p_value"] = pair.p_value
            rows.append(row)
        return rows


def _proportion_row(row: dict[str, Any], share: Proportion) -> dict[str, Any]:
    row.update(n=share.n, wins=share.successes, rate=share.rate, low=share.low, high=share.high)
    return row


# --- admin -----------------------------------------------------------------------------


def check_admin(admin_token: str | None) -> None:
    """Refuses unless `admin_token` equals `DIFFBGM_ADMIN_TOKEN` (compared in constant time).

    A token that is unset or too short to resist guessing turns admin actions off altogether.
    """
    expected = os.environ.get(ADMIN_TOKEN_ENV, "")
    problem = admin_token_problem(expected)
    if problem is not None:
        raise AdminAccessError(f"admin actions are disabled: {problem}; restart the app after")
    if not admin_token or not hmac.compare_digest(
        admin_token.encode("utf-8"), expected.encode("utf-8")
    ):
        raise AdminAccessError("the admin token is wrong")


def validate_ref(ref: str, what: str) -> str:
    """A media ref as a clean relative POSIX path inside the data folder, or a clear error."""
    text = ref.strip().replace("\\", "/")
    path = PurePosixPath(text)
    if not text or path.is_absolute() or re.match(r"^[A-Za-z]:", text):
        raise StudyError(f"{what} {ref!r} must be a path relative to the app's data folder")
    if ".." in path.parts:
        raise StudyError(f"{what} {ref!r} must not leave the app's data folder ('..')")
    if len(str(path)) > REF_LENGTH:
        raise StudyError(f"{what} {ref!r} is longer than {REF_LENGTH} characters")
    return str(path)


def resolve_ref(ref: str, root: Path | None = None) -> Path:
    """The file a stored ref points to, guaranteed to lie inside the data folder `root`."""
    base = (root or data_dir()).resolve()
    target = (base / validate_ref(ref, "media ref")).resolve()
    if not target.is_relative_to(base):
        raise StudyError(f"media ref {ref!r} points outside the data folder {base}")
    return target


def _check_name(name: str, what: str) -> str:
    cleaned = name.strip()
    if not NAME_PATTERN.match(cleaned) or len(cleaned) > NAME_LENGTH:
        raise StudyError(
            f"{what} {name!r} must be 1-{NAME_LENGTH} letters, digits, spaces or . _ + -"
        )
    return cleaned


def _new_slug(session: Session, title: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "study"
    while True:
        slug = f"{stem}-{secrets.token_hex(3)}"
        if session.scalar(select(Study.id).where(Study.slug == slug)) is None:
            return slug


def _validated_items(kind: str, conditions: Sequence[str], items: Sequence[ItemSpec]) -> None:
    if not items:
        raise StudyError("a study needs at least one item (a video with its soundtracks)")
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise StudyError("item names must be unique within a study")
    for item in items:
        unknown = sorted(set(item.stimuli) - set(conditions))
        if unknown:
            raise StudyError(f"item {item.name!r} names unknown conditions: {', '.join(unknown)}")
        if kind == "ab" and len(item.stimuli) != 2:
            raise StudyError(
                f"item {item.name!r} has {len(item.stimuli)} soundtracks; "
                "an A/B study needs exactly two per item"
            )
        if kind == "likert" and not item.stimuli:
            raise StudyError(f"item {item.name!r} has no soundtrack to rate")


def create_study(
    session: Session,
    admin_token: str | None,
    title: str,
    kind: str,
    conditions: Sequence[str],
    items: Sequence[ItemSpec],
    slug: str | None = None,
) -> StudyInfo:
    """Creates a study (admin only); returns it with its shareable `slug`."""
    check_admin(admin_token)
    title = title.strip()
    if not title or len(title) > TITLE_LENGTH:
        raise StudyError(f"a study needs a title of 1-{TITLE_LENGTH} characters")
    if kind not in STUDY_KINDS:
        raise StudyError(f"study kind {kind!r} is unknown; use one of {', '.join(STUDY_KINDS)}")
    condition_names = [_check_name(name, "condition") for name in conditions]
    if not condition_names or len(set(condition_names)) != len(condition_names):
        raise StudyError("a study needs one or more conditions with distinct names")
    items = [
        ItemSpec(
            name=_check_name(item.name, "item"),
            video_ref=validate_ref(item.video_ref, f"video of item {item.name!r}"),
            stimuli={
                _check_name(cond, "condition"): validate_ref(ref, f"soundtrack of {item.name!r}")
                for cond, ref in item.stimuli.items()
            },
        )
        for item in items
    ]
    _validated_items(kind, condition_names, items)
    if slug is None:
        slug = _new_slug(session, title)
    elif not SLUG_PATTERN.match(slug):
        raise StudyError(f"slug {slug!r} must be lowercase letters, digits and '-' (max 64)")
    elif session.scalar(select(Study.id).where(Study.slug == slug)) is not None:
        raise StudyError(f"a study with slug {slug!r} already exists")

    study = Study(slug=slug, title=title, kind=kind, closed=False)
    by_name = {name: Condition(name=name) for name in condition_names}
    study.conditions = list(by_name.values())
    study.items = [
        Item(
            name=spec.name,
            video_ref=spec.video_ref,
            stimuli=[
                Stimulus(key=secrets.token_hex(16), condition=by_name[cond], media_ref=ref)
                for cond, ref in spec.stimuli.items()
            ],
        )
        for spec in items
    ]
    session.add(study)
    session.flush()
    return _info(session, study)


def _info(session: Session, study: Study) -> StudyInfo:
    n_items = session.scalar(select(func.count(Item.id)).where(Item.study_id == study.id))
    n_participants = session.scalar(
        select(func.count(Participant.id)).where(Participant.study_id == study.id)
    )
    names = session.scalars(
        select(Condition.name).where(Condition.study_id == study.id).order_by(Condition.id)
    )
    return StudyInfo(
        slug=study.slug,
        title=study.title,
        kind=study.kind,
        closed=study.closed,
        conditions=tuple(names),
        n_items=n_items or 0,
        n_participants=n_participants or 0,
    )


def _study(session: Session, slug: str) -> Study:
    study = session.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        raise NotFoundError(f"there is no study {slug!r}; check the link")
    return study


def study_info(session: Session, slug: str) -> StudyInfo:
    """Title, kind and size of a study (public: shows no condition-to-track mapping)."""
    return _info(session, _study(session, slug))


def list_studies(session: Session, admin_token: str | None) -> list[StudyInfo]:
    """All studies, newest first (admin only)."""
    check_admin(admin_token)
    studies = session.scalars(select(Study).order_by(Study.created_at.desc(), Study.id.desc()))
    return [_info(session, study) for study in studies]


def close_study(session: Session, admin_token: str | None, slug: str) -> None:
    """Stops a study taking answers (admin only); its data stay for results and export."""
    check_admin(admin_token)
    _study(session, slug).closed = True
    session.flush()


# --- participants ----------------------------------------------------------------------


def _blind_order(token: str, study: Study) -> list[Assignment]:
    """The participant's trials: items shuffled, tracks within an item shuffled.

    Seeded by the token, so one participant always gets the same order.
    """
    rng = random.Random(token)
    items = sorted(study.items, key=lambda item: item.id)
    rng.shuffle(items)
    trials: list[Assignment] = []
    for item in items:
        stimuli = sorted(item.stimuli, key=lambda stimulus: stimulus.id)
        rng.shuffle(stimuli)
        if study.kind == "ab":
            trials.append(
                Assignment(item=item, stimulus=stimuli[0], stimulus_b=stimuli[1], label="A/B")
            )
            continue
        for number, stimulus in enumerate(stimuli, start=1):
            trials.append(Assignment(item=item, stimulus=stimulus, label=f"Track {number}"))
    for position, trial in enumerate(trials):
        trial.position = position
    return trials


class StudyFullError(StudyError):
    """The study has taken as many participants as it may."""


def join(session: Session, study_slug: str, max_participants: int | None = None) -> str:
    """Enrols a new anonymous participant; returns the token their browser must keep.

    `max_participants` caps how many one study link takes (a link that leaks must not let
    anyone fill the database). The study row is locked first (FOR UPDATE on PostgreSQL;
    SQLite transactions here already begin IMMEDIATE), so racing joins cannot overshoot.
    """
    study = session.scalar(select(Study).where(Study.slug == study_slug).with_for_update())
    if study is None:
        raise NotFoundError(f"there is no study {study_slug!r}; check the link")
    if study.closed:
        raise StudyClosedError(f"the study {study.title!r} is closed and takes no new answers")
    if max_participants is not None:
        joined = session.scalar(
            select(func.count(Participant.id)).where(Participant.study_id == study.id)
        )
        if (joined or 0) >= max_participants:
            raise StudyFullError(
                f"the study {study.title!r} has all the participants it takes "
                f"({max_participants}); thank you for your interest"
            )
    token = str(uuid.uuid4())
    participant = Participant(token=token, study=study)
    session.add(participant)
    for trial in _blind_order(token, study):
        trial.participant = participant
        session.add(trial)
    session.flush()
    return token


def _participant(session: Session, token: str) -> Participant:
    try:
        canonical = str(uuid.UUID(str(token)))
    except ValueError:
        raise NotFoundError("the participant token is malformed; join the study again") from None
    participant = session.scalar(select(Participant).where(Participant.token == canonical))
    if participant is None:
        raise NotFoundError("this participant is unknown; join the study again")
    return participant


def _open_participant(session: Session, token: str) -> Participant:
    participant = _participant(session, token)
    if participant.study.closed:
        raise StudyClosedError(
            f"the study {participant.study.title!r} is closed and takes no more answers"
        )
    return participant


def _answered_clause(participant: Participant, kind: str) -> Any:
    if kind == "ab":
        return exists().where(
            ABChoice.participant_id == participant.id, ABChoice.item_id == Assignment.item_id
        )
    return exists().where(
        Rating.participant_id == participant.id, Rating.stimulus_id == Assignment.stimulus_id
    )


def progress(session: Session, participant_token: str) -> tuple[int, int]:
    """(answered, total) trials of a participant."""
    participant = _participant(session, participant_token)
    mine = Assignment.participant_id == participant.id
    total = session.scalar(select(func.count(Assignment.id)).where(mine)) or 0
    answered_clause = _answered_clause(participant, participant.study.kind)
    answered = session.scalar(select(func.count(Assignment.id)).where(mine, answered_clause))
    return answered or 0, total


def next_item(session: Session, participant_token: str) -> Trial | None:
    """The participant's first unanswered trial in their own order; None when all are done."""
    participant = _open_participant(session, participant_token)
    study = participant.study
    assignment = session.scalar(
        select(Assignment)
        .where(
            Assignment.participant_id == participant.id,
            ~_answered_clause(participant, study.kind),
        )
        .order_by(Assignment.position)
        .limit(1)
    )
    if assignment is None:
        return None
    answered, total = progress(session, participant_token)
    if study.kind == "ab" and assignment.stimulus_b is not None:
        pair = (assignment.stimulus, assignment.stimulus_b)
        tracks = tuple(
            BlindTrack(label=label, stimulus_key=stimulus.key, media_ref=stimulus.media_ref)
            for label, stimulus in zip(AB_LABELS, pair, strict=True)
        )
    else:
        stimulus = assignment.stimulus
        tracks = (BlindTrack(assignment.label, stimulus.key, stimulus.media_ref),)
    return Trial(
        study_slug=study.slug,
        kind=study.kind,
        position=assignment.position,
        total=total,
        answered=answered,
        item_id=assignment.item_id,
        video_ref=assignment.item.video_ref,
        tracks=tracks,
    )


def _score(value: Any, scale: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidAnswerError(f"{scale} must be a whole number from {SCALE_MIN} to {SCALE_MAX}")
    score = int(value)
    if not SCALE_MIN <= score <= SCALE_MAX:
        raise InvalidAnswerError(
            f"{scale} must be between {SCALE_MIN} and {SCALE_MAX}; got {score}"
        )
    return score


def _upsert(
    session: Session, model: type[Base], values: dict[str, Any], keys: Sequence[str]
) -> None:
    """Inserts a row or, when one with the same `keys` exists, updates it, in one statement.

    ON CONFLICT DO UPDATE is atomic on SQLite and PostgreSQL, so two racing submissions of
    the same answer leave exactly one row.
    """
    updates = [column for column in values if column not in keys and column != "created_at"]
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        dialect_insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
        statement = dialect_insert(model).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=list(keys),
            set_={column: statement.excluded[column] for column in updates},
        )
        session.execute(statement)
        return
    # Other databases: try the insert in a savepoint and update on a unique-key clash.
    try:
        with session.begin_nested():
            session.execute(insert(model).values(**values))
    except IntegrityError:
        table = model.__table__
        match = [table.c[key] == values[key] for key in keys]
        session.execute(update(model).where(*match).values({c: values[c] for c in updates}))


def submit_rating(
    session: Session,
    participant_token: str,
    stimulus_key: str,
    musicality: int,
    fit: int,
    overall: int,
) -> None:
    """Stores (or replaces) a participant's 1-5 scores for one blind track."""
    scores = {
        scale: _score(value, scale)
        for scale, value in zip(SCALES, (musicality, fit, overall), strict=True)
    }
    participant = _open_participant(session, participant_token)
    if participant.study.kind != "likert":
        raise InvalidAnswerError("this is an A/B study: choose a track instead of rating it")
    stimulus_id = session.scalar(
        select(Assignment.stimulus_id)
        .join(Stimulus, Stimulus.id == Assignment.stimulus_id)
        .where(Assignment.participant_id == participant.id, Stimulus.key == stimulus_key)
    )
    if stimulus_id is None:
        raise NotFoundError("this track is not part of your study; reload the page")
    now = utc_now()
    values = {"participant_id": participant.id, "stimulus_id": stimulus_id, **scores}
    _upsert(
        session,
        Rating,
        {**values, "created_at": now, "updated_at": now},
        keys=("participant_id", "stimulus_id"),
    )


def submit_choice(session: Session, participant_token: str, item_id: int, choice: str) -> None:
    """Stores (or replaces) a participant's blind preference ('A' or 'B') for one item."""
    label = str(choice).strip().upper()
    if label not in AB_LABELS:
        raise InvalidAnswerError(f"choose 'A' or 'B'; got {choice!r}")
    participant = _open_participant(session, participant_token)
    if participant.study.kind != "ab":
        raise InvalidAnswerError("this is a rating study: rate the track instead of choosing")
    assignment = session.scalar(
        select(Assignment).where(
            Assignment.participant_id == participant.id, Assignment.item_id == item_id
        )
    )
    if assignment is None or assignment.stimulus_b is None:
        raise NotFoundError("this item is not part of your study; reload the page")
    chosen = assignment.stimulus if label == "A" else assignment.stimulus_b
    now = utc_now()
    values = {
        "participant_id": participant.id,
        "item_id": item_id,
        "chosen_condition_id": chosen.condition_id,
        "created_at": now,
        "updated_at": now,
    }
    _upsert(session, ABChoice, values, keys=("participant_id", "item_id"))


# --- results ---------------------------------------------------------------------------


def _condition_names(session: Session, study: Study) -> list[str]:
    query = select(Condition.name).where(Condition.study_id == study.id).order_by(Condition.id)
    return list(session.scalars(query))


def _likert_results(
    session: Session, study: Study, confidence: float
) -> tuple[ConditionScores, ...]:
    query = (
        select(Condition.name, Rating.musicality, Rating.fit, Rating.overall)
        .join(Stimulus, Stimulus.id == Rating.stimulus_id)
        .join(Condition, Condition.id == Stimulus.condition_id)
        .where(Condition.study_id == study.id)
    )
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, *values in session.execute(query):
        for scale, value in zip(SCALES, values, strict=True):
            scores[name][scale].append(float(value))
    return tuple(
        ConditionScores(
            condition=name,
            n=len(scores[name]["overall"]),
            scales={scale: mean_interval(scores[name][scale], confidence) for scale in SCALES},
        )
        for name in _condition_names(session, study)
    )


def _ab_results(
    session: Session, study: Study, confidence: float
) -> tuple[tuple[ConditionWins, ...], tuple[PairResult, ...]]:
    stimulus_a, stimulus_b = aliased(Stimulus), aliased(Stimulus)
    query = (
        select(stimulus_a.condition_id, stimulus_b.condition_id, ABChoice.chosen_condition_id)
        .join(
            Assignment,
            (Assignment.participant_id == ABChoice.participant_id)
            & (Assignment.item_id == ABChoice.item_id),
        )
        .join(stimulus_a, stimulus_a.id == Assignment.stimulus_id)
        .join(stimulus_b, stimulus_b.id == Assignment.stimulus_b_id)
        .join(Item, Item.id == ABChoice.item_id)
        .where(Item.study_id == study.id)
    )
    conditions = session.execute(
        select(Condition.id, Condition.name)
        .where(Condition.study_id == study.id)
        .order_by(Condition.id)
    ).all()
    order = [condition_id for condition_id, _ in conditions]
    names = dict(conditions)
    played: dict[int, int] = defaultdict(int)
    won: dict[int, int] = defaultdict(int)
    pair_played: dict[tuple[int, int], int] = defaultdict(int)
    pair_first_won: dict[tuple[int, int], int] = defaultdict(int)
    for first_id, second_id, chosen_id in session.execute(query):
        # A pair is counted in the conditions' creation order, whatever side each played.
        low, high = sorted((first_id, second_id), key=order.index)
        played[first_id] += 1
        played[second_id] += 1
        won[chosen_id] += 1
        pair_played[(low, high)] += 1
        pair_first_won[(low, high)] += int(chosen_id == low)
    wins = tuple(
        ConditionWins(names[cid], proportion(won[cid], played[cid], confidence)) for cid in order
    )
    pairs = tuple(
        PairResult(
            first=names[first],
            second=names[second],
            first_wins=proportion(pair_first_won[(first, second)], count, confidence),
            p_value=binomial_p_value(pair_first_won[(first, second)], count),
        )
        for (first, second), count in sorted(
            pair_played.items(), key=lambda kv: (order.index(kv[0][0]), order.index(kv[0][1]))
        )
    )
    return wins, pairs


def results(
    session: Session,
    admin_token: str | None,
    slug: str,
    confidence: float = DEFAULT_CONFIDENCE,
) -> StudyResults:
    """Per-condition means with t intervals (Likert) or win rates with Wilson intervals (A/B)."""
    check_admin(admin_token)
    study = _study(session, slug)
    n_participants = session.scalar(
        select(func.count(Participant.id)).where(Participant.study_id == study.id)
    )
    common: dict[str, Any] = {
        "slug": study.slug,
        "title": study.title,
        "kind": study.kind,
        "confidence": confidence,
        "n_participants": n_participants or 0,
    }
    if study.kind == "ab":
        wins, pairs = _ab_results(session, study, confidence)
        return StudyResults(**common, ab=wins, pairs=pairs)
    return StudyResults(**common, likert=_likert_results(session, study, confidence))


LIKERT_CSV_COLUMNS: tuple[str, ...] = (
    "study",
    "participant",
    "item",
    "video_ref",
    "condition",
    "media_ref",
    "position",
    "label",
    "musicality",
    "fit",
    "overall",
    "created_at",
    "updated_at",
)
AB_CSV_COLUMNS: tuple[str, ...] = (
    "study",
    "participant",
    "item",
    "video_ref",
    "position",
    "condition_a",
    "condition_b",
    "chosen",
    "created_at",
    "updated_at",
)


def _timestamp(value: Any) -> str:
    """ISO 8601 in UTC with a `Z`, e.g. 2026-11-30T10:31:02.123456Z.

    The store keeps UTC; SQLite hands it back without a zone, so a naive value is UTC.
    """
    if value is None:
        return ""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat() + "Z"


def _likert_rows(session: Session, study: Study) -> list[tuple[Any, ...]]:
    query = (
        select(
            Participant.token,
            Item.name,
            Item.video_ref,
            Condition.name,
            Stimulus.media_ref,
            Assignment.position,
            Assignment.label,
            Rating.musicality,
            Rating.fit,
            Rating.overall,
            Rating.created_at,
            Rating.updated_at,
        )
        .select_from(Rating)
        .join(Participant, Participant.id == Rating.participant_id)
        .join(Stimulus, Stimulus.id == Rating.stimulus_id)
        .join(Item, Item.id == Stimulus.item_id)
        .join(Condition, Condition.id == Stimulus.condition_id)
        .join(
            Assignment,
            (Assignment.participant_id == Rating.participant_id)
            & (Assignment.stimulus_id == Rating.stimulus_id),
        )
        .where(Item.study_id == study.id)
        .order_by(Participant.id, Assignment.position)
    )
    return [
        (study.slug, *row[:-2], _timestamp(row[-2]), _timestamp(row[-1]))
        for row in session.execute(query)
    ]


def _ab_rows(session: Session, study: Study) -> list[tuple[Any, ...]]:
    stimulus_a, stimulus_b = aliased(Stimulus), aliased(Stimulus)
    condition_a, condition_b, chosen = aliased(Condition), aliased(Condition), aliased(Condition)
    query = (
        select(
            Participant.token,
            Item.name,
            Item.video_ref,
            Assignment.position,
            condition_a.name,
            condition_b.name,
            chosen.name,
            ABChoice.created_at,
            ABChoice.updated_at,
        )
        .select_from(ABChoice)
        .join(Participant, Participant.id == ABChoice.participant_id)
        .join(Item, Item.id == ABChoice.item_id)
        .join(
            Assignment,
            (Assignment.participant_id == ABChoice.participant_id)
            & (Assignment.item_id == ABChoice.item_id),
        )
        .join(stimulus_a, stimulus_a.id == Assignment.stimulus_id)
        .join(stimulus_b, stimulus_b.id == Assignment.stimulus_b_id)
        .join(condition_a, condition_a.id == stimulus_a.condition_id)
        .join(condition_b, condition_b.id == stimulus_b.condition_id)
        .join(chosen, chosen.id == ABChoice.chosen_condition_id)
        .where(Item.study_id == study.id)
        .order_by(Participant.id, Assignment.position)
    )
    return [
        (study.slug, *row[:-2], _timestamp(row[-2]), _timestamp(row[-1]))
        for row in session.execute(query)
    ]


def export_csv(session: Session, admin_token: str | None, slug: str) -> str:
    """All answers of a study as CSV text, one row per rating (or A/B choice); admin only.

    Participants appear only as their opaque tokens.
    """
    check_admin(admin_token)
    study = _study(session, slug)
    if study.kind == "ab":
        columns, rows = AB_CSV_COLUMNS, _ab_rows(session, study)
    else:
        columns, rows = LIKERT_CSV_COLUMNS, _likert_rows(session, study)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()
