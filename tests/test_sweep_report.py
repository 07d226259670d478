"""Sweeps (local and Ray) and reports."""
import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sobolev_inr.errors import ConfigError
from sobolev_inr.report import draw_supervision_bars, load_references, make_report, match_reference
from sobolev_inr.sweep import available_tasks, main, parse_grid_values, parse_sweep, run_sweep, task_scripts

REPO = Path(__file__).resolve().parents[1]

# A two-step task for the sweep: train.py and eval.py read the same options and each writes
# <logging_root>/<exp_name>/STEP.json (its arguments); --outcome fail_STEP makes that step exit 1.
FAKE_STEP = '''"""Fake STEP step of a sweep test task."""
import argparse
import json
import sys
from pathlib import Path


def config_parser():
    p = argparse.ArgumentParser()
    p.add_argument("--exp_name", default="default")
    p.add_argument("--logging_root", default="logs")
    p.add_argument("--outcome", choices=["ok", "fail_train", "fail_eval"], default="ok")
    p.add_argument("--layers", nargs="+", default=["a"])
    p.add_argument("--no_progress", action="store_true")
    return p


if __name__ == "__main__":
    args = config_parser().parse_args()
    run = Path(args.logging_root) / args.exp_name
    run.mkdir(parents=True, exist_ok=True)
    (run / "STEP.json").write_text(json.dumps(sys.argv[1:]))
    print("STEP step of", args.exp_name)
    sys.exit(1 if args.outcome == "fail_STEP" else 0)
'''


def _sweep_file(tmp_path, tiny_gray_png, extra=""):
    path = tmp_path / "two.txt"
    path.write_text(f"# two activation-study rows, tiny\ntask = image_regression\n"
                    f"args = --filename {tiny_gray_png} --num_epochs 2 --hidden_features 8\n"
                    f"logging_root = {tmp_path / 'runs'}\n"
                    f"configs/activation_study/sine.txt\nconfigs/activation_study/tanh_pe.txt\n{extra}")
    return path


def _grid_of_lists(tiny_gray_png, runs):
    """A sweep of image_regression with two activation lists (2 activated layers each), 2 epochs."""
    return (f"task = image_regression\nargs = --filename {tiny_gray_png} --num_epochs 2 --hidden_features 8 "
            f"--num_hidden_layers 1\nlogging_root = {runs}\ngrid activations = [[sine, sine], [tanh, tanh]]\n")


def _assert_activations_per_run(runs):
    for activations in (["sine", "sine"], ["tanh", "tanh"]):
        config = json.loads((runs / f"activations={'-'.join(activations)}" / "config.json").read_text())
        assert config["activations"] == activations


@pytest.fixture
def project(tmp_path):
    """tmp/project/Experiments/two_step/ with train.py and eval.py, and tmp/project/sweeps/ for sweep files."""
    task = tmp_path / "project" / "Experiments" / "two_step"
    task.mkdir(parents=True)
    for step in ("train", "eval"):
        (task / f"{step}.py").write_text(FAKE_STEP.replace("STEP", step))
    (tmp_path / "project" / "sweeps").mkdir()
    return tmp_path / "project"


def _two_step_sweep(project, grid="grid outcome = [ok, fail_train, fail_eval]\ngrid layers = [[a, b]]\n"):
    path = project / "sweeps" / "steps.txt"
    path.write_text(f"task = two_step\nlogging_root = {project / 'runs'}\n{grid}")
    return path


def _assert_two_steps_ran(project):
    """ok: train then eval with the same arguments, one log; fail_train: no eval; fail_eval: both ran."""
    runs = project / "runs" / "steps"
    ok, fail_train, fail_eval = (runs / f"outcome={o}" / "layers=a-b" for o in ("ok", "fail_train", "fail_eval"))
    train_argv = json.loads((ok / "train.json").read_text())
    assert train_argv[:5] == ["--outcome", "ok", "--layers", "a", "b"] and train_argv[-1] == "--no_progress"
    assert json.loads((ok / "eval.json").read_text()) == train_argv
    assert (fail_train / "train.json").is_file() and not (fail_train / "eval.json").exists()
    assert (fail_eval / "train.json").is_file() and (fail_eval / "eval.json").is_file()
    logs = project / "runs" / "sweeps" / "steps"
    ok_log, fail_train_log = (logs / "000.log").read_text(), (logs / "001.log").read_text()
    assert ok_log.index("train.py") < ok_log.index("train step of") < ok_log.index("eval.py") < ok_log.index("eval step of")
    assert "train step of" in fail_train_log and "eval.py" not in fail_train_log


