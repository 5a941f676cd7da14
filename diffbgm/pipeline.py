"""Video in, music out: probe -> shots -> features -> plan -> diffusion -> MIDI -> WAV -> MP4.

`Composer` holds one loaded model (build it once, reuse it; it is not thread-safe — the web app
serialises calls through its queue and a lock). Every stage reports progress through a
callback `(done, total, stage)` so the CLI shows a bar and the web app a progress indicator,
and nothing here imports a UI.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from diffbgm.errors import DiffBGMError, PlanError
from diffbgm.video.mux import AudioMode

ProgressFn = Callable[[int, int, str], None]

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "checkpoints" / "diffbgm-small"
STAGES: tuple[str, ...] = ("analyse", "plan", "compose", "score", "audio", "video")


@dataclass(frozen=True)
class ComposeOptions:
    """What a user may choose; None means "let the video and the model decide"."""

    seed: int = 0
    tempo_bpm: float | None = None
    key: str | None = None  # e.g. "D minor"
    mood: str | None = None  # free text, e.g. "calm and warm"
    density: float | None = None  # 0..1 quantile target for every segment (0.5 = typical POP909)
    guidance: float | None = None
    steps: int | None = None
    variants: int = 1
    audio: AudioMode = "duck"
    shot_detector: str = "content"
    onset_threshold: float | None = None
    recall: float | None = None  # 0..1: how closely a returning scene repeats its music

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise PlanError(f"seed must be 0 or more, got {self.seed}")
        if self.steps is not None and not 1 <= self.steps <= 1000:
            raise PlanError(f"steps must be between 1 and 1000, got {self.steps}")
        if self.guidance is not None and not 0.0 <= self.guidance <= 20.0:
            raise PlanError(f"guidance must be between 0 and 20, got {self.guidance}")
        if self.recall is not None and not 0.0 <= self.recall <= 1.0:
            raise PlanError(f"recall must be between 0 and 1, got {self.recall}")
        if not 1 <= self.variants <= 8:
            raise PlanError(f"variants must be between 1 and 8, got {self.variants}")
        if self.audio not in ("keep", "duck", "replace"):
            raise PlanError(f"audio must be keep, duck or replace, got {self.audio!r}")
        if self.shot_detector not in ("content", "adaptive", "transnetv2"):
            raise PlanError(f"unknown shot detector {self.shot_detector!r}")


@dataclass
class Variant:
    """One generated soundtrack and its files."""

    seed: int
    midi_path: Path
    wav_path: Path
    video_path: Path
    pianoroll_path: Path


@dataclass
class Result:
    """Everything one call produced. `report` is what report.json holds."""

    out_dir: Path
    variants: list[Variant]
    report_path: Path
    report: dict[str, Any]
    thumbnails: list[Path] = field(default_factory=list)

    @property
    def midi_path(self) -> Path:
        return self.variants[0].midi_path

    @property
    def wav_path(self) -> Path:
        return self.variants[0].wav_path

    @property
    def video_path(self) -> Path:
        return self.variants[0].video_path

    @property
    def pianoroll_path(self) -> Path:
        return self.variants[0].pianoroll_path


def _no_progress(done: int, total: int, stage: str) -> None:
    return None


class _StageClock:
    """Times stages and forwards progress; keeps the per-stage seconds for report.json."""

    def __init__(self, progress: ProgressFn, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0
        self.seconds: dict[str, float] = {}

    def run(self, stage: str, fn: Callable[[], Any]) -> Any:
        self.progress(self.done, self.total, stage)
        start = time.perf_counter()
        value = fn()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
        self.done += 1
        self.progress(self.done, self.total, stage)
        return value


class Composer:
    """Composes background music for videos with one loaded diffusion model."""

    def __init__(
        self,
        loaded: Any,
        model_id: str,
        bf16: bool = True,
        threads: int | None = 1,
        limits: Any = None,
    ) -> None:
        """threads: torch CPU threads for sampling (process-wide). One is the default because
        a second thread only pays on an otherwise idle machine: with one other busy process
        on 2 cores, 2 threads made sampling 4x slower (docs/pipeline.md)."""
        import torch

        from diffbgm.model.diffusion import Diffusion

        if threads is not None and threads < 0:
            raise DiffBGMError(f"threads must be 0 (torch's default) or more, got {threads}")
        if threads:
            torch.set_num_threads(threads)
        from diffbgm.music.calibration import Calibration
        from diffbgm.video.probe import ProbeLimits

        self.limits = limits or ProbeLimits()
        # POP909 quantile tables: the units of the plan's controls; read once, not per call.
        self.calibration = Calibration.load()
        self._text_encoder: Any = None
        self.model = loaded.model
        self.config = loaded.config
        self.extra: dict[str, Any] = dict(loaded.extra or {})
        self.diffusion = Diffusion(self.config.diffusion)
        self.model_id = model_id
        self.bf16 = bf16
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls, path_or_hub_id: str | Path | None = None, threads: int | None = 1, limits: Any = None
    ) -> Composer:
        """Load a checkpoint folder or a Hugging Face Hub id; default: the shipped model.

        limits: a diffbgm.video.probe.ProbeLimits (size and duration) for the videos."""
        from diffbgm.checkpoint import load_checkpoint

        source = str(path_or_hub_id) if path_or_hub_id is not None else str(DEFAULT_MODEL)
        return cls(load_checkpoint(source), model_id=source, threads=threads, limits=limits)

    # --- generation defaults stored with the checkpoint -------------------------------
    def _generation(self, options: ComposeOptions) -> dict[str, float]:
        defaults = self.extra.get("generation", {})
        return {
            "steps": float(
                options.steps if options.steps is not None else defaults.get("steps", 25)
            ),
            "guidance": float(
                options.guidance if options.guidance is not None else defaults.get("guidance", 3.0)
            ),
            "onset_threshold": float(
                options.onset_threshold
                if options.onset_threshold is not None
                else defaults.get("onset_threshold", 0.0)
            ),
            "sustain_threshold": float(defaults.get("sustain_threshold", 0.0)),
            # one bar of overlap between windows keeps the joins coherent
            "overlap_steps": float(defaults.get("overlap_steps", 16)),
            # > 0: each segment's onset threshold moves (within ± this) toward its density
            "density_slack": float(defaults.get("density_slack", 0.0)),
            # share of the noise schedule in which a returning scene follows its first music
            "recall_strength": float(
                options.recall if options.recall is not None else defaults.get("recall", 0.0)
            ),
            # > 0: onsets nudged toward the segment's common rhythm pattern before decoding
            "groove": float(defaults.get("groove", 0.0)),
            # > 0: at a boundary where the density requests differ clearly, the bars on either
            # side are density-matched on their own and not recalled against their request
            "edge_bars": float(defaults.get("edge_bars", 0)),
        }

    def _sampler(self) -> str:
        return str(self.extra.get("generation", {}).get("sampler", "ddim"))

    def __call__(
        self,
        video: str | Path,
        out_dir: str | Path,
        options: ComposeOptions | None = None,
        progress: ProgressFn | None = None,
    ) -> Result:
        """Compose music for `video`; write score.mid, music.wav, video.mp4, pianoroll.png,
        report.json (and thumbnails/) into `out_dir`.

        All files are written to a temporary folder first and moved into `out_dir` only when
        every stage succeeded, so a failure leaves nothing half-written behind.
        """
        options = options or ComposeOptions()
        video, out_dir = Path(video), Path(out_dir)
        _check_output_folder(video, out_dir)
        self._overrides(options)  # a bad tempo or key fails now, not after the analysis
        with self._lock:
            return self._compose(video, out_dir, options, progress or _no_progress)

    def _compose(
        self, video: Path, out_dir: Path, options: ComposeOptions, progress: ProgressFn
    ) -> Result:
        from diffbgm.video.analyze import AnalysisOptions, analyze_video
        from diffbgm.video.probe import probe_video
        from diffbgm.video.shots import ShotOptions

        total = 3 + 4 * options.variants
        clock = _StageClock(progress, total)
        info = probe_video(video, self.limits)  # fails fast, with a clear VideoError
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".diffbgm-", dir=out_dir.parent))
        try:
            analysis = clock.run(
                "analyse",
                lambda: analyze_video(
                    video,
                    AnalysisOptions(
                        limits=self.limits,
                        shots=ShotOptions(method=options.shot_detector),  # type: ignore[arg-type]
                        mood_text=options.mood,
                    ),
                    thumbnails_dir=work / "thumbnails",
                    text_encoder=self._mood_encoder() if options.mood else None,
                ),
            )
            plan = clock.run("plan", lambda: self.plan(analysis, options))
            variants = []
            for v in range(options.variants):
                seed = options.seed + v
                folder = work if v == 0 else work / f"variant-{v + 1}"
                folder.mkdir(parents=True, exist_ok=True)
                variants.append(
                    self._render_variant(video, info, analysis, plan, seed, options, folder, clock)
                )
            report = self._report(video, info, analysis, plan, options, variants, clock.seconds)
            (work / "report.json").write_text(json.dumps(report, indent=2))
            clock.done = total
            progress(total, total, "done")
            return self._publish(work, out_dir, variants, report, analysis)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def _mood_encoder(self) -> Any:
        """The sentence encoder for mood texts, loaded once per Composer."""
        if self._text_encoder is None:
            from diffbgm.video.semantics import MoodTextEncoder

            self._text_encoder = MoodTextEncoder()
        return self._text_encoder

    def _overrides(self, options: ComposeOptions, mood: Any = None) -> Any:
        """The user's choices as PlanOverrides (validated: a bad key or tempo raises PlanError).

        A mood text sets the whole piece's valence and arousal (key mode, tempo, energy);
        the shots keep their differences around it."""
        from diffbgm.plan import PlanOverrides

        key = None if options.key in (None, "", "auto") else options.key
        return PlanOverrides(
            tempo_bpm=options.tempo_bpm,
            key=key,
            density=options.density,
            valence=None if mood is None else float(mood.valence),
            arousal=None if mood is None else float(mood.arousal),
        )

    def plan(self, analysis: Any, options: ComposeOptions, config: Any = None) -> Any:
        """The MusicPlan this composer makes for a video analysis (mood text, overrides);
        config: a diffbgm.plan.PlanConfig (default: the planner's defaults)."""
        from diffbgm.plan import make_plan

        mood = self._mood_encoder().mood(options.mood).mood if options.mood else None
        overrides = self._overrides(options, mood)
        return make_plan(
            analysis, overrides, calibration=self.calibration, seed=options.seed, config=config
        )

    def sample_roll(
        self,
        plan: Any,
        seed: int,
        options: ComposeOptions,
        known_roll: np.ndarray | None = None,
        known_mask: np.ndarray | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Diffusion over the whole plan, window by window -> (onset, sustain) (T, P) bool."""
        import torch

        from diffbgm.conditioning import piece_conditions
        from diffbgm.model.sampling import decode_piece, requested_onsets_per_bar, sample_piece
        from diffbgm.music.roll import RollSpec

        gen = self._generation(options)
        spec = RollSpec(pitch_low=self.config.pitch_low, n_pitches=self.config.n_pitches)
        piece = piece_conditions(plan, spec)
        generator = torch.Generator().manual_seed(seed)
        # bf16 matmuls pay on CPUs with AMX; the schedule math inside stays in fp32.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            x = sample_piece(
                self.model,
                self.diffusion,
                piece,
                self.config,
                generator,
                steps=int(gen["steps"]),
                guidance=gen["guidance"],
                overlap_steps=int(gen["overlap_steps"]),
                known_roll=known_roll,
                known_mask=known_mask,
                progress=progress,
                sampler=self._sampler(),
                recall_strength=gen["recall_strength"],
                onsets_per_bar=requested_onsets_per_bar(piece, self.calibration)
                if gen["edge_bars"] > 0
                else None,
            )
        onset, sustain = decode_piece(
            x,
            piece,
            gen["onset_threshold"],
            gen["sustain_threshold"],
            gen["density_slack"],
            self.calibration,
            gen["groove"],
            int(gen["edge_bars"]),
        )
        return onset, sustain

    def _render_variant(
        self,
        video: Path,
        info: Any,
        analysis: Any,
        plan: Any,
        seed: int,
        options: ComposeOptions,
        folder: Path,
        clock: _StageClock,
        known: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Variant:
        known_roll, known_mask = known if known is not None else (None, None)
        onset, sustain = clock.run(
            "compose", lambda: self.sample_roll(plan, seed, options, known_roll, known_mask)
        )
        if known_roll is not None and known_mask is not None:
            # Decoding looks at neighbours (a sustain needs its onset), so re-decoding could
            # move notes at the edges of the kept music: keep the kept part bit for bit.
            keep = known_mask.astype(bool)
            onset = np.where(keep[0], known_roll[0] > 0, onset)
            sustain = np.where(keep[1], known_roll[1] > 0, sustain)
        np.savez_compressed(folder / "roll.npz", onset=onset, sustain=sustain)
        midi_path = clock.run(
            "score", lambda: self._write_midi(onset, sustain, plan, folder / "score.mid")
        )
        wav_path = clock.run(
            "audio", lambda: self._write_wav(midi_path, plan, folder / "music.wav")
        )

        def video_and_picture() -> tuple[Path, Path]:
            from diffbgm.video.mux import mux_music

            mp4 = mux_music(
                video,
                wav_path,
                folder / "video.mp4",
                duration_s=plan.duration_s,
                audio=options.audio,
                has_original_audio=bool(info.has_audio),
            )
            png = self._plot(onset, sustain, plan, analysis, folder / "pianoroll.png", seed)
            return mp4, png

        mp4, png = clock.run("video", video_and_picture)
        return Variant(seed, midi_path, wav_path, mp4, png)

    def _write_midi(self, onset: np.ndarray, sustain: np.ndarray, plan: Any, path: Path) -> Path:
        """Score in video time: notes shifted by the plan's offset, cut at the video's end."""
        from diffbgm.music.roll import PianoRoll, RollSpec, roll_to_midi

        spec = RollSpec(pitch_low=self.config.pitch_low, n_pitches=self.config.n_pitches)
        velocity = self._velocities(onset, plan)
        midi = roll_to_midi(PianoRoll(onset, sustain, velocity), plan.tempo_bpm, spec)
        for inst in midi.instruments:
            kept = []
            for note in inst.notes:
                # a note struck in the pickup before the video starts rings on into it
                note.start = max(note.start + plan.offset_s, 0.0)
                note.end = min(note.end + plan.offset_s, plan.duration_s)
                if note.end - note.start > 0.02:
                    kept.append(note)
            inst.notes = kept
        midi.write(str(path))
        return path

    def _velocities(self, onset: np.ndarray, plan: Any) -> np.ndarray:
        """MIDI velocity per onset from each segment's velocity control (quantile -> raw)."""
        calibration = self.calibration
        piece_ids = plan.step_segment_ids(onset.shape[0])
        per_segment = np.array(
            [calibration.to_raw("velocity", seg.dynamic["velocity"]) for seg in plan.segments]
        )
        step_velocity = np.clip(per_segment[piece_ids], 30, 120)
        # Accents on the beat, softer off-beat notes: the roll has no velocity channel.
        steps = np.arange(onset.shape[0])
        accent = np.where(steps % 4 == 0, 8.0, np.where(steps % 2 == 0, 0.0, -8.0))
        vel = np.clip(step_velocity + accent, 1, 127).astype(np.uint8)
        return np.where(onset, vel[:, None], 0).astype(np.uint8)

    def _write_wav(self, midi_path: Path, plan: Any, path: Path) -> Path:
        from diffbgm.music.render import render_wav, trim_or_pad

        render_wav(midi_path, path)
        trim_or_pad(path, plan.duration_s)
        return path

    def _plot(
        self,
        onset: np.ndarray,
        sustain: np.ndarray,
        plan: Any,
        analysis: Any,
        path: Path,
        seed: int,
    ) -> Path:
        from diffbgm.plot import plot_pianoroll

        times = plan.step_times_s()[: onset.shape[0]]
        cuts = [shot.start_s for shot in analysis.shots[1:]]
        title = f"{plan.key_name} · {plan.tempo_bpm:.1f} BPM · seed {seed}"
        return plot_pianoroll(
            onset,
            sustain,
            times,
            self.config.pitch_low,
            path,
            segment_bounds_s=plan.segment_bounds_s(),
            cut_times_s=cuts,
            title=title,
        )

    def _report(
        self,
        video: Path,
        info: Any,
        analysis: Any,
        plan: Any,
        options: ComposeOptions,
        variants: Sequence[Variant],
        seconds: dict[str, float],
    ) -> dict[str, Any]:
        from diffbgm.metrics import cut_alignment

        cuts = [shot.start_s for shot in analysis.shots[1:]]
        beat_s = 60.0 / plan.tempo_bpm
        boundaries = [start for start, _ in plan.segment_bounds_s()[1:]]
        total = sum(seconds.values())
        return {
            "video": video.name,
            "video_path": str(video.resolve()),
            "model_id": self.model_id,
            "options": asdict(options),
            "generation": self._generation(options),
            "seeds": [v.seed for v in variants],
            "video_info": info.to_dict(),
            "analysis": analysis.to_dict(),
            "plan": plan.to_dict(),
            "timings_s": {**{k: round(v, 3) for k, v in seconds.items()}, "total": round(total, 3)},
            "real_time_factor": round(total / max(plan.duration_s, 1e-6), 4),
            "metrics": {
                "cut_alignment": cut_alignment(cuts, boundaries, tolerance_s=beat_s),
                "n_cuts": len(cuts),
                "n_segments": len(plan.segments),
            },
            "files": [
                {
                    "seed": v.seed,
                    "midi": v.midi_path.name,
                    "wav": v.wav_path.name,
                    "video": v.video_path.name,
                    "pianoroll": v.pianoroll_path.name,
                }
                for v in variants
            ],
        }

    def regenerate(
        self,
        result_dir: str | Path,
        segment_index: int,
        seed: int = 1,
        density: float | None = None,
        out_dir: str | Path | None = None,
        video: str | Path | None = None,
        progress: ProgressFn | None = None,
    ) -> Result:
        """Compose segment `segment_index` (from 0) again, keeping every other note.

        Reads report.json and roll.npz from `result_dir`; the kept music is in-painted around
        the new segment so the joins stay smooth. Writes to `out_dir` (default: result_dir).
        """
        with self._lock:
            return self._regenerate(
                Path(result_dir),
                segment_index,
                seed,
                density,
                Path(out_dir) if out_dir else Path(result_dir),
                Path(video) if video else None,
                progress or _no_progress,
            )

    def _regenerate(
        self,
        result_dir: Path,
        segment_index: int,
        seed: int,
        density: float | None,
        out_dir: Path,
        video: Path | None,
        progress: ProgressFn,
    ) -> Result:
        from diffbgm.plan import MusicPlan, replan_segment
        from diffbgm.video.analyze import VideoAnalysis
        from diffbgm.video.probe import probe_video

        report = load_report(result_dir / "report.json")
        roll_path = result_dir / "roll.npz"
        if not roll_path.exists():
            raise DiffBGMError(
                f"{result_dir} has no roll.npz: regenerate needs a full result folder"
            )
        plan = MusicPlan.from_dict(report["plan"])
        if not 0 <= segment_index < len(plan.segments):
            raise PlanError(
                f"segment {segment_index + 1} does not exist: the piece has {len(plan.segments)} segments"
            )
        if density is not None:
            plan = replan_segment(plan, segment_index, dynamic={"density": density})
        if plan.segments[segment_index].recalls >= 0:  # new music asked for: no longer a repeat
            segments = list(plan.segments)
            segments[segment_index] = replace(segments[segment_index], recalls=-1)
            plan = replace(plan, segments=tuple(segments))
        source = video or Path(report.get("video_path", ""))
        info = probe_video(source, self.limits)
        analysis = VideoAnalysis.from_dict(report["analysis"])
        with np.load(roll_path) as saved:
            onset, sustain = saved["onset"], saved["sustain"]
        keep = plan.step_segment_ids(onset.shape[0]) != segment_index
        known_roll = np.stack([onset, sustain]).astype(np.float32) * 2.0 - 1.0  # (2, T, P)
        known_mask = np.broadcast_to(keep[None, :, None], known_roll.shape).astype(np.float32)
        options = replace(
            ComposeOptions(**{k: v for k, v in report["options"].items() if k in _OPTION_FIELDS}),
            seed=seed,
            variants=1,
        )
        clock = _StageClock(progress, 4)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".diffbgm-", dir=out_dir.parent))
        try:
            thumbs = result_dir / "thumbnails"
            if thumbs.exists():
                shutil.copytree(thumbs, work / "thumbnails")
            variant = self._render_variant(
                source, info, analysis, plan, seed, options, work, clock, (known_roll, known_mask)
            )
            new_report = self._report(
                source, info, analysis, plan, options, [variant], clock.seconds
            )
            new_report["regenerated_segment"] = segment_index
            (work / "report.json").write_text(json.dumps(new_report, indent=2))
            progress(4, 4, "done")
            return self._publish(work, out_dir, [variant], new_report, analysis)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def _publish(
        self,
        work: Path,
        out_dir: Path,
        variants: list[Variant],
        report: dict[str, Any],
        analysis: Any,
    ) -> Result:
        """Move the finished files from the work folder into out_dir (replacing old ones)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob("variant-*"):  # from an earlier run with more variants
            if stale.is_dir() and not (work / stale.name).exists():
                shutil.rmtree(stale)
        for item in work.iterdir():
            target = out_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            shutil.move(str(item), str(target))
        shutil.rmtree(work, ignore_errors=True)

        def moved(p: Path) -> Path:
            return out_dir / p.relative_to(work)

        published = [
            replace(
                v,
                midi_path=moved(v.midi_path),
                wav_path=moved(v.wav_path),
                video_path=moved(v.video_path),
                pianoroll_path=moved(v.pianoroll_path),
            )
            for v in variants
        ]
        thumbs = (
            sorted((out_dir / "thumbnails").glob("*.jpg"))
            if (out_dir / "thumbnails").exists()
            else []
        )
        return Result(out_dir, published, out_dir / "report.json", report, thumbs)


_OPTION_FIELDS = {f for f in ComposeOptions.__dataclass_fields__}
OUTPUT_NAMES = ("score.mid", "music.wav", "video.mp4", "pianoroll.png", "report.json", "roll.npz")


def _check_output_folder(video: Path, out_dir: Path) -> None:
    """Refuse an output folder that is a file, or where a result would replace the input."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DiffBGMError(f"the output folder {out_dir} is a file")
    same_folder = video.exists() and video.resolve().parent == out_dir.resolve()
    if same_folder and video.name in OUTPUT_NAMES:
        raise DiffBGMError(
            f"{video.name} would be overwritten by the result: choose another output folder"
        )


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report.json written by Composer; clear error when it is not one."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DiffBGMError(f"cannot read report {path}: {exc}") from exc
    if not isinstance(report, dict) or "plan" not in report:
        raise DiffBGMError(f"{path} is not a Diff-BGM report.json (no plan in it)")
    return report
