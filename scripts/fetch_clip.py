"""Download the CLIP weights that `DIFFBGM_CLIP=auto` uses into the Hugging Face cache, so an image
built with network (Docker `RUN python scripts/fetch_clip.py`) reads shots with CLIP offline.

Usage: python scripts/fetch_clip.py [MODEL]   (default: diffbgm.video.clip.DEFAULT_CLIP_MODEL;
MODEL: an open_clip Hub id, `hf-hub:org/name` or `org/name`). The cache is huggingface_hub's
(HF_HOME / HF_HUB_CACHE). Exits 1 with one clear line when the Hub cannot be reached or the model
does not load, 0 after a load from the cache succeeded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffbgm.errors import DiffBGMError  # noqa: E402
from diffbgm.video.clip import (  # noqa: E402  (after the path line, so a checkout runs it)
    DEFAULT_CLIP_MODEL,
    OpenClipEncoder,
    clip_setting,
    fetch_clip_files,
    hub_reachable,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=DEFAULT_CLIP_MODEL, help="open_clip Hub id")
    args = parser.parse_args(argv)
    try:
        setting = clip_setting(args.model)
    except DiffBGMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    model = DEFAULT_CLIP_MODEL if setting in ("auto", "off") else setting
    if not model.startswith("hf-hub:"):
        print(f"error: {model} is a local folder, nothing to fetch", file=sys.stderr)
        return 1
    try:
        import open_clip  # noqa: F401
    except Exception as exc:  # a missing package or a torchvision that does not fit torch
        print(f"error: open_clip cannot be imported: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if not hub_reachable():
        print(
            f"error: the Hugging Face Hub cannot be reached from here, so {model} cannot be "
            "downloaded (run this where the network allows, e.g. at image build time)",
            file=sys.stderr,
        )
        return 1
    start = time.perf_counter()
    try:
        folder = fetch_clip_files(model, local_files_only=False)
        encoder = OpenClipEncoder.from_folder(folder, name=model)
        encoder.prompt_embeddings()  # the text tower and tokenizer work too
    except Exception as exc:  # the Hub's and open_clip's errors come in many types
        print(f"error: {model} could not be fetched or loaded: {exc}", file=sys.stderr)
        return 1
    print(f"{model}: cached in {folder} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