def test_shipped_sweep_files_parse_and_list_their_runs():
    expected = {"activation_study.txt": 13, "activation_study_cpu.txt": 13, "set5.txt": 30, "set5_cpu.txt": 30,
                "audio_pair.txt": 8, "audio_pair_cpu.txt": 8, "spder.txt": 60, "spder_cpu.txt": 12,
                "super_resolution.txt": 18, "super_resolution_cpu.txt": 18, "derivative_precision.txt": 36,
                "derivative_precision_cpu.txt": 36, "families_study.txt": 72, "set5_seeds_cpu.txt": 12,
                "synthetic_scene_seeds_cpu.txt": 12, "video_seeds_cpu.txt": 18}
    for name, count in expected.items():
        sweep = parse_sweep(REPO / "configs" / name)
        assert len(sweep.runs()) == count, name
    for path in (REPO / "configs").glob("*.txt"):
        assert parse_sweep(path).runs(), path


@pytest.mark.parametrize("text, message", [
    ("configs/baby/val/sine.txt\n", "no `task = <name>`"),
    ("task = no_such_task\nconfigs/x.txt\n", "task 'no_such_task' is not a registered task, and has no main.py or train.py"),
    ("task = image_regression\nconfigs/nope.txt\n", "nope.txt"),
    ("task = image_regression\nepochs = 3\n", ":2: unknown sweep key 'epochs'"),
    ("task = image_regression\ngrid activations = [[sine, sine], [tanh, tanh]\n", r":2: grid activations .*missing '\]'"),
    ("task = image_regression\n\ngrid activations = []\n", ":3: grid activations = \\[\\]: empty list"),
    ("task = image_regression\ngrid activations = [[], [tanh]]\n", ":2: .*empty list"),
    ("task = image_regression\ngrid supervision = [val, , der]\n", ":2: .*empty value"),
    ("task = image_regression\ngrid supervision = val, der\n", ":2: .*bracketed list"),
    ("task = image_regression\ngrid activations = [[sine, [tanh]]]\n", ":2: .*nest at most two deep"),
    ("task = image_regression\ngrid filename = ['a, b]\n", ":2: .*unterminated ' quote"),
    ("task = image_regression\ngrid supervision = [val, der]]\n", ":2: .*text after the closing"),
    ("task = image_regression\ngrid supervision = [val, val]\n", ":2: grid supervision lists 'val' twice"),
    ("task = image_regression\ngrid seed = [1]\ngrid seed = [2]\n", ":3: grid seed is already set on line 2"),
    ("task = image_regression\nexperiments = no/such/folder\ngrid seed = [1]\n", "experiments folder .* not found"),
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


@pytest.mark.parametrize("text, values", [
    ("[val, val_der]", [("val",), ("val_der",)]),
    ("[[sine, sine], [tanh, tanh]]", [("sine", "sine"), ("tanh", "tanh")]),
    ("  [ [sine,sine] ,relu ]  ", [("sine", "sine"), ("relu",)]),
    ("[\"a, b\", 'c [d]', e]", [("a, b",), ("c [d]",), ("e",)]),
    ("[sine sine, tanh]", [("sine", "sine"), ("tanh",)]),
])
def test_grid_values_are_read_bracket_aware(text, values):
    assert [v.words for v in parse_grid_values(text)] == values


def test_a_grid_of_lists_passes_each_list_after_its_option_with_readable_names(tmp_path):
    path = tmp_path / "lists.txt"
    path.write_text("task = image_regression\ngrid activations = [[sine, sine], [tanh, tanh]]\n"
                    "grid filename = [\"my image.png\"]\n")
    runs = parse_sweep(path).runs()
    assert [r.argv[:3] for r in runs] == [["--activations", "sine", "sine"], ["--activations", "tanh", "tanh"]]
    assert all(r.argv[3:5] == ["--filename", "my image.png"] for r in runs)
    names = [r.argv[r.argv.index("--exp_name") + 1] for r in runs]
    assert names == ["lists/activations=sine-sine/filename=my_image.png", "lists/activations=tanh-tanh/filename=my_image.png"]
    assert [r.label for r in runs] == ["activations=sine-sine filename=my image.png",
                                       "activations=tanh-tanh filename=my image.png"]


def test_grid_values_that_would_share_a_run_directory_are_rejected(tmp_path):
    path = tmp_path / "clash.txt"
    path.write_text("task = image_regression\ngrid activations = [[sine, tanh], sine-tanh]\n")
    with pytest.raises(ConfigError, match="would share the run directory 'clash/activations=sine-tanh'"):
        parse_sweep(path).runs()


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_local_sweep_runs_a_grid_of_lists_from_a_task_tree_beside_the_sweep_file(tiny_gray_png, tmp_path):
    experiments = tmp_path / "project" / "Experiments"
    experiments.mkdir(parents=True)
    (experiments / "image_regression").symlink_to(REPO / "Experiments" / "image_regression", target_is_directory=True)
    path = tmp_path / "project" / "lists.txt"
    path.write_text(_grid_of_lists(tiny_gray_png, tmp_path / "runs"))
    sweep = parse_sweep(path)
    assert sweep.experiments == experiments
    results = run_sweep(sweep, jobs=2)
    assert [r.status for r in results] == ["done", "done"], [r.message for r in results]
    _assert_activations_per_run(tmp_path / "runs" / "lists")


def test_a_bad_value_for_the_task_stops_the_sweep_before_any_run(tiny_gray_png, tmp_path):
    sweep = parse_sweep(_sweep_file(tmp_path, tiny_gray_png, extra="grid supervision = [val, sobolev]\n"))
    with pytest.raises(ConfigError, match=r"run 'activation_study/sine supervision=sobolev': image_regression train rejects its "
                                          r"arguments: .*invalid choice: 'sobolev'"):
        run_sweep(sweep)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("grid, message", [
    ("grid outcome = [[ok, ok]]", r"steps.txt:3: grid outcome: \[ok, ok\] is a list, but --outcome takes one value"),
    ("grid nope = [1]", "steps.txt:3: grid nope: train.py has no option --nope"),
    ("grid no_progress = [please]", "steps.txt:3: grid no_progress: --no_progress is a flag"),
    ("grid outcome = [true]", "steps.txt:3: grid outcome: 'true' would make --outcome a bare flag"),
    ("grid outcome = [ok, bogus]", "run 'outcome=bogus': train.py rejects its arguments: argument --outcome: "
                                   "invalid choice: 'bogus'"),
    ("grid layers = [[a, b], []]", r"steps.txt:3: grid layers = \[\[a, b\], \[\]\]: empty list"),
])
def test_bad_grid_values_stop_the_sweep_before_any_run_naming_where(project, grid, message):
    with pytest.raises(ConfigError, match=message):
        run_sweep(parse_sweep(_two_step_sweep(project, grid + "\n")))
    assert not (project / "runs").exists()


def test_an_entry_script_without_config_parser_is_a_clear_error(tmp_path):
    (tmp_path / "Experiments" / "bare").mkdir(parents=True)
    (tmp_path / "Experiments" / "bare" / "main.py").write_text("print('hi')\n")
    (tmp_path / "bare.txt").write_text("task = bare\ngrid seed = [1, 2]\n")
    with pytest.raises(ConfigError, match="main.py has no module-level config_parser()"):
        run_sweep(parse_sweep(tmp_path / "bare.txt"))


@pytest.mark.e2e
def test_train_then_eval_run_as_one_run_that_fails_if_either_fails(project):
    sweep = parse_sweep(_two_step_sweep(project))
    assert sweep.commands == ("train.py", "eval.py")
    results = run_sweep(sweep)
    assert [r.status for r in results] == ["done", "failed", "failed"], [r.message for r in results]
    _assert_two_steps_ran(project)


def test_tasks_are_folders_with_main_or_train(tmp_path):
    for task, files in {"single": ["main.py"], "both": ["main.py", "train.py"], "two_step": ["train.py", "eval.py"],
                        "train_only": ["train.py"], "eval_only": ["eval.py"], "data": ["README.md"]}.items():
        (tmp_path / task).mkdir()
        for name in files:
            (tmp_path / task / name).write_text("")
    assert available_tasks(tmp_path) == ["both", "single", "train_only", "two_step"]
    assert task_scripts(tmp_path / "both") == ("main.py",)
    assert task_scripts(tmp_path / "two_step") == ("train.py", "eval.py")
    assert task_scripts(tmp_path / "train_only") == ("train.py",)
    assert task_scripts(tmp_path / "eval_only") == ()


def test_experiments_folder_is_the_option_else_the_file_line_else_the_nearest_above(project, tmp_path):
    sweep_file = _two_step_sweep(project)
    assert parse_sweep(sweep_file).experiments == project / "Experiments"
    for name in ("other", "third"):
        shutil.copytree(project / "Experiments", tmp_path / name)
    sweep_file.write_text("experiments = ../../other\n" + sweep_file.read_text())
    assert parse_sweep(sweep_file).experiments.resolve() == (tmp_path / "other").resolve()
    assert parse_sweep(sweep_file, experiments=tmp_path / "third").experiments == tmp_path / "third"


@pytest.mark.e2e
def test_outside_a_clone_the_sweep_looks_beside_the_sweep_file_or_says_where_it_looked(project, tmp_path):
    site = tmp_path / "site"  # the package alone, as a non-editable install has it
    shutil.copytree(REPO / "sobolev_inr", site / "sobolev_inr", ignore=shutil.ignore_patterns("__pycache__"))
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "sweep.txt").write_text("task = two_step\ngrid outcome = [ok]\n")

    def sweep(*args):
        return subprocess.run([sys.executable, "-m", "sobolev_inr.sweep", *map(str, args)], cwd=lonely,
                              env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=300)

    proc = sweep(lonely / "sweep.txt")
    assert proc.returncode == 2
    assert f"no Experiments/ folder in {lonely} or any folder above it" in proc.stderr
    assert str((site / "Experiments").resolve()) in proc.stderr and "--experiments DIR" in proc.stderr
    assert sweep(_two_step_sweep(project)).returncode == 1  # fail_train and fail_eval fail by design
    _assert_two_steps_ran(project)
    proc = sweep(lonely / "sweep.txt", "--experiments", project / "Experiments", "--logging_root", tmp_path / "else")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "else" / "sweep" / "outcome=ok" / "eval.json").is_file()


