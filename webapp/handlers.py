"""Thin event handlers of the web app: check the request, call the library, shape the answer.

All the work lives in `diffbgm` (composing) and `webapp.studies` (listening studies). Errors a
user can cause (`DiffBGMError`) become a `gr.Error` with their human message; anything else
is logged with its traceback and shown as a short generic message with a reference, and the
app keeps serving.
"""

from __future__ import annotations

import functools
import html
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import gradio as gr

from diffbgm.arrange.presets import DEFAULT_ARRANGEMENT
from diffbgm.controls import DEFAULT_PLAYING
from diffbgm.errors import DiffBGMError, PlanError
from diffbgm.options import (
    MAX_SEED,
    MOOD_MAX_CHARS,
    ComposeOptions,
    parse_chords,
    parse_form,
    parse_sections,
    parse_time,
)
from diffbgm.result import Report, load_report
from diffbgm.video.mux import AUDIO_MODES
from webapp import media
from webapp.limits import AdminThrottle, ComposeGate, Ticket
from webapp.settings import AppSettings

log = logging.getLogger("diffbgm.webapp")

P = ParamSpec("P")
R = TypeVar("R")

STAGE_LABELS = {
    "analyse": "Analysing the video (shots, motion, colour)",
    "plan": "Planning tempo, bars and segments",
    "compose": "Composing the piano roll (diffusion)",
    "score": "Writing the score (MIDI)",
    "audio": "Rendering the audio",
    "video": "Laying the music under the video",
    "done": "Done",
}
KEY_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
KEY_CHOICES: tuple[str, ...] = ("auto",) + tuple(
    f"{tonic} {mode}" for mode in ("major", "minor") for tonic in KEY_TONICS
)
# the library's sound modes, the default first
AUDIO_CHOICES = ("duck", *(mode for mode in AUDIO_MODES if mode != "duck"))
GENERIC_ERROR = "Something went wrong on our side (reference {ref}). The app is still running; please try again."
# An absolute path with at least one folder (optionally an FFmpeg `file:` URL): in a message
# for people it is cut down to its last part, the file name.
SERVER_PATH = re.compile(r"(?<![\w.])(?:file:)?/(?:[^/\s'\"]+/)+([^/\s'\"]*)")
LOGGED_MESSAGE_CHARS = 300


def public_message(text: str) -> str:
    """A message fit to show a person: no server paths (only file names), and plain text.

    Gradio renders error messages as HTML, so `<`, `>` and `&` are escaped: a study title
    such as `<img src=x>` shows as those characters, not as an image.
    """
    return html.escape(SERVER_PATH.sub(r"\1", text), quote=False)


def plain_markdown(text: str) -> str:
    """`text` shown literally inside Markdown: HTML escaped, Markdown and `$` (LaTeX)
    punctuation backslash-escaped."""
    escaped = html.escape(text, quote=False)
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~$>])", r"\\\1", escaped)


def _log_line(text: str) -> str:
    """One short log line from a client-influenced message (no newlines, bounded length)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= LOGGED_MESSAGE_CHARS else flat[:LOGGED_MESSAGE_CHARS] + "..."


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a handler's exceptions into messages for people (see the module docstring).

    A refusal (DiffBGMError) is one log line, never a traceback: clients cause them at will.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except DiffBGMError as exc:
            log.info("%s refused: %s", fn.__name__, _log_line(str(exc)))
            raise gr.Error(
                public_message(str(exc)), title="Cannot do that", print_exception=False
            ) from exc
        except Exception as exc:
            ref = uuid.uuid4().hex[:8]
            log.exception("unexpected error in %s (reference %s)", fn.__name__, ref)
            raise gr.Error(GENERIC_ERROR.format(ref=ref), print_exception=False) from exc

    return wrapper


def client_id(request: gr.Request | None) -> str:
    """Who is asking, for per-client limits: the client's IP address ("local" without one).

    Not the session id, which a client chooses freely; behind a reverse proxy on the same
    machine, uvicorn already puts the forwarded address here.
    """
    client = getattr(request, "client", None) if request is not None else None
    host = getattr(client, "host", None)
    return str(host) if host else "local"


def whole_number(value: Any, what: str, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int, or a DiffBGMError naming the field (API calls may send None, text,
    1e300 or NaN where the form only sends numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DiffBGMError(f"{what} must be a whole number; got {str(value)[:40]!r}")
    if value != value or value in (float("inf"), float("-inf")) or value != int(value):
        raise DiffBGMError(f"{what} must be a whole number; got {value!r}")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"{low if low is not None else '...'}-{high if high is not None else '...'}"
        raise DiffBGMError(f"{what} {number} is outside {bounds}")
    return number


def optional_share(value: Any, what: str) -> float | None:
    """A 0-1 value where 0 or empty means "keep"; None for that, else a checked float."""
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise PlanError(f"{what} {str(value)[:40]} is outside 0-1 (0 = keep the segment's own)")
    return float(value)


@contextmanager
def user_file_names(staged: Path | None, upload_name: str) -> Iterator[None]:
    """Inside the block, library errors name the user's own file, not the staged copy."""
    try:
        yield
    except DiffBGMError as exc:
        if staged is not None and staged.name and exc.args:
            text = str(exc.args[0])
            for server_name in (f"file:{staged.resolve()}", str(staged.resolve()), str(staged)):
                text = text.replace(server_name, upload_name)
            exc.args = (text.replace(staged.name, upload_name), *exc.args[1:])
        raise


