"""The device rule (`auto` → CUDA when torch sees one, else CPU) on a CPU machine, with
torch.cuda.is_available monkeypatched; and the CLI flags that reach it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffbgm.device import device_setting, resolve_device
from diffbgm.errors import DiffBGMError

TINY_MODEL = Path(__file__).resolve().parents[1] / "checkpoints" / "diffbgm-tiny"


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_is_the_cpu_without_cuda(no_cuda: None) -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None, {}) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_is_cuda_when_torch_sees_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_cuda_without_cuda_is_a_clear_error(no_cuda: None) -> None:
    with pytest.raises(DiffBGMError, match="sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(DiffBGMError, match="sees no CUDA GPU"):
        resolve_device(None, {"DIFFBGM_DEVICE": "cuda:0"})
    with pytest.raises(DiffBGMError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_the_environment_sets_the_default() -> None:
    assert device_setting(None, {"DIFFBGM_DEVICE": " CPU "}) == "cpu"
    assert device_setting("cuda", {"DIFFBGM_DEVICE": "cpu"}) == "cuda"
    assert device_setting(None, {}) == "auto"


def test_composer_loads_onto_the_chosen_device(no_cuda: None) -> None:
    from diffbgm.pipeline import Composer

    assert Composer.from_pretrained(TINY_MODEL, device="auto").device == torch.device("cpu")
    with pytest.raises(DiffBGMError, match="sees no CUDA GPU"):
        Composer.from_pretrained(TINY_MODEL, device="cuda")


def test_cli_has_device_and_clip_flags(no_cuda: None, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from diffbgm.__main__ import build_parser, main

    parser = build_parser()
    args = parser.parse_args(
        ["generate", "v.mp4", "--out", "o", "--device", "cpu", "--clip", "off"]
    )
    assert (args.device, args.clip) == ("cpu", "off")
    assert (
        parser.parse_args(["regenerate", "d", "--segment", "1", "--device", "cuda"]).device
        == "cuda"
    )
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    assert main(["generate", str(video), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err


def test_bf16_only_where_the_hardware_computes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulated bf16 made the compose 25-39x slower on an AVX2 CPU: sampling there runs in fp32."""
    from diffbgm.device import native_bf16, sampling_precision

    cpu = torch.device("cpu")
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    assert not native_bf16(cpu) and sampling_precision(True, cpu) == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert native_bf16(cpu) and sampling_precision(True, cpu) == "bf16"
    assert sampling_precision(False, cpu) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert sampling_precision(True, torch.device("cuda")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert sampling_precision(True, torch.device("cuda")) == "bf16"


def test_training_autocasts_where_native_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer.train import autocast_for

    cpu = torch.device("cpu")
    monkeypatch.setattr("trainer.train.native_bf16", lambda _device: False)
    with autocast_for(cpu, None):
        assert not torch.is_autocast_enabled("cpu")
    with autocast_for(cpu, True):  # forced: emulated, but asked for
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")
    monkeypatch.setattr("trainer.train.native_bf16", lambda _device: True)
    with autocast_for(cpu, None):
        assert torch.is_autocast_enabled("cpu")
    with autocast_for(cpu, False):
        assert not torch.is_autocast_enabled("cpu")


def test_training_lets_cudnn_pick_its_convolutions_on_a_gpu_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trainer.train import tune_backend

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    tune_backend(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    tune_backend(torch.device("cuda", 0))  # sets a flag only: no GPU needed
    assert torch.backends.cudnn.benchmark is True
