"""Download the CLIP weights that `DIFFBGM_CLIP=auto` uses into the Hugging Face cache, so an image
built with network (Docker: `--build-arg FETCH_CLIP=1`) reads shots with CLIP offline.

Usage: python scripts/fetch_clip.py [MODEL]   (default: diffbgm.video.clip.DEFAULT_CLIP_MODEL,
OpenAI's ViT-B/32 for transformers; MODEL: a transformers CLIP Hub id `org/name`, or an open_clip
one `hf-hub:org/name`). The cache is huggingface_hub's (HF_HOME / HF_HUB_CACHE). Exits 1 with one
clear line when the Hub cannot be reached or the model does not load, 0 after the model loaded
from the cache and embedded its prompts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffbgm.errors import DiffBGMError  # noqa: E402
from diffbgm.video.clip import (  # noqa: E402  (after the path line, so a checkout runs it)
    CHECKPOINT_FILES,
    DEFAULT_CLIP_MODEL,
    HUB_PREFIX,
    clip_backend,
    clip_setting,
    fetch_clip_files,
    hub_reachable,
    import_backend,
    load_clip_encoder,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=DEFAULT_CLIP_MODEL, help="CLIP Hub id")
    args = parser.parse_args(argv)
    try:
        setting = clip_setting(args.model)
    except DiffBGMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    model = DEFAULT_CLIP_MODEL if setting in ("auto", "off") else setting
    if Path(model).is_dir():
        print(f"error: {model} is a local folder, nothing to fetch", file=sys.stderr)
        return 1
    backend = clip_backend(model)
    try:
        import_backend(backend)
    except Exception as exc:  # a missing package, or open_clip without a fitting torchvision
        print(f"error: {backend} cannot be imported: {type(exc).__name__}: {exc}", file=sys.stderr)
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
        repo = model.removeprefix(HUB_PREFIX)
        folder = fetch_clip_files(repo, CHECKPOINT_FILES[backend], local_files_only=False)
        encoder = load_clip_encoder(model)  # from the cache just filled, as a compose loads it
        encoder.prompt_embeddings()  # the text tower and tokenizer work too
    except Exception as exc:  # the Hub's and the backends' errors come in many types
        print(f"error: {model} could not be fetched or loaded: {exc}", file=sys.stderr)
        return 1
    print(f"{encoder.name}: cached in {folder} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
