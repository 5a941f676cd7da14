"""Time the CLIP step of the video analysis per shot (transformers backend).

    python benchmarks/clip.py                      # tiny random CLIP and a random ViT-B/32
    python benchmarks/clip.py --sizes tiny --shots 4 --repeats 5
    python benchmarks/clip.py --model openai/clip-vit-base-patch32   # real weights, if cached

Random weights cost the same compute as trained ones of the same shape, so `vit-b32` (CLIPConfig's
defaults are OpenAI's ViT-B/32: 224 px, 32 px patches, 12+12 layers, 512-d) stands in for the
default model where its weights cannot be downloaded; its prompts are tokenized with the tiny
test tokenizer, nearly one token per letter (CLIP's own BPE makes about one per word, so the
prompt time is an upper bound; the per-shot time does not depend on it).
Prints, per model: load seconds, prompt embedding seconds (once per model), and the median
seconds per shot of `read_shots` on a batch of --shots keyframes (what
`analysis.timings_s["semantics_per_shot"]` records in every compose).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from diffbgm.video.clip import (  # noqa: E402
    ClipEncoder,
    ClipLoader,
    TransformersClipEncoder,
    clip_setting,
)
from tests.clip_fixtures import tiny_tokenizer, write_tiny_clip  # noqa: E402


def keyframes(n: int, seed: int = 0) -> list[np.ndarray]:
    """n 360x640 RGB frames: a flat colour with a brighter square, one per shot."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        frame = np.empty((360, 640, 3), np.uint8)
        frame[:] = rng.integers(0, 200, 3, dtype=np.uint8)
        top, left = rng.integers(0, 200), rng.integers(0, 480)
        frame[top : top + 120, left : left + 120] = rng.integers(150, 255, 3, dtype=np.uint8)
        frames.append(frame)
    return frames


def load(size: str, model: str | None, folder: Path) -> ClipEncoder:
    if model is not None:
        loader = ClipLoader(clip_setting(model))
        encoder = loader.get()
        if encoder is None:
            raise SystemExit(f"{model}: {loader.failure}")
        return encoder
    if size == "tiny":
        loader = ClipLoader(str(write_tiny_clip(folder / "tiny")))
        encoder = loader.get()
        assert encoder is not None, loader.failure
        return encoder
    from transformers import CLIPConfig

    return TransformersClipEncoder.from_config(CLIPConfig(), tiny_tokenizer(), seed=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,vit-b32", help="tiny, vit-b32 (random weights)")
    parser.add_argument("--model", default=None, help="a CLIP setting instead (Hub id / folder)")
    parser.add_argument("--shots", type=int, default=8, help="keyframes per read_shots call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    frames = keyframes(args.shots)
    sizes = [args.model] if args.model else args.sizes.split(",")
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch of {args.shots} shots")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            start = time.perf_counter()
            encoder = load(size, args.model, Path(tmp))
            loaded = time.perf_counter() - start
            start = time.perf_counter()
            encoder.prompt_embeddings()
            prompts = time.perf_counter() - start
            per_shot = []
            for _ in range(args.repeats):
                encoder.read_shots(frames)
                per_shot.append(encoder.seconds_per_shot or 0.0)
            print(
                f"{size}: load {loaded:.2f} s, prompts {prompts:.2f} s, "
                f"per shot {1000 * statistics.median(per_shot):.1f} ms "
                f"(min {1000 * min(per_shot):.1f}, {args.repeats} runs)"
            )


if __name__ == "__main__":
    main()
