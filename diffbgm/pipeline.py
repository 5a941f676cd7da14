"""Video in, music out: probe -> analyse -> plan -> conditions -> roll -> files. Orchestration only.

`Composer` holds one loaded model (build it once, reuse it; calls are serialised by a lock, so
the web app may share one across requests). Every stage reports progress through a callback
`(done, total, stage)` so the CLI shows a bar and the web app a progress indicator; nothing
here imports a UI. The music is made by `diffbgm.generation.generate_roll`; the files by
`diffbgm.outputs`; the folder and its report.json by `diffbgm.result`.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from diffbgm.checkpoint import LoadedModel
from diffbgm.conditioning import piece_conditions
from diffbgm.controls import DEFAULT_PLAYING
from diffbgm.device import sampling_precision
from diffbgm.errors import DiffBGMError, PlanError
from diffbgm.generation import (
    GeneratedRoll,
    GenerationConfig,
    KnownMusic,
    check_settings_for_model,
    generate_roll,
)
from diffbgm.model.onnx_runtime import sampling_runtime
from diffbgm.music.calibration import Calibration
from diffbgm.music.render import LevelConfig, find_soundfont
from diffbgm.music.roll import RollSpec
from diffbgm.options import ComposeOptions
from diffbgm.plan import MusicPlan, PlanConfig, PlanOverrides
from diffbgm.result import (
    OUTPUT_NAMES,
    CompositionMetrics,
    Report,
    SoundReport,
    VariantFiles,
    check_output_folder,
    load_report,
    publish,
    read_source,
    work_folder,
    write_report,
    write_source,
)
from diffbgm.threads import AUTO as AUTO_THREADS
from diffbgm.threads import CoreSample, SamplingThreads, free_cores
from diffbgm.video.features import Mood
from diffbgm.video.mux import VideoTrackJob
from diffbgm.video.probe import ProbeLimits
from diffbgm.video.types import VideoAnalysis, VideoInfo

if TYPE_CHECKING:
    import torch

    from diffbgm.video.clip import ClipLoader
    from diffbgm.video.semantics import MoodTextEncoder

ProgressFn = Callable[[int, int, str], None]
T = TypeVar("T")

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "checkpoints" / "diffbgm-small"
STAGES: tuple[str, ...] = ("analyse", "plan", "compose", "score", "audio", "video")

__all__ = [
    "DEFAULT_MODEL",
    "OUTPUT_NAMES",
    "STAGES",
    "ComposeOptions",
    "Composer",
    "Result",
    "Variant",
    "load_report",
]


@dataclass
class Variant:
    """One generated soundtrack and its files."""

    seed: int
    midi_path: Path
    wav_path: Path
    video_path: Path
    pianoroll_path: Path
    stems: dict[str, Path] = field(default_factory=dict)  # stem name -> WAV
    musicxml_path: Path | None = None
    sheet_svg_path: Path | None = None
    bundle_path: Path | None = None  # the zip download


@dataclass
class Result:
    """Everything one call produced; `report` is what report.json holds."""

    out_dir: Path
    variants: list[Variant]
    report_path: Path
    report: Report
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

    @classmethod
    def read(cls, out_dir: Path) -> Result:
        """A published result folder, as a Result."""
        report = load_report(out_dir)
        variants = [
            Variant(
                f.seed,
                out_dir / f.midi,
                out_dir / f.wav,
                out_dir / f.video,
                out_dir / f.pianoroll,
                {name: out_dir / stem for name, stem in f.stems.items()},
                None if f.musicxml is None else out_dir / f.musicxml,
                None if f.sheet_svg is None else out_dir / f.sheet_svg,
                None if f.bundle is None else out_dir / f.bundle,
            )
            for f in report.files
        ]
        thumbs = sorted((out_dir / "thumbnails").glob("*.jpg"))
        return cls(out_dir, variants, out_dir / "report.json", report, thumbs)


def _no_progress(done: int, total: int, stage: str) -> None:
    return None


class _StageClock:
    """Times stages and forwards progress; keeps the per-stage seconds for report.json."""

    def __init__(self, progress: ProgressFn, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0
        self.seconds: dict[str, float] = {}

    def run(self, stage: str, fn: Callable[[], T]) -> T:
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
        loaded: LoadedModel,
        model_id: str,
        threads: int | str | None = "auto",
        limits: ProbeLimits | None = None,
        clip: str | None = None,
        soundfont: str | Path | None = None,
        level: LevelConfig | None = None,
    ) -> None:
        """threads: torch CPU threads for sampling (process-wide): "auto" (the default) measures
        the cores no other process was busy with while the video was analysed, and leaves one
        of them to the background picture encode while it runs (diffbgm.threads: on an idle
        2-core machine 2 threads compose 1.8x faster than 1, with another busy process 4x
        slower); a number fixes it; 0 or None leaves torch's default.

        clip: how shots are read (`off`, `auto`, a Hub id or folder; None: $DIFFBGM_CLIP, else
        `auto`; see diffbgm.video.clip). The model loads on the first compose, once; when it
        cannot (offline, no package), composes use picture statistics and say so in the report.

        soundfont: a soundfont file, "auto" (a full General MIDI soundfont when installed, else
        TimGM6mb) or "timgm6mb"; None: $DIFFBGM_SOUNDFONT, else auto. level: the audio's
        loudness target and true-peak ceiling (default -14 LUFS, -1 dBTP).
        """
        import torch

        from diffbgm.video.clip import ClipLoader

        if isinstance(threads, str) and threads != AUTO_THREADS:
            raise DiffBGMError(f"threads must be 'auto' or a number, got {threads!r}")
        if isinstance(threads, int) and threads < 0:
            raise DiffBGMError(f"threads must be 0 (torch's default) or more, got {threads}")
        if isinstance(threads, int) and threads > 0:
            torch.set_num_threads(threads)
        self.auto_threads = threads == AUTO_THREADS
        self.limits = limits or ProbeLimits()
        # POP909 quantile tables: the units of the plan's controls; read once, not per call.
        self.calibration = Calibration.load()
        self.loaded = loaded
        self.model_id = model_id
        self._text_encoder: MoodTextEncoder | None = None
        self.clip: ClipLoader = ClipLoader(clip)
        self.soundfont = find_soundfont(soundfont)  # a bad path fails now, not after a compose
        self.level = level or LevelConfig()
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | Path | None = None,
        threads: int | str | None = "auto",
        limits: ProbeLimits | None = None,
        device: str | None = None,
        clip: str | None = None,
        soundfont: str | Path | None = None,
        level: LevelConfig | None = None,
    ) -> Composer:
        """Load a checkpoint folder or a Hugging Face Hub id; default: the shipped model.

        device: `auto` (CUDA when torch sees a GPU, else CPU), `cpu`, `cuda[:N]`; None reads
        $DIFFBGM_DEVICE (default `auto`). Sampling runs under bf16 autocast (the generation
        config's `bf16`, on by default) where the device computes bf16 natively, in fp32
        elsewhere (`diffbgm.device.sampling_precision`). clip, soundfont, level: see
        `Composer.__init__`."""
        from diffbgm.checkpoint import load_checkpoint
        from diffbgm.device import resolve_device

        source = str(path_or_hub_id) if path_or_hub_id is not None else str(DEFAULT_MODEL)
        loaded = load_checkpoint(source, device=resolve_device(device))
        return cls(
            loaded,
            model_id=source,
            threads=threads,
            limits=limits,
            clip=clip,
            soundfont=soundfont,
            level=level,
        )

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are (sampling runs there)."""
        return next(self.loaded.model.parameters()).device

    @property
    def spec(self) -> RollSpec:
        config = self.loaded.config
        return RollSpec(pitch_low=config.pitch_low, n_pitches=config.n_pitches)

    def generation_config(self, options: ComposeOptions | None = None) -> GenerationConfig:
        """The model's stored generation settings with the user's changes."""
        base = self.loaded.generation
        return base.with_overrides(**options.generation) if options else base

    # --- the stages ----------------------------------------------------------------------
    def __call__(
        self,
        video: str | Path,
        out_dir: str | Path,
        options: ComposeOptions | None = None,
        progress: ProgressFn | None = None,
        info: VideoInfo | None = None,
    ) -> Result:
        """Compose music for `video`; write score.mid, music.wav, video.mp4, pianoroll.png,
        roll.npz, report.json (and thumbnails/) into `out_dir`, published as a whole when
        every stage succeeded, so a failure leaves nothing half-written behind.

        info: the video's probe, when the caller has probed it already (one probe a compose).
        """
        from diffbgm.video.probe import probe_video

        options = options or ComposeOptions()
        video, out_dir = Path(video), Path(out_dir)
        check_output_folder(video, out_dir)
        self.overrides(options)  # a bad key fails now, not after the analysis
        generation = self.generation_config(options)
        check_settings_for_model(self.loaded, generation)  # so does this
        info = info or probe_video(video, self.limits)  # fails fast, with a clear VideoError
        options.check_for_video(info.duration_s)
        with self._lock:
            return self._compose(
                video, info, out_dir, options, generation, progress or _no_progress
            )

    def _sampling_threads(
        self, free: int | None, track: VideoTrackJob | None
    ) -> SamplingThreads | None:
        """With threads="auto", the torch threads of the compose stage: the `free` cores
        (measured while the video was analysed), less one while the picture is still being
        encoded in the background (under the lock: no other compose of this Composer runs)."""
        if not self.auto_threads or free is None:
            return None
        return SamplingThreads(free, None if track is None else track.running)

    def _compose(
        self,
        video: Path,
        info: VideoInfo,
        out_dir: Path,
        options: ComposeOptions,
        generation: GenerationConfig,
        progress: ProgressFn,
    ) -> Result:
        total = 3 + 4 * options.variants
        clock = _StageClock(progress, total)
        # Other processes' load is sampled over the analysis, so the compose never waits for it.
        load = CoreSample.start() if self.auto_threads else None
        with work_folder(out_dir) as work, _video_track(video, info, work) as track:

            def analyse() -> tuple[Mood | None, VideoAnalysis]:
                mood = self.mood(options.mood)  # encoded once, for the analysis and the plan
                return mood, self.analyse(video, info, options, mood, work)

            mood, analysis = clock.run("analyse", analyse)
            plan = clock.run("plan", lambda: self.plan(analysis, options, mood=mood))
            free = None if load is None else load.free_cores([track.pid] if track else [])
            files = []
            for v in range(options.variants):
                folder = work if v == 0 else work / f"variant-{v + 1}"
                folder.mkdir(parents=True, exist_ok=True)
                files.append(
                    self._variant(
                        video,
                        analysis,
                        plan,
                        generation,
                        options,
                        options.seed + v,
                        folder,
                        clock,
                        track=track,
                        free_cores=free,
                    )
                )
            if track is not None:
                track.cancel()  # its file is not one of the results
            files = [_relative(f, work) for f in files]
            report = self._report(video, analysis, plan, options, generation, files, clock.seconds)
            write_report(report, work)
            write_source(work, video)
            progress(total, total, "done")
            publish(work, out_dir)
        return Result.read(out_dir)

    def mood(self, text: str | None) -> Mood | None:
        """The mood a text describes (sentence encoder, loaded once per Composer)."""
        if not text:
            return None
        if self._text_encoder is None:
            from diffbgm.video.semantics import MoodTextEncoder

            self._text_encoder = MoodTextEncoder()
        return self._text_encoder.mood(text).mood

    def analyse(
        self,
        video: Path,
        info: VideoInfo,
        options: ComposeOptions,
        mood: Mood | None,
        work: Path,
    ) -> VideoAnalysis:
        from diffbgm.video.analyze import AnalysisOptions, analyze_video
        from diffbgm.video.shots import ShotOptions

        return analyze_video(
            video,
            AnalysisOptions(
                limits=self.limits,
                shots=ShotOptions(method=options.shot_detector),
            ),
            thumbnails_dir=work / "thumbnails",
            info=info,
            text_mood=mood,
            clip_loader=self.clip,
        )

    def overrides(self, options: ComposeOptions, mood: Mood | None = None) -> PlanOverrides:
        """The user's choices as PlanOverrides (validated: a bad key or tempo raises PlanError).

        A mood text sets the whole piece's valence and arousal (key mode, tempo, energy);
        the shots keep their differences around it. The user's sections are added to the shot
        cuts, or replace them (sections_only); the music may be asked for part of the video."""
        key = None if options.key in (None, "", "auto") else options.key
        sections = options.sections or ()
        return PlanOverrides(
            tempo_bpm=options.tempo_bpm,
            key=key,
            density=options.density,
            valence=None if mood is None else float(mood.valence),
            arousal=None if mood is None else float(mood.arousal),
            chords=options.chords,
            segment_starts_s=sections if options.sections_only else None,
            added_segment_starts_s=None if options.sections_only else sections or None,
            section_form=options.form,
            music_start_s=options.music_start_s,
            music_end_s=options.music_end_s,
        )

    def plan(
        self,
        analysis: VideoAnalysis,
        options: ComposeOptions,
        config: PlanConfig | None = None,
        mood: Mood | None = None,
    ) -> MusicPlan:
        """The MusicPlan this composer makes for a video analysis (mood, overrides).
        mood: the mood of options.mood when the caller has encoded it already."""
        from diffbgm.plan import make_plan

        if mood is None:
            mood = self.mood(options.mood)
        return make_plan(
            analysis,
            self.overrides(options, mood),
            calibration=self.calibration,
            seed=options.seed,
            config=config,
        )

    def compose_roll(
        self,
        plan: MusicPlan,
        seed: int,
        generation: GenerationConfig,
        known: KnownMusic | None = None,
        progress: Callable[[int, int], None] | None = None,
        playing: str = DEFAULT_PLAYING,
    ) -> GeneratedRoll:
        """The plan's music as notes (generate_roll with this composer's model), played
        `playing` (controls.PLAYINGS: a model with the way of playing as an input writes
        notes for it)."""
        conditions = piece_conditions(plan, self.spec, playing)
        return generate_roll(
            self.loaded,
            conditions,
            generation,
            seed,
            known=known,
            progress=progress,
            calibration=self.calibration,
        )

    def _variant(
        self,
        video: Path,
        analysis: VideoAnalysis,
        plan: MusicPlan,
        generation: GenerationConfig,
        options: ComposeOptions,
        seed: int,
        folder: Path,
        clock: _StageClock,
        known: KnownMusic | None = None,
        track: VideoTrackJob | None = None,
        free_cores: int | None = None,
    ) -> VariantFiles:
        """One variant's files. The sheet is engraved while FluidSynth renders the audio;
        ffmpeg muxes the video as soon as the mix is written, while the stems and the zip are
        written and then the piano-roll picture drawn: Python-bound jobs beside subprocesses,
        so on two cores they take the time of the longer ones."""
        from diffbgm import outputs
        from diffbgm.video.mux import encode_sound_track, join_tracks

        threads = self._sampling_threads(free_cores, track)
        if threads is not None:
            threads.start()
        roll = clock.run(
            "compose",
            lambda: self.compose_roll(
                plan,
                seed,
                generation,
                known,
                None if threads is None else threads.on_progress,
                options.playing,
            ),
        )
        if threads is not None:
            threads.finish()
        onset, sustain = roll.onset, roll.sustain
        np.savez_compressed(folder / "roll.npz", onset=onset, sustain=sustain)

        # Two helpers: `side` engraves the sheet while FluidSynth renders and then draws the
        # picture; `muxer` lays the mix under the video as soon as the mix is written, while
        # the stems and the zip are still being written.
        with ThreadPoolExecutor(max_workers=1) as side, ThreadPoolExecutor(max_workers=1) as muxer:
            written = clock.run(
                "score",
                lambda: outputs.write_midi(
                    onset,
                    sustain,
                    plan,
                    self.spec,
                    self.calibration,
                    folder / "score.mid",
                    arrangement=options.arrangement,
                    seed=seed,
                    playing=options.playing,
                    recalled=roll.recalled,
                ),
            )
            midi = written.path
            sheets: list[Future[tuple[Path, Path]]] = []

            def engrave() -> None:
                # once FluidSynth runs: verovio holds the GIL while it engraves (over two
                # seconds for ten minutes), which kept the renders from starting
                marks = outputs.section_marks(plan, options.sections, options.form)
                sheets.append(
                    side.submit(outputs.write_sheet, written.grid, plan, folder, video.stem, marks)
                )

            def mux(wav: Path) -> Path:
                # the sound is encoded on its own as soon as the mix is written (while the
                # picture may still be encoding), and the MP4 is then joined by copying both
                # streams
                sound = encode_sound_track(
                    video,
                    wav,
                    folder / ".sound-track.m4a",
                    plan.duration_s,
                    audio=options.audio,
                    has_original_audio=bool(analysis.info.has_audio),
                    music_span_s=None if plan.covers_whole_video else plan.music_span_s,
                )
                try:
                    if track is None:  # the upload's own H.264/HEVC stream, copied
                        return join_tracks(
                            video, sound, folder / "video.mp4", plan.duration_s, info=analysis.info
                        )
                    return join_tracks(track.result(), sound, folder / "video.mp4", plan.duration_s)
                finally:
                    sound.unlink(missing_ok=True)

            muxing: list[Future[Path]] = []

            def audio() -> tuple[outputs.AudioFiles, Path, Path, Path]:
                sound = outputs.write_wav(
                    midi,
                    plan.duration_s,
                    folder / "music.wav",
                    self.soundfont,
                    self.level,
                    on_mix=lambda wav: muxing.append(muxer.submit(mux, wav)),
                    on_started=engrave,
                )
                if not sheets:  # a write_wav that never reported its start
                    engrave()
                musicxml, svg = sheets[0].result()
                stems = [p for p in sound.stems.values() if p != sound.mix]
                bundle = outputs.write_bundle(
                    folder / "music.zip", [midi, musicxml, sound.mix, *stems], folder
                )
                return sound, bundle, musicxml, svg

            sound, bundle, musicxml, svg = clock.run("audio", audio)
            wav = sound.mix
            # Drawn beside the mux's AAC encode (one core), not beside FluidSynth (two).
            picture = side.submit(
                outputs.write_pianoroll,
                onset,
                sustain,
                plan,
                analysis,
                self.loaded.config.pitch_low,
                seed,
                folder / "pianoroll.png",
            )

            def video_and_picture() -> tuple[Path, Path]:
                mp4 = muxing[0].result() if muxing else mux(wav)
                return mp4, picture.result()

            mp4, png = clock.run("video", video_and_picture)
        return VariantFiles(
            seed,
            str(midi),
            str(wav),
            str(mp4),
            str(png),
            str(folder / "roll.npz"),
            stems={name: str(path) for name, path in sound.stems.items()},
            musicxml=str(musicxml),
            sheet_svg=str(svg),
            bundle=str(bundle),
        )

    def _report(
        self,
        video: Path,
        analysis: VideoAnalysis,
        plan: MusicPlan,
        options: ComposeOptions,
        generation: GenerationConfig,
        files: list[VariantFiles],
        seconds: dict[str, float],
        regenerated_segment: int | None = None,
        recomposed_segments: Sequence[int] = (),
    ) -> Report:
        from diffbgm.metrics import cut_alignment

        first, last = plan.music_span_s
        cuts = [t for t in analysis.cut_times_s if first < t < last]  # the cuts under music
        boundaries = [start for start, _ in plan.segment_bounds_s()[1:]]
        alignment = cut_alignment(cuts, boundaries, tolerance_s=60.0 / plan.tempo_bpm)
        total = sum(seconds.values())
        precision = sampling_precision(generation.bf16, self.device)
        return Report(
            video=video.name,
            model_id=self.model_id,
            options=options,
            generation=generation,
            seeds=[f.seed for f in files],
            video_info=analysis.info,
            analysis=analysis,
            plan=plan,
            timings_s={**{k: round(v, 3) for k, v in seconds.items()}, "total": round(total, 3)},
            real_time_factor=round(total / max(plan.duration_s, 1e-6), 4),
            metrics=CompositionMetrics(
                cut_alignment=None if np.isnan(alignment) else float(alignment),
                n_cuts=len(cuts),
                n_segments=len(plan.segments),
            ),
            files=files,
            regenerated_segment=regenerated_segment,
            recomposed_segments=tuple(recomposed_segments),
            sound=SoundReport(
                self.soundfont.name, self.level.target_lufs, self.level.true_peak_dbtp
            ),
            precision=precision,
            runtime=sampling_runtime(generation.onnx_runtime, precision, self.device),
        )

    # --- regenerating one segment ---------------------------------------------------------
    def regenerate(
        self,
        result_dir: str | Path,
        segment_index: int,
        seed: int = 1,
        density: float | None = None,
        out_dir: str | Path | None = None,
        video: str | Path | None = None,
        progress: ProgressFn | None = None,
        info: VideoInfo | None = None,
    ) -> Result:
        """Compose segment `segment_index` (from 0) again, keeping every other note but those
        of the segments that repeat it (`PlanSegment.recalls`), which follow its new music.

        Reads report.json and roll.npz from `result_dir`; the kept music is in-painted around
        the new segment so the joins stay smooth. Writes to `out_dir` (default: result_dir).
        video: the input video (default: where the result says it was); info: its probe, when
        the caller has probed it already.
        """
        from diffbgm.video.probe import probe_video

        result_dir = Path(result_dir)
        out_dir = Path(out_dir) if out_dir else result_dir
        report = load_report(result_dir)
        source = Path(video) if video else read_source(result_dir)
        if source is None:
            raise DiffBGMError(
                f"{result_dir.name} does not say where its video is: pass the video to regenerate"
            )
        info = info or probe_video(source, self.limits)
        with self._lock:
            return self._regenerate(
                result_dir, report, source, info, segment_index, seed, density, out_dir,
                progress or _no_progress,
            )  # fmt: skip

    def _regenerate(
        self,
        result_dir: Path,
        report: Report,
        source: Path,
        info: VideoInfo,
        segment_index: int,
        seed: int,
        density: float | None,
        out_dir: Path,
        progress: ProgressFn,
    ) -> Result:
        from diffbgm.plan import replan_segment

        roll_path = result_dir / "roll.npz"
        if not roll_path.exists():
            raise DiffBGMError(
                f"{result_dir.name} has no roll.npz: regenerate needs a full result folder"
            )
        plan = report.plan
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
        analysis = replace(report.analysis, info=info)
        with np.load(roll_path) as saved:
            onset, sustain = saved["onset"], saved["sustain"]
        # The segments that repeat this one (a returning scene, a section of the user's form)
        # are composed again with it and still follow it: a repeat keeps repeating.
        follow = report.generation.recall > 0 or self.loaded.config.recall_input
        redo = [segment_index, *(plan.repeats_of(segment_index) if follow else [])]
        keep = ~np.isin(plan.step_segment_ids(onset.shape[0]), redo)
        known = KnownMusic.from_notes(onset, sustain, keep)
        options = replace(report.options, seed=seed, variants=1)
        clock = _StageClock(progress, 4)
        # Nothing is analysed here to sample the load over: it is sampled before the encode.
        free = free_cores() if self.auto_threads else None
        with work_folder(out_dir) as work, _video_track(source, info, work) as track:
            thumbs = result_dir / "thumbnails"
            if thumbs.exists():
                shutil.copytree(thumbs, work / "thumbnails")
            files = self._variant(
                source, analysis, plan, report.generation, options, seed, work, clock, known,
                track, free,
            )  # fmt: skip
            if track is not None:
                track.cancel()  # its file is not one of the results
            new_report = self._report(
                source,
                analysis,
                plan,
                options,
                report.generation,
                [_relative(files, work)],
                clock.seconds,
                regenerated_segment=segment_index,
                recomposed_segments=redo,
            )
            write_report(new_report, work)
            write_source(work, source)
            progress(4, 4, "done")
            publish(work, out_dir)
        return Result.read(out_dir)


@contextmanager
def _video_track(video: Path, info: VideoInfo, folder: Path) -> Iterator[VideoTrackJob | None]:
    """The MP4's video stream, encoded in the background from now on (None: it is copied);
    stopped and removed if the compose fails before it is used."""
    job = VideoTrackJob.start(video, info, info.duration_s, folder)
    try:
        yield job
    finally:
        if job is not None:
            job.cancel()


def _relative(files: VariantFiles, work: Path) -> VariantFiles:
    """Paths in the work folder -> names relative to the result folder."""

    def rel(path: str) -> str:
        return Path(path).relative_to(work).as_posix()

    return replace(
        files,
        midi=rel(files.midi),
        wav=rel(files.wav),
        video=rel(files.video),
        pianoroll=rel(files.pianoroll),
        roll=rel(files.roll),
        stems={name: rel(path) for name, path in files.stems.items()},
        musicxml=None if files.musicxml is None else rel(files.musicxml),
        sheet_svg=None if files.sheet_svg is None else rel(files.sheet_svg),
        bundle=None if files.bundle is None else rel(files.bundle),
    )
