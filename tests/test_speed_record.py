"""The speed figures in the README belong to the shipped defaults.

`docs/speed.json` is written by `python benchmarks/e2e.py --record docs/speed.json` with the
generation settings, thread rule and weights it measured. When a default changes (sampler, steps,
dtype, guidance, any decode rule, the thread rule, the network) without a new measurement, this fails:
re-run the benchmark on an idle machine and update the README row from the new record.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from diffbgm.generation import GenerationConfig
from diffbgm.pipeline import Composer
from tests.scripts import load_script

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "docs" / "speed.json"
SHIPPED = REPO / "checkpoints" / "diffbgm-small" / "config.json"
E2E = load_script("benchmarks/e2e.py")


def _record() -> dict:
    return json.loads(RECORD.read_text())


def test_speed_record_matches_the_shipped_generation_settings() -> None:
    shipped = json.loads(SHIPPED.read_text())["extra"]["generation"]
    measured = _record()["defaults"]["generation"]
    assert set(measured) == set(GenerationConfig().to_dict()), (
        "a generation knob was added or removed since the speed figures were measured: re-run "
        "`python benchmarks/e2e.py --record docs/speed.json` and update the README"
    )
    assert GenerationConfig.from_dict(measured) == GenerationConfig.from_dict(shipped), (
        "the shipped generation settings changed since the speed figures were measured: "
        "re-run `python benchmarks/e2e.py --record docs/speed.json` and update the README"
    )


def test_speed_record_was_measured_with_the_shipped_weights() -> None:
    assert _record()["defaults"].get("weights_sha256") == E2E.weights_sha256(None), (
        "the shipped model changed since the speed figures were measured (a new network can "
        "cost more or less per step): re-run `python benchmarks/e2e.py --record docs/speed.json`"
    )


def test_speed_record_matches_the_thread_rule() -> None:
    default = inspect.signature(Composer.from_pretrained).parameters["threads"].default
    assert _record()["defaults"]["threads"] == default, (
        "Composer's default thread rule changed since the speed figures were measured"
    )


def test_readme_shows_the_recorded_figures() -> None:
    record = _record()
    readme = (REPO / "README.md").read_text()
    short = f"{record['short']['wall_s']:.2f} s"
    assert record["date"] in readme and short in readme, (
        f"README does not show the recorded speed ({short} on {record['date']})"
    )
    if record.get("short_h264"):
        copied = f"{record['short_h264']['wall_s']:.2f} s"
        assert copied in readme, f"README does not show the H.264 clip's speed ({copied})"
    if record.get("long"):
        long_rtf = f"{record['long']['real_time_factor']:.3f}"
        assert long_rtf in readme, f"README does not show the 10-minute figure ({long_rtf})"


def test_e2e_baseline_runs_on_the_network_that_shipped_before_distillation() -> None:
    teacher = json.loads(SHIPPED.read_text())["extra"].get("distilled_from")
    expected = str(REPO / teacher) if teacher else None
    assert E2E.baseline_model(None) == expected
    tiny = str(REPO / "checkpoints" / "diffbgm-tiny")
    assert E2E.baseline_model(tiny) == tiny  # an undistilled model is its own baseline


def test_e2e_splits_cpu_seconds_by_stage() -> None:
    marks = [("other", 0.0), ("analyse", 0.1), ("analyse", 1.0), ("compose", 1.5), ("compose", 4.0)]
    marks.append(("other", 4.25))
    assert E2E.stage_cpu_seconds(marks) == {"other": 0.85, "analyse": 0.9, "compose": 2.5}
    recorded: list[tuple[str, float]] = []
    E2E.stage_marker(recorded)(0, 3, "plan")
    assert recorded[0][0] == "plan" and recorded[0][1] >= 0.0


def test_e2e_speed_probe_measures_a_fixed_encode() -> None:
    """The probe recorded beside the figures (the machine's speed varies by 10-20 % here):
    CPU seconds of a fixed x264 encode, more frames costing more."""
    few, more = E2E.speed_probe(frames=6, repeats=1), E2E.speed_probe(frames=48, repeats=1)
    assert 0 < few < more


def test_speed_record_names_the_machine_and_the_precision_it_sampled_in() -> None:
    """The dtype and the runtime follow the hardware (bf16 only where native, ONNX Runtime where
    fp32), so a figure belongs to a CPU: the record says which, and the README row says the
    precision and runtime it was measured with."""
    record = _record()
    machine = record.get("machine") or {}
    assert {"cpu", "cores", "vector_unit", "native_bf16"} <= set(machine), (
        "docs/speed.json does not name the machine it was measured on: re-run "
        "`python benchmarks/e2e.py --record docs/speed.json`"
    )
    precision = record["short"].get("precision")
    assert precision == ("bf16" if machine["native_bf16"] else "fp32")
    runtime = record["short"].get("runtime")
    assert runtime in ("torch", "onnxruntime"), (
        "docs/speed.json does not say what ran the network: re-run the benchmark"
    )
    label = f"{machine['vector_unit']}, {precision}"
    label += " via ONNX Runtime" if runtime == "onnxruntime" else ""
    readme = (REPO / "README.md").read_text()
    assert label in readme, f"the README's speed row does not say its CPU and precision ({label})"


def test_e2e_h264_copy_is_copied_into_the_mp4(tmp_path: Path) -> None:
    """The H.264 case re-encodes the clip once before timing it; the file it makes must be one
    the composer copies (else the case would time a second re-encode, not the copy path)."""
    import subprocess

    from diffbgm.video.mux import ffmpeg_exe, video_can_be_copied
    from diffbgm.video.probe import probe_video

    vp8 = tmp_path / "clip.webm"
    pattern = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=12", "-t", "2"]
    command = [ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", *pattern]
    subprocess.run([*command, "-c:v", "libvpx", str(vp8)], check=True)
    assert not video_can_be_copied(probe_video(vp8), 2.0)
    info = probe_video(E2E.make_h264_copy(vp8, tmp_path))
    assert info.video_codec == "h264"
    assert video_can_be_copied(info, info.duration_s)
