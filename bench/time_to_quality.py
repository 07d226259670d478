"""Time to quality: does derivative supervision reach a given held-out PSNR sooner in wall time?

For a case, trains the same config (same seed, same number of epochs) with

* ``val``: value supervision only, the reference;
* ``val_der``: value + derivative, exact Jacobian (the fused engine);
* ``val_der-directional``: value + derivative, the derivative term estimated from one random direction
  per sample and epoch (``--der_estimator directional``; ``--directions`` sets K),
* ``val_der-fraction``: value + derivative, the exact derivative term on a random ``--fraction`` of the
  samples each epoch (``--der_fraction``), the values of all,

each through the task's own ``main.py`` in its own process, one after the other, scoring the held-out
samples every ``--every`` epochs. Time is the run's ``time/train_s`` scalar: the training steps alone,
the device synchronised before each reading, evaluation excluded. It prints, per method, the training
time at which the held-out PSNR first reaches the value-only run's final held-out PSNR (linear between
two evaluations), its ratio to the value-only run's, and the final PSNR; writes the table as JSON and
a figure (held-out PSNR against training time, one line per method) to ``bench/results/``.

Cases (``--cases``):

* ``baby``: Baby (Set5, RGB 512x512), the image protocol: SIREN 4x256, train on 1/16 of the pixels
  (``configs/baby/val_der/sine.txt``); needs Set5 linked into ``data/``.
* ``bird-gray``: Bird in luma at 288x288, the activation study's protocol (``configs/activation_study/sine.txt``).
* ``camera``: the embedded cameraman (``configs/camera/val_der/sine.txt``): runs anywhere.
* ``audio``: 0.5 s of the embedded synthetic chirp, SIREN 4x256, every 5th sample trained on.
* ``bird-gray-grid``: the activation study's protocol with issue 26's grid encoding (8 levels of 4 to 64
  cells per axis, smoothstep weights) in front of a 2x64 ReLU MLP (``configs/families/grid/val_der.txt``).
* ``camera-grid``: the embedded cameraman with the same grid and MLP: runs anywhere.

    python bench/time_to_quality.py --cases bird-gray baby            # about 25 min on 2 CPU cores
    python bench/time_to_quality.py --cases camera --epochs 200 --every 10

Sequential runs on a shared machine: benchmark on a quiet one. Benchmarks print; nothing here fails on
a timing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

METHODS: Dict[str, List[str]] = {
    "val": ["--supervision", "val"],
    "val_der": ["--supervision", "val_der"],
    "val_der-directional": ["--supervision", "val_der", "--der_estimator", "directional"],
    "val_der-fraction": ["--supervision", "val_der"],
}


@dataclass
class Case:
    name: str
    description: str
    task_dir: str
    config: str
    epochs: int
    every: int
    metric: str = "psnr_heldout"
    args: List[str] = field(default_factory=list)
    needs: Optional[str] = None
    """A data folder (relative to the repository) the case reads; absent: the case is skipped with a reason."""


GRID_MLP = ["--activations", "relu", "relu", "--num_hidden_layers", "1", "--hidden_features", "64", "--lrate", "1e-3",
            "--has_grid_encoding", "--grid_levels", "8", "--grid_features", "2", "--grid_table_size", "16384",
            "--grid_base_resolution", "4", "--grid_finest_resolution", "64", "--grid_interpolation", "smoothstep"]
"""The families study's grid-encoded model (``configs/families/grid/val_der.txt``) as options for any image config."""

CASES: Dict[str, Case] = {c.name: c for c in [
    Case("baby", "Baby (Set5) RGB 512x512, SIREN 4x256, 1/16 of the pixels trained on", "Experiments/image_regression",
         "configs/baby/val_der/sine.txt", 500, 10, needs="data/Set5"),
    Case("bird-gray", "Bird (Set5) luma 288x288, SIREN 4x256, 1/16 of the pixels (activation study)",
         "Experiments/image_regression", "configs/activation_study/sine.txt", 1000, 20, needs="data/Set5"),
    Case("camera", "cameraman (embedded) gray 512x512, SIREN 4x256, 1/16 of the pixels", "Experiments/image_regression",
         "configs/camera/val_der/sine.txt", 500, 10),
    Case("audio", "synthetic chirp (embedded), 0.5 s, SIREN 4x256, 1/5 of the samples", "Experiments/audio_regression",
         "configs/synthetic/val_der_sine.txt", 300, 10, args=["--filename", "synthetic:0.5"]),
    Case("bird-gray-grid", "Bird (Set5) luma 288x288, grid encoding + ReLU 2x64, 1/16 of the pixels",
         "Experiments/image_regression", "configs/families/grid/val_der.txt", 1000, 20, needs="data/Set5"),
    Case("camera-grid", "cameraman (embedded) gray 512x512, grid encoding + ReLU 2x64, 1/16 of the pixels",
         "Experiments/image_regression", "configs/camera/val_der/sine.txt", 1000, 20, args=GRID_MLP),
]}


