"""Checkpoint folders: bit-exact fp32 round trip, bf16 storage, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffbgm.checkpoint import load_checkpoint, save_checkpoint
from diffbgm.errors import CheckpointError
from diffbgm.model.config import preset
from diffbgm.model.unet import Denoiser


def tiny_model() -> Denoiser:
    torch.manual_seed(0)
    return Denoiser(preset("tiny", selector="learned"))


def test_float32_round_trip_is_bit_exact(tmp_path: Path) -> None:
    model = tiny_model()
    extra = {"generation": {"steps": 50, "guidance": 3.0, "onset_threshold": 0.5}, "step": 7}
    folder = save_checkpoint(tmp_path / "ckpt", model, model.config, extra, dtype=torch.float32)
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    loaded = load_checkpoint(folder)
    assert loaded.config == model.config
    assert loaded.extra == extra
    assert not loaded.model.training
    original, again = model.state_dict(), loaded.model.state_dict()
    assert original.keys() == again.keys()
    for name, tensor in original.items():
        assert torch.equal(tensor, again[name]), name
    card = (folder / "README.md").read_text()
    assert "library_name: diffbgm" in card and "onset_threshold" in card


def test_bfloat16_save_loads_into_float32_model(tmp_path: Path) -> None:
    model = tiny_model()
    folder = save_checkpoint(tmp_path / "bf16", model, model.config, dtype=torch.bfloat16)
    stored = load_file(str(folder / "model.safetensors"))
    assert all(t.dtype == torch.bfloat16 for t in stored.values())
    loaded = load_checkpoint(str(folder))
    for name, tensor in loaded.model.state_dict().items():
        assert tensor.dtype == model.state_dict()[name].dtype
        assert torch.allclose(tensor, model.state_dict()[name], rtol=1e-2, atol=1e-3), name


def test_missing_folder_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        load_checkpoint(tmp_path / "nowhere")


def test_unknown_hub_id_offline_is_a_checkpoint_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE"):
        load_checkpoint("nobody-here/no-such-diffbgm-model")


def test_broken_config_and_mismatched_weights_name_the_file(tmp_path: Path) -> None:
    model = tiny_model()
    folder = save_checkpoint(tmp_path / "c", model, model.config)
    meta = json.loads((folder / "config.json").read_text())
    meta["model"]["base_channels"] = 16  # weights no longer fit the config
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(folder)
