"""Listening-study logic: blind random order, answers, admin access, results, CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from webapp import stats
from webapp import studies as st
from webapp.store import Assignment, Participant, Rating, Stimulus, make_engine, migrate
from webapp.store import session_scope as scope

ADMIN = "a-long-random-admin-secret"
CONDITIONS = ("full", "no-sac", "real")


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv(st.ADMIN_TOKEN_ENV, ADMIN)
    engine = make_engine(f"sqlite:///{tmp_path / 'ratings.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def likert_items(n_items: int, conditions: tuple[str, ...] = CONDITIONS) -> list[st.ItemSpec]:
    # Neutral file names: nothing the participant sees may hint at the condition.
    return [
        st.ItemSpec(
            name=f"clip-{i}",
            video_ref=f"videos/clip{i}.mp4",
            stimuli={c: f"audio/{i}-{j}.wav" for j, c in enumerate(conditions)},
        )
        for i in range(n_items)
    ]


def make_study(engine: Engine, kind: str = "likert", n_items: int = 4, **kwargs) -> str:
    conditions = kwargs.pop("conditions", CONDITIONS if kind == "likert" else CONDITIONS[:2])
    with scope(engine) as session:
        info = st.create_study(
            session, ADMIN, "Pilot", kind, conditions, likert_items(n_items, conditions), **kwargs
        )
    return info.slug


def join(engine: Engine, slug: str) -> str:
    with scope(engine) as session:
        return st.join(session, slug)


def order_of(engine: Engine, token: str) -> list[tuple[int, int, int | None]]:
    with scope(engine) as session:
        participant = session.scalar(select(Participant).where(Participant.token == token))
        assert participant is not None
        rows = session.execute(
            select(Assignment.item_id, Assignment.stimulus_id, Assignment.stimulus_b_id)
            .where(Assignment.participant_id == participant.id)
            .order_by(Assignment.position)
        )
        return [(item, stimulus, stimulus_b) for item, stimulus, stimulus_b in rows]


def condition_of_key(engine: Engine) -> dict[str, str]:
    """Server-side truth, for checking results: stimulus key -> condition name."""
    with scope(engine) as session:
        return {s.key: s.condition.name for s in session.scalars(select(Stimulus))}


def rate(engine: Engine, token: str, key: str, scores: tuple[int, int, int]) -> None:
    with scope(engine) as session:
        st.submit_rating(session, token, key, *scores)


def next_trial(engine: Engine, token: str) -> st.Trial | None:
    with scope(engine) as session:
        return st.next_item(session, token)


# --- statistics on known numbers ---------------------------------------------------------


def test_mean_interval_matches_the_t_table() -> None:
    result = stats.mean_interval([1, 2, 3, 4, 5])
    # mean 3, s = sqrt(2.5), t(0.975, 4 dof) = 2.7764 -> half width 2.7764 * 1.5811 / sqrt(5)
    assert result.mean == pytest.approx(3.0)
    assert result.std == pytest.approx(1.581139, abs=1e-6)
    assert result.low == pytest.approx(1.03676, abs=1e-4)
    assert result.high == pytest.approx(4.96324, abs=1e-4)


def test_mean_interval_degenerate_cases() -> None:
    assert stats.mean_interval([]).mean is None
    single = stats.mean_interval([4])
    assert (single.mean, single.low, single.high) == (4.0, None, None)
    constant = stats.mean_interval([3, 3, 3])
    assert (constant.low, constant.high) == (3.0, 3.0)
    with pytest.raises(ValueError):
        stats.mean_interval([1, 2], confidence=1.0)


def test_wilson_interval_matches_published_values() -> None:
    low, high = stats.wilson_interval(8, 10) or (0, 0)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    low, high = stats.wilson_interval(0, 10) or (1, 1)
    assert (low, high) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert stats.wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        stats.wilson_interval(11, 10)


def test_binomial_p_value_is_exact() -> None:
    assert stats.binomial_p_value(9, 10) == pytest.approx(22 / 1024)
    assert stats.binomial_p_value(8, 10) == pytest.approx(112 / 1024)
    assert stats.binomial_p_value(0, 0) is None


# --- blind order ---------------------------------------------------------------------------


def test_blind_order_differs_between_participants_and_is_stable_for_one(engine: Engine) -> None:
    slug = make_study(engine)
    tokens = [join(engine, slug) for _ in range(5)]
    orders = [order_of(engine, token) for token in tokens]
    assert len({tuple(order) for order in orders}) > 1
    for order in orders:  # every track exactly once, an item's tracks side by side
        assert len(order) == 12 and len({stimulus for _, stimulus, _ in order}) == 12
        items = [item for item, _, _ in order]
        assert all(len(set(items[k : k + 3])) == 1 for k in range(0, 12, 3))
    first = next_trial(engine, tokens[0])
    assert first == next_trial(engine, tokens[0])
    assert order_of(engine, tokens[0]) == orders[0]


def test_the_order_is_seeded_by_the_participant_token(engine: Engine) -> None:
    slug = make_study(engine)
    with scope(engine) as session:
        study = session.scalar(select(st.Study).where(st.Study.slug == slug))
        assert study is not None
        token = str(uuid.uuid4())
        again = [(a.item.id, a.stimulus.id, a.label) for a in st._blind_order(token, study)]
        twice = [(a.item.id, a.stimulus.id, a.label) for a in st._blind_order(token, study)]
        session.expunge_all()
    assert again == twice


def test_trials_hide_the_conditions(engine: Engine) -> None:
    slug = make_study(engine, n_items=2)
    token = join(engine, slug)
    seen_labels = []
    while (trial := next_trial(engine, token)) is not None:
        text = repr(trial)
        assert not any(condition in text for condition in CONDITIONS)
        (track,) = trial.tracks
        seen_labels.append(track.label)
        rate(engine, token, track.stimulus_key, (3, 3, 3))
    assert seen_labels == ["Track 1", "Track 2", "Track 3"] * 2


def test_next_item_skips_answered_and_ends_with_none(engine: Engine) -> None:
    slug = make_study(engine, n_items=2)
    token = join(engine, slug)
    first = next_trial(engine, token)
    assert first is not None and (first.position, first.answered, first.total) == (0, 0, 6)
    rate(engine, token, first.tracks[0].stimulus_key, (4, 4, 4))
    second = next_trial(engine, token)
    assert second is not None and (second.position, second.answered) == (1, 1)
    for _ in range(5):
        trial = next_trial(engine, token)
        assert trial is not None
        rate(engine, token, trial.tracks[0].stimulus_key, (2, 2, 2))
    assert next_trial(engine, token) is None
    with scope(engine) as session:
        assert st.progress(session, token) == (6, 6)


# --- answers -------------------------------------------------------------------------------


def test_resubmitting_a_rating_updates_it(engine: Engine) -> None:
    slug = make_study(engine, n_items=1)
    token = join(engine, slug)
    trial = next_trial(engine, token)
    assert trial is not None
    key = trial.tracks[0].stimulus_key
    rate(engine, token, key, (1, 2, 3))
    rate(engine, token, key, (5, 4, 3))
    with scope(engine) as session:
        ratings = list(session.scalars(select(Rating)))
    assert len(ratings) == 1
    only = ratings[0]
    assert (only.musicality, only.fit, only.overall) == (5, 4, 3)
    assert only.updated_at > only.created_at


def test_resubmitting_a_choice_updates_it(engine: Engine) -> None:
    slug = make_study(engine, kind="ab", n_items=1)
    token = join(engine, slug)
    trial = next_trial(engine, token)
    assert trial is not None and [t.label for t in trial.tracks] == ["A", "B"]
    with scope(engine) as session:
        st.submit_choice(session, token, trial.item_id, "A")
    with scope(engine) as session:
        st.submit_choice(session, token, trial.item_id, "b")
    truth = condition_of_key(engine)
    with scope(engine) as session:
        choices = list(session.scalars(select(st.ABChoice)))
        assert len(choices) == 1
        assert choices[0].chosen_condition.name == truth[trial.tracks[1].stimulus_key]
    assert next_trial(engine, token) is None


@pytest.mark.parametrize("scores", [(0, 3, 3), (3, 6, 3), (3, 3, 2.5), (True, 3, 3), ("4", 3, 3)])
def test_invalid_scores_are_refused(engine: Engine, scores: tuple) -> None:
    slug = make_study(engine, n_items=1)
    token = join(engine, slug)
    trial = next_trial(engine, token)
    assert trial is not None
    with pytest.raises(st.InvalidAnswerError, match="between 1 and 5|whole number"):
        rate(engine, token, trial.tracks[0].stimulus_key, scores)


def test_unknown_participant_track_and_item_are_refused(engine: Engine) -> None:
    slug = make_study(engine, n_items=1)
    other = make_study(engine, n_items=1)
    token = join(engine, slug)
    foreign = next_trial(engine, join(engine, other))
    assert foreign is not None
    with pytest.raises(st.NotFoundError, match="unknown"):
        rate(engine, str(uuid.uuid4()), foreign.tracks[0].stimulus_key, (3, 3, 3))
    with pytest.raises(st.NotFoundError, match="malformed"):
        rate(engine, "not-a-token", foreign.tracks[0].stimulus_key, (3, 3, 3))
    with pytest.raises(st.NotFoundError, match="not part of your study"):
        rate(engine, token, foreign.tracks[0].stimulus_key, (3, 3, 3))
    with pytest.raises(st.NotFoundError, match="not part of your study"):
        rate(engine, token, "f" * 32, (3, 3, 3))
    with pytest.raises(st.InvalidAnswerError, match="rating study"), scope(engine) as session:
        st.submit_choice(session, token, foreign.item_id, "A")
    with pytest.raises(st.NotFoundError, match="no study"), scope(engine) as session:
        st.join(session, "no-such-study")


def test_a_closed_study_takes_no_answers(engine: Engine) -> None:
    slug = make_study(engine, n_items=1)
    token = join(engine, slug)
    trial = next_trial(engine, token)
    assert trial is not None
    with scope(engine) as session:
        st.close_study(session, ADMIN, slug)
    with pytest.raises(st.StudyClosedError, match="closed"):
        rate(engine, token, trial.tracks[0].stimulus_key, (3, 3, 3))
    with pytest.raises(st.StudyClosedError):
        join(engine, slug)
    with pytest.raises(st.StudyClosedError):
        next_trial(engine, token)


# --- admin ---------------------------------------------------------------------------------


def admin_calls(session, token: str | None) -> list:
    return [
        lambda: st.create_study(
            session, token, "T", "likert", ["full"], likert_items(1, ("full",))
        ),
        lambda: st.list_studies(session, token),
        lambda: st.results(session, token, "any"),
        lambda: st.export_csv(session, token, "any"),
        lambda: st.close_study(session, token, "any"),
    ]


def test_admin_is_disabled_without_a_configured_token(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(st.ADMIN_TOKEN_ENV)
    with scope(engine) as session:
        for call in admin_calls(session, ADMIN):
            with pytest.raises(st.AdminAccessError, match="disabled.*DIFFBGM_ADMIN_TOKEN"):
                call()


@pytest.mark.parametrize("token", [None, "", "wrong", ADMIN + "x", ADMIN.upper()])
def test_admin_refuses_a_wrong_token(engine: Engine, token: str | None) -> None:
    with scope(engine) as session:
        for call in admin_calls(session, token):
            with pytest.raises(st.AdminAccessError, match="wrong"):
                call()
        assert session.scalar(select(func.count()).select_from(st.Study)) == 0


def test_create_study_validates_its_input(engine: Engine) -> None:
    bad = [
        ("likert", ["full"], [st.ItemSpec("c", "/etc/passwd", {"full": "a.wav"})], "relative"),
        ("likert", ["full"], [st.ItemSpec("c", "v.mp4", {"full": "../../x.wav"})], "leave"),
        ("likert", ["full"], [st.ItemSpec("c", "v.mp4", {"other": "a.wav"})], "unknown cond"),
        ("ab", CONDITIONS, likert_items(1), "exactly two"),
        ("mushra", ["full"], likert_items(1, ("full",)), "kind"),
        ("likert", ["full", "full"], likert_items(1, ("full",)), "distinct"),
        ("likert", ["full"], [], "at least one item"),
    ]
    with scope(engine) as session:
        for kind, conditions, items, message in bad:
            with pytest.raises(st.StudyError, match=message):
                st.create_study(session, ADMIN, "T", kind, conditions, items)


def test_resolve_ref_stays_inside_the_data_folder(tmp_path: Path) -> None:
    assert st.resolve_ref("videos/a.mp4", tmp_path) == tmp_path.resolve() / "videos" / "a.mp4"
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(st.StudyError, match="outside"):
        st.resolve_ref("link/passwd", tmp_path)
    with pytest.raises(st.StudyError):
        st.resolve_ref("../secret", tmp_path)


# --- results and export --------------------------------------------------------------------


def test_likert_results_on_a_hand_made_example(engine: Engine) -> None:
    slug = make_study(engine, n_items=1, conditions=("full", "real"))
    truth = condition_of_key(engine)
    overall = {"full": [1, 2, 3, 4, 5], "real": [4, 4, 4, 5, 5]}
    for person in range(5):
        token = join(engine, slug)
        while (trial := next_trial(engine, token)) is not None:
            key = trial.tracks[0].stimulus_key
            rate(engine, token, key, (3, 5, overall[truth[key]][person]))
    with scope(engine) as session:
        result = st.results(session, ADMIN, slug)
    assert result.n_participants == 5
    by_name = {scores.condition: scores for scores in result.likert}
    full = by_name["full"].scales["overall"]
    assert (by_name["full"].n, full.mean) == (5, pytest.approx(3.0))
    assert (full.low, full.high) == (
        pytest.approx(1.03676, abs=1e-4),
        pytest.approx(4.96324, abs=1e-4),
    )
    real = by_name["real"].scales["overall"]
    # mean 4.4, s = sqrt(0.3), half width 2.7764 * 0.5477 / sqrt(5) = 0.6801
    assert (real.mean, real.low, real.high) == (
        pytest.approx(4.4),
        pytest.approx(3.7199, abs=1e-4),
        pytest.approx(5.0801, abs=1e-4),
    )
    musicality = by_name["real"].scales["musicality"]
    assert (musicality.mean, musicality.low, musicality.high) == (3.0, 3.0, 3.0)
    assert [row["condition"] for row in result.rows()] == ["full", "real"]


def test_ab_results_on_a_hand_made_example(engine: Engine) -> None:
    slug = make_study(engine, kind="ab", n_items=1)
    truth = condition_of_key(engine)
    for person in range(10):
        token = join(engine, slug)
        trial = next_trial(engine, token)
        assert trial is not None
        wanted = "full" if person < 8 else "no-sac"
        label = next(t.label for t in trial.tracks if truth[t.stimulus_key] == wanted)
        with scope(engine) as session:
            st.submit_choice(session, token, trial.item_id, label)
    with scope(engine) as session:
        result = st.results(session, ADMIN, slug)
    wins = {entry.condition: entry.wins for entry in result.ab}
    assert (wins["full"].successes, wins["full"].n, wins["full"].rate) == (8, 10, 0.8)
    assert wins["full"].low == pytest.approx(0.4902, abs=1e-4)
    assert wins["full"].high == pytest.approx(0.9433, abs=1e-4)
    assert (wins["no-sac"].successes, wins["no-sac"].n) == (2, 10)
    (pair,) = result.pairs
    assert (pair.first, pair.second, pair.first_wins.successes) == ("full", "no-sac", 8)
    assert pair.p_value == pytest.approx(112 / 1024)


def test_csv_export_has_one_row_per_rating_and_no_personal_data(engine: Engine) -> None:
    slug = make_study(engine, n_items=2)
    tokens = [join(engine, slug) for _ in range(3)]
    for token in tokens:
        for _ in range(4):
            trial = next_trial(engine, token)
            assert trial is not None
            rate(engine, token, trial.tracks[0].stimulus_key, (2, 3, 4))
    with scope(engine) as session:
        text = st.export_csv(session, ADMIN, slug)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(st.LIKERT_CSV_COLUMNS)
    assert len(rows) == 12
    assert {row["participant"] for row in rows} == set(tokens)
    assert {row["condition"] for row in rows} <= set(CONDITIONS)
    assert {(row["musicality"], row["fit"], row["overall"]) for row in rows} == {("2", "3", "4")}
    assert all(row["study"] == slug and row["label"].startswith("Track ") for row in rows)


def test_csv_export_of_an_ab_study(engine: Engine) -> None:
    slug = make_study(engine, kind="ab", n_items=2)
    token = join(engine, slug)
    while (trial := next_trial(engine, token)) is not None:
        with scope(engine) as session:
            st.submit_choice(session, token, trial.item_id, "A")
    with scope(engine) as session:
        rows = list(csv.DictReader(io.StringIO(st.export_csv(session, ADMIN, slug))))
    assert list(rows[0]) == list(st.AB_CSV_COLUMNS) and len(rows) == 2
    assert all(row["chosen"] == row["condition_a"] for row in rows)
