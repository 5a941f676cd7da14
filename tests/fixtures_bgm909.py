"""A tiny synthetic BGM909 feature folder in the authors' layout (random features, made-up
shots), generated into a temporary folder; the music comes from real POP909 songs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainer.bgm909_features import CAPTION_DIM, CAPTION_DIR, SHOTS_DIR, VISUAL_DIM, VISUAL_DIR


def write_song_features(
    root: Path, song_id: str, n_frames: int, shot_starts: list[int], seed: int
) -> None:
    """One song: visual (n_frames // 8, 512) .pth, caption (12, 768) .npy, and shots that
    start at `shot_starts` (frames; the first must be 0) and cover all n_frames frames."""
    rng = np.random.default_rng(seed)
    for folder in (VISUAL_DIR, CAPTION_DIR, SHOTS_DIR):
        (root / folder).mkdir(parents=True, exist_ok=True)
    visual = torch.from_numpy(rng.normal(size=(max(n_frames // 8, 1), VISUAL_DIM)).astype("f4"))
    torch.save(visual, root / VISUAL_DIR / f"{song_id}.pth")
    np.save(root / CAPTION_DIR / f"{song_id}.npy", rng.normal(size=(12, CAPTION_DIM)).astype("f4"))
    ends = [*shot_starts[1:], n_frames]
    lines = [f"{start} {end - 1}" for start, end in zip(shot_starts, ends, strict=True)]
    (root / SHOTS_DIR / f"{song_id}_scenes.txt").write_text("\n".join(lines) + "\n")


def make_bgm909_folder(root: Path, song_ids: list[str], n_frames: int = 2400) -> Path:
    """Features for `song_ids` under root (shots every ~10 % of the video, varied per song)."""
    for i, song_id in enumerate(song_ids):
        step = n_frames // (8 + i)
        write_song_features(root, song_id, n_frames, list(range(0, n_frames - step // 2, step)), i)
    return root
