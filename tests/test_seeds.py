"""Seeds: the sweep's seed axis and its run names, and the report's aggregation over seeds (mean, sample standard
deviation, n; a val / val_der pair's paired gain and its Student t interval), on run folders written here (no
training)."""
import csv
import json
import math
from pathlib import Path

import pytest

from sobolev_inr.errors import ConfigError
from sobolev_inr.report import make_report
from sobolev_inr.reporting import summaries
from sobolev_inr.reporting.references import load_references
from sobolev_inr.sweep import parse_sweep, run_sweep

REPO = Path(__file__).resolve().parents[1]
T_975_2DOF = 4.302653  # Student t, 97.5th percentile, 2 degrees of freedom (any t table)
T_975_3DOF = 3.182446


def write_run(root: Path, exp_name: str, seed: int, config: dict = None, **metrics) -> dict:
    """A finished image run: metrics.json (and config.json if given) under ``root/exp_name``."""
    run = root / exp_name
    run.mkdir(parents=True)
    metrics = {"exp_name": exp_name, "task": "image_regression", "seed": seed, "steps": 1000,
               "activations": ["sine"] * 4, "encoding": "none", "image": "../../data/Set5/HR/bird.png",
               "image_shape": [288, 288, 1], **metrics}
    (run / "metrics.json").write_text(json.dumps(metrics))
    if config is not None:
        (run / "config.json").write_text(json.dumps({"exp_name": exp_name, "seed": seed, **config}))
    return {**metrics, "run_dir": str(run)}


def siren_study(root: Path, val=(30.0, 31.0, 32.5), val_der=(31.0, 31.5, 34.0)):
    """SIREN on gray Bird over seeds: val_der named as the activation study's config (Table 5's), val with its
    override, as the families study names them."""
    runs = []
    for sup, psnrs, name in (("val", val, "st/activation_study/sine/supervision=val"),
                             ("val_der", val_der, "st/activation_study/sine")):
        for seed, psnr in enumerate(psnrs):
            runs.append(write_run(root, f"{name}/seed={seed}", seed, supervision=sup, psnr_heldout=psnr,
                                  psnr_luma_heldout=psnr, ssim_heldout=0.9 + 0.01 * seed + (sup == "val_der") * 0.02,
                                  psnr_der_heldout=20.0 + seed, time_per_1k_steps_s=10.0 + seed))
    return runs


# ------------------------------------------------------------------------------------------ aggregation
def test_mean_std_and_n_are_the_sample_statistics():
    centre, std, n = summaries.mean_std([30.0, 31.0, 32.5])
    assert n == 3 and centre == pytest.approx(31.1666667)
    assert std == pytest.approx(math.sqrt(((30 - centre) ** 2 + (31 - centre) ** 2 + (32.5 - centre) ** 2) / 2))
    assert std == pytest.approx(1.258306, abs=1e-6)  # ddof = 1, not the population's 1.027402
    assert summaries.mean_std([33.0]) == (33.0, None, 1)
    assert summaries.mean_std([None, 2.0, 4.0]) == (3.0, pytest.approx(math.sqrt(2)), 2)
    assert summaries.mean_std([]) == (None, None, 0)


def test_t_interval_against_a_t_table():
    centre, low, high, n = summaries.t_interval([1.0, 0.5, 1.5])
    half = T_975_2DOF * 0.5 / math.sqrt(3)
    assert (centre, n) == (1.0, 3)
    assert (low, high) == (pytest.approx(1.0 - half, abs=1e-6), pytest.approx(1.0 + half, abs=1e-6))
    centre, low, high, n = summaries.t_interval([2.0, 1.0, 0.0, 1.0])
    assert (low, high) == (pytest.approx(1.0 - T_975_3DOF * math.sqrt(2 / 3) / 2, abs=1e-6),
                           pytest.approx(1.0 + T_975_3DOF * math.sqrt(2 / 3) / 2, abs=1e-6))
    assert summaries.t_interval([0.7]) == (0.7, None, None, 1)


