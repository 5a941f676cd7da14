"""Command line: `python -m diffbgm generate VIDEO... --out DIR` and `regenerate`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from diffbgm.arrange.presets import ARRANGEMENTS, DEFAULT_ARRANGEMENT, PRESETS
from diffbgm.controls import DEFAULT_PLAYING, PLAYINGS
from diffbgm.errors import DiffBGMError
from diffbgm.generation.config import add_generation_arguments, generation_overrides
from diffbgm.threads import parse_threads
from diffbgm.video.mux import AUDIO_MODES

if TYPE_CHECKING:
    from diffbgm.music.render import LevelConfig

T = TypeVar("T")

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ogv", ".wmv"}


def _expand_videos(paths: Sequence[str]) -> list[Path]:
    """Files as given; folders expand to the videos directly inside them (sorted)."""
    videos: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise DiffBGMError(
                    f"no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) in {path}"
                )
            videos.extend(found)
        else:
            videos.append(path)
    return videos


def _output_folders(videos: Sequence[Path], out: Path) -> list[Path]:
    """One folder per video; videos with the same name get -2, -3, ... so none overwrites another."""
    if len(videos) == 1:
        return [out]
    seen: dict[str, int] = {}
    folders = []
    for video in videos:
        seen[video.stem] = seen.get(video.stem, 0) + 1
        suffix = "" if seen[video.stem] == 1 else f"-{seen[video.stem]}"
        folders.append(out / f"{video.stem}{suffix}")
    return folders


def _density(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("density is a quantile between 0 (sparse) and 1 (busy)")
    return value


def _typed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from one of diffbgm.options' parsers: its refusal as argparse's."""

    def read(text: str) -> T:
        try:
            return parse(text)
        except DiffBGMError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return read