@pytest.mark.e2e
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


def test_scores_at_another_resolution_get_columns_beside_the_paper_at_that_resolution(tmp_path):
    """fern_small trains at 378x504; eval.py --eval_llff_factor 4 scores it at 756x1008, where Table 7 scores."""
    for name, psnr in (("fern_small/val/relu", 19.42), ("fern_small/val/sine", 18.41)):
        run = tmp_path / name
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({
            "exp_name": name, "task": "inverse_rendering", "psnr_heldout": psnr + 1, "ssim_heldout": 0.5,
            "psnr_heldout_756x1008": psnr, "ssim_heldout_756x1008": 0.51}))
    out = make_report(tmp_path, out=tmp_path / "report", figures=False)
    rows = {r["exp_name"]: r for r in csv.DictReader(open(out / "report.csv"))}
    relu, sine = rows["fern_small/val/relu"], rows["fern_small/val/sine"]
    assert (relu["psnr_heldout_756x1008"], relu["paper_psnr_heldout_756x1008"]) == ("19.42", "24.26")
    assert relu["paper_psnr_heldout"] == ""  # Table 7 has no number at fern_small's own resolution
    assert sine["paper_psnr_heldout_756x1008"] == ""  # nor for value-only sine
    header = (out / "report.md").read_text().splitlines()[0]
    assert "| psnr_heldout_756x1008 | paper psnr_heldout_756x1008 |" in header


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process_table():
    """{pid: (parent pid, state)} of every process on the machine, from `ps` (Linux and macOS)."""
    out = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "stat="], capture_output=True, text=True,
                         check=True).stdout
    rows = (line.split() for line in out.splitlines())
    return {int(row[0]): (int(row[1]), row[2]) for row in rows if len(row) >= 3}


