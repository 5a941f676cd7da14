"""Realism of velocity models on the same generated notes: sample once, compare many.

    python benchmarks/velocity_realism.py sample --songs 801-830 --out ROLLS
    python benchmarks/velocity_realism.py compare --rolls ROLLS --songs 801-830 \
        --variant rule --variant learned

`--midi DIR` reads the notes from the MIDI files `trainer evaluate --midi-dir DIR` wrote
instead (the same notes: the MIDI holds the roll on the song's 16th grid exactly).

`sample` generates every song's first bars exactly as `trainer evaluate` does (the model's
default settings, the song's real chords, phrases and controls; song n of the list gets
seed `--seed` + n) and keeps the notes (onset, sustain) with the song's segment ids and
velocity controls in one .npz per song. Sampling is the slow part (tens of seconds a song
on one thread); velocity models only decide velocities, so every variant is judged on the
same notes.

`compare` gives the generated notes each variant's velocities (`rule`: the fixed rule;
`learned`: the shipped velocity model, `learned:PATH` another one, `learned@S/M` with the
residual of the song's way of playing scaled by S and shared-velocity weight M, so with
`--playing even` the settings of evenly played pieces are the ones tried), and runs the
evaluation's realism test (diffbgm.realism, both classifiers, notes only and with velocities) against the real songs' performed velocities, plus
velocity statistics (mean, std, distinct values per 4-bar window, mean |change| between
consecutive onset steps) and the Spearman correlation of each segment's velocity control
with the mean velocity of its notes. `--playing even` (or `wide`) judges only the songs
played that way (trainer.dataset.way_of_playing; docs/evaluation.md, "Two ways of
playing"); `--repeats 5` averages five cross-validations as `trainer evaluate` does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from diffbgm.music.calibration import Calibration
    from diffbgm.velocity import VelocityModel


def song_numbers(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def cmd_sample(args: argparse.Namespace) -> None:
    import torch

    from diffbgm.controls import DYNAMIC_CONTROLS
    from diffbgm.errors import DiffBGMError
    from diffbgm.music.calibration import Calibration
    from trainer.models import load_for_inference
    from trainer.sample import generate, load_song_piece, song_generation

    torch.set_num_threads(args.threads)
    loaded = load_for_inference(args.model)
    config = song_generation(loaded.generation, None)
    calibration = Calibration.load()  # the shipped one, as the evaluation decodes with
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    column = DYNAMIC_CONTROLS.index("velocity")
    for n, number in enumerate(song_numbers(args.songs)):
        song_id = f"{number:03d}"
        path = out / f"{song_id}.npz"
        if path.is_file():
            continue  # resumable: a song sampled before is kept
        try:
            song = load_song_piece(Path(args.data), song_id, args.bars, loaded.config)
        except DiffBGMError as exc:
            print(f"{song_id}: skipped ({exc})", flush=True)
            continue
        started = time.perf_counter()
        roll = generate(loaded, song.conditions, config, args.seed + n, calibration)
        np.savez_compressed(
            path,
            onset=roll.onset.astype(np.uint8),
            sustain=roll.sustain.astype(np.uint8),
            segment_ids=song.conditions.segment_ids,
            segment_velocity=song.conditions.dynamic[:, column].astype(np.float64),
            seed=np.asarray(args.seed + n),
        )
        print(f"{song_id}: {time.perf_counter() - started:.1f} s", flush=True)


def parse_variant(text: str) -> tuple[str, str | None, float | None, float | None]:
    """'rule' | 'learned' | 'learned:PATH' | 'learned@0.8' | 'learned:PATH@0.8/0.5'
    -> (method, model folder or None, residual scale or None, mode weight or None)."""
    body, _, settings = text.partition("@")
    method, _, folder = body.partition(":")
    if method not in ("rule", "learned"):
        raise argparse.ArgumentTypeError(f"unknown velocity variant {text!r}")
    scale, _, weight = settings.partition("/")
    return (
        method,
        folder or None,
        float(scale) if scale else None,
        float(weight) if weight else None,
    )


def variant_velocities(
    variant: str,
    onset: np.ndarray,
    sustain: np.ndarray,
    segment_ids: np.ndarray,
    segment_velocity: np.ndarray,
    calibration: Calibration,
    models: dict[str | None, VelocityModel],
    playing: str = "even",
) -> np.ndarray:
    """The velocities one variant gives these notes (learned: seeded by the notes, as the
    app does, and told the real song's way of playing, as the evaluation does)."""
    from dataclasses import replace

    from diffbgm.outputs import notes_seed, velocities_from_controls
    from diffbgm.velocity import load_velocity_model

    method, folder, scale, weight = parse_variant(variant)
    if method == "rule":
        return velocities_from_controls(
            onset,
            sustain,
            segment_ids,
            segment_velocity,
            calibration,
            method="rule",
        )
    if folder not in models:
        models[folder] = load_velocity_model(folder)
    model = models[folder]
    # the settings change the residual of this song's way of playing
    residual = model.config.residual_for(playing)
    residual = replace(residual, scale=residual.scale if scale is None else scale)
    residual = replace(residual, mode_weight=residual.mode_weight if weight is None else weight)
    model = replace(model, config=model.config.with_residual_for(playing, residual))
    return velocities_from_controls(
        onset,
        sustain,
        segment_ids,
        segment_velocity,
        calibration,
        notes_seed(onset),
        model=model,
        playing=playing,
    )


def velocity_stats(
    velocity: np.ndarray, onset: np.ndarray, window: int = 64
) -> dict[str, list[float]]:
    """Per piece: every 4-bar window's mean, std and distinct values, and the |change|
    between consecutive notes (step, then pitch order) and between consecutive onset
    steps' mean velocities."""
    on = np.asarray(onset, dtype=bool)
    out: dict[str, list[float]] = {
        "mean": [],
        "std": [],
        "distinct": [],
        "note_delta": [],
        "step_delta": [],
    }
    for start in range(0, on.shape[0] - window + 1, window):
        values = velocity[start : start + window][on[start : start + window]].astype(float)
        if values.size < 4:
            continue
        out["mean"].append(float(values.mean()))
        out["std"].append(float(values.std()))
        out["distinct"].append(float(np.unique(values).size))
    notes = velocity[on].astype(float)  # row-major: step, then pitch
    out["note_delta"] += np.abs(np.diff(notes)).tolist()
    per_step = on.sum(axis=1)
    busy = per_step > 0
    step_mean = (velocity.astype(float) * on).sum(axis=1)[busy] / per_step[busy]
    out["step_delta"] += np.abs(np.diff(step_mean)).tolist()
    return out


def cmd_compare(args: argparse.Namespace) -> None:
    from diffbgm.controls import DYNAMIC_CONTROLS
    from diffbgm.metrics import spearman
    from diffbgm.music.calibration import Calibration
    from diffbgm.realism import (
        RealismConfig,
        WindowSet,
        feature_names,
        piece_windows,
        realism_report,
    )
    from trainer.models import load_for_inference
    from trainer.sample import load_song_piece

    config = load_for_inference(args.model).config
    cache = Path(args.data)
    calibration = Calibration.load(cache / "calibration.json")
    realism_config = RealismConfig(pitch_low=config.pitch_low, repeats=args.repeats)
    column = DYNAMIC_CONTROLS.index("velocity")
    models: dict[str | None, VelocityModel] = {}
    names = {v: feature_names(v) for v in (False, True)}
    real_sets = {v: WindowSet(names[v]) for v in (False, True)}
    gen_sets = {
        (variant, v): WindowSet(names[v]) for variant in args.variant for v in (False, True)
    }
    stats: dict[str, dict[str, list[float]]] = {}
    control: dict[str, tuple[list[float], list[float]]] = {}

    def add_stats(
        label: str,
        velocity: np.ndarray,
        onset: np.ndarray,
        segment_ids: np.ndarray,
        segment_velocity: np.ndarray,
    ) -> None:
        got = velocity_stats(velocity, onset)
        into = stats.setdefault(label, {k: [] for k in got})
        for key, values in got.items():
            into[key] += values
        asked, heard = control.setdefault(label, ([], []))
        on = np.asarray(onset, dtype=bool)
        for index, level in enumerate(segment_velocity):
            mask = on & (segment_ids[: on.shape[0]] == index)[:, None]
            if mask.sum() >= 4:
                asked.append(float(level))
                heard.append(float(velocity[mask].mean()))

    for number in song_numbers(args.songs):
        song_id = f"{number:03d}"
        song = load_song_piece(cache, song_id, args.bars, config)
        if args.playing != "all" and song.playing != args.playing:
            continue
        assert song.velocity is not None
        segment_ids = song.conditions.segment_ids
        segment_velocity = song.conditions.dynamic[:, column].astype(np.float64)
        if args.midi:
            from diffbgm.music.roll import RollSpec, midi_to_roll

            path = Path(args.midi) / f"song{song_id}.mid"
            if not path.is_file():
                print(f"{song_id}: no generated MIDI, skipped")
                continue
            # written by `trainer evaluate --midi-dir` at the song's tempo, on the 16th grid
            grid = np.arange(song.onset.shape[0]) * 60.0 / song.tempo_bpm / 4
            roll = midi_to_roll(
                path, grid, RollSpec(pitch_low=config.pitch_low, n_pitches=config.n_pitches)
            )
            onset, sustain = roll.onset, roll.sustain
        elif args.rolls:
            path = Path(args.rolls) / f"{song_id}.npz"
            if not path.is_file():
                print(f"{song_id}: no sampled roll, skipped")
                continue
            with np.load(path) as data:
                onset, sustain = data["onset"].astype(bool), data["sustain"].astype(bool)
        else:  # the real notes: only the velocities differ
            onset, sustain = song.onset.astype(bool), song.sustain.astype(bool)
        real = piece_windows(song.onset, song.sustain, song.velocity, realism_config)
        real_sets[True].add(song_id, real)
        real_sets[False].add(song_id, real[:, : len(names[False])])
        add_stats("real", song.velocity, song.onset, segment_ids, segment_velocity)
        for variant in args.variant:
            velocity = variant_velocities(
                variant,
                onset,
                sustain,
                segment_ids,
                segment_velocity,
                calibration,
                models,
                song.playing,
            )
            windows = piece_windows(onset, sustain, velocity, realism_config)
            gen_sets[(variant, True)].add(song_id, windows)
            gen_sets[(variant, False)].add(song_id, windows[:, : len(names[False])])
            add_stats(variant, velocity, onset, segment_ids, segment_velocity)
    source = args.midi or args.rolls
    notes = f"generated notes from {source}" if source else "the real notes"
    which = (
        "" if args.playing == "all" else f" played {args.playing}ly ({len(real_sets[True].rows)})"
    )
    print(f"### Velocity realism on {notes}, songs {args.songs}{which}, {args.bars} bars\n")
    print("| velocities | features | logistic | forest | top features (logistic; forest) |")
    print("|---|---|---|---|---|")
    variants_notes = (False, True) if source else (True,)
    for variant in args.variant:
        for with_velocity in variants_notes:
            if not with_velocity and variant != args.variant[0]:
                continue  # notes alone do not depend on the velocities
            report = realism_report(
                real_sets[with_velocity], gen_sets[(variant, with_velocity)], realism_config
            )
            results = report["generated vs real"]
            logistic, forest = results["logistic"], results["forest"]
            top = ", ".join(f"{n} {w:+.2f}" for n, w in logistic.top_features[:3])
            top += "; " + ", ".join(f"{n} {w:.3f}" for n, w in forest.top_features[:3])
            label = "with velocities" if with_velocity else "notes only"
            print(
                f"| {variant if with_velocity else '—'} | {label} | {logistic.accuracy:.3f} ± {logistic.std:.3f} "
                f"| {forest.accuracy:.3f} ± {forest.std:.3f} | {top} |"
            )
    print()
    print(
        "| velocities | window mean | window std | distinct per window | mean abs change note to note | step to step | control Spearman (segments) |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, values in stats.items():
        asked, heard = control[label]
        cells = [
            f"{np.mean(values[k]):.1f}"
            for k in ("mean", "std", "distinct", "note_delta", "step_delta")
        ]
        print(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {spearman(asked, heard):.3f} ({len(asked)}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sample = sub.add_parser("sample", help="generate the songs' notes once")
    sample.add_argument("--model", default="checkpoints/diffbgm-small")
    sample.add_argument("--data", default="data_cache/pop909")
    sample.add_argument("--songs", default="801-830")
    sample.add_argument("--bars", type=int, default=32)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--threads", type=int, default=1)
    sample.add_argument("--out", required=True)
    sample.set_defaults(func=cmd_sample)
    compare = sub.add_parser("compare", help="realism of velocity variants on the same notes")
    compare.add_argument("--model", default="checkpoints/diffbgm-small")
    compare.add_argument("--data", default="data_cache/pop909")
    compare.add_argument("--songs", default="801-830")
    compare.add_argument("--bars", type=int, default=32)
    compare.add_argument(
        "--rolls", default=None, help="folder of sampled notes (default: the real songs' notes)"
    )
    compare.add_argument(
        "--midi",
        default=None,
        help="folder of song<ID>.mid written by `trainer evaluate --midi-dir` (instead of --rolls)",
    )
    compare.add_argument(
        "--variant",
        action="append",
        required=True,
        help="rule | learned | learned:FOLDER | learned@SCALE/MODE (residual scale, shared-velocity weight); repeatable",
    )
    compare.add_argument(
        "--playing",
        choices=("all", "even", "wide"),
        default="all",
        help="judge only the songs played this way (trainer.dataset.way_of_playing; "
        "docs/evaluation.md, 'Two ways of playing')",
    )
    compare.add_argument(
        "--repeats", type=int, default=1, help="cross-validations averaged (evaluate uses 5)"
    )
    compare.set_defaults(func=cmd_compare)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
