"""`python -m trainer cache|train|sample|evaluate|compare|targets|suite|export|velocity|critic|selfdata`: train and study the Diff-BGM model.

Every subcommand has its own --help. Heavy modules are imported only by the subcommand that
needs them, so `python -m trainer --help` is instant.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffbgm.errors import DiffBGMError
from diffbgm.generation.config import add_generation_arguments, generation_overrides

if TYPE_CHECKING:
    from trainer.evaluate import EvalOptions

REPO = Path(__file__).resolve().parents[1]


def default_pop909_dir() -> Path:
    shared = Path(os.environ.get("DIFFBGM_SHARED_DATA", REPO.parent / "shared" / "data"))
    return shared / "pop909"


def parse_song_range(text: str) -> list[int]:
    """'801-803,810' -> [801, 802, 803, 810] (POP909 song numbers)."""
    songs: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            first, last = (int(v) for v in part.split("-", 1))
            if last < first:
                raise argparse.ArgumentTypeError(f"empty song range {part!r}")
            songs.extend(range(first, last + 1))
        else:
            songs.append(int(part))
    if not songs:
        raise argparse.ArgumentTypeError(f"no songs in {text!r}")
    return songs


def parse_override(text: str) -> tuple[str, Any]:
    """'sac=false' -> ('sac', False); the value is read as JSON, else kept as a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(value, list):
        value = tuple(value)
    return key.strip(), value


def parse_lr_scale(text: str) -> tuple[str, float]:
    """'tokens.global_proj=10' -> ('tokens.global_proj', 10.0)."""
    prefix, _, raw = text.partition("=")
    try:
        scale = float(raw)
    except ValueError:
        scale = math.nan
    if not prefix.strip() or not math.isfinite(scale) or scale <= 0:
        raise argparse.ArgumentTypeError(f"expected PREFIX=SCALE with SCALE > 0, got {text!r}")
    return prefix.strip(), scale


# ---------------------------------------------------------------------------- subcommands


def cmd_cache(args: argparse.Namespace) -> int:
    from trainer.cache import DEFAULT_CALIBRATION_PATH, build_cache

    calibration = None if args.no_calibration else (args.calibration or DEFAULT_CALIBRATION_PATH)
    index = build_cache(args.pop909, args.out, None, args.songs, args.workers, calibration)
    splits = index["splits"]
    assert isinstance(splits, dict)
    counts = ", ".join(f"{len(ids)} {name}" for name, ids in splits.items())
    print(f"cache written to {args.out}: {counts} songs, {len(index['skipped'])} skipped")  # type: ignore[arg-type]
    return 0


def parse_data_workers(value: str) -> int | None:
    """--data-workers: a count, or auto (None: trainer.batches.default_workers decides)."""
    if value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise DiffBGMError(f"--data-workers must be a number or auto, not {value!r}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from trainer.train import TrainConfig, run_training

    config = TrainConfig(
        preset=args.preset,
        data=args.data,
        run=args.run,
        bgm909=args.bgm909,
        model_overrides=dict(args.set or []),
        steps=args.steps,
        batch=args.batch,
        accum=args.accum,
        lr=args.lr,
        lr_scales=dict(args.lr_scale or []),
        warmup_steps=args.warmup,
        schedule=args.schedule,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        ema_decay=args.ema_decay,
        bf16=args.bf16,
        val_every=args.val_every,
        val_windows=args.val_windows,
        ckpt_every=args.ckpt_every,
        log_every=args.log_every,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        augment=args.augment,
        playing=args.playing,
        figured_from=args.figured_from,
        figured_below=args.figured_below,
        progress=not args.no_progress,
        stop_after=args.stop_after,
        max_minutes=args.max_minutes,
        data_workers=parse_data_workers(args.data_workers),
        init_from=args.init_from,
        snapshot_every=args.snapshot_every,
        distill_from=args.distill_from,
        distill_min_scale=args.distill_scales[0],
        distill_max_scale=args.distill_scales[1],
        distill_sustain_share=args.distill_sustain_share,
        distill_steps=args.distill_steps,
        distill_substeps=args.distill_substeps,
        conditional_student=args.conditional_student,
        register_weight=args.register_weight,
        register_min_t=args.register_min_t,
        density_weight=args.density_weight,
        density_min_t=args.density_min_t,
        polyphony_weight=args.polyphony_weight,
        polyphony_min_t=args.polyphony_min_t,
        rhythm_weight=args.rhythm_weight,
        rhythm_min_t=args.rhythm_min_t,
        voicing_weight=args.voicing_weight,
        voicing_min_t=args.voicing_min_t,
        spread_weight=args.spread_weight,
        spread_min_t=args.spread_min_t,
        pitch_profile_weight=args.pitch_profile_weight,
        pitch_profile_min_t=args.pitch_profile_min_t,
        texture_weight=args.texture_weight,
        texture_windows=args.texture_windows,
        texture_sampler_from=args.texture_sampler_from,
        texture_calls=args.texture_calls,
        texture_density_cut=args.texture_density_cut,
        adversarial_weight=args.adversarial_weight,
        adversarial_lr=args.adversarial_lr,
        adversarial_warmup=args.adversarial_warmup,
        adversarial_statistics=args.adversarial_statistics,
        profile_steps=args.profile_steps,
    )
    result = run_training(config, resume=args.resume)
    state = "stopped early" if result.stopped_early else "finished"
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"{state} at step {result.step}, last loss {result.last_loss:.5f}; run: {result.run_dir}"
        )
    return 0