def test_runs_differing_only_in_seed_are_one_group_and_val_pairs_with_val_der(tmp_path):
    runs = siren_study(tmp_path)
    runs.append(write_run(tmp_path, "st/activation_study/tanh", 0, supervision="val_der", psnr_luma_heldout=20.0))
    groups = summaries.seed_groups(runs)
    assert [(g.name, g.supervision, g.seeds) for g in groups] == [
        ("st/activation_study/sine/supervision=val", "val", [0, 1, 2]),
        ("st/activation_study/sine", "val_der", [0, 1, 2])]
    val = groups[0]
    assert val.model == "SIREN" and val.signal == "bird, gray"
    assert val.stats("psnr_luma_heldout") == (pytest.approx(31.1666667), pytest.approx(1.258306, abs=1e-6), 3)
    assert val.stats("time_per_1k_steps_s") == (11.0, 1.0, 3)
    [pair] = summaries.seed_pairs(groups)
    assert pair.name == "st/activation_study/sine" and pair.gains("psnr_luma_heldout") == [1.0, 0.5, 1.5]
    centre, low, high, n = pair.gain("psnr_luma_heldout")
    assert (centre, n) == (1.0, 3) and high - centre == pytest.approx(T_975_2DOF * 0.5 / math.sqrt(3), abs=1e-6)
    assert pair.gain("ssim_heldout")[0] == pytest.approx(0.02)


def test_the_paired_gain_uses_the_seeds_both_sides_have(tmp_path):
    runs = [write_run(tmp_path, f"s/families/finer/{sup}/seed={seed}", seed, supervision=sup, psnr_heldout=psnr,
                      activations=["finer"] * 4)
            for sup, values in (("val", {0: 30.0, 1: 31.0, 2: 29.0}), ("val_der", {1: 33.0, 2: 30.0, 5: 40.0}))
            for seed, psnr in values.items()]
    [pair] = summaries.seed_pairs(summaries.seed_groups(runs))
    assert pair.seeds == [1, 2] and pair.gains("psnr_heldout") == [2.0, 1.0]
    assert pair.val.model == "FINER" and pair.name == "s/families/finer"
    one = [write_run(tmp_path / "one", f"s/bird/{sup}/sine/seed=0", 0, supervision=sup, psnr_heldout=p)
           for sup, p in (("val", 30.0), ("val_der", 30.5))]
    [pair] = summaries.seed_pairs(summaries.seed_groups(one))
    assert pair.gain("psnr_heldout") == (0.5, None, None, 1)


@pytest.mark.parametrize("name, paired", [
    ("x/val_der/sine", "x/sine"), ("x/val/sine", "x/sine"), ("video/val_der_sine", "video/sine"),
    ("video/val_relu_pos", "video/relu_pos"), ("st/sine/supervision=val_der", "st/sine"),
    ("validation/sine", "validation/sine"), ("x/value/sine", "x/value/sine")])
def test_the_pair_name_drops_what_says_the_supervision(name, paired):
    assert summaries.pair_name(name) == paired


def test_video_pairs_val_sine_with_val_der_sine_on_the_frames_never_trained_on(tmp_path):
    """The video configs are named ``val_sine`` / ``val_der_sine``; their tables lead with the frames never
    trained on (``*_heldout_frames``), as the video README's do, not the mixed held-out samples."""
    runs = [write_run(tmp_path, f"v/synthetic/{sup}_{act}/seed={seed}", seed, task="video_regression",
                      supervision=sup, activations=[act] * 4, psnr_heldout=20.0, psnr_heldout_frames=p + seed,
                      ssim_heldout_frames=s + 0.01 * seed, image=None, time_factor=2, space_factor=1,
                      video="synthetic clip (33 frames, 128x128, generated)")
            for sup, p, s in (("val", 28.0, 0.90), ("val_der", 29.5, 0.95)) for act in ("sine", "relu")
            for seed in (0, 1, 2)]
    groups = summaries.seed_groups(runs)
    pairs = summaries.seed_pairs(groups)
    assert sorted(p.name for p in pairs) == ["v/synthetic/relu", "v/synthetic/sine"]
    assert {g.signal for g in groups} == {"synthetic clip, 1 frame in 2"}
    assert all(p.gains("psnr_heldout_frames") == [1.5, 1.5, 1.5] for p in pairs)
    table = "\n".join(summaries.seed_markdown(groups, pairs, []))
    assert "| 29.00 ± 1.00 | 30.50 ± 1.00 | +1.50 [+1.50, +1.50] | +0.050 [+0.050, +0.050] |" in table
    assert "20.00" not in table  # psnr_heldout (training frames' held-out pixels too) is not the headline
    assert summaries.draw_seed_bars(runs, [], tmp_path / "bars.png")


