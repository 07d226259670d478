"""bench/scaling.py: its log parsing and slope fit, and a --quick run of two series end to end."""
from __future__ import annotations

import json
import sys

import pytest

from task_entry import REPO

sys.path.insert(0, str(REPO / "bench"))
import common  # noqa: E402
import scaling  # noqa: E402


def test_logged_phases_are_read_from_a_run_log():
    log = ("image: camera, 64x64x1; training on 256 pixels (16x16), 3840 held out\n"
           "data and model: 0.6 s\nmodel: ['sine'], encoding none; run dir /tmp/x: y\n"
           "test renders (3 views of 30x40): 12.5 s\nfinal evaluation: 36.7 s\noutputs: 2.3 s\n"
           "psnr_heldout 12.73; 3 steps in 1.2 s\n")
    assert scaling._logged_phases(log) == {"data and model": 0.6, "test renders (3 views of 30x40)": 12.5,
                                           "final evaluation": 36.7, "outputs": 2.3}


def test_loglog_slope():
    assert common.loglog_slope([1, 10, 100], [2, 20, 200]) == pytest.approx(1.0)
    assert common.loglog_slope([1, 10, 100], [5, 5, 5]) == pytest.approx(0.0)
    assert common.loglog_slope([4, 16], [1, 16]) == pytest.approx(2.0)
    assert common.loglog_slope([1], [1]) is None and common.loglog_slope([3, 3], [1, 2]) is None


@pytest.mark.slow
@pytest.mark.e2e
def test_a_quick_run_writes_the_table_the_json_and_the_figure(tmp_path):
    result = scaling.main(["--quick", "--tasks", "image", "audio", "--out", str(tmp_path), "--device", "cpu"])
    runs = result["runs"]
    assert [(r["series"], r["size"]) for r in runs] == [("image", "32"), ("image", "64"),
                                                         ("audio", "0.25"), ("audio", "0.5")]
    for r in runs:
        assert "error" not in r, r.get("output_tail")
        for key in ("samples_per_step", "time_per_step_s", "first_unit_s", "outside_s", "startup_loading_s",
                    "peak_train_mb", "process_peak_mb", "outside_projected_s"):
            assert r[key] > 0, (r["series"], r["size"], key)
        assert r["final_eval_s"] >= 0  # read from the log's "final evaluation: 0.0 s" (0.1 s resolution)
        assert 0 < r["outside_share"] < 1 and r["units"] == 3 and len(r["unit_times_s"]) == 3
        assert r["process_peak_mb"] >= r["peak_train_mb"]
    assert [r["samples_per_step"] for r in runs] == [64, 256, 2205, 4410]  # every 4th pixel, every 5th sample
    assert set(result["fits"]) == {"image", "audio"}
    saved = json.loads((tmp_path / "scaling.json").read_text())
    assert saved["runs"] == runs and saved["machine"]["device"] == "cpu"
    table = (tmp_path / "scaling.md").read_text()
    assert table.count("\n| image |") == 2 and table.count("\n| audio |") == 2 and "log-log slope" in table
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