def set_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def cmd_sample(args: argparse.Namespace) -> int:
    from trainer.sample import SampleOptions, resolve_generation, sample_to_folder

    set_threads(args.threads)
    options = SampleOptions(
        model=args.model,
        generation=resolve_generation(args.model, generation_overrides(args)),
        data=args.data,
        out=args.out,
        songs=tuple(args.songs) if args.songs else (),
        n_random=args.random,
        bars=args.bars,
        tempo_bpm=args.tempo,
        seed=args.seed,
        wav=args.wav,
        bgm909=args.bgm909,
    )
    for path in sample_to_folder(options):
        print(path)
    return 0


def _eval_options(args: argparse.Namespace, **extra: Any) -> EvalOptions:
    """The sampling options shared by `evaluate` and `suite`."""
    from trainer.evaluate import EvalOptions
    from trainer.sample import resolve_generation

    return EvalOptions(
        model=args.model,
        generation=resolve_generation(args.model, generation_overrides(args)),
        data=args.data,
        songs=tuple(args.songs),
        bars=args.bars,
        seed=args.seed,
        bgm909=args.bgm909,
        **extra,
    )


def _add_measure_switches(parser: argparse.ArgumentParser, default: bool) -> None:
    """--realism / --musdr-si (and their --no- forms), --realism-repeats: the slower measures
    of an evaluation."""
    parser.add_argument(
        "--realism",
        action=argparse.BooleanOptionalAction,
        default=default,
        help="classifier two-sample test of 4-bar windows, generated vs real (diffbgm.realism)",
    )
    parser.add_argument(
        "--musdr-si",
        action=argparse.BooleanOptionalAction,
        default=default,
        help="SI as MusDr computes it, from FluidSynth audio (a few seconds per piece)",
    )
    parser.add_argument(
        "--realism-repeats",
        type=int,
        default=5,
        help="cross-validations of the realism test averaged, each with its own folds and "
        "forest (one split's accuracy moves by about 1.5 points with its seed); about 15 s each",
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trainer.evaluate import run_evaluation

    set_threads(args.threads)
    options = _eval_options(
        args,
        ablation=args.ablation,
        boundary_threshold=args.boundary_threshold,
        cut_contrast=args.cut_contrast,
        workers=args.workers,
        out_json=args.json,
        midi_dir=args.midi_dir,
        realism=args.realism,
        realism_repeats=args.realism_repeats,
        realism_groups=args.realism_groups,
        musdr_si=args.musdr_si,
        velocity=args.velocity,
        velocity_echo=args.velocity_echo,
        figuration=args.figuration,
    )
    report = run_evaluation(options)
    print(report.markdown)
    if args.json:
        print(f"\nJSON written to {args.json}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from trainer.compare import compare, load_reports, markdown, to_json

    try:
        comparison = compare(
            load_reports(args.reference),
            load_reports(args.candidate),
            alpha=args.alpha,
            primary=args.primary,
            tolerance=args.tolerance,
            features=args.features,
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _print_and_save(markdown(comparison), to_json(comparison), args.json)


def _print_and_save(table: str, data: object, path: str | None) -> int:
    """Print a study's Markdown table and, with a path, write its data there as JSON."""
    print(table)
    if path:
        Path(path).write_text(json.dumps(data, indent=2), encoding="utf-8")
        print(f"\nJSON written to {path}")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from trainer.compare import load_reports
    from trainer.targets import markdown, standings, to_json

    try:
        rows = standings(load_reports(args.reports), alpha=args.alpha)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _print_and_save(markdown(rows, args.alpha), to_json(rows), args.json)


def cmd_suite(args: argparse.Namespace) -> int:
    from trainer.models import load_for_inference
    from trainer.suite import default_rows, run_suite

    base = _eval_options(
        args,
        realism=args.realism,
        realism_repeats=args.realism_repeats,
        musdr_si=args.musdr_si,
    )
    # a checkpoint, a run folder or a Hub id, as everywhere in the trainer
    scales = load_for_inference(args.model).guidance_range
    rows = default_rows(base, tuple(args.steps_songs), args.steps_bars, scales)
    if args.only:
        rows = [r for r in rows if any(key in r.name for key in args.only)]
    table = run_suite(rows, workers=args.workers, out_json=Path(args.json) if args.json else None)
    print(table)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from trainer.export import export_run

    generation = dict(args.generation) if args.generation else None
    folder = export_run(
        Path(args.run),
        Path(args.out),
        weights=args.weights,
        dtype=args.dtype,
        generation=generation,
    )
    print(f"exported {args.weights} weights of {args.run} to {folder}")
    return 0


def cmd_velocity(args: argparse.Namespace) -> int:
    from trainer.velocity import VelocityTrainConfig, run_training

    set_threads(args.threads)
    config = VelocityTrainConfig(
        hidden=tuple(args.hidden),
        epochs=args.epochs,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        max_train_notes=args.max_train_notes,
        residual_scale=args.residual_scale,
        mode_weight=args.mode_weight,
        wide_residual_scale=args.wide_residual_scale,
        wide_mode_weight=args.wide_mode_weight,
    )
    songs = parse_song_range(args.train_songs)
    out = None if args.out == "none" else Path(args.out)
    figures = run_training(Path(args.data), Path(args.run), out, config, songs)
    print(json.dumps(figures, indent=1))
    if out is not None:
        print(f"velocity model written to {out}")
    return 0


def cmd_critic(args: argparse.Namespace) -> int:
    from trainer.critic import CriticOptions, run_critic

    options = CriticOptions(
        model=args.model,
        data=args.data,
        songs=tuple(args.songs),
        bars=args.bars,
        seed=args.seed,
        workers=args.workers,
        trees=args.trees,
        min_leaf=args.min_leaf,
        features=args.features,
        out=args.out,
    )
    run_critic(options)
    return 0


# ---------------------------------------------------------------------------- parser


def cmd_selfdata(args: argparse.Namespace) -> int:
    from trainer.selfdata import SelfDataOptions, build_self_data

    options = SelfDataOptions(
        model=args.model,
        out=args.out,
        data=args.data,
        songs=tuple(args.songs),
        bars=args.bars,
        seed=args.seed,
        workers=args.workers,
        overrides=tuple(generation_overrides(args).items()),
    )
    out = build_self_data(options)
    print(f"wrote {out}: train on it with --data {out} (e.g. --conditional-student)")
    return 0


def _add_composing_options(parser: argparse.ArgumentParser, songs: str, bars: int) -> None:
    """What `critic` and `selfdata` compose: a model, training songs, their first bars."""
    parser.add_argument("--model", required=True, help="a checkpoint folder")
    parser.add_argument("--data", default="data_cache/pop909", help="POP909 cache folder")
    parser.add_argument(
        "--songs", type=parse_song_range, default=parse_song_range(songs), help="e.g. 1-800"
    )
    parser.add_argument("--bars", type=int, default=bars, help="first bars of each song")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="composing processes")


def _add_sampling_options(parser: argparse.ArgumentParser, default_bars: int) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="a run folder (its EMA weights are used), a checkpoint folder or a Hub id",
    )
    parser.add_argument("--data", default="data_cache/pop909", help="POP909 cache folder")
    parser.add_argument("--bars", type=int, default=default_bars, help="bars per piece (4/4)")
    add_generation_arguments(
        parser.add_argument_group("generation (default: the model's settings)")
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sampler")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0 = torch's default; 1 is faster on a busy machine)",
    )
    parser.add_argument(
        "--bgm909",
        default=None,
        help="BGM909 feature folder: condition on the songs' video features (BGM909 models)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Train, sample, evaluate and export the Diff-BGM piano-roll diffusion model.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cache = sub.add_parser(
        "cache",
        help="build the POP909 training cache (rolls, chords, phrase segments, controls)",
        description="Read POP909 (MIDI + annotations) once and write the training cache and "
        "the control calibration file.",
    )
    cache.add_argument("--pop909", default=str(default_pop909_dir()), help="POP909 folder")
    cache.add_argument("--out", default="data_cache/pop909", help="cache folder to write")
    cache.add_argument("--workers", type=int, default=2, help="processes reading songs")
    cache.add_argument("--songs", nargs="*", help="song ids such as 001 002 (default: all)")
    cache.add_argument(
        "--calibration",
        default=None,
        help="where to write the control calibration (default: diffbgm/assets, what the app uses)",
    )
    cache.add_argument(
        "--no-calibration", action="store_true", help="keep the calibration in the cache only"
    )
    cache.set_defaults(func=cmd_cache)

    train = sub.add_parser(
        "train",
        help="train (or resume) a model; runs under torchrun for DDP",
        description="Train the denoiser on the POP909 cache (or BGM909 features). Writes "
        "RUN/log.csv and RUN/last/ (checkpoint). Touch RUN/STOP or send SIGTERM to checkpoint "
        "and stop. Multi-process: torchrun --nproc_per_node=N -m trainer train ...",
    )
    train.add_argument("--preset", default="small", help="model preset: tiny, small or base")
    train.add_argument("--data", default="data_cache/pop909", help="POP909 cache folder")
    train.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        default="runs/small",
        help="run folder (log + checkpoints); under torchrun write --run-dir (torchrun "
        "reads --run as an abbreviation of its own --run-path)",
    )
    train.add_argument("--resume", action="store_true", help="continue RUN/last if it exists")
    train.add_argument("--steps", type=int, default=20_000, help="total optimizer steps")
    train.add_argument(
        "--batch", type=int, default=32, help="windows per process per step (global = x ranks)"
    )
    train.add_argument("--accum", type=int, default=1, help="micro-batches per step per process")
    train.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (AdamW)")
    train.add_argument(
        "--lr-scale",
        type=parse_lr_scale,
        action="append",
        metavar="PREFIX=SCALE",
        help="parameters whose name starts with PREFIX learn at the learning rate times SCALE, "
        "e.g. --lr-scale tokens.global_proj=10 for an input added in a warm start",
    )
    train.add_argument("--warmup", type=int, default=500, help="linear warm-up steps")
    train.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--grad-clip", type=float, default=1.0, help="max grad norm (0 = off)")
    train.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay per step")
    train.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast (default: where the hardware computes bf16 natively: CUDA, "
        "x86 with AMX or AVX-512 BF16; emulated bf16 is many times slower than float32)",
    )
    train.add_argument("--val-every", type=int, default=500, help="steps between validations")
    train.add_argument("--val-windows", type=int, default=64, help="fixed validation windows")
    train.add_argument("--ckpt-every", type=int, default=200, help="steps between checkpoints")
    train.add_argument(
        "--snapshot-every",
        type=int,
        default=0,
        help="also keep the EMA weights every N steps in RUN/snapshots/ (learning curves)",
    )
    train.add_argument("--log-every", type=int, default=10, help="steps per log.csv row")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    train.add_argument("--device", default="auto", help="auto (GPU if present), cpu or cuda")
    train.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random transposition of training windows",
    )
    train.add_argument(
        "--playing",
        choices=("all", "even", "wide"),
        default="all",
        help="train on the POP909 songs performed this way only: even or wide velocity "
        "spread (docs/evaluation.md, 'Two ways of playing'); validation keeps every song",
    )
    train.add_argument(
        "--figured-from",
        type=float,
        default=0.0,
        metavar="F",
        help="train on the POP909 songs with at least this share of their onsets on the odd "
        "16ths only (slow songs in 16th-note figures; docs/evaluation.md, 'A teacher of the "
        "figured songs'); 0 = every song; validation keeps every song",
    )
    train.add_argument(
        "--figured-below",
        type=float,
        default=1.0,
        metavar="F",
        help="train on the POP909 songs with less than this share of their onsets on the odd "
        "16ths only (the songs --figured-from F leaves out: a network of the plain songs); "
        "1 = every song; validation keeps every song",
    )
    train.add_argument(
        "--set",
        type=parse_override,
        action="append",
        metavar="KEY=VALUE",
        help="override a model config field, e.g. --set sac=false --set selector=none",
    )
    train.add_argument(
        "--bgm909", default=None, help="BGM909 feature folder: train on video features"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="checkpoint and stop after this many steps of this invocation (resume later)",
    )
    train.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="checkpoint and stop before this call has run this many minutes (wall clock, "
        "data loading included): a time budget on a lent machine",
    )
    train.add_argument(
        "--profile-steps",
        type=int,
        default=0,
        help="profile this many steps (after a few warm-up ones) with torch.profiler into "
        "RUN/profile.txt: where a step's time goes, on a GPU the device's time first",
    )
    train.add_argument(
        "--data-workers",
        default="auto",
        help="processes building batches ahead of the loop: a number, or auto (a few on a GPU, "
        "none on a CPU, where they would take the training's cores)",
    )
    train.add_argument(
        "--init-from",
        default=None,
        help="start from this checkpoint's weights (e.g. checkpoints/diffbgm-small) with a "
        "fresh optimizer; ignored when --resume finds RUN/last",
    )
    train.add_argument(
        "--distill-from",
        default=None,
        metavar="TEACHER",
        help="guidance distillation: learn this checkpoint's classifier-free guided output in "
        "one pass (with --set guidance_embedding=true --init-from TEACHER); sampling then "
        "costs one network item per step instead of two",
    )
    train.add_argument(
        "--distill-scales",
        type=float,
        nargs=2,
        default=(1.0, 3.0),
        metavar=("LOW", "HIGH"),
        help="guidance scales the student learns, drawn uniformly from [LOW, HIGH]",
    )
    train.add_argument(
        "--distill-sustain-share",
        type=float,
        default=1.0,
        metavar="S",
        help="guidance distillation: the sustain channel of the target is guided at scale "
        "1 + S (w - 1) while the onsets get w (0: the conditional sustain; sustain guidance "
        "is what thickens the chords)",
    )
    train.add_argument(
        "--distill-steps",
        type=int,
        default=0,
        metavar="N",
        help="step distillation (with a guidance-distilled --distill-from): one DDIM step of "
        "the student on an N-step grid learns --distill-substeps steps of the teacher; the "
        "result samples with DDIM in exactly N steps",
    )
    train.add_argument(
        "--distill-substeps",
        type=int,
        default=4,
        metavar="K",
        help="teacher DPM-Solver++ steps per student step (with --distill-steps)",
    )
    train.add_argument(
        "--conditional-student",
        action="store_true",
        help="fine-tune a guidance-distilled student (--init-from STUDENT) with the plain "
        "denoising loss of its conditional output, e.g. on its own chosen music "
        "(`trainer selfdata`)",
    )
    train.add_argument(
        "--register-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="add W x the register-consistency term (mean onset pitch per segment of the "
        "network's x0 estimate against the real notes') to the denoising or the "
        "guidance-distillation loss",
    )
    train.add_argument(
        "--register-min-t",
        type=int,
        default=0,
        metavar="T",
        help="ask the register term only of items drawn at diffusion step >= T (of the "
        "schedule's 1000): the sampler's quietest calls are left to the denoising loss",
    )
    train.add_argument(
        "--density-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="add W x the density-consistency term (onsets per step of each segment in the "
        "network's x0 estimate against the real notes', on a log scale) to the loss",
    )
    train.add_argument(
        "--density-min-t",
        type=int,
        default=0,
        metavar="T",
        help="ask the density term only of items drawn at diffusion step >= T",
    )
    train.add_argument(
        "--polyphony-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="add W x the polyphony-consistency term (notes sounding per step of each segment, "
        "struck or held, in the network's x0 estimate against the real notes', on a log scale) "
        "to the loss: holds the notes as long as the real ones",
    )
    train.add_argument(
        "--polyphony-min-t",
        type=int,
        default=0,
        metavar="T",
        help="ask the polyphony term only of items drawn at diffusion step >= T",
    )
    train.add_argument(
        "--rhythm-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="add W x the rhythm-consistency term (the share of onsets at each 16th of the bar "
        "in the network's x0 estimate against the real notes', a Hellinger distance) to the loss",
    )
    train.add_argument(
        "--rhythm-min-t",
        type=int,
        default=0,
        metavar="T",
        help="ask the rhythm term only of items drawn at diffusion step >= T",
    )
    train.add_argument(
        "--voicing-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="add W x the voicing-consistency term (the share of each interval class mod 12 "
        "between notes sounding together, the x0 estimate against the real notes) to the loss",
    )
    train.add_argument(
        "--voicing-min-t",
        type=int,
        default=0,
        metavar="T",
        help="ask the voicing term only of items drawn at diffusion step >= T",
    )
    train.add_argument(
        "--spread-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="add W x the spread-consistency term (each segment's standard deviation of onset "
        "pitch, the x0 estimate against the real notes, in octaves) to the loss",
    )
    train.add_argument(
        "--spread-min-t",
        type=int,
        default=0,
        metavar="T",
        help="ask the spread term only of items drawn at diffusion step >= T",
    )
    train.add_argument(
        "--pitch-profile-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="add W x the pitch-profile term (the share of onsets in each half-octave band, "
        "the x0 estimate's expected count against the real notes', Hellinger) to the loss",
    )
    train.add_argument(
        "--pitch-profile-min-t",
        type=int,
        default=0,
        metavar="T",
        help="ask the pitch-profile term only of items drawn at diffusion step >= T",
    )
    train.add_argument(
        "--texture-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="add W x the sampled-texture term: each step samples a few windows with the "
        "checkpoint's own sampler and weak model, gradients kept, and asks the mean of their "
        "texture features (notes per onset, polyphony and its spread, pitch spread, bass, top "
        "voice and its moves, octaves, odd 16ths, groove) for the real windows' "
        "(trainer/sampled.py); about doubles a step",
    )
    train.add_argument(
        "--texture-windows",
        type=int,
        default=8,
        metavar="N",
        help="windows the texture term samples per step (the first N of the batch; >= 2)",
    )
    train.add_argument(
        "--texture-sampler-from",
        default=None,
        metavar="CHECKPOINT",
        help="checkpoint whose generation settings and weak/ model the texture term samples "
        "with (default: --init-from)",
    )
    train.add_argument(
        "--texture-calls",
        type=int,
        default=1,
        metavar="K",
        help="the texture term's gradient flows through the sampler's last K network calls "
        "(0: all; through all of them it is orders of magnitude larger and mostly noise)",
    )
    train.add_argument(
        "--texture-density-cut",
        action="store_true",
        help="the texture term cuts each sampled window's onsets to the real window's count "
        "within the checkpoint's density slack, as the decode's density match would (off: "
        "the fixed threshold; on, the network learned onsets the real decode cannot take back)",
    )
    train.add_argument(
        "--adversarial-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="add the adversarial realism term, its gradient at the output layer W times the "
        "other terms': each step samples --texture-windows windows as the checkpoint samples "
        "them (--texture-sampler-from, --texture-calls), a small convolutional critic learns "
        "them from the batch's real windows, and the student learns to write windows the "
        "critic takes for real (trainer/adversarial.py)",
    )
    train.add_argument(
        "--adversarial-lr",
        type=float,
        default=2e-4,
        metavar="LR",
        help="the adversarial critic's learning rate (Adam, betas 0.5 and 0.9)",
    )
    train.add_argument(
        "--adversarial-warmup",
        type=int,
        default=50,
        metavar="N",
        help="for the first N steps of the run only the critic learns from the sampled windows",
    )
    train.add_argument(
        "--adversarial-statistics",
        choices=("texture", "realism"),
        default="texture",
        help="the statistics the critic reads beside its convolutions: the fifteen texture "
        "statistics, or those and the rest of the realism test's note features (onset "
        "positions, interval classes, ...: 48)",
    )
    train.set_defaults(func=cmd_train)

    sample = sub.add_parser(
        "sample",
        help="generate MIDI (and WAV) from a model",
        description="Generate pieces conditioned on validation songs' chords, phrases and "
        "controls (--songs) or on random conditions (--random N).",
    )
    _add_sampling_options(sample, default_bars=16)
    sample.add_argument("--out", required=True, help="folder for the MIDI/WAV files")
    sample.add_argument("--songs", type=parse_song_range, help="e.g. 801-804")
    sample.add_argument("--random", type=int, default=0, help="pieces with random conditions")
    sample.add_argument("--tempo", type=float, default=None, help="BPM (default: the song's)")
    sample.add_argument("--wav", action="store_true", help="also render WAV (FluidSynth)")
    sample.set_defaults(func=cmd_sample)

    evaluate = sub.add_parser(
        "evaluate",
        help="metrics of generated vs real music on validation songs",
        description="Generate each validation song's first bars from its real chords, phrase "
        "segments and controls, then compare metrics of generated and real music; also "
        "control obedience (Spearman of requested vs realised density, register and "
        "polyphony) and boundary audibility. Prints a Markdown table.",
    )
    _add_sampling_options(evaluate, default_bars=32)
    evaluate.add_argument(
        "--songs", type=parse_song_range, default=parse_song_range("801-859"), help="e.g. 801-803"
    )
    evaluate.add_argument(
        "--ablation",
        choices=("none", "no-sac", "no-selector", "no-guidance"),
        default="none",
        help="switch a component off at inference (no-guidance: guidance 1)",
    )
    evaluate.add_argument(
        "--boundary-threshold",
        type=float,
        default=0.25,
        help="relative change of onset density (or register, in octaves) that makes a "
        "segment boundary audible",
    )
    evaluate.add_argument(
        "--cut-contrast",
        type=float,
        default=0.0,
        help="> 0: ask for the app's contrast at every segment boundary, as if each phrase "
        "were its own shot (the app uses 0.55 at cuts); the report also judges the music "
        "against the song's own controls",
    )
    evaluate.add_argument(
        "--workers",
        type=int,
        default=1,
        help="generate in this many processes of one thread each (same music as one process "
        "with --threads 1: every song keeps its seed)",
    )
    _add_measure_switches(evaluate, default=True)
    evaluate.add_argument(
        "--velocity",
        choices=("learned", "rule"),
        default="learned",
        help="velocities of the generated music in the realism test and the MusDr audio: the "
        "app's velocity model (learned) or the old fixed rule",
    )
    evaluate.add_argument(
        "--velocity-echo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the learned velocities play a recalled phrase as the phrase it repeats, as the "
        "app does (--no-velocity-echo: every note drawn on its own, as before session 64)",
    )
    evaluate.add_argument(
        "--realism-groups",
        action="store_true",
        help="also run the realism test per aspect of the music (rhythm, texture, note "
        "lengths, register, harmony, melody, velocity), on that group of features alone and "
        "on all the others: which aspect gives the music away (about 2 min more on 30 songs)",
    )
    evaluate.add_argument(
        "--figuration",
        choices=("song", "typical"),
        default="song",
        help="the figuration a network that reads it (global_dim 17) is told: the real song's "
        "share of onsets on the odd 16ths, as its controls are, or the share typical of its "
        "tempo, as the app tells",
    )
    evaluate.add_argument("--json", default=None, help="write the full report here")
    evaluate.add_argument("--midi-dir", default=None, help="also write the generated MIDI here")
    evaluate.set_defaults(func=cmd_evaluate)

    compare = sub.add_parser(
        "compare",
        help="is a candidate nearer real than the reference, beyond the seeds' and songs' spread?",
        description="Pair `evaluate --json` reports of a reference and a candidate by seed "
        "(same songs, bars and seed) and judge each target of issue 19 (realism test, PCHE, "
        "GPS, SI, chord tones, polyphony, onsets, control obedience) by the change of its "
        "distance from real music, one-sided, over the seeds (paired t-test) and over the "
        "songs (bootstrap); also how many seeds would tell a change of the measured size. "
        "The candidate is chosen when a primary target is nearer real and no target is "
        "further by more than --tolerance.",
    )
    compare.add_argument(
        "--reference", nargs="+", required=True, help="evaluate reports of the reference"
    )
    compare.add_argument(
        "--candidate", nargs="+", required=True, help="evaluate reports of the candidate"
    )
    compare.add_argument(
        "--alpha", type=float, default=0.05, help="one-sided level of every test (0.05)"
    )
    compare.add_argument(
        "--primary",
        nargs="+",
        default=["realism logistic", "realism forest"],
        help="targets one of which must be nearer real to choose the candidate",
    )
    compare.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="a target further from real by at most this much (points, or percent of real) "
        "on average does not stop the choice",
    )
    compare.add_argument(
        "--features",
        type=int,
        default=10,
        metavar="N",
        help="also list the N features of the realism test furthest from real on either side, "
        "with their effect size for the reference and the candidate (0: none)",
    )
    compare.add_argument("--json", default=None, help="also write the comparison here")
    compare.set_defaults(func=cmd_compare)

    targets = sub.add_parser(
        "targets",
        help="where one model stands against issue 19's targets, with the seeds' and songs' noise",
        description="Read `evaluate --json` reports of one model (same songs and bars, one per "
        "seed) and judge each target of issue 19 by the mean over the reports and an interval "
        "(a bootstrap over the songs, else a t-interval over the seeds): met when "
        "the whole interval is inside the target's band, not met when none of it is, else "
        "undecided.",
    )
    targets.add_argument("reports", nargs="+", help="evaluate reports, one per seed")
    targets.add_argument(
        "--alpha", type=float, default=0.05, help="each side of the interval (0.05: a 90 %% one)"
    )
    targets.add_argument("--json", default=None, help="also write the standings here")
    targets.set_defaults(func=cmd_targets)

    suite = sub.add_parser(
        "suite",
        help="full model + ablations + guidance scales + sampler steps, one table",
        description="Evaluate the full model, its ablations (no SAC mask, no feature "
        "selector, no guidance), guidance scales and sampler steps 10/25/50/200/1000 on the "
        "same validation songs and seeds; prints one Markdown table with the real songs and "
        "the paper's numbers.",
    )
    _add_sampling_options(suite, default_bars=32)
    suite.add_argument("--songs", type=parse_song_range, default=parse_song_range("801-806"))
    suite.add_argument(
        "--steps-songs",
        type=parse_song_range,
        default=parse_song_range("801-802"),
        help="songs for the sampler-steps rows (1000 steps is slow on a CPU)",
    )
    suite.add_argument("--steps-bars", type=int, default=8, help="bars for the steps rows")
    _add_measure_switches(suite, default=False)  # many rows: the slow measures on request
    suite.add_argument("--workers", type=int, default=2, help="parallel worker processes")
    suite.add_argument(
        "--only", nargs="*", default=None, help="run rows whose name has one of these"
    )
    suite.add_argument("--json", default=None, help="write every row's summary here")
    suite.set_defaults(func=cmd_suite)

    export = sub.add_parser(
        "export",
        help="turn a run into a checkpoint folder (config.json + model.safetensors + README)",
        description="Copy a run's EMA weights into a checkpoint folder that "
        "diffbgm.checkpoint.load_checkpoint (and the app) can load.",
    )
    export.add_argument("run", help="run folder (holding last/)")
    export.add_argument("out", help="checkpoint folder to write, e.g. checkpoints/diffbgm-small")
    export.add_argument("--weights", choices=("ema", "model"), default="ema")
    export.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    export.add_argument(
        "--generation",
        type=parse_override,
        action="append",
        metavar="KEY=VALUE",
        help="generation default stored with the weights, e.g. --generation sampler=dpm "
        "--generation steps=25 --generation density_slack=0.5",
    )
    export.set_defaults(func=cmd_export)

    velocity = sub.add_parser(
        "velocity",
        help="train (or resume) the velocity model on POP909's performed velocities",
        description="Train the small network that gives generated notes their velocities "
        "(diffbgm/velocity.py) on songs 001-800; validation on 801-830. Resumable: RUN keeps "
        "the extracted examples and the last epoch. Writes the model to --out.",
    )
    velocity.add_argument("--data", default="data_cache/pop909", help="POP909 cache folder")
    velocity.add_argument("--run", default="runs/velocity", help="run folder (resumable)")
    velocity.add_argument(
        "--out",
        default=str(REPO / "diffbgm" / "assets" / "velocity"),
        help="model folder to write (default: the shipped one; 'none': RUN/export only)",
    )
    velocity.add_argument("--train-songs", default="1-800", help="training songs, e.g. 1-800")
    velocity.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    velocity.add_argument("--epochs", type=int, default=8)
    velocity.add_argument("--batch", type=int, default=2048)
    velocity.add_argument("--lr", type=float, default=2e-3)
    velocity.add_argument("--seed", type=int, default=0)
    velocity.add_argument(
        "--max-train-notes", type=int, default=0, help="> 0: train on a random subset"
    )
    velocity.add_argument(
        "--residual-scale",
        type=float,
        default=1.0,
        help="multiplies the sampled residual of evenly played pieces (stored with the model; "
        "chosen on the evenly played songs of 801-830)",
    )
    velocity.add_argument(
        "--mode-weight",
        type=float,
        default=1.5,
        help="multiplies the measured share of notes that share one velocity per 4 bars, "
        "evenly played pieces (stored with the model; chosen on 801-830)",
    )
    velocity.add_argument(
        "--wide-residual-scale",
        type=float,
        default=1.4,
        help="--residual-scale for pieces played with wide dynamics (chosen on the widely "
        "played songs of 801-830)",
    )
    velocity.add_argument(
        "--wide-mode-weight",
        type=float,
        default=4.0,
        help="--mode-weight for pieces played with wide dynamics (chosen on 801-830)",
    )
    velocity.add_argument("--threads", type=int, default=1, help="torch threads")
    velocity.set_defaults(func=cmd_velocity)
    critic = sub.add_parser(
        "critic",
        help="train the window critic that picks among sampled candidates (--candidates)",
        description="Compose the first bars of training songs with the model, one candidate "
        "a window, and fit a random forest telling its decoded sampler windows from the real "
        "songs' (diffbgm.realism's note features); writes critic.safetensors into the "
        "checkpoint folder (or --out). Never uses songs 801-859.",
    )
    _add_composing_options(critic, songs="601-800", bars=32)
    critic.add_argument("--trees", type=int, default=100)
    critic.add_argument("--min-leaf", type=int, default=4, help="fewest windows in a leaf")
    critic.add_argument(
        "--features",
        default="runs/critic/features.npz",
        help="where the composed windows' features are kept (reused when the songs match)",
    )
    critic.add_argument("--out", help="file to write (default: MODEL/critic.safetensors)")
    critic.set_defaults(func=cmd_critic)
    selfdata = sub.add_parser(
        "selfdata",
        help="a training cache of the model's own music (best-of-n with --candidates)",
        description="Compose the first bars of training songs from their real conditions with "
        "the model's settings (plus the generation flags; --candidates N lets the window "
        "critic keep the best of N) and write them as a POP909 cache whose notes are the "
        "composed ones and whose chords, phrases and controls are the real songs'. The valid "
        "split is the real one. Never uses songs 801-859.",
    )
    _add_composing_options(selfdata, songs="1-150", bars=16)
    selfdata.add_argument("--out", required=True, help="cache folder to write")
    add_generation_arguments(
        selfdata.add_argument_group("generation (default: the model's settings)")
    )
    selfdata.set_defaults(func=cmd_selfdata)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DiffBGMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