def upload_name(upload: str | Path | None) -> str:
    """The name the user's file had (Gradio keeps it as the last part of the upload path)."""
    return Path(str(upload or "")).name[:120] or "your video"


class ComposerHolder:
    """One model for the whole app: loaded on first use, then shared behind a lock.

    `load` builds the composer (e.g. `lambda: Composer.from_pretrained(path)`); it runs at the
    first use (app.py's background self-test, webapp/health.py, or the first compose), never at
    import, so the page opens at once.
    """

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load
        self._composer: Any = None
        self._lock = threading.Lock()

    def run(self, work: Callable[[Any], R]) -> R:
        """Call `work(composer)` while holding the model exclusively."""
        with self._lock:
            if self._composer is None:
                self._composer = self._load()
            return work(self._composer)

    @property
    def loaded(self) -> bool:
        return self._composer is not None


def progress_reporter(progress: gr.Progress) -> Callable[[int, int, str], None]:
    """Adapt the composer's `(done, total, stage)` callback to a Gradio progress bar."""

    def report(done: int, total: int, stage: str) -> None:
        progress((done, max(total, 1)), desc=STAGE_LABELS.get(stage, stage), unit="stages")

    return report


# --- views of a finished result folder --------------------------------------------------


@dataclass(frozen=True)
class ResultView:
    """What the Compose tab shows for one result folder (paths are strings for Gradio)."""

    gallery: list[tuple[str, str]]
    shots: list[list[Any]]
    segments: list[list[Any]]
    segment_columns: list[str]
    pianoroll: str
    audio: str
    video: str
    downloads: list[str]
    summary: str
    n_segments: int
    sheet_html: str = ""  # the engraved sheet of the first variant ("" for older results)
    stems: list[tuple[str, str]] = field(default_factory=list)  # (name, WAV); [] for one part


SHOT_COLUMNS = [
    "shot",
    "start (s)",
    "end (s)",
    "length (s)",
    "motion",
    "brightness",
    "scene (CLIP)",
]


def shot_rows(report: Report) -> list[list[Any]]:
    """One row per shot: number (from 1), times in seconds, motion and brightness in [0, 1],
    and the scene words CLIP chose (a dash where the shots were read by picture statistics)."""
    features = {f.shot_index: f for f in report.analysis.features}
    rows = []
    for n, shot in enumerate(report.analysis.shots, start=1):
        feat = features.get(shot.index)
        rows.append(
            [
                n,
                round(shot.start_s, 2),
                round(shot.end_s, 2),
                round(shot.end_s - shot.start_s, 2),
                None if feat is None else round(feat.motion, 3),
                None if feat is None else round(feat.brightness, 3),
                ", ".join(feat.scenes) if feat is not None and feat.scenes else "–",
            ]
        )
    return rows


def _rounded(value: Any) -> Any:
    return round(float(value), 3) if isinstance(value, int | float) else value


