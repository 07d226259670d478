"""bench/time_to_quality.py: the crossing time it reports, and a tiny run of the whole benchmark."""
from __future__ import annotations

import json
import sys

import pytest

from task_entry import REPO

sys.path.insert(0, str(REPO / "bench"))
import time_to_quality as ttq  # noqa: E402


@pytest.mark.parametrize("times, values, target, expected", [
    ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], 25.0, 2.5),  # linear between the evaluations around the crossing
    ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], 20.0, 2.0),  # reached exactly at an evaluation
    ([1.0, 2.0, 3.0], [26.0, 20.0, 30.0], 25.0, 1.0),  # the first evaluation already there
    ([1.0, 2.0, 3.0, 4.0], [10.0, 28.0, 20.0, 30.0], 25.0, 1.0 + 15.0 / 18.0),  # the first crossing counts
    ([1.0, 2.0], [10.0, 20.0], 25.0, None),  # never
])
def test_time_to_reach(times, values, target, expected):
    got = ttq.time_to_reach(times, values, target)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_summary_ratios_refer_to_the_value_only_run():
    curves = {"val": ([1.0, 2.0, 4.0], [10.0, 20.0, 30.0]), "val_der": ([2.0, 3.0], [20.0, 40.0]),
              "val_der-directional": ([1.0, 2.0], [5.0, 6.0])}
    rows = ttq.summarise(curves)
    assert rows["val"]["target_psnr"] == 30.0 and rows["val"]["time_to_target_s"] == 4.0
    assert rows["val_der"]["time_to_target_s"] == pytest.approx(2.5)
    assert rows["val_der"]["ratio_to_val"] == pytest.approx(2.5 / 4.0)
    assert rows["val_der-directional"]["time_to_target_s"] is None
    assert rows["val_der-directional"]["ratio_to_val"] is None
    # value-only's best (30) is also its final here; a run that falls back is scored against both
    falls = ttq.summarise({"val": ([1.0, 2.0, 3.0], [10.0, 30.0, 20.0]), "val_der": ([2.0, 4.0], [25.0, 35.0])})
    assert falls["val"]["time_to_target_s"] == pytest.approx(1.5) and falls["val"]["time_to_val_best_s"] == 2.0
    assert falls["val_der"]["time_to_target_s"] == 2.0 and falls["val_der"]["ratio_to_val"] == pytest.approx(2.0 / 1.5)
    assert falls["val_der"]["time_to_val_best_s"] == pytest.approx(3.0)


@pytest.mark.e2e
def test_a_tiny_benchmark_runs_every_method_and_writes_its_table_and_figure(tmp_path):
    results = ttq.main(["--cases", "camera", "--epochs", "3", "--every", "1", "--runs", str(tmp_path / "runs"),
                        "--out", str(tmp_path / "out"), "--device", "cpu",
                        "--extra", "--sidelength", "32", "--hidden_features", "8"])
    case = results["cases"]["camera"]
    assert set(case["methods"]) == set(ttq.METHODS)
    for method, (times, values) in case["curves"].items():
        assert len(times) == 3 and times == sorted(times) and times[0] > 0, method
    saved = json.loads((tmp_path / "out" / "time_to_quality_cpu_camera.json").read_text())
    assert saved["cases"]["camera"]["methods"]["val"]["ratio_to_val"] == 1.0
    assert (tmp_path / "out" / "time_to_quality_camera_cpu.png").stat().st_size > 10_000
    assert (tmp_path / "runs" / "camera" / "val_der-directional" / "metrics.json").exists()
    again = ttq.main(["--summarise", str(tmp_path / "out" / "time_to_quality_cpu_camera.json")])
    assert again["cases"]["camera"]["methods"] == case["methods"]  # JSON keeps floats exactly


@pytest.mark.e2e
def test_the_grid_case_trains_the_studys_grid_encoded_mlp(tmp_path):
    results = ttq.main(["--cases", "camera-grid", "--methods", "val", "val_der", "--epochs", "2", "--every", "1",
                        "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--device", "cpu",
                        "--extra", "--sidelength", "32"])
    assert set(results["cases"]["camera-grid"]["methods"]) == {"val", "val_der"}
    for method in ("val", "val_der"):
        metrics = json.loads((tmp_path / "runs" / "camera-grid" / method / "metrics.json").read_text())
        assert metrics["encoding"] == "grid" and metrics["activations"] == ["relu", "relu"], method
        assert metrics["supervision"] == method
