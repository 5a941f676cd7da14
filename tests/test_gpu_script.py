"""scripts/gpu_train.sh: the prepared run for a lent GPU, run here on the CPU with a budget of
seconds (the device tool gives minutes, once, so the script must work the first time)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SONGS = ["001", "002", "801"]  # two training songs, one validation song


@pytest.mark.slow
@pytest.mark.parametrize(
    "teacher, teacher_args, student_args, global_dim",
    [
        ("", "", "", 14),  # the shipped teacher continued
        # a teacher that reads the figuration from its first step, and its student grown to it
        ("none", "--set global_dim=17", "--set global_dim=17 --lr-scale tokens.global_proj=30", 17),
    ],
    ids=["continued", "figuration-from-scratch"],
)
def test_the_gpu_script_trains_both_models_within_its_budget(
    pop909_dir: Path,
    tmp_path: Path,
    teacher: str,
    teacher_args: str,
    student_args: str,
    global_dim: int,
) -> None:
    from trainer.cache import build_cache

    cache = tmp_path / "cache"
    build_cache(pop909_dir, cache, songs=SONGS, workers=1, calibration_path=None)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "PYTHON": sys.executable,
        "DEVICE": "cpu",
        "DATA": str(cache),
        "TEACHER_MINUTES": "0.35",
        "STUDENT_MINUTES": "0.2",
        "BATCH": "2",
        "VAL_EVERY": "1",
        "VAL_WINDOWS": "4",
        "PROFILE_STEPS": "1",
        "WORK": str(tmp_path / "work"),
        "TEACHER_ARGS": teacher_args,
        "STUDENT_ARGS": student_args,
        **({"TEACHER": teacher} if teacher else {}),
    }
    done = subprocess.run(
        ["bash", "scripts/gpu_train.sh"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    files = sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file())
    assert files == [
        "env.txt",
        "student/config.json",
        "student/model.safetensors",
        "student_log.csv",
        "teacher/config.json",
        "teacher/model.safetensors",
        "teacher_log.csv",
        "teacher_profile.txt",
    ]  # the device tool brings back at most 8 files, 16 MiB each
    assert all((out / name).stat().st_size < 16 * 2**20 for name in files)
    student = json.loads((out / "student" / "config.json").read_text())
    assert student["model"]["guidance_embedding"] is True
    teacher_config = json.loads((out / "teacher" / "config.json").read_text())
    assert teacher_config["model"]["global_dim"] == student["model"]["global_dim"] == global_dim
    assert ("random weights" in done.stdout) == (teacher == "none")
    assert student["extra"]["distilled_from"] == str(out / "teacher")
    for log in ("teacher_log.csv", "student_log.csv"):
        with (out / log).open(newline="") as handle:
            assert [row for row in csv.DictReader(handle) if row.get("val_loss_ema")]
    assert done.stdout.count("stopped early") == 2  # the budgets, not the step count, ended both
