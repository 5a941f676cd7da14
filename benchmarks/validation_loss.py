"""Denoising loss of checkpoints on the trainer's fixed validation windows and noise.

    python benchmarks/validation_loss.py checkpoints/diffbgm-small-teacher RUN/exported \
        --data data_cache/pop909 [--windows 64 --chunk 24] [--playing flipped] [--tempo centre]

What `trainer train` logs as val_loss_ema, for weights that were trained elsewhere or at
another batch size: the fixed noise is drawn per chunk of `--chunk` windows (the run's
--batch), so only figures with the same windows and chunk compare. 64 and 24 are those of
every CPU run's log. Float32 on the CPU. Guidance-distilled students are refused: their
validation loss is the distillation loss against a teacher, which this does not load.

`--playing` tells a network that reads the way of playing (`global_dim` 15) something else
than each song's own way: `flipped` (even for wide and wide for even), `even` or `wide` for
every window. The loss it adds over `song` (the default) is what the input is worth to it.
`--tempo` does the same for a network that reads the tempo (`global_dim` 16): `centre` tells
every window 90 BPM, `double` and `half` each song's tempo doubled or halved.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from diffbgm.checkpoint import read_config
from diffbgm.controls import PLAYING_FEATURE, TEMPO_CENTRE_BPM, TEMPO_FEATURE, tempo_feature
from diffbgm.model.conditions import Conditions
from trainer.distributed import init_distributed
from trainer.sources import load_data
from trainer.train import TrainConfig, Trainer

PLAYING_PROBES = ("song", "flipped", "even", "wide")
TEMPO_PROBES = ("song", "centre", "double", "half")


def told_playing(cond: Conditions, playing: str) -> Conditions:
    """The conditions with the way of playing told as `playing`."""
    told = cond.global_.clone()
    if playing == "flipped":
        told[:, PLAYING_FEATURE] = 1 - told[:, PLAYING_FEATURE]
    elif playing in ("even", "wide"):
        told[:, PLAYING_FEATURE] = float(playing == "wide")
    elif playing != "song":
        raise ValueError(f"playing must be one of {', '.join(PLAYING_PROBES)}, got {playing!r}")
    return cond.with_(global_=told)


def told_tempo(cond: Conditions, tempo: str) -> Conditions:
    """The conditions with the tempo told as `tempo` (the feature is log2 of the tempo over
    90 BPM, so doubling adds 1)."""
    told = cond.global_.clone()
    if tempo == "centre":
        told[:, TEMPO_FEATURE] = tempo_feature(TEMPO_CENTRE_BPM)
    elif tempo in ("double", "half"):
        shift = 1.0 if tempo == "double" else -1.0
        told[:, TEMPO_FEATURE] = (told[:, TEMPO_FEATURE] + shift).clamp(-1.0, 1.0)
    elif tempo != "song":
        raise ValueError(f"tempo must be one of {', '.join(TEMPO_PROBES)}, got {tempo!r}")
    return cond.with_(global_=told)


def validation_loss(
    checkpoint: Path,
    data: str,
    preset: str,
    windows: int,
    chunk: int,
    playing: str = "song",
    tempo: str = "song",
) -> float:
    model_config, _ = read_config(checkpoint)
    if model_config.guidance_embedding:
        raise SystemExit(f"{checkpoint} is a guidance-distilled student: give its teacher")
    config = TrainConfig(
        preset=preset,
        data=data,
        init_from=str(checkpoint),
        val_windows=windows,
        batch=chunk,
        device="cpu",
        bf16=False,
        model_overrides={
            "selector": model_config.selector,
            "selector_threshold": model_config.selector_threshold,
            "global_dim": model_config.global_dim,
        },
    )
    trainer = Trainer(config, init_distributed("cpu"), load_data(config))
    trainer.initialise_from(str(checkpoint))
    loss = trainer.validation_loss(
        trainer.ema_model, lambda cond: told_tempo(told_playing(cond, playing), tempo)
    )
    if loss is None:
        raise SystemExit(f"{data} has no validation windows")
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--preset", default="small", help="the checkpoints' preset")
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=24, help="the run's --batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--playing", choices=PLAYING_PROBES, default="song", help="the way of playing told"
    )
    parser.add_argument("--tempo", choices=TEMPO_PROBES, default="song", help="the tempo told")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for checkpoint in args.checkpoints:
        loss = validation_loss(
            checkpoint, args.data, args.preset, args.windows, args.chunk, args.playing, args.tempo
        )
        print(
            f"{checkpoint}: {loss:.5f} ({args.windows} windows, chunks of {args.chunk}, "
            f"playing told: {args.playing}, tempo told: {args.tempo})"
        )


if __name__ == "__main__":
    main()
