"""Sweeps (local and Ray) and reports."""
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sobolev_inr.errors import ConfigError
from sobolev_inr.report import draw_supervision_bars, load_references, make_report, match_reference
from sobolev_inr.sweep import parse_sweep, run_sweep

REPO = Path(__file__).resolve().parents[1]


def _sweep_file(tmp_path, tiny_gray_png, extra=""):
    path = tmp_path / "two.txt"
    path.write_text(f"# two activation-study rows, tiny\ntask = image_regression\n"
                    f"args = --filename {tiny_gray_png} --num_epochs 2 --hidden_features 8\n"
                    f"logging_root = {tmp_path / 'runs'}\n"
                    f"configs/activation_study/sine.txt\nconfigs/activation_study/tanh_pe.txt\n{extra}")
    return path


def test_shipped_sweep_files_parse_and_list_their_runs():
    expected = {"activation_study.txt": 13, "activation_study_cpu.txt": 13, "set5.txt": 30, "set5_cpu.txt": 30,
                "audio_pair.txt": 4, "audio_pair_cpu.txt": 4}
    for name, count in expected.items():
        sweep = parse_sweep(REPO / "configs" / name)
        assert len(sweep.runs()) == count, name
    for path in (REPO / "configs").glob("*.txt"):
        assert parse_sweep(path).runs(), path


@pytest.mark.parametrize("text, message", [
    ("configs/baby/val/sine.txt\n", "no `task = <name>`"),
    ("task = no_such_task\nconfigs/x.txt\n", "no Experiments/no_such_task/main.py"),
    ("task = image_regression\nconfigs/nope.txt\n", "nope.txt"),
    ("task = image_regression\nepochs = 3\n", ":2: unknown sweep key 'epochs'"),
])
def test_bad_sweep_files_are_rejected_naming_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        parse_sweep(path)


def test_grid_expands_to_every_combination_with_distinct_run_names(tmp_path):
    path = tmp_path / "grid.txt"
    path.write_text("task = image_regression\ngrid supervision = [val, val_der]\ngrid activations = [sine, relu]\n"
                    "grid has_pos_encoding = [false, true]\n")
    runs = parse_sweep(path).runs()
    assert len(runs) == 8
    names = [r.argv[r.argv.index("--exp_name") + 1] for r in runs]
    assert len(set(names)) == 8
    with_pe = [r for r in runs if "--has_pos_encoding" in r.argv]
    assert len(with_pe) == 4


def test_local_sweep_runs_skips_finished_and_reports(tiny_gray_png, tmp_path):
    sweep = parse_sweep(_sweep_file(tmp_path, tiny_gray_png))
    results = run_sweep(sweep, jobs=2)
    assert [r.status for r in results] == ["done", "done"], [r.message for r in results]
    metrics = sorted((tmp_path / "runs").rglob("metrics.json"))
    assert [p.parent.name for p in metrics] == ["sine", "tanh_pe"]
    again = run_sweep(sweep)
    assert [r.status for r in again] == ["skipped", "skipped"]

    out = make_report(tmp_path / "runs", imgs=tmp_path / "imgs")
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert {r["exp_name"] for r in rows} == {"activation_study/sine", "activation_study/tanh_pe"}
    sine = next(r for r in rows if r["exp_name"].endswith("sine"))
    assert float(sine["paper_psnr_luma_heldout"]) == 33.13 and "Table 5" in sine["paper_source"]
    for name in ("report.md", "activation_bars.png", "derivative_loss.png", "reconstructions.png"):
        assert (out / name).is_file(), name
        assert (tmp_path / "imgs" / name).is_file(), name
    assert "33.13" in (out / "report.md").read_text()


def test_a_failed_run_is_reported_and_the_sweep_exits_non_zero(tiny_gray_png, tmp_path):
    path = _sweep_file(tmp_path, tiny_gray_png).read_text().replace("--num_epochs 2", "--num_epochs 0")
    (tmp_path / "fail.txt").write_text(path)
    proc = subprocess.run([sys.executable, "-m", "sobolev_inr.sweep", str(tmp_path / "fail.txt")], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "0 done, 0 skipped, 2 failed" in proc.stdout
    assert "num_epochs must be >= 1" in proc.stdout


def test_reference_matching_prefers_the_longest_suffix():
    refs = load_references()
    assert match_reference("cpu/activation_study/relu", refs)["psnr_luma_heldout"] == 25.06
    assert match_reference("activation_study/relu_pe", refs)["psnr_luma_heldout"] == 29.36
    assert match_reference("bach/val_der_sine", refs)["psnr_heldout"] == 48.89
    assert match_reference("something/else", refs) is None
    for ref in refs:
        assert ref["source"] and ref["match_exp_name"]


def test_supervision_bars_pair_val_with_val_der_per_signal_and_model(tmp_path):
    def run(task, signal, sup, psnr, encoding="none"):
        key = "image" if task == "image_regression" else "audio"
        metric = "psnr_luma_heldout" if key == "image" else "psnr_heldout"
        return {"task": task, key: signal, "supervision": sup, metric: psnr, "steps": 300, "activations": ["sine"] * 4,
                "encoding": encoding, "exp_name": f"cpu/{Path(signal).stem}/{sup}_sine"}

    refs = load_references()
    lonely = [run("audio_regression", "data/Audio/gt_bach.wav", "val", 30.1),
              run("audio_regression", "data/Audio/gt_counting.wav", "val_der", 25.0)]
    assert not draw_supervision_bars(lonely, refs, tmp_path / "none.png")  # no (signal, model) has both
    assert not (tmp_path / "none.png").exists()
    pairs = lonely + [run("audio_regression", "data/Audio/gt_bach.wav", "val_der", 30.3),
                      run("image_regression", "data/Set5/HR/baby.png", "val", 30.2, "positional"),
                      run("image_regression", "data/Set5/HR/baby.png", "val_der", 31.7, "positional")]
    assert draw_supervision_bars(pairs, refs, tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 10_000


def test_report_without_runs_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sobolev_inr.report", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "no finished run" in proc.stderr


@pytest.fixture
def local_ray_cluster(tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    start = subprocess.run([ray_bin, "start", "--head", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
                            "--disable-usage-stats"], capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stderr
    yield "auto"
    import ray
    ray.shutdown()
    subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120)


def test_ray_sweep_on_a_local_two_cpu_cluster(tiny_gray_png, tmp_path, local_ray_cluster):
    sweep = parse_sweep(_sweep_file(tmp_path, tiny_gray_png))
    results = run_sweep(sweep, ray_address=local_ray_cluster)
    assert [r.status for r in results] == ["done", "done"], [r.message for r in results]
    for name in ("sine", "tanh_pe"):
        metrics = json.loads(next((tmp_path / "runs").rglob(f"{name}/metrics.json")).read_text())
        assert metrics["steps"] == 2


def test_ray_sweep_without_a_cluster_says_how_to_start_one(tiny_gray_png, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
    proc = subprocess.run([sys.executable, "-m", "sobolev_inr.sweep", str(_sweep_file(tmp_path, tiny_gray_png)),
                           "--ray-address", "127.0.0.1:1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "ray start --head" in proc.stderr