def build_parser() -> argparse.ArgumentParser:
    from diffbgm.options import parse_chords, parse_form, parse_sections, parse_time

    parser = argparse.ArgumentParser(
        prog="python -m diffbgm",
        description="Compose background music for videos with the Diff-BGM model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser(
        "generate",
        help="compose music for one or more videos (or folders of videos)",
        description="For each video writes score.mid, music.wav, video.mp4, pianoroll.png and "
        "report.json into OUT (OUT/<video name>/ when several videos are given).",
    )
    gen.add_argument("videos", nargs="+", help="video files or folders of videos")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--seed", type=int, default=0, help="random seed (same seed, same music)")
    gen.add_argument(
        "--tempo",
        type=float,
        default=None,
        help="tempo in BPM (default: chosen so cuts fall on bar lines)",
    )
    gen.add_argument(
        "--key", default=None, help="key such as 'D minor' or 'Eb major' (default: from the mood)"
    )
    gen.add_argument(
        "--mood",
        default=None,
        help="free text mood, e.g. 'calm and warm' (steers key, tempo, energy)",
    )
    gen.add_argument(
        "--density",
        type=_density,
        default=None,
        help="note density for every segment, 0..1 (0.5 = typical pop piano)",
    )
    structure = gen.add_argument_group("your own structure (default: from the video)")
    structure.add_argument(
        "--chords",
        type=_typed(parse_chords),
        default=None,
        help="your chord progression, one chord per bar, repeated to fill the piece: "
        "'C G Am F' or '| Dm7 | G7 | Cmaj7 | %% |' (%% repeats the bar before); the key "
        "follows the chords unless --key is given (default: POP909's chord model)",
    )
    structure.add_argument(
        "--sections",
        type=_typed(parse_sections),
        default=None,
        help="where new sections of the music start, in seconds or m:ss: '0:12, 31.5' "
        "(added to the shot cuts; the tempo puts them on bar lines first)",
    )
    structure.add_argument(
        "--sections-only",
        action="store_true",
        help="the music changes at --sections only, not at the shot cuts (without "
        "--sections: the music ignores the cuts and is phrased on its own)",
    )
    structure.add_argument(
        "--form",
        type=_typed(parse_form),
        default=None,
        help="a label per section, the opening first: 'A B A C' (or 'ABAC'); a section "
        "labelled like an earlier one takes up its music (needs --sections: one label more "
        "than section starts)",
    )
    structure.add_argument(
        "--music-start",
        type=_typed(parse_time),
        default=None,
        metavar="TIME",
        help="music over part of the video only: where it starts, in seconds or m:ss "
        "(default: the video's start); the video's own sound is ducked only under the music",
    )
    structure.add_argument(
        "--music-end",
        type=_typed(parse_time),
        default=None,
        metavar="TIME",
        help="where the music ends, in seconds or m:ss: on a bar line where the tempo allows, "
        "else fading out there (default: the video's end)",
    )
    add_generation_arguments(gen.add_argument_group("generation (default: the model's settings)"))
    gen.add_argument(
        "--variants",
        type=int,
        default=1,
        help="how many versions to compose (seeds seed, seed+1, ...)",
    )
    gen.add_argument(
        "--model",
        default=None,
        help="checkpoint folder or Hugging Face Hub id (default: the shipped model)",
    )
    gen.add_argument(
        "--audio",
        choices=list(AUDIO_MODES),
        default="duck",
        help="the video's own sound: keep it, duck it under the music, replace it, or keep it "
        "and lower the music while it is loud (dialogue: speech stays clear)",
    )
    gen.add_argument(
        "--shots", choices=["content", "transnetv2"], default="content", help="shot detector"
    )
    gen.add_argument(
        "--arrangement",
        choices=ARRANGEMENTS,
        default=DEFAULT_ARRANGEMENT,
        help="instruments playing the music: "
        + "; ".join(f"{name} ({preset.description})" for name, preset in PRESETS.items()),
    )
    gen.add_argument(
        "--playing",
        choices=PLAYINGS,
        default=DEFAULT_PLAYING,
        help="how the piano is played: even (steady dynamics, the default) or wide "
        "(expressive: louder and softer notes), the two ways POP909 is performed",
    )
    gen.add_argument(
        "--threads",
        type=parse_threads,
        default="auto",
        help="CPU threads for the model: auto (default: the cores no other process is busy "
        "with, measured during the analysis, one left to the background video encode while it "
        "runs), a number, or 0 = torch's default",
    )
    _add_device_argument(gen)
    gen.add_argument(
        "--clip",
        default=None,
        help="how shots are read: auto (CLIP ViT-B/32 from the Hugging Face cache or Hub, else "
        "picture statistics), off (picture statistics), a transformers CLIP Hub id (org/name), "
        "an open_clip one (hf-hub:org/name) or a model folder (default: $DIFFBGM_CLIP, else auto)",
    )
    _add_sound_arguments(gen)
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    regen = sub.add_parser(
        "regenerate",
        help="compose one segment again, keeping the rest of a previous result",
        description="Reads DIR/report.json and DIR/roll.npz of a previous `generate` and writes "
        "the new version into DIR (or --out).",
    )
    regen.add_argument("result_dir", help="folder of a previous result (with report.json)")
    regen.add_argument("--segment", type=int, required=True, help="segment number, from 1")
    regen.add_argument("--seed", type=int, default=1, help="seed for the new segment")
    regen.add_argument(
        "--density", type=_density, default=None, help="new density for that segment, 0..1"
    )
    regen.add_argument("--out", default=None, help="write here instead of overwriting DIR")
    regen.add_argument("--model", default=None, help="checkpoint (default: the one in the report)")
    regen.add_argument(
        "--video", default=None, help="the original video, if it moved since the first run"
    )
    _add_device_argument(regen)
    _add_sound_arguments(regen)
    regen.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def _add_sound_arguments(parser: argparse.ArgumentParser) -> None:
    from diffbgm.music.render import LevelConfig

    level = LevelConfig()
    parser.add_argument(
        "--soundfont",
        default=None,
        help="soundfont to render with: auto (a full General MIDI soundfont when installed, "
        "e.g. FluidR3_GM from the fluid-soundfont-gm package, else TimGM6mb), timgm6mb, or a "
        ".sf2/.sf3 file (default: $DIFFBGM_SOUNDFONT, else auto)",
    )
    parser.add_argument(
        "--loudness",
        type=float,
        default=level.target_lufs,
        help=f"integrated loudness of the music in LUFS (default {level.target_lufs:g}, the "
        "streaming target)",
    )
    parser.add_argument(
        "--true-peak",
        type=float,
        default=level.true_peak_dbtp,
        help=f"true-peak ceiling in dBTP, 4x oversampled (default {level.true_peak_dbtp:g})",
    )