@pytest.mark.parametrize("exp_name, group", [
    ("a/b/seed=2", "a/b"), ("a/b/seed2", "a/b"), ("a/seed=2/b", None), ("a/b", None), ("a/b/seeds=2", None)])
def test_the_seed_part_is_the_last_part_of_the_name(exp_name, group):
    assert summaries.seed_group_name(exp_name) == group


def test_a_group_whose_configs_differ_beyond_the_seed_says_so(tmp_path):
    base = {"num_epochs": 1000, "lrate": 1e-4, "logging_root": "x", "device": "cpu"}
    runs = [write_run(tmp_path, f"s/a/seed={k}", k, {**base, "device": ["cpu", "cuda", "cpu"][k],
                                                      "num_epochs": 1000 if k < 2 else 2000},
                      supervision="val", psnr_heldout=30.0) for k in range(3)]
    [group] = summaries.seed_groups(runs)
    assert group.differences() == ["num_epochs"]
    text = "\n".join(summaries.seed_markdown([group], [], []))
    assert "runs differ in: num_epochs" in text


# ----------------------------------------------------------------------------------------------- report
def test_the_report_writes_the_seed_tables_and_figure_beside_table_5(tmp_path):
    root = tmp_path / "runs"
    siren_study(root)
    write_run(root, "st/bird/val/sine/seed=0", 0, supervision="val", psnr_heldout=28.0, psnr_luma_heldout=29.0,
              ssim_heldout=0.8, image_shape=[288, 288, 3])
    write_run(root, "st/bird/val_der/sine/seed=0", 0, supervision="val_der", psnr_heldout=28.4, psnr_luma_heldout=29.3,
              ssim_heldout=0.81, image_shape=[288, 288, 3])
    write_run(root, "activation_study/tanh", 0, supervision="val_der", psnr_luma_heldout=20.0, ssim_heldout=0.5,
              activations=["tanh"] * 4)
    out = make_report(root, figures=True)
    for name in ("report_seeds.md", "report_seeds.csv", "report_seed_pairs.csv", "seed_bars.png"):
        assert (out / name).is_file(), name
    assert (out / "seed_bars.png").stat().st_size > 10_000
    rows = {r["group"]: r for r in csv.DictReader(open(out / "report_seeds.csv"))}
    assert set(rows) == {"st/activation_study/sine/supervision=val", "st/activation_study/sine", "st/bird/val/sine",
                         "st/bird/val_der/sine"}
    val_der = rows["st/activation_study/sine"]
    assert (val_der["n"], val_der["seeds"]) == ("3", "0 1 2")
    assert float(val_der["psnr_luma_heldout_mean"]) == pytest.approx(32.1666667)
    assert float(val_der["psnr_luma_heldout_std"]) == pytest.approx(math.sqrt(((31 - 32.1666667) ** 2 + (31.5 -
                                                                     32.1666667) ** 2 + (34 - 32.1666667) ** 2) / 2))
    assert float(val_der["paper_psnr_luma_heldout"]) == 33.13  # Table 5's SIREN: the activation study's config
    assert rows["st/activation_study/sine/supervision=val"]["paper_psnr_luma_heldout"] == ""  # Table 5 is val_der
    assert rows["st/bird/val/sine"]["signal"] == "bird, RGB" and rows["st/bird/val/sine"]["psnr_luma_heldout_std"] == ""
    pairs = {r["pair"]: r for r in csv.DictReader(open(out / "report_seed_pairs.csv"))}
    siren = pairs["st/activation_study/sine"]
    assert float(siren["gain_psnr_luma_heldout_mean"]) == pytest.approx(1.0)
    assert float(siren["gain_psnr_luma_heldout_low95"]) == pytest.approx(1.0 - T_975_2DOF * 0.5 / math.sqrt(3))
    assert pairs["st/bird/sine"]["n"] == "1" and pairs["st/bird/sine"]["gain_psnr_luma_heldout_low95"] == ""
    text = (out / "report_seeds.md").read_text()
    assert "| SIREN | bird, gray | val_der | 3 | 0, 1, 2 | 1000 | 32.17 ± 1.61 | 33.13 |" in text
    assert "+1.00 [-0.24, +2.24]" in text and "+0.30 (n = 1: no interval)" in text
    assert "Table 5" in text
    assert "report_seeds.md" in (out / "report.md").read_text()
    report_rows = {r["exp_name"]: r for r in csv.DictReader(open(out / "report.csv"))}
    assert report_rows["st/activation_study/sine/seed=1"]["paper_psnr_luma_heldout"] == "33.13"
    assert not (out / "supervision_bars.png").exists()  # the seeded pairs are in seed_bars.png, not here


def test_a_report_without_seeded_runs_writes_no_seed_tables(tmp_path):
    write_run(tmp_path / "runs", "activation_study/sine", 0, supervision="val_der", psnr_luma_heldout=33.0)
    out = make_report(tmp_path / "runs", figures=True)
    assert not (out / "report_seeds.md").exists() and not (out / "seed_bars.png").exists()
    assert (out / "activation_bars.png").exists()


def test_seed_bars_draw_without_ssim_and_without_a_pair(tmp_path):
    runs = [write_run(tmp_path, f"a/bach/val/sine/seed={k}", k, task="audio_regression", supervision="val",
                      psnr_heldout=40.0 + k, image="x", image_shape=None) for k in range(2)]
    assert summaries.draw_seed_bars(runs, load_references(), tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 5_000
    assert not summaries.draw_seed_bars(runs[:0], load_references(), tmp_path / "none.png")


# ------------------------------------------------------------------------------------------------ sweep
def _sweep(tmp_path, text: str):
    path = tmp_path / "seeded.txt"
    path.write_text("task = image_regression\n" + text)
    return parse_sweep(path)


def _exp_names(specs):
    return [s.argv[s.argv.index("--exp_name") + 1] for s in specs]


def test_a_seed_axis_runs_every_config_and_grid_value_once_per_seed(tmp_path):
    sweep = _sweep(tmp_path, "seeds = [0, 1, 2]\nconfigs/activation_study/sine.txt\n"
                             "configs/activation_study/sine.txt --supervision val\ngrid lambda_der = [1, 2]\n")
    specs = sweep.runs()
    assert len(specs) == 2 * 2 * 3
    names = _exp_names(specs)
    assert names[:3] == [f"seeded/activation_study/sine/lambda_der=1/seed={k}" for k in range(3)]
    assert names[6] == "seeded/activation_study/sine/supervision=val/lambda_der=1/seed=0"
    assert len(set(names)) == 12
    for spec, name in zip(specs, names):
        seed = int(name.rsplit("=", 1)[1])
        assert spec.argv[spec.argv.index("--seed") + 1] == str(seed) and spec.argv.count("--seed") == 1
    assert specs[6].argv[:5] == ["--config", "configs/activation_study/sine.txt", "--supervision", "val",
                                 "--lambda_der"]
    groups = {summaries.seed_group_name(n) for n in names}
    assert len(groups) == 4  # the report's groups: one per config x grid value


def test_seeds_without_a_grid_name_the_runs_and_grid_seed_is_the_same_axis(tmp_path):
    names = _exp_names(_sweep(tmp_path, "configs/activation_study/sine.txt\nseeds = [3, 1]\n").runs())
    assert names == ["seeded/activation_study/sine/seed=3", "seeded/activation_study/sine/seed=1"]
    assert _exp_names(_sweep(tmp_path, "configs/activation_study/sine.txt\ngrid seed = [3, 1]\n").runs()) == names
    plain = _sweep(tmp_path, "configs/activation_study/sine.txt\n").runs()
    assert "--exp_name" not in plain[0].argv and "--seed" not in plain[0].argv  # as before: the config's own name


def test_a_config_line_with_its_own_seed_runs_that_seed_only(tmp_path):
    specs = _sweep(tmp_path, "seeds = [0, 1, 2]\nconfigs/activation_study/sine.txt\n"
                             "configs/bird/val/sine.txt --seed 4 --num_epochs 10\n").runs()
    assert _exp_names(specs)[3:] == ["seeded/bird/val/sine/num_epochs=10/seed=4"]
    assert specs[3].argv.count("--seed") == 1 and specs[3].argv[specs[3].argv.index("--seed") + 1] == "4"
    equals = _sweep(tmp_path, "seeds = [0, 1]\nconfigs/bird/val/sine.txt --seed=4 --num_epochs=10\n").runs()
    assert [s.argv for s in equals] == [specs[3].argv]


def test_a_line_ending_in_a_backslash_goes_on_on_the_next(tmp_path):
    sweep = _sweep(tmp_path, "seeds = [0]\nconfigs/activation_study/sine.txt --supervision val \\  # a comment\n"
                             "    --lambda_der 2\nconfigs/activation_study/sine.txt \\\n\n")
    assert sweep.config_args == [["--supervision", "val", "--lambda_der", "2"], []]
    with pytest.raises(ConfigError, match=r"seeded.txt:3: after the config path .* not 'x'"):
        _sweep(tmp_path, "configs/activation_study/sine.txt\nconfigs/activation_study/sine.txt \\\n  x\n")


def test_a_gain_that_rounds_to_zero_has_no_minus_sign():
    assert summaries._gain_text((-0.001, -0.004, 0.002, 3)) == "+0.00 [+0.00, +0.00]"
    assert summaries._gain_text((-0.5, None, None, 1)) == "-0.50 (n = 1: no interval)"


def test_a_named_config_line_gets_a_seed_part(tmp_path):
    specs = _sweep(tmp_path, "seeds = [0, 1]\nconfigs/activation_study/sine.txt --exp_name mine/sine\n").runs()
    assert _exp_names(specs) == ["mine/sine/seed=0", "mine/sine/seed=1"]


@pytest.mark.parametrize("text, message", [
    ("seeds = [0, one]\nconfigs/activation_study/sine.txt\n", ":2: seeds = .*non-negative integer, not 'one'"),
    ("seeds = [0, 1, 0]\nconfigs/activation_study/sine.txt\n", ":2: .*seed 0 is listed twice"),
    ("seeds = [0]\ngrid seed = [1]\n", ":3: grid seed is already set on line 2"),
    ("seeds = 0, 1\n", ":2: seeds = .*bracketed list"),
    ("configs/activation_study/sine.txt supervision val\n", ":2: .*come its options .*'supervision'"),
    ("configs/activation_study/sine.txt --seed x\n", ":2: --seed takes a non-negative integer"),
    ("configs/activation_study/sine.txt\nconfigs/activation_study/sine.txt --seed 1 --seed 2\n",
     ":3: --seed given twice"),
])
def test_bad_seed_lines_are_rejected_naming_the_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        _sweep(tmp_path, text)


def test_a_seed_in_the_args_beside_a_seed_axis_is_refused(tmp_path):
    sweep = _sweep(tmp_path, "seeds = [0, 1]\nargs = --seed 3\nconfigs/activation_study/sine.txt\n")
    with pytest.raises(ConfigError, match="seed axis .*same seed"):
        sweep.runs()
    with pytest.raises(ConfigError, match="seed axis"):
        _sweep(tmp_path, "seeds = [0, 1]\nconfigs/activation_study/sine.txt\n").runs(["--seed", "2"])


def test_the_same_config_line_twice_is_refused(tmp_path):
    sweep = _sweep(tmp_path, "seeds = [0]\nconfigs/activation_study/sine.txt\nconfigs/activation_study/sine.txt\n")
    with pytest.raises(ConfigError, match="would share the run directory 'seeded/activation_study/sine/seed=0'"):
        sweep.runs()


def test_a_task_without_a_seed_option_is_refused_before_any_run(tmp_path):
    task = tmp_path / "Experiments" / "noseed"
    task.mkdir(parents=True)
    (task / "main.py").write_text("import argparse\n\ndef config_parser():\n    p = argparse.ArgumentParser()\n"
                                  "    p.add_argument('--exp_name')\n    return p\n")
    (tmp_path / "noseed.txt").write_text("task = noseed\nseeds = [0, 1]\n")
    with pytest.raises(ConfigError, match="sets seeds, but main.py has no option --seed"):
        run_sweep(parse_sweep(tmp_path / "noseed.txt"), dry_run=True)
    assert not (task / "logs").exists()


def test_the_seeded_runs_pass_the_tasks_parser(tmp_path, capsys):
    sweep = _sweep(tmp_path, "seeds = [0, 1]\nconfigs/activation_study/sine.txt --supervision val\n")
    run_sweep(sweep, dry_run=True)
    out = capsys.readouterr().out
    assert "--seed 1 --exp_name seeded/activation_study/sine/supervision=val/seed=1" in out


# ------------------------------------------------------------------------------------------ the study
def _study_runs():
    """The families study's runs, each parsed by the image task's parser in the run folder: (spec, namespace)."""
    import contextlib
    import io
    import os

    from sobolev_inr.tasks import get_task

    sweep = parse_sweep(REPO / "configs" / "families_study.txt")
    specs = sweep.runs()
    previous = os.getcwd()
    os.chdir(sweep.work_dir)
    try:
        parser = get_task("image_regression").parser("train")
        with contextlib.redirect_stdout(io.StringIO()):
            return [(s, parser.parse_args(s.argv)) for s in specs]
    finally:
        os.chdir(previous)


def test_the_families_study_runs_every_model_both_ways_over_three_seeds_and_once_in_colour():
    runs = _study_runs()
    assert len(runs) == 9 * 2 * 3 + 9 * 2
    gray = [a for _, a in runs if a.is_gray]
    models = {(tuple(a.activations), a.has_pos_encoding, a.has_grid_encoding) for a in gray}
    assert {m[0][0] for m in models} == {"sine", "relu", "spder", "finer", "gauss", "wire", "sinc", "hosc"}
    assert len(models) == 9  # relu twice: with positional encoding and in front of the grid
    for model in models:
        mine = [a for a in gray if (tuple(a.activations), a.has_pos_encoding, a.has_grid_encoding) == model]
        assert sorted((a.supervision, a.seed) for a in mine) == [(s, k) for s in ("val", "val_der") for k in range(3)]
    assert all(a.num_epochs == 1000 and a.filename == "bird" for _, a in runs)
    fake = [{"exp_name": a.exp_name, "task": "image_regression", "supervision": a.supervision, "seed": a.seed,
             "activations": a.activations, "image": "bird", "image_shape": [288, 288, 1 if a.is_gray else 3],
             "encoding": "grid" if a.has_grid_encoding else "positional" if a.has_pos_encoding else "none",
             "psnr_heldout": 30.0} for _, a in runs]
    groups = summaries.seed_groups(fake)
    pairs = summaries.seed_pairs(groups)
    assert len(groups) == 36 and len(pairs) == 18  # the report pairs every model, gray and in colour
    assert sorted(len(p.seeds) for p in pairs) == [1] * 9 + [3] * 9
    labels = {(p.val.model, p.val.signal) for p in pairs}
    assert {m for m, _ in labels} == {"SIREN", "ReLU + PE", "SPDER", "FINER", "Gauss", "WIRE", "sinc", "HOSC",
                                      "ReLU + grid"}
    table5 = [g for g in groups if summaries.match_reference(g.name, load_references())]
    assert sorted((g.model, g.supervision) for g in table5) == [("ReLU + PE", "val_der"), ("SIREN", "val_der")]


def test_each_colour_run_of_the_study_is_a_gray_run_but_for_the_colour():
    runs = _study_runs()
    ignored = {"is_gray", "exp_name", "seed", "config"}

    def key(a):
        return json.dumps({k: v for k, v in sorted(vars(a).items()) if k not in ignored}, default=str)

    gray = {key(a) for _, a in runs if a.is_gray}
    colour = [(s.label, key(a)) for s, a in runs if not a.is_gray]
    assert len(colour) == 18
    assert [label for label, k in colour if k not in gray] == []