def segment_table(report: Report) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of the plan's segments, numbered from 1 as the Regenerate box expects:
    times in seconds, length in bars, the shots each follows, the segment whose music it
    repeats (a returning scene, a form's return; empty: none), then every control value."""
    plan = report.plan
    if not plan.segments:
        return ["segment"], []
    controls = [*plan.segments[0].dynamic, *plan.segments[0].semantic]
    columns = ["segment", "start (s)", "end (s)", "bars", "shots", "repeats", *controls]
    rows = []
    for n, (segment, (start, end)) in enumerate(
        zip(plan.segments, plan.segment_bounds_s(), strict=True), start=1
    ):
        values = {**segment.dynamic, **segment.semantic}
        shots = ", ".join(str(i + 1) for i in segment.shot_indices)
        repeats = "" if segment.recalls < 0 else str(segment.recalls + 1)
        rows.append(
            [n, round(start, 2), round(end, 2), segment.n_bars, shots, repeats]
            + [_rounded(values.get(name)) for name in controls]
        )
    return columns, rows


def shot_gallery(folder: Path, report: Report) -> list[tuple[str, str]]:
    """(thumbnail, caption) per shot, captions like 'Shot 2 · 3.20-7.85 s'."""
    thumbs_dir = folder / "thumbnails"
    thumbs = sorted(thumbs_dir.glob("*.jpg")) if thumbs_dir.is_dir() else []
    shots = report.analysis.shots
    gallery = []
    for n, thumb in enumerate(thumbs, start=1):
        if n <= len(shots):
            shot = shots[n - 1]
            caption = f"Shot {n} · {shot.start_s:.2f}-{shot.end_s:.2f} s"
        else:
            caption = thumb.stem
        gallery.append((str(thumb), caption))
    return gallery


def summary_markdown(report: Report) -> str:
    """A few lines about the result: key, tempo, shots, segments, cut alignment, timings."""
    plan, metrics = report.plan, report.metrics
    lines = [
        f"**{plan.key_name}**, **{plan.tempo_bpm:.1f} BPM**, "
        f"{report.video_info.duration_s:.1f} s of video",
        f"{len(report.analysis.shots)} shots (read by {report.analysis.semantics}) -> "
        f"{metrics.n_segments} music segments; "
        f"cut alignment {_percent(metrics.cut_alignment)}",
        f"arranged for **{report.options.arrangement}**, {report.options.playing} dynamics; "
        f"seeds {report.seeds}; composed in {report.timings_s.get('total', 0.0):.1f} s "
        f"(real-time factor {report.real_time_factor})",
    ]
    structure = structure_line(report)
    if structure:
        lines.append(structure)
    if report.regenerated_segment is not None:
        lines.append(regenerated_line(report, report.regenerated_segment))
    if report.sound is not None:
        sound = report.sound
        lines.append(
            f"rendered with {sound.soundfont} at {sound.target_lufs:g} LUFS, "
            f"true peak at most {sound.true_peak_dbtp:g} dBTP"
        )
    return "\n\n".join(lines)


def structure_line(report: Report) -> str | None:
    """What the user fixed of the structure and where it landed: the chords, and for each
    asked section start the segment boundary nearest it (a start is moved onto the beat)."""
    options, plan = report.options, report.plan
    parts = []
    if options.chords:
        parts.append(
            f"your chords ({len(options.chords)} bars, repeated to fill; key from "
            f"{'you' if plan.provenance.get('key') == 'user' else 'them'})"
        )
    if options.sections_only and not options.sections:
        parts.append("no sections at the shot cuts (as you asked)")
    elif options.sections:
        landings = plan.section_landings_s(options.sections)
        landed = [_landed(t, at) for t, at in zip(options.sections, landings, strict=True)]
        where = "instead of the shot cuts" if options.sections_only else "besides the shot cuts"
        parts.append(f"your sections {where}: " + ", ".join(landed))
    if options.form:
        parts.append(f"form {' '.join(options.form)}")
    if not plan.covers_whole_video:
        first, last = plan.music_span_s
        parts.append(
            f"music from {_clock(first)} to {_clock(last)} only"
            + _under_the_music(options.audio, bool(report.video_info.has_audio))
        )
    return "; ".join(parts) or None


def _under_the_music(audio: str, has_audio: bool) -> str:
    if not has_audio:
        return ""
    if audio == "duck":
        return ", the video's sound lowered under it"
    if audio == "dialogue":
        return ", dipping under the video's sound"
    return ""


def _clock(seconds: float) -> str:
    """12.34 -> '0:12.34' (how the times are typed)."""
    minutes, rest = divmod(round(seconds, 2), 60.0)
    return f"{int(minutes)}:{rest:05.2f}"


def regenerated_line(report: Report, segment: int) -> str:
    """Which segments a regenerate composed again: the asked one and those repeating it, as
    the report records them (diffbgm.pipeline.Composer.regenerate); for a report from before
    that record, those a recall above 0 makes follow."""
    if report.recomposed_segments:
        repeats = [n + 1 for n in report.recomposed_segments if n != segment]
    else:
        follow = report.generation.recall > 0
        repeats = [n + 1 for n in report.plan.repeats_of(segment)] if follow else []
    also = ""
    if repeats:
        numbers = ", ".join(str(n) for n in repeats)
        also = f" with the segment{'s' if len(repeats) > 1 else ''} repeating it ({numbers})"
    return f"segment {segment + 1} composed again{also}"


def _landed(asked_s: float, start_s: float | None) -> str:
    if start_s is None:
        return f"{asked_s:g} s (merged with a neighbour: too near another start or an end)"
    return f"{asked_s:g} s at {start_s:.2f} s"


def _percent(value: float | None) -> str:
    return "n/a (one shot, no cut)" if value is None else f"{100 * value:.0f} %"


# Stem players the Compose tab has: a fixed set (Gradio outputs are fixed), filled in the
# score's order and hidden where a result has fewer parts.
STEM_SLOTS = 6
SHEET_MAX_BYTES = 4_000_000  # a longer engraving is not put into the page (download it)


def download_files(folder: Path, report: Report) -> list[str]:
    """Per variant: the zip (score, sheet, mix, stems), MIDI, MusicXML, WAV and MP4; then
    report.json."""
    paths = []
    for files in report.files:
        for name in (files.bundle, files.midi, files.musicxml, files.wav, files.video):
            path = folder / name if name else None
            if path is not None and path.is_file():
                paths.append(str(path))
    paths.append(str(folder / "report.json"))
    return paths


def result_view(folder: Path) -> ResultView:
    """Everything the Compose tab shows, read back from a finished result folder."""
    report = load_report(folder)
    first = report.files[0]
    columns, rows = segment_table(report)
    return ResultView(
        gallery=shot_gallery(folder, report),
        shots=shot_rows(report),
        segments=rows,
        segment_columns=columns,
        pianoroll=str(folder / first.pianoroll),
        audio=str(folder / first.wav),
        video=str(folder / first.video),
        downloads=download_files(folder, report),
        summary=summary_markdown(report),
        n_segments=len(rows),
        sheet_html=sheet_html(folder, first.sheet_svg),
        stems=[
            (name, str(folder / path)) for name, path in first.stems.items() if path != first.wav
        ][:STEM_SLOTS],
    )


def sheet_html(folder: Path, svg_name: str | None) -> str:
    """The engraved sheet (verovio's SVG) for a gr.HTML, scrolling inside a white box."""
    if svg_name is None or not (folder / svg_name).is_file():
        return ""
    svg = folder / svg_name
    if svg.stat().st_size > SHEET_MAX_BYTES:
        return "<p>The sheet is too long to show here: download score.musicxml.</p>"
    return f'<div class="sheet-view">{svg.read_text()}</div>'


# --- compose and regenerate ---------------------------------------------------------------


def compose_options(
    mood: str | None,
    tempo_bpm: float | None,
    key: str | None,
    density: float | None,
    seed: float | None,
    guidance: float | None,
    steps: float | None,
    variants: float | None,
    audio: str | None,
    recall: float | None = None,
    arrangement: str | None = None,
    candidates: float | None = None,
    control_guidance: float | None = None,
    chords: str | None = None,
    sections: str | None = None,
    sections_only: bool | None = None,
    form: str | None = None,
    music_start: str | None = None,
    music_end: str | None = None,
    playing: str | None = None,
) -> ComposeOptions:
    """ComposeOptions from the form; 0 / empty / 'auto' mean "let the video decide" (an empty
    arrangement: the default, solo piano; an empty way of playing: even; empty chords and
    sections: from the video). The limits are the library's (ComposeOptions,
    GenerationConfig, parse_chords, parse_sections): checked there, once."""
    if audio not in AUDIO_CHOICES:
        raise PlanError(f"audio must be one of {', '.join(AUDIO_CHOICES)}, not {audio!r}")
    if key and key != "auto" and key not in KEY_CHOICES:
        raise PlanError(f"unknown key {key!r}; choose e.g. 'D minor' or 'auto'")
    generation = {
        "guidance": guidance,
        "steps": int(steps) if steps else None,
        "recall": recall,
        "candidates": int(candidates) if candidates else None,
        "control_guidance": control_guidance or None,
    }
    return ComposeOptions(
        seed=int(seed or 0),
        tempo_bpm=float(tempo_bpm) if tempo_bpm else None,
        key=key if key and key != "auto" else None,
        mood=(mood or "").strip()[:MOOD_MAX_CHARS] or None,
        density=float(density) if density else None,
        variants=int(variants or 1),
        audio=audio,  # type: ignore[arg-type]
        shot_detector="content",
        generation={name: value for name, value in generation.items() if value is not None},
        arrangement=arrangement or DEFAULT_ARRANGEMENT,
        playing=playing or DEFAULT_PLAYING,
        chords=parse_chords(chords),
        sections=parse_sections(sections),
        sections_only=bool(sections_only),
        form=parse_form(form),
        music_start_s=parse_time(music_start),
        music_end_s=parse_time(music_end),
    )


class Handlers:
    """The app's event handlers, bound to its settings, model holder and studies engine."""

    def __init__(self, settings: AppSettings, composers: ComposerHolder, engine: Any) -> None:
        self.settings = settings
        self.composers = composers
        self.engine = engine
        self.gate = ComposeGate(
            settings.compose_queue, settings.compose_per_client, settings.compose_concurrency
        )
        self.admin_throttle = AdminThrottle(
            settings.admin_free_failures,
            settings.admin_max_lockout_s,
            settings.admin_global_failures_per_min,
        )
        self.in_flight = media.InFlight()

    @classmethod
    def create(cls, settings: AppSettings) -> Handlers:
        """The real handlers: migrate the ratings store, load the model on first compose."""
        from diffbgm.pipeline import Composer
        from webapp.store import make_engine, migrate
        from webapp.store.db import DATABASE_FILE_NAME

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = settings.database_url or f"sqlite:///{settings.data_dir / DATABASE_FILE_NAME}"
        engine = make_engine(url)
        migrate(engine)
        composers = ComposerHolder(
            lambda: Composer.from_pretrained(settings.model_path, limits=settings.probe_limits)
        )
        return cls(settings, composers, engine)

    def _view_outputs(self, folder: Path) -> tuple[Any, ...]:
        view = result_view(folder)
        return (
            view.summary,
            view.gallery,
            {"headers": SHOT_COLUMNS, "data": view.shots},
            {"headers": view.segment_columns, "data": view.segments},
            view.pianoroll,
            view.audio,
            view.video,
            view.downloads,
            folder.name,
            gr.update(maximum=max(view.n_segments, 1), value=1),
            view.sheet_html,
            *stem_updates(view.stems),
        )

    def _wait_for_model(self, ticket: Ticket, progress: gr.Progress) -> None:
        """Wait for this compose's turn (the others ahead shown in the progress bar)."""

        def show(ahead: int) -> None:
            progress((0, 1), desc=f"Waiting for the model ({ahead} ahead of you)")

        self.gate.wait_turn(ticket, on_wait=show)

    @user_errors
    def compose(
        self,
        video: str | None,
        mood: str,
        tempo_bpm: float,
        key: str,
        density: float,
        seed: float,
        guidance: float | None = None,
        steps: float | None = None,
        variants: float = 1,
        audio: str = "duck",
        recall: float | None = None,
        arrangement: str = DEFAULT_ARRANGEMENT,
        candidates: float | None = None,
        control_guidance: float | None = None,
        chords: str | None = None,
        sections: str | None = None,
        sections_only: bool | None = None,
        form: str | None = None,
        music_start: str | None = None,
        music_end: str | None = None,
        playing: str | None = None,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio injects it by default value
    ) -> tuple[Any, ...]:
        """Compose music for the uploaded video into a fresh result folder.

        A client over its own limit is refused first (cheaply); then the upload is checked
        and probed, admitted to the compose queue (or refused at once) and staged, all before
        waiting for the model: a bad file or a full queue is answered in a moment, however
        many composes are ahead.
        """
        from diffbgm.video.probe import probe_video

        options = compose_options(
            mood, tempo_bpm, key, density, seed, guidance, steps, variants, audio, recall,
            arrangement, candidates, control_guidance, chords, sections, sections_only, form,
            music_start, music_end, playing,
        )  # fmt: skip
        client = client_id(request)
        self.gate.check_client(client)
        name = upload_name(video)
        with user_file_names(Path(video) if isinstance(video, str) and video else None, name):
            upload = media.check_upload(video, self.settings.max_upload_bytes)
            info = probe_video(upload, self.settings.probe_limits)
        options.check_for_video(info.duration_s)  # a time past the end: refused at once
        media.touch(upload)  # in use: the upload sweep keeps it a while longer
        with (
            self.gate.place(client) as ticket,
            media.work_dir(self.settings.outputs_dir, self.in_flight) as folder,
        ):
            staged = media.stage_upload(upload, folder, self.settings.max_upload_bytes)
            with user_file_names(staged, name):
                self._wait_for_model(ticket, progress)
                report = progress_reporter(progress)
                probed = replace(info, path=staged)  # one probe per compose
                self.composers.run(
                    lambda composer: composer(staged, folder, options, progress=report, info=probed)
                )
        return self._view_outputs(folder)

    @user_errors
    def regenerate(
        self,
        result_name: str | None,
        segment_number: float,
        seed: float,
        density: float,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple[Any, ...]:
        """Compose one segment (numbered from 1) again, keeping the rest, into a new folder.

        The new folder gets its own link to the staged video, so it stays complete (it can be
        regenerated again or put into a study) after the original result is cleaned up.
        """
        from diffbgm.video.probe import probe_video

        name = media.check_result_name(result_name)
        segment = whole_number(segment_number, "segment", low=1, high=10_000)
        new_seed = whole_number(seed if seed is not None else 0, "seed", low=0, high=MAX_SEED)
        new_density = optional_share(density, "density")
        source = media.resolve_result_dir(self.settings.outputs_dir, name)
        with (
            self.gate.place(client_id(request)) as ticket,
            media.work_dir(self.settings.outputs_dir, self.in_flight) as folder,
        ):
            original = media.source_video(source)
            staged = media.link_or_copy(original, folder / original.name)
            with user_file_names(staged, "the result's video"):
                info = probe_video(staged, self.settings.probe_limits)
                self._wait_for_model(ticket, progress)
                report = progress_reporter(progress)
                self.composers.run(
                    lambda composer: composer.regenerate(
                        source,
                        segment_index=segment - 1,
                        seed=new_seed,
                        density=new_density,
                        out_dir=folder,
                        video=staged,
                        progress=report,
                        info=info,
                    )
                )
        return self._view_outputs(folder)

    # --- listening study: participants ----------------------------------------------------

    def _media_path(self, ref: str) -> str:
        from webapp.studies import resolve_ref

        return str(resolve_ref(ref, root=self.settings.data_dir))

    def _track_media(self, ref: str) -> tuple[str | None, str]:
        """(video with this music or None, the music) for one blind track."""
        music = Path(self._media_path(ref))
        with_music = music.parent / media.STUDY_VIDEO_WITH_MUSIC_NAME
        return (str(with_music) if with_music.is_file() else None), str(music)

    def _trial_outputs(self, token: str) -> tuple[Any, ...]:
        from webapp.store import session_scope
        from webapp.studies import next_item

        with session_scope(self.engine) as session:
            trial = next_item(session, token)
        if trial is None:
            return done_outputs()
        tracks = [self._track_media(track.media_ref) for track in trial.tracks]
        original = self._media_path(trial.video_ref)
        video_a, audio_a = tracks[0]
        video_b, audio_b = tracks[1] if len(tracks) > 1 else (None, None)
        likert = trial.kind != "ab"
        key = f"rate:{trial.tracks[0].stimulus_key}" if likert else f"ab:{trial.item_id}"
        label = trial.tracks[0].label if likert else "A or B?"
        status = f"Item {trial.answered + 1} of {trial.total} · **{label}** — " + (
            "watch the video with this music, then rate it."
            if likert
            else "watch version A (left) and version B (right), then pick the one you prefer."
        )
        return (
            status,
            key,
            video_a or original,
            audio_a,
            gr.update(value=video_b, visible=not likert),
            gr.update(value=audio_b, visible=not likert),
            *(gr.update(value=None, visible=likert) for _ in range(3)),
            gr.update(value=None, visible=not likert),
        )

    @user_errors
    def join_study(self, study_code: str) -> tuple[Any, ...]:
        """Enrol a new anonymous participant; return their token and their first item."""
        from webapp.store import session_scope
        from webapp.studies import join

        code = study_code_text(study_code)
        if not code:
            raise DiffBGMError("Enter the study code you were given (e.g. 'pilot-3f9a2c').")
        with session_scope(self.engine) as session:
            token = join(session, code, max_participants=self.settings.study_max_participants)
        return (token, *self._trial_outputs(token))

    @user_errors
    def next_item(self, participant_token: str) -> tuple[Any, ...]:
        """The participant's next unanswered item (or a thank-you when all are done)."""
        if not participant_token or not isinstance(participant_token, str):
            raise DiffBGMError("Join a study first (enter its code and press Join).")
        return self._trial_outputs(participant_token)

    @user_errors
    def rate(
        self,
        participant_token: str,
        trial_key: str,
        musicality: float | None,
        fit: float | None,
        overall: float | None,
        choice: str | None,
    ) -> tuple[Any, ...]:
        """Store the answer for `trial_key` (a re-submit replaces it), then show the next item."""
        from webapp.store import session_scope
        from webapp.studies import submit_choice, submit_rating

        if not participant_token or not isinstance(participant_token, str):
            raise DiffBGMError("Join a study first (enter its code and press Join).")
        kind, _, ref = (trial_key if isinstance(trial_key, str) else "").partition(":")
        with session_scope(self.engine) as session:
            if kind == "rate":
                if musicality is None or fit is None or overall is None:
                    raise DiffBGMError("Please give all three ratings (1 = poor, 5 = excellent).")
                scores = [
                    whole_number(value, scale)
                    for value, scale in (
                        (musicality, "musicality"),
                        (fit, "fit"),
                        (overall, "overall"),
                    )
                ]
                submit_rating(session, participant_token, ref, *scores)
            elif kind == "ab" and ref.isdigit() and len(ref) < 12:
                if not choice:
                    raise DiffBGMError("Please pick A or B.")
                submit_choice(session, participant_token, int(ref), choice)
            else:
                raise DiffBGMError("There is no item to answer; press Join or Next.")
        return self._trial_outputs(participant_token)

    # --- listening study: admin -----------------------------------------------------------

    def _check_admin(self, admin_token: Any, request: gr.Request | None) -> str:
        """The admin token, once it is right and this client may try it (see AdminThrottle).

        A wrong token counts against the client; a locked-out client is refused at once,
        without checking the token and without holding the server thread.
        """
        from webapp.studies import AdminAccessError, check_admin

        client = client_id(request)
        self.admin_throttle.check(client)
        token = admin_token if isinstance(admin_token, str) else ""
        try:
            check_admin(token)
        except AdminAccessError:
            if self.settings.admin_enabled:
                self.admin_throttle.failed(client)
            raise
        self.admin_throttle.succeeded(client)
        return token

    @user_errors
    def result_choices(self, admin_token: str, request: gr.Request | None = None) -> Any:
        """Refresh the list of finished results an admin can put into a study (admin only)."""
        self._check_admin(admin_token, request)
        return gr.update(choices=media.list_result_dirs(self.settings.outputs_dir))

    @user_errors
    def create_study(
        self,
        admin_token: str,
        title: str,
        kind: str,
        result_names: list[str] | str | None,
        conditions_text: str,
        request: gr.Request | None = None,
    ) -> tuple[str, str]:
        """Create a study from result folders, one condition name per folder (same order).

        Results composed for the same video (same bytes) become one item with several
        soundtracks. Returns (message, study code).
        """
        from webapp.store import session_scope
        from webapp.studies import create_study

        admin_token = self._check_admin(admin_token, request)
        if result_names is not None and not isinstance(result_names, str | list):
            raise DiffBGMError("Choose the results as a list of result names.")
        names = [result_names] if isinstance(result_names, str) else list(result_names or [])
        if not isinstance(title, str) or not isinstance(kind, str):
            raise DiffBGMError("Give the study a title and a kind (likert or ab).")
        conditions_text = conditions_text if isinstance(conditions_text, str) else ""
        conditions = [c.strip() for c in conditions_text.replace("\n", ",").split(",")]
        conditions = [c for c in conditions if c]
        if not names:
            raise DiffBGMError("Choose one or more results to put into the study.")
        if len(conditions) != len(names):
            raise DiffBGMError(
                f"Give one condition name per chosen result: {len(names)} results, "
                f"{len(conditions)} condition names."
            )
        target = self.settings.studies_dir / uuid.uuid4().hex
        try:
            items = self._study_items(names, conditions, target)
            with session_scope(self.engine) as session:
                info = create_study(
                    session, admin_token, title, kind, list(dict.fromkeys(conditions)), items
                )
        except BaseException:
            media.remove_request_dir(target)
            raise
        message = (
            f"Created **{plain_markdown(info.title)}** ({info.kind}): {info.n_items} item(s), "
            f"conditions {', '.join(info.conditions)}. Study code **`{info.slug}`** — share the link "
            f"`?study={info.slug}` added to this page's address."
        )
        return message, info.slug

    def _study_items(self, names: list[str], conditions: list[str], target: Path) -> list[Any]:
        from webapp.studies import ItemSpec

        by_video: dict[str, dict[str, Any]] = {}
        for n, (name, condition) in enumerate(zip(names, conditions, strict=True)):
            folder = media.resolve_result_dir(self.settings.outputs_dir, name)
            report = load_report(folder)
            fingerprint = media.file_fingerprint(media.source_video(folder))
            item = by_video.setdefault(
                fingerprint, {"name": f"video-{len(by_video) + 1}", "video": "", "stimuli": {}}
            )
            if condition in item["stimuli"]:
                raise DiffBGMError(
                    f"{item['name']} has two results for condition {condition!r}; "
                    "each video needs one result per condition."
                )
            copied = media.copy_for_study(folder, report, self.settings.data_dir, target / str(n))
            item["video"] = item["video"] or copied.video
            item["stimuli"][condition] = copied.music
        return [ItemSpec(i["name"], i["video"], dict(i["stimuli"])) for i in by_video.values()]

    @user_errors
    def study_results(
        self, admin_token: str, study_code: str, request: gr.Request | None = None
    ) -> tuple[Any, ...]:
        """(summary, table, bar plot with 95 % CIs, CSV file) of a study; admin only.

        The CSV goes to a fresh secret folder and replaces the study's earlier export.
        """
        from webapp.store import session_scope
        from webapp.studies import export_csv, results

        admin_token = self._check_admin(admin_token, request)
        code = study_code_text(study_code)
        with session_scope(self.engine) as session:
            found = results(session, admin_token, code)
            csv_text = export_csv(session, admin_token, code)
        rows = found.rows()
        columns = list(dict.fromkeys(key for row in rows for key in row))
        table = [[_rounded(row.get(c)) for c in columns] for row in rows]
        export = media.write_export(self.settings.exports_dir, found.slug, csv_text)
        summary = (
            f"**{plain_markdown(found.title)}** ({found.kind}) · "
            f"{found.n_participants} participant(s) · "
            f"{int(found.confidence * 100)} % confidence intervals"
        )
        return (
            summary,
            {"headers": columns or ["condition"], "data": table},
            results_figure(found),
            str(export),
        )

    @user_errors
    def close_study(
        self, admin_token: str, study_code: str, request: gr.Request | None = None
    ) -> str:
        """Stop a study taking answers; its data stay for results and export."""
        from webapp.store import session_scope
        from webapp.studies import close_study

        admin_token = self._check_admin(admin_token, request)
        code = study_code_text(study_code)
        with session_scope(self.engine) as session:
            close_study(session, admin_token, code)
        return f"Study `{code}` is closed; results and CSV stay available."


def study_code_text(code: Any) -> str:
    """A study code as typed (trimmed, lower case), or a clear refusal for a malformed one
    (not text, or longer than any code the app makes)."""
    if code is None:
        return ""
    if not isinstance(code, str):
        raise DiffBGMError("A study code is text such as 'pilot-3f9a2c'.")
    text = code.strip().lower()
    if len(text) > 64 or not text.isprintable():
        raise DiffBGMError("That is not a study code of this app; check the link.")
    return text


def stem_updates(stems: list[tuple[str, str]]) -> list[Any]:
    """One update per stem slot: a named player per part, the rest hidden."""
    updates = [gr.update(value=path, label=f"Stem: {name}", visible=True) for name, path in stems]
    hidden = gr.update(value=None, visible=False)
    return updates + [hidden] * (STEM_SLOTS - len(updates))


def done_outputs() -> tuple[Any, ...]:
    """Trial outputs once a participant has answered everything."""
    hidden = gr.update(value=None, visible=False)
    return (
        "All done — thank you for taking part!",
        "",
        None,
        None,
        hidden,
        hidden,
        hidden,
        hidden,
        hidden,
        hidden,
    )


def results_figure(found: Any) -> Any:
    """Bar plot of a study's results with 95 % CI error bars (Likert means or A/B win rates)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    if found.kind == "ab":
        series = {
            "win rate": [(w.condition, w.wins.rate, w.wins.low, w.wins.high) for w in found.ab]
        }
        ax.set_ylim(0, 1)
        ax.set_ylabel("share preferred")
    else:
        series = {
            scale: [
                (s.condition, s.scales[scale].mean, s.scales[scale].low, s.scales[scale].high)
                for s in found.likert
            ]
            for scale in ("musicality", "fit", "overall")
        }
        ax.set_ylim(0, 5.5)
        ax.set_ylabel("mean rating (1-5)")
    conditions = [row[0] for row in next(iter(series.values()), [])]
    x = np.arange(len(conditions))
    width = 0.8 / max(len(series), 1)
    for n, (name, rows) in enumerate(series.items()):
        means = np.array([r[1] if r[1] is not None else np.nan for r in rows], dtype=float)
        low = np.array([r[2] if r[2] is not None else m for r, m in zip(rows, means, strict=True)])
        high = np.array([r[3] if r[3] is not None else m for r, m in zip(rows, means, strict=True)])
        errors = np.nan_to_num(np.vstack([means - low, high - means]))
        ax.bar(
            x + (n - (len(series) - 1) / 2) * width,
            np.nan_to_num(means),
            width,
            label=name,
            yerr=errors,
            capsize=4,
        )
    ax.set_xticks(x, conditions)
    # Plain text: a title such as "$x^$" must not go through mathtext (it would not parse).
    ax.set_title(f"{found.title}: means with {int(found.confidence * 100)} % CI", parse_math=False)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    plt.close(fig)
    return fig