def _started_by(root: int):
    """``root`` and every process below it (Ray's workers leave its process group, so look by parent)."""
    table, found = _process_table(), {root}
    grew = True
    while grew:
        below = {pid for pid, (parent, _) in table.items() if parent in found} - found
        grew, found = bool(below), found | below
    return found


def _stop_only(head: subprocess.Popen) -> None:
    """Kills ``head`` (a `ray start --block` leading its own process group) and everything it started,
    by process group and by PID, and checks that none of them is left running."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGSTOP)  # freeze the group: the raylet starts no new worker meanwhile
    started = _started_by(head.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    head.wait(timeout=60)
    deadline = time.monotonic() + 30
    while True:
        table = _process_table()
        alive = sorted(pid for pid in started if pid in table and not table[pid][1].startswith("Z"))
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not alive, f"processes of the test's Ray cluster still running: {alive}"


@pytest.fixture(scope="module")
def local_ray_cluster():
    """A 2-CPU Ray head node that only this module uses, yielding its HOST:PORT address.

    `ray start --block` runs in a new process group with its own --temp-dir (under the system temp
    folder: Ray's socket paths must stay short) and free ports, so it neither joins nor disturbs a
    cluster already on the machine; teardown stops only what it started (never `ray stop`, which
    stops every Ray process on the machine).
    """
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    temp_dir = Path(tempfile.mkdtemp(prefix="sobolev-ray-"))
    port = _free_port()
    out = open(temp_dir / "ray_start.log", "w")
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", f"--temp-dir={temp_dir}", f"--port={port}",
                             f"--ray-client-server-port={_free_port()}", f"--dashboard-port={_free_port()}",
                             f"--dashboard-agent-listen-port={_free_port()}", "--num-cpus=2", "--num-gpus=0",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in (temp_dir / "ray_start.log").read_text():
            assert head.poll() is None and time.monotonic() < deadline, (temp_dir / "ray_start.log").read_text()[-3000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        import ray
        ray.shutdown()
        _stop_only(head)
        out.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.e2e
@pytest.mark.ray
@pytest.mark.slow
def test_ray_sweep_runs_a_grid_of_lists_on_the_given_cluster(tiny_gray_png, tmp_path, local_ray_cluster):
    path = tmp_path / "lists.txt"
    path.write_text(_grid_of_lists(tiny_gray_png, tmp_path / "runs"))
    assert main([str(path), "--ray-address", local_ray_cluster]) == 0
    _assert_activations_per_run(tmp_path / "runs" / "lists")


@pytest.mark.e2e
@pytest.mark.ray
def test_ray_sweep_runs_train_then_eval_in_one_task(project, local_ray_cluster, capsys):
    sweep_file = _two_step_sweep(project)
    assert main([str(sweep_file), "--ray-address", local_ray_cluster]) == 1
    assert "1 done, 0 skipped, 2 failed" in capsys.readouterr().out
    _assert_two_steps_ran(project)


@pytest.mark.e2e
@pytest.mark.ray
def test_ray_sweep_rejects_a_bad_grid_before_any_run(tiny_gray_png, tmp_path, local_ray_cluster, capsys):
    path = _sweep_file(tmp_path, tiny_gray_png, extra="grid supervision = [val, sobolev]\n")
    assert main([str(path), "--ray-address", local_ray_cluster]) == 2
    err = capsys.readouterr().err
    assert "supervision=sobolev" in err and "invalid choice: 'sobolev'" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.e2e
@pytest.mark.ray
def test_ray_sweep_without_a_cluster_says_how_to_start_one(tiny_gray_png, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
    proc = subprocess.run([sys.executable, "-m", "sobolev_inr.sweep", str(_sweep_file(tmp_path, tiny_gray_png)),
                           "--ray-address", "127.0.0.1:1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "ray start --head" in proc.stderr