def time_to_reach(times: Sequence[float], values: Sequence[float], target: float) -> Optional[float]:
    """The first time at which the series reaches ``target``, linear between two evaluations; None if never.

    ``times`` ascending; the series starts at time 0 from below the target unless its first value is there.
    """
    prev_t, prev_v = None, None
    for t, v in zip(times, values):
        if v >= target:
            if prev_v is None or prev_v >= target:
                return t
            return prev_t + (t - prev_t) * (target - prev_v) / (v - prev_v)
        prev_t, prev_v = t, v
    return None


def read_curve(run_dir: Path, metric: str) -> Tuple[List[float], List[float]]:
    """(training time at each evaluation, s; the held-out metric there) of a finished run."""
    from sobolev_inr.training.runs import read_scalars

    series = read_scalars(run_dir / "scalars.csv")
    if f"eval/{metric}" not in series:
        raise SystemExit(f"{run_dir}: no eval/{metric} in scalars.csv (a case whose runs hold nothing out?)")
    steps_t, times = series["time/train_s"]
    steps_m, values = series[f"eval/{metric}"]
    time_at = dict(zip(steps_t, times))
    return [time_at[s] for s in steps_m], list(values)


def train(case: Case, method: str, out: Path, args) -> Path:
    """Runs the case's main.py for one method into ``out/<method>`` (replacing an earlier bench run there)."""
    cmd = [sys.executable, "main.py", "--config", case.config, *case.args, *METHODS[method],
           "--num_epochs", str(args.epochs or case.epochs), "--epochs_til_summary", str(args.every or case.every),
           "--epochs_til_ckpt", str(args.epochs or case.epochs), "--logging_root", str(out), "--exp_name", method,
           "--overwrite", "--no_progress", "--device", args.device, "--seed", str(args.seed), *args.extra]
    if method.endswith("directional"):
        cmd += ["--der_directions", str(args.directions)]
    if method.endswith("fraction"):
        cmd += ["--der_fraction", str(args.fraction)]
    print(f"  {method}: {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, cwd=REPO / case.task_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{case.name}/{method} failed:\n{proc.stderr.strip()[-2000:]}")
    return out / method


def summarise(curves: Dict[str, Tuple[List[float], List[float]]]) -> Dict[str, dict]:
    """Per method: the time to the value-only run's final held-out PSNR and its ratio to value-only's (the
    issue's measure), the same for the value-only run's best PSNR (which differs where value-only overfits
    and its held-out PSNR falls back), and the final and best PSNR and total training time."""
    val_times, val_values = curves["val"]
    target, best = val_values[-1], max(val_values)
    reference, reference_best = time_to_reach(val_times, val_values, target), time_to_reach(val_times, val_values, best)
    ratio = lambda t, ref: t / ref if t is not None and ref else None  # noqa: E731
    rows = {}
    for method, (times, values) in curves.items():
        reach, reach_best = time_to_reach(times, values, target), time_to_reach(times, values, best)
        rows[method] = {"target_psnr": target, "time_to_target_s": reach, "ratio_to_val": ratio(reach, reference),
                        "val_best_psnr": best, "time_to_val_best_s": reach_best,
                        "ratio_to_val_best": ratio(reach_best, reference_best),
                        "final_psnr": values[-1], "best_psnr": max(values), "train_time_s": times[-1]}
    return rows


