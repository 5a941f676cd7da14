"""Fewest network evaluations at metric parity: samplers and step counts against DDIM 1000.

    python benchmarks/sampler_parity.py --songs 801-830 --bars 4 --out runs/parity
    python benchmarks/sampler_parity.py --songs 801-830 --bars 4 --out runs/parity \
        --settings ddim:25 dpm:10 dpm:15 dpm:20 --reference ddim:1000

Each setting runs `python -m trainer evaluate` once (the shipped model's other generation
settings: guidance, thresholds, recall, groove, ...; one thread) and keeps its JSON in --out,
so an interrupted sweep resumes where it stopped (DDIM 1000 takes ~70 s per 4-bar window on one
core). The table gives every metric's change from the reference in percent and the setting with
the fewest steps that stays within --tolerance on all of them. Settings are chosen on songs
801-830; report the chosen one on 831-859 with a second run.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from diffbgm.generation.config import GenerationConfig

REPO = Path(__file__).resolve().parents[1]
# Means compared in percent of the reference; the obedience figures (Spearman) in points.
RELATIVE = ("pche", "gps", "chord_tone_ratio", "in_key_ratio", "polyphony", "onsets_per_bar")
ABSOLUTE = ("density_obedience", "register_obedience")


def evaluate(setting: str, args: argparse.Namespace, seed: int = 0) -> dict:
    """The evaluation JSON of one `sampler:steps` setting, run now unless --out has it."""
    sampler, steps, *knobs = setting.split(":")
    tag = "" if seed == 0 else f"_seed{seed}"
    extra = "".join(f"_{knob.replace('=', '')}" for knob in knobs)
    path = args.out / f"{sampler}{steps}{extra}_{args.songs}_{args.bars}bars{tag}.json"
    flags = []
    for knob in knobs:  # other generation knobs, e.g. guidance_share=0.5
        name, value = knob.split("=")
        flags += ["--" + name.replace("_", "-"), value]
    if not path.exists():
        cmd = [
            sys.executable,
            "-m",
            "trainer",
            "evaluate",
            "--model",
            args.model,
            "--songs",
            args.songs,
            "--bars",
            str(args.bars),
            "--sampler",
            sampler,
            "--steps",
            steps,
            *flags,
            "--seed",
            str(seed),
            "--threads",
            "1",
            "--workers",
            str(args.workers),
            "--no-realism",
            "--no-musdr-si",
            "--json",
            str(path),
        ]
        print(f"running {setting} ...", file=sys.stderr, flush=True)
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return json.loads(path.read_text())


def network_calls(setting: str) -> float:
    """Forward passes per window in units of one guided call (conditional + unconditional in
    one batch): steps without guidance run half the batch, counted as 0.6 of a call (measured:
    one item 36 ms, two 62 ms on this CPU, benchmarks/model.py)."""
    settings = GenerationConfig().with_setting(setting).sampler_settings(1000)
    n = settings.steps
    guided = sum(1 for i in range(n) if settings.guides_at(_step_t(i, n)))
    return round(guided + 0.6 * (n - guided), 1)


def _step_t(i: int, n: int) -> int:
    """The i-th timestep of an n-step schedule over 1000 (as Diffusion.timesteps spaces it)."""
    return round((n - 1 - i) * 999 / max(n - 1, 1))


def figures(run: dict) -> dict[str, float]:
    generated = run["summary"]["generated"]
    values = {name: generated[name]["mean"] for name in RELATIVE}
    values.update({name: run["control"]["generated"][name] for name in ABSOLUTE})
    return values


def deviations(values: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """Percent change for RELATIVE metrics, Spearman points x 100 for ABSOLUTE ones."""
    out = {}
    for name in RELATIVE:
        out[name] = 100.0 * (values[name] - reference[name]) / reference[name]
    for name in ABSOLUTE:
        out[name] = 100.0 * (values[name] - reference[name])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="checkpoints/diffbgm-small")
    parser.add_argument("--songs", default="801-830")
    parser.add_argument("--bars", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "parity")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--settings", nargs="+", default=["ddim:25", "dpm:8", "dpm:10", "dpm:15", "dpm:20"]
    )
    parser.add_argument("--reference", default="ddim:1000")
    parser.add_argument(
        "--noise",
        default="ddim:25",
        help="run this setting with seed 1 too: how far two seeds of one setting differ",
    )
    parser.add_argument("--tolerance", type=float, default=2.0, help="percent (points)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    reference_run = evaluate(args.reference, args)
    reference = figures(reference_run)
    names = [*RELATIVE, *ABSOLUTE]
    print(f"### {args.songs} x {args.bars} bars: change from {args.reference} (%; Spearman x100)")
    print("| setting | network calls | " + " | ".join(names) + " | max | seconds |")
    print("|---|---|" + "---|" * len(names) + "---|---|")
    print(
        f"| {args.reference} (values) | – | "
        + " | ".join(f"{reference[n]:.3f}" for n in names)
        + f" | – | {reference_run['seconds']:.0f} |"
    )
    passing = []
    for setting in args.settings:
        run = evaluate(setting, args)
        change = deviations(figures(run), reference)
        worst = max(abs(v) for v in change.values() if math.isfinite(v))
        steps = network_calls(setting)
        if worst <= args.tolerance:
            passing.append((steps, setting))
        print(
            f"| {setting} | {steps:g} | "
            + " | ".join(f"{change[n]:+.1f}" for n in names)
            + f" | {worst:.1f} | {run['seconds']:.0f} |"
        )
    if args.noise:
        seed0, seed1 = figures(evaluate(args.noise, args)), figures(evaluate(args.noise, args, 1))
        change = deviations(seed1, seed0)
        print(
            f"| noise: {args.noise} seed 1 vs seed 0 | – | "
            + " | ".join(f"{change[n]:+.1f}" for n in names)
            + f" | {max(abs(v) for v in change.values()):.1f} | – |"
        )
    if passing:
        print(f"\nfewest steps within {args.tolerance:g} on every metric: {min(passing)[1]}")
    else:
        print(f"\nno setting within {args.tolerance:g} on every metric")


if __name__ == "__main__":
    main()
