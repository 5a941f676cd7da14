"""Denoising loss of checkpoints on the trainer's fixed validation windows and noise.

    python benchmarks/validation_loss.py checkpoints/diffbgm-small-teacher RUN/exported \
        --data data_cache/pop909 [--windows 64 --chunk 24] [--playing flipped] [--tempo centre] \
        [--figuration typical]

What `trainer train` logs as val_loss_ema, for weights that were trained elsewhere or at
another batch size: the fixed noise is drawn per chunk of `--chunk` windows (the run's
--batch), so only figures with the same windows and chunk compare. 64 and 24 are those of
every CPU run's log. Float32 on the CPU. Guidance-distilled students are refused: their
validation loss is the distillation loss against a teacher, which this does not load.

`--playing` tells a network that reads the way of playing (`global_dim` 15) something else
than each song's own way: `flipped` (even for wide and wide for even), `even` or `wide` for
every window. The loss it adds over `song` (the default) is what the input is worth to it.
`--tempo` does the same for a network that reads the tempo (`global_dim` 16): `centre` tells
every window 90 BPM, `double` and `half` each song's tempo doubled or halved. `--figuration`
for a network that reads the figuration (`global_dim` 17): `typical` tells each song the share
of odd-16th onsets typical of its tempo (what the app tells), `none` 0, `most` the most.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import torch

from diffbgm.checkpoint import read_config
from diffbgm.model.config import preset as model_preset
from trainer.distributed import init_distributed
from trainer.probes import (
    FIGURATION_PROBES,
    PLAYING_PROBES,
    TEMPO_PROBES,
    told_figuration,
    told_playing,
    told_tempo,
)
from trainer.sources import load_data
from trainer.train import TrainConfig, Trainer


def validation_loss(
    checkpoint: Path,
    data: str,
    preset: str,
    windows: int,
    chunk: int,
    playing: str = "song",
    tempo: str = "song",
    figuration: str = "song",
) -> float:
    model_config, _ = read_config(checkpoint)
    named = model_preset(preset)
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
        # every field in which the checkpoint differs from the preset (a --set of its run)
        model_overrides={
            field.name: getattr(model_config, field.name)
            for field in fields(model_config)
            if getattr(model_config, field.name) != getattr(named, field.name)
        },
    )
    trainer = Trainer(config, init_distributed("cpu"), load_data(config))
    trainer.initialise_from(str(checkpoint))
    loss = trainer.validation_loss(
        trainer.ema_model,
        lambda cond: told_figuration(told_tempo(told_playing(cond, playing), tempo), figuration),
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
    parser.add_argument(
        "--figuration", choices=FIGURATION_PROBES, default="song", help="the figuration told"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for checkpoint in args.checkpoints:
        loss = validation_loss(
            checkpoint,
            args.data,
            args.preset,
            args.windows,
            args.chunk,
            args.playing,
            args.tempo,
            args.figuration,
        )
        print(
            f"{checkpoint}: {loss:.5f} ({args.windows} windows, chunks of {args.chunk}, "
            f"playing told: {args.playing}, tempo told: {args.tempo}, "
            f"figuration told: {args.figuration})"
        )


if __name__ == "__main__":
    main()