def _sound_settings(args: argparse.Namespace) -> tuple[Path, LevelConfig]:
    """Soundfont and level from the sound flags (a bad value fails before the model loads)."""
    from diffbgm.music.render import LevelConfig, find_soundfont

    level = LevelConfig(target_lufs=args.loudness, true_peak_dbtp=args.true_peak)
    return find_soundfont(args.soundfont), level


def _add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default=None,
        help="where the model runs: auto (a CUDA GPU when torch sees one, else the CPU), cpu, "
        "cuda or cuda:N (default: $DIFFBGM_DEVICE, else auto); bf16 where the device computes "
        "it natively, else fp32",
    )


def _progress_bar(enabled: bool, label: str):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    bar = tqdm(total=1, desc=label, disable=not enabled, unit="stage", leave=True)

    def update(done: int, total: int, stage: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(stage)
        bar.refresh()

    return bar, update


def _generate(args: argparse.Namespace) -> int:
    from diffbgm.pipeline import ComposeOptions, Composer

    videos = _expand_videos(args.videos)
    options = ComposeOptions(
        seed=args.seed,
        tempo_bpm=args.tempo,
        key=args.key,
        mood=args.mood,
        density=args.density,
        variants=args.variants,
        audio=args.audio,
        shot_detector=args.shots,
        generation=generation_overrides(args),
        arrangement=args.arrangement,
        playing=args.playing,
        chords=args.chords,
        sections=args.sections,
        sections_only=args.sections_only,
        form=args.form,
        music_start_s=args.music_start,
        music_end_s=args.music_end,
    )  # invalid options fail here, before the model loads
    soundfont, level = _sound_settings(args)
    composer = Composer.from_pretrained(
        args.model,
        threads=args.threads,
        device=args.device,
        clip=args.clip,
        soundfont=soundfont,
        level=level,
    )
    failures = 0
    for video, target in zip(videos, _output_folders(videos, Path(args.out)), strict=True):
        bar, update = _progress_bar(not args.quiet, video.name)
        try:
            result = composer(video, target, options, progress=update)
        except DiffBGMError as exc:
            bar.close()
            print(f"error: {video}: {exc}", file=sys.stderr)
            failures += 1
            continue
        except Exception:  # one broken video must not stop the batch
            bar.close()
            logging.getLogger("diffbgm").exception("unexpected failure on %s", video)
            print(f"error: {video}: unexpected failure (traceback above)", file=sys.stderr)
            failures += 1
            continue
        bar.close()
        timings = result.report.timings_s
        print(f"{video.name}: {result.out_dir} ({timings['total']:.1f} s)")
        if not result.report.plan.covers_whole_video:
            first, last = result.report.plan.music_span_s
            print(f"  music from {first:.2f} s to {last:.2f} s")
        if options.sections:
            plan = result.report.plan
            landings = plan.section_landings_s(options.sections)
            landed = list(zip(options.sections, landings, strict=True))
            print(
                "  sections start at "
                + ", ".join(
                    f"{start:.2f} s (asked {t:g})"
                    if start is not None
                    else f"none for {t:g} s (merged with a neighbour)"
                    for t, start in landed
                )
            )
    return 1 if failures else 0


def _regenerate(args: argparse.Namespace) -> int:
    from diffbgm.pipeline import Composer, load_report

    report = load_report(Path(args.result_dir))
    soundfont, level = _sound_settings(args)
    composer = Composer.from_pretrained(
        args.model or report.model_id, device=args.device, soundfont=soundfont, level=level
    )
    bar, update = _progress_bar(not args.quiet, f"segment {args.segment}")
    result = composer.regenerate(
        args.result_dir,
        segment_index=args.segment - 1,
        seed=args.seed,
        density=args.density,
        out_dir=args.out,
        video=args.video,
        progress=update,
    )
    bar.close()
    print(f"segment {args.segment} regenerated: {result.out_dir}")
    return 0


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # An exception, not a hard exit: the work folder of the result in progress is removed on
    # the way out (SIGKILL cannot be caught; the next run sweeps what it leaves).
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            return _generate(args)
        return _regenerate(args)
    except DiffBGMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
