"""A tiny transformers CLIP for tests and benchmarks/clip.py: a randomly initialised CLIPModel
and a small byte-level BPE CLIPTokenizer whose vocabulary is written here, saved with
save_pretrained like a Hub snapshot. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffbgm.video.torchvision_guard import hide_unusable_torchvision

# As the app does before importing transformers: a torchvision that cannot load is hidden, so
# these fixtures work in a venv that has one (e.g. PyPI's CUDA wheel next to the CPU torch).
hide_unusable_torchvision()

# Every character of the mood anchors and scene prompts has a token (alone and word-final), so
# no prompt falls back to the unknown token; a few merges make it a real BPE.
TOKEN_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789,.!'-"
MERGES: tuple[tuple[str, str], ...] = (
    ("t", "h"),
    ("th", "e</w>"),
    ("i", "n"),
    ("in", "g</w>"),
    ("a", "n"),
    ("e", "r</w>"),
    ("o", "f</w>"),
    ("p", "h"),
)
START, END = "<|startoftext|>", "<|endoftext|>"
TINY_PROJECTION = 16  # embedding size of the tiny model


def tiny_vocabulary() -> dict[str, int]:
    vocab = {START: 0, END: 1}
    for character in TOKEN_CHARACTERS:
        vocab[character] = len(vocab)
        vocab[character + "</w>"] = len(vocab)
    for left, right in MERGES:
        vocab[left + right] = len(vocab)
    return vocab


def tiny_tokenizer() -> Any:  # -> transformers.CLIPTokenizer
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=tiny_vocabulary(), merges=list(MERGES))


def tiny_config(image_size: int = 32) -> Any:  # -> transformers.CLIPConfig
    from transformers import CLIPConfig

    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2}  # fmt: skip
    return CLIPConfig(
        text_config={**small, "vocab_size": len(tiny_vocabulary()),
                     "max_position_embeddings": 40, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={**small, "image_size": image_size, "patch_size": 8},
        projection_dim=TINY_PROJECTION,
    )  # fmt: skip


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """Save a random tiny CLIPModel (config.json, model.safetensors) and the tiny tokenizer
    into `folder`; returns `folder`."""
    import torch
    from transformers import CLIPModel

    torch.manual_seed(seed)
    CLIPModel(tiny_config()).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder
