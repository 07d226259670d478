"""Experiment summaries of the report (sobolev_inr.reporting.summaries): which runs they take, the numbers they put beside
the papers', and their figures, on run directories written here (no training)."""
import csv
import json
from pathlib import Path

import pytest

from sobolev_inr.report import make_report
from sobolev_inr.reporting import summaries
from sobolev_inr.reporting.references import load_protocol_tables, load_references


def write_run(root: Path, exp_name: str, metrics: dict, scalars: dict = None) -> dict:
    """A finished run directory: metrics.json and, if given, scalars.csv ({name: {step: value}})."""
    run = root / exp_name
    run.mkdir(parents=True)
    metrics = {"exp_name": exp_name, **metrics}
    (run / "metrics.json").write_text(json.dumps(metrics))
    if scalars:
        with open(run / "scalars.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "name", "value"])
            for name, values in scalars.items():
                for step, value in values.items():
                    w.writerow([step, name, value])
    return {**metrics, "run_dir": str(run)}


def spder_run(root, model, sup, image, psnr_at, rho_at):
    acts = {"relu_pos": "relu", "sine": "sine"}.get(model, model)
    return write_run(root, f"spder/{sup}/{model}/filename={image}", {
        "task": "image_regression", "supervision": sup, "activations": [acts] * 6, "image": f"scikit-image {image}",
        "encoding": "positional" if model == "relu_pos" else "none", "steps": 500},
        {"eval/psnr_full": psnr_at, "eval/rho_ag_full": rho_at})


def test_spder_table_averages_images_at_the_papers_steps_beside_table_1(tmp_path):
    runs = [spder_run(tmp_path, "spder", "val", "camera", {25: 30.0, 50: 35.0, 100: 50.0, 500: 90.0},
                      {25: 0.99, 100: 0.9999, 500: 0.99999}),
            spder_run(tmp_path, "spder", "val", "cat", {25: 20.0, 100: 40.0, 500: 70.0}, {25: 0.97, 100: 0.9997, 500: 0.99997}),
            spder_run(tmp_path, "sine", "val_der", "camera", {25: 22.0, 100: 28.0, 500: 38.0}, {25: 0.95, 100: 0.98, 500: 0.999})]
    text = "\n".join(summaries.spder_markdown(runs, load_protocol_tables()))
    row = next(line for line in text.splitlines() if line.startswith("| SPDER (sqrt) | value |"))
    assert "camera, cat" in row and "25.00 / 45.00 / 80.00" in row and "27.50 / 48.60 / 85.70" in row
    assert "0.98000 / 0.99980 / 0.99998" in row and "0.99360 / 0.99980 / 0.99995" in row
    sine = next(line for line in text.splitlines() if line.startswith("| SIREN | value + derivative |"))
    assert "22.00 / 28.00 / 38.00" in sine and "21.5" not in sine  # the paper has no derivative-supervised row
    assert summaries.draw_spder_curves(runs, load_protocol_tables(), tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_super_resolution_table_matches_paper_004_per_factor(tmp_path):
    runs = [write_run(tmp_path, f"x{f}/{sup}/sine", {
        "task": "super_resolution", "supervision": sup, "activations": ["sine"] * 4, "encoding": "none",
        "sr_factor": f, "psnr_heldout": 30.0 - f + (sup == "val_der"), "ssim_heldout": 0.9, "psnr_bicubic_heldout": 29.0 - f,
        "steps": 500, "low_shape": [256 // f] * 2, "high_shape": [256, 256]}) for f in (2, 4, 8) for sup in ("val", "val_der")]
    lines = summaries.super_resolution_markdown(runs, load_references())
    x4 = [line for line in lines if line.startswith("| x4 | SIREN |")]
    assert len(x4) == 2
    assert "| 26.00 | 26.65 |" in x4[0] and "| 25.00 | 26.67 |" in x4[0]  # ours and paper, network then bicubic
    assert "| 27.00 |  |" in x4[1]  # value + derivative: no published row
    assert summaries.draw_super_resolution(runs, load_references(), tmp_path / "sr.png")


def test_derivative_precision_table_is_table_6_shaped(tmp_path):
    runs = []
    for image, base in (("baby", 30.0), ("bird", 28.0)):
        for sup, gain in (("val", 0.0), ("val_der", 1.0), ("val_der_fullres", 2.0)):
            runs.append(write_run(tmp_path, f"derivative_precision/{sup}/sine/filename={image}", {
                "task": "image_regression", "supervision": "val" if sup == "val" else "val_der", "image": image,
                "activations": ["sine"] * 4, "encoding": "none", "psnr_luma_heldout": base + gain,
                "ssim_heldout": 0.8, "epochs": 300}))
    lines = summaries.precision_markdown(runs, load_protocol_tables())
    rows = {line.split(" | ")[1]: line for line in lines if line.startswith("| SIREN |")}
    assert "| 29.00 | 22.69 |" in rows["value"] and "| 30.00 | 24.44 |" in rows["+ derivatives of the downsampled image"]
    assert "| 31.00 |  |" in rows["+ derivatives at full resolution"]
    assert rows["value"].endswith("| 30.00 | 28.00 | 300 |")  # per image (baby, bird), then the epochs
    assert summaries.draw_precision_bars(runs, load_protocol_tables(), tmp_path / "dp.png")


def test_report_appends_the_summaries_and_leaves_them_out_of_the_generic_bars(tmp_path):
    spder_run(tmp_path / "runs", "spder", "val", "camera", {25: 30.0, 100: 50.0, 500: 90.0}, {25: 0.99, 100: 0.999, 500: 0.9999})
    spder_run(tmp_path / "runs", "spder", "val_der", "camera", {25: 31.0, 100: 52.0, 500: 91.0}, {25: 0.99, 100: 0.999, 500: 0.9999})
    out = make_report(tmp_path / "runs", figures=True)
    text = (out / "report.md").read_text()
    assert "### SPDER's image protocol" in text and (out / "spder_curves.png").exists()
    assert not (out / "supervision_bars.png").exists()
    assert not (out / "super_resolution.png").exists() and not (out / "derivative_precision.png").exists()


@pytest.mark.parametrize("exp_name, summarised", [
    ("spder/val/sine", True), ("cpu/spder/spder/val_der/spder_log/filename=skimage_cat", True),
    ("derivative_precision_cpu/derivative_precision/val_der_fullres/sine/filename=baby", True),
    ("baby/val_der/sine", False), ("activation_study/spder_like", False)])
def test_which_runs_belong_to_a_summary(exp_name, summarised):
    assert summaries.summarised({"exp_name": exp_name, "task": "image_regression"}) is summarised
