"""The evaluation suite's rows and table (no sampling: synthetic results)."""

from __future__ import annotations

from diffbgm.generation import GenerationConfig
from trainer.evaluate import EvalOptions
from trainer.suite import default_rows, suite_table


def test_rows_cover_ablations_guidance_and_steps() -> None:
    rows = default_rows(
        EvalOptions(model="m", generation=GenerationConfig(guidance=2.0)), (801,), 4
    )
    names = [r.name for r in rows]
    assert names[:4] == ["full", "no SAC mask", "no feature selector", "no guidance (scale 1)"]
    assert "guidance 2" not in names and {"guidance 1.5", "guidance 3", "guidance 5"} <= set(names)
    assert {f"ddim {n} steps" for n in (10, 25, 50, 200, 1000)} <= set(names)
    ablations = {r.name: r.options.ablation for r in rows}
    assert ablations["no SAC mask"] == "no-sac" and ablations["full"] == "none"
    steps_rows = [r for r in rows if "steps" in r.name]
    assert all(r.options.songs == (801,) and r.options.bars == 4 for r in steps_rows)
    assert "no phrase recall" not in names and "no groove-consistent decoding" not in names
    assert "segment edges not matched alone" not in names
    shipped = EvalOptions(
        model="m",
        generation=GenerationConfig(recall=0.5, groove=0.1, density_slack=0.5, edge_bars=1),
    )
    switched = {r.name: r.options for r in default_rows(shipped, (801,), 4)}
    assert switched["segment edges not matched alone"].generation.edge_bars == 0
    assert switched["segment edges not matched alone"].generation.density_slack == 0.5
    assert switched["no phrase recall"].generation.recall == 0.0
    assert switched["no phrase recall"].generation.groove == 0.1
    assert switched["no groove-consistent decoding"].generation.groove == 0.0
    assert switched["fixed onset threshold"].generation.density_slack == 0.0
    # a guidance-distilled model is not asked for scales it never learned
    distilled = [r.name for r in default_rows(shipped, (801,), 4, guidance_range=(1.0, 3.0))]
    assert "guidance 1.5" in distilled and "guidance 5" not in distilled


def test_table_has_one_row_per_configuration_plus_reference() -> None:
    summary = {"pche": {"mean": 2.5, "std": 0.1, "n": 2}, "gps": {"mean": float("nan")}}
    control = {"density_obedience": 0.8, "register_obedience": 0.1, "boundary_audibility": 0.9}
    data = {
        "songs": [{}, {}],
        "summary": {"generated": summary, "real": summary},
        "control": {"generated": control, "real": control},
        "seconds": 3.0,
    }
    results = [
        {
            "name": n,
            "options": EvalOptions(model="m", generation=GenerationConfig(), bars=8),
            "data": data,
        }
        for n in ("a", "b")
    ]
    table = suite_table(results)
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in lines[1:]] == [
        "| a",
        "| b",
        "| real POP909 (same songs)",
        "| Diff-BGM paper (BGM909)",
    ]
    assert "2.500" in lines[1] and "–" in lines[1] and "0.800" in lines[1]


def test_boundaries_are_judged_where_the_controls_ask_for_a_change() -> None:
    import numpy as np

    from diffbgm.controls import DYNAMIC_CONTROLS
    from trainer.evaluate import boundary_audibility, boundary_changes, requested_contrast

    onset = np.zeros((48, 88), dtype=bool)  # three one-bar segments
    onset[0:16:1, 40] = True  # busy bar: 16 onsets
    onset[16:32:8, 40] = True  # sparse bar: 2 onsets
    onset[32:48:8, 40] = True  # the same sparse bar again
    starts = np.array([0, 16, 32])
    assert boundary_changes(onset, starts, 21, 0.25) == [(1, True), (2, False)]
    assert boundary_audibility(onset, starts, 21, 0.25) == (1, 2)
    dynamic = np.full((3, len(DYNAMIC_CONTROLS)), 0.5)
    dynamic[:, DYNAMIC_CONTROLS.index("density")] = [0.9, 0.1, 0.15]
    assert requested_contrast(dynamic, 1) == 0.8  # asked: a clear change
    assert abs(requested_contrast(dynamic, 2) - 0.05) < 1e-9  # not asked


def test_cut_contrast_makes_every_boundary_ask_for_an_audible_change() -> None:
    import numpy as np

    from diffbgm.controls import DYNAMIC_CONTROLS
    from diffbgm.metrics import relative_change
    from diffbgm.model.conditions import PieceConditions
    from diffbgm.music.calibration import Calibration
    from trainer.evaluate import contrasted

    calibration = Calibration.load()
    column = DYNAMIC_CONTROLS.index("density")
    dynamic = np.full((4, len(DYNAMIC_CONTROLS)), 0.5, dtype=np.float32)
    dynamic[3, column] = 0.05  # already far from its neighbour: left alone
    piece = PieceConditions(
        chord_pcs=np.zeros((64, 12), dtype=np.float32),
        segment_ids=np.repeat(np.arange(4), 16),
        dynamic=dynamic,
        semantic=np.full((4, 6), 0.5, dtype=np.float32),
        global_=np.eye(14, dtype=np.float32)[0],
    )
    asked = contrasted(piece, 0.55, calibration).dynamic[:, column]
    raw = [calibration.to_raw("density", float(q)) for q in asked]
    assert asked[0] == 0.5 and asked[3] == np.float32(0.05)
    for before, after in zip(raw, raw[1:], strict=False):
        assert relative_change(before, after) >= 0.55 * 0.9
    np.testing.assert_allclose(piece.dynamic[:, column], [0.5, 0.5, 0.5, 0.05])  # a copy