def plot(case: Case, curves: Dict[str, Tuple[List[float], List[float]]], rows: Dict[str, dict], path: Path) -> None:
    from sobolev_inr.reporting.plots import figure

    fig, axes = figure(1, 1, (6.4, 4.2))
    ax = axes[0, 0]
    for method, (times, values) in curves.items():
        ax.plot(times, values, label=method, lw=1.4)
        reach = rows[method]["time_to_target_s"]
        if reach is not None:
            ax.plot([reach], [rows[method]["target_psnr"]], "o", color=ax.lines[-1].get_color())
    ax.axhline(rows["val"]["target_psnr"], color="0.5", ls="--", lw=0.8, label="value-only final PSNR")
    ax.axhline(rows["val"]["val_best_psnr"], color="0.5", ls=":", lw=0.8, label="value-only best PSNR")
    ax.set_xlabel("training time (s, evaluation excluded)")
    ax.set_ylabel(f"held-out PSNR (dB), {case.metric}")
    ax.set_title(case.description, fontsize=9)
    low = min(min(v) for _, v in curves.values())
    ax.set_ylim(bottom=max(low, rows["val"]["target_psnr"] - 15))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(name: str, rows: Dict[str, dict]) -> None:
    val = rows["val"]
    print(f"{name}: value-only held-out PSNR {val['target_psnr']:.2f} dB at its end, {val['val_best_psnr']:.2f} dB at best")
    print(f"  {'method':<22} {'to final (s)':>13} {'/ val':>7} {'to best (s)':>12} {'/ val':>7} {'final PSNR':>11} "
          f"{'best PSNR':>10} {'train time (s)':>15}")
    seconds = lambda t: f"{t:.1f}" if t is not None else "not reached"  # noqa: E731
    times = lambda r: f"{r:.2f}x" if r is not None else "-"  # noqa: E731
    for method, r in rows.items():
        print(f"  {method:<22} {seconds(r['time_to_target_s']):>13} {times(r['ratio_to_val']):>7} "
              f"{seconds(r['time_to_val_best_s']):>12} {times(r['ratio_to_val_best']):>7} {r['final_psnr']:>11.2f} "
              f"{r['best_psnr']:>10.2f} {r['train_time_s']:>15.1f}")


def resummarise(path: Path) -> dict:
    """Tables and figures again from a results JSON (its curves), e.g. after a change to the summary."""
    results = json.loads(path.read_text())
    for name, case in results["cases"].items():
        curves = {m: (list(t), list(v)) for m, (t, v) in case["curves"].items()}
        case["methods"] = summarise(curves)
        print_table(name, case["methods"])
        plot(CASES[name], curves, case["methods"], REPO / case["figure"])
    path.write_text(json.dumps(results, indent=1))
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=["camera"], choices=list(CASES))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--epochs", type=int, default=0, help="epochs of every run (0: the case's default)")
    p.add_argument("--every", type=int, default=0, help="epochs between evaluations (0: the case's default)")
    p.add_argument("--directions", type=int, default=1, help="K of the directional estimator")
    p.add_argument("--fraction", type=float, default=0.25, help="der_fraction of val_der-fraction")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (passed to main.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=Path, default=REPO / "bench" / "runs" / "time_to_quality",
                   help="where the runs go (replaced on every call)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder of the JSON and figures")
    p.add_argument("--summarise", type=Path, default=None, metavar="JSON",
                   help="train nothing: re-read a results JSON of this script, print its tables, redraw its figures")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="options passed on to every main.py (e.g. --extra --sidelength 64)")
    args = p.parse_args(argv)
    if args.summarise:
        return resummarise(args.summarise)
    if "val" not in args.methods:
        args.methods.insert(0, "val")

    from common import machine_line, machine_record  # bench/common.py
    from sobolev_inr.config.cli import resolve_device

    device = resolve_device(args.device)  # the device main.py will resolve to, for the file names
    print(machine_line(device))
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine_record(device, argv), "cases": {}}
    for name in args.cases:
        case = CASES[name]
        if case.needs and not (REPO / case.needs).exists():
            print(f"{name}: skipped, {case.needs} is missing (link the data, see data/README.md)")
            continue
        print(f"{name}: {case.description}")
        curves = {m: read_curve(train(case, m, args.runs / name, args), case.metric) for m in args.methods}
        rows = summarise(curves)
        print_table(name, rows)
        figure_path = args.out / f"time_to_quality_{name}_{device.type}.png"
        plot(case, curves, rows, figure_path)
        results["cases"][name] = {"description": case.description, "epochs": args.epochs or case.epochs,
                                  "every": args.every or case.every, "directions": args.directions,
                                  "fraction": args.fraction,
                                  "methods": rows, "curves": curves, "figure": str(figure_path.relative_to(REPO))
                                  if figure_path.is_relative_to(REPO) else str(figure_path)}
    suffix = "_".join(args.cases)
    path = args.out / f"time_to_quality_{device.type}_{suffix}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"results: {path}")
    return results


if __name__ == "__main__":
    main()
