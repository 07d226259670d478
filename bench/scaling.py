"""Scaling: each task at growing input sizes, as real runs; time per step, time outside training, peak memory.

Every run is the task's own ``train`` (:func:`sobolev_inr.tasks.run_task`) in a fresh Python process, with
the task's default options but for its size, a few epochs (or NeRF steps) and a checkpoint after each of
them (``--keep_checkpoints 0``), so that each checkpoint's ``train_time_s`` gives the time of every epoch:

* time per step: the median epoch (step) after the first, divided by the steps per epoch (the first, which
  warms up allocator and thread pools, is shown apart);
* time outside training: the process's wall time (imports included) minus ``train_time_s``, minus the
  extra per-epoch checkpoints that this benchmark asks for (their write time is measured); split into
  startup + loading (launch to the first step), the summary evaluation, the final evaluation and the
  outputs (the durations the run logs), the interpreter's exit (from the end of ``run_task`` to the end of
  the process: torch's shutdown, about a second on 2 cores) and the rest (last checkpoint, metrics.json);
* peak memory: the run's ``peak_memory_mb`` (training steps only: the process's peak RSS on CPU, the
  CUDA allocator's peak on a GPU), and the process's overall peak RSS, sampled from ``/proc/<pid>/status``
  (VmHWM) every 20 ms: the run resets the peak RSS at each training segment, so the exit rusage would only
  hold the last segment's;
* the share of time outside training in a run of 300 epochs (NeRF: 1000 steps): the measured outside
  time, with the summaries that run would make (every ``epochs_til_summary`` epochs, ``i_print`` steps;
  NeRF's quick-look renders every ``i_img`` steps are not counted), over that plus the first epoch and
  299 more at the median.

Series and sizes (``--sizes name=a,b``):

* ``image``: the embedded cameraman (1 channel) resized to 256..2048 px a side; training on every 4th
  pixel each way (the task's ``factor``): 4096..262144 pixels, full batch;
* ``audio``: the embedded chirp, 5 s..5 min at 44.1 kHz, every 5th sample trained on, full batch;
* ``sdf``: the embedded torus, 10k..1M points (on-surface, as many off-surface per step; batch 250000);
* ``video``: the embedded clip, 16..128 frames of 128x128, every 2nd frame trained on, full batch;
* ``nerf``: the embedded synthetic scene (or ``--nerf_datadir``), 256..4096 rays per step x 128 samples
  through the default 8x256 network; every pixel of the 17 training views in the ray pool (``--factor 1``,
  20400 rays at LLFF factor 4, so that 4096 rays make full steps);
* ``nerf_scene``: the same scene at LLFF factor 4 and 2 (1 with ``--sizes nerf_scene=4,2,1``), every pixel
  in the pool, 1024 rays per step: pixels per view (ray pool, targets, test renders) grow while the step
  stays the same (its LLFF /4 run is the ``nerf`` series' 1024-ray run, not run twice). The task has no
  option for the number of views; pixels per view stand for them.

Verdicts on the issue's goals: the log-log slope of time per step and of peak training memory against
samples per step over the larger half of each series' sizes (at most 1.2: at most linear, the goal; blocked
training flattens memory once a full batch exceeds ``max_memory_gb``); the largest projected share of time
outside training against 20%; the peaks of the 2048x2048 image run against ``max_memory_gb`` + 1 GB.

    python bench/scaling.py                              # all series, CPU: about 1 h on 2 cores
    python bench/scaling.py --tasks image audio --device cuda
    python bench/scaling.py --quick                      # tiny sizes: checks the script, numbers mean nothing

Writes ``scaling.json``, ``scaling.md`` (a table for bench/PERFORMANCE.md) and ``scaling.png`` (log-log: time
per step and peak memory against samples per step) into ``--out``. Benchmarks print; tests assert.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))  # bench/common.py

GOAL_OUTSIDE_SHARE = 0.20
"""Time outside training at most this share of a run of the projected length (the issue's goal)."""
MAX_LINEAR_SLOPE = 1.2
"""A log-log slope up to this is "at most linear" (the goal); from 2 - this up to it, "linear"."""
PROCESS_ALLOWANCE_GB = 1.0
"""The budget at 2048^2: the training step's max_memory_gb plus this much for the process (torch and the
package, about 0.5 GB) and the data (image, targets, evaluation buffers)."""


# ------------------------------------------------------------------------------------------ the series
def _per_step(pool: int, m: Mapping[str, Any]) -> int:
    """Samples per step of an epoch-based task that steps through ``pool`` training samples each epoch."""
    return round(pool * m["epochs"] / m["steps"])


def _image_samples(m: Mapping[str, Any], c: Mapping[str, Any]) -> int:
    h, w = m["image_shape"][:2]
    return _per_step(h * w - m.get("num_heldout_samples", 0), m)


def _sdf_samples(m: Mapping[str, Any], c: Mapping[str, Any]) -> int:
    n, batch = m["num_points"], c.get("batch_size", 0)
    return 2 * (n if batch <= 0 or batch >= n else batch)  # on-surface rows and as many off-surface points


def _nerf_samples(m: Mapping[str, Any], c: Mapping[str, Any]) -> int:
    return min(c["N_rand"], m["num_train_rays"]) * c["N_samples"]  # points through the network


@dataclass(frozen=True)
class Series:
    """One task at growing sizes: its run arguments at a size, and what a sample per step is."""

    name: str
    task: str
    unit: str  # "epoch" or "step"
    sizes: Sequence[str]
    quick_sizes: Sequence[str]
    args: Callable[[str], List[str]]
    samples_per_step: Callable[[Mapping[str, Any], Mapping[str, Any]], int]
    """From the run's metrics.json and config.json."""
    label: Callable[[str], str]
    samples_vary: bool = True
    """Whether samples per step grow with the size (the slope fits and the figure take these series)."""
    quick_args: Sequence[str] = ()
    """Options of --quick runs only (numbers from them are for checking the script)."""


def series_table(nerf_datadir: str) -> Dict[str, Series]:
    nerf = ["--datadir", nerf_datadir]
    return {s.name: s for s in [
        Series("image", "image_regression", "epoch", ("256", "512", "1024", "2048"), ("32", "64"),
               lambda s: ["--sidelength", s], _image_samples, lambda s: f"{s}x{s}"),
        Series("audio", "audio_regression", "epoch", ("5", "30", "60", "300"), ("0.25", "0.5"),
               lambda s: ["--filename", f"synthetic:{s}"], lambda m, c: _per_step(m["num_train_samples"], m),
               lambda s: f"{s} s"),
        Series("sdf", "sdf", "epoch", ("10000", "100000", "1000000"), ("1000", "2000"),
               lambda s: ["--num_points", s], _sdf_samples, lambda s: f"{int(s):,} pts",
               quick_args=("--mc_resolution", "32")),
        Series("video", "video_regression", "epoch", ("16", "32", "64", "128"), ("4", "6"),
               lambda s: ["--filename", f"synthetic:{s}"], lambda m, c: _per_step(m["num_train_samples"], m),
               lambda s: f"{s} frames"),
        Series("nerf", "inverse_rendering", "step", ("256", "1024", "4096"), ("32", "64"),
               lambda s: [*nerf, "--llff_factor", "4", "--N_rand", s, "--factor", "1"], _nerf_samples,
               lambda s: f"{s} rays",
               quick_args=("--N_samples", "32", "--final_eval_stride", "2")),
        Series("nerf_scene", "inverse_rendering", "step", ("4", "2"), ("4",),
               lambda s: [*nerf, "--llff_factor", s, "--N_rand", "1024", "--factor", "1"], _nerf_samples,
               lambda s: f"LLFF /{s}",
               samples_vary=False, quick_args=("--N_samples", "32", "--final_eval_stride", "2", "--N_rand", "64")),
    ]}


# ------------------------------------------------------------------------------------- the child process
def child(spec_path: str) -> None:
    """Runs one task as its CLI would, recording when each summary and checkpoint happened (wall clock)."""
    start = time.time()
    spec = json.loads(Path(spec_path).read_text())
    events: List[list] = []

    class Clock:  # the two hooks fit() calls (sobolev_inr.training.loop.Callback)
        def on_summary(self, index, values):
            events.append(["summary", index, time.time()])

        def on_checkpoint(self, index, path):
            events.append(["checkpoint", index, time.time()])

    from sobolev_inr.tasks import run_task

    importlib.import_module("torch")  # run_task imports it anyway: here, so that the process's fixed memory is read

    rss_after_imports = _proc_status_kb(os.getpid(), "VmRSS")
    run_task(spec["task"], spec["argv"], callbacks=[Clock()])
    Path(spec["events"]).write_text(json.dumps({"start": start, "end": time.time(), "events": events,
                                                "rss_after_imports_kb": rss_after_imports}))


def _proc_status_kb(pid: int, field: str) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def launch(spec: Dict[str, Any], folder: Path, timeout: Optional[float]) -> Dict[str, Any]:
    """Runs ``spec`` in a fresh process; its wall time, exit status and overall peak RSS (MB)."""
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    with open(folder / "output.txt", "w") as out:
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=folder, env=env)
        peak_kb = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_kb = max(peak_kb, _proc_status_kb(proc.pid, "VmHWM") or 0.0)
            if timeout and time.time() - t0 > timeout:
                proc.kill()
            time.sleep(0.02)
        wall = time.time() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_kb = max(peak_kb, usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024)
    return {"launch": t0, "wall_s": wall, "returncode": proc.returncode, "process_peak_mb": peak_kb / 1024}


# ------------------------------------------------------------------------------------------ one run
def _logged_phases(log: str) -> Dict[str, float]:
    """``<phase>: <seconds> s`` lines of a run's log.txt (the durations each phase logs)."""
    phases = {}
    for line in log.splitlines():
        name, sep, rest = line.rpartition(": ")
        if sep and rest.endswith(" s"):
            try:
                phases[name] = float(rest[:-2])
            except ValueError:
                pass
    return phases


def _checkpoint_times(folder: Path) -> List[float]:
    """``train_time_s`` of each checkpoint of a run, oldest first."""
    from sobolev_inr.training.checkpoints import list_checkpoints, load_checkpoint

    return [float(load_checkpoint(p)["train_time_s"]) for p in list_checkpoints(folder)]


def analyse(series: Series, size: str, launched: Mapping[str, Any], run_dir: Path, timing: Mapping[str, Any],
            project: int) -> Dict[str, Any]:
    """The numbers of one finished run (see the module's docstring for what each one is)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    config = config.get("config", config)
    phases = _logged_phases((run_dir / "log.txt").read_text())
    cumulative = _checkpoint_times(run_dir / "checkpoints")
    units = [b - a for a, b in zip([0.0] + cumulative, cumulative)]
    count = len(units)
    steps_per_unit = metrics["steps"] / count
    unit_time = statistics.median(units[1:]) if count > 1 else units[0]

    checkpoints = {i: t for kind, i, t in timing["events"] if kind == "checkpoint"}
    summaries = {i: t for kind, i, t in timing["events"] if kind == "summary"}
    last = max(checkpoints)
    write = checkpoints[last] - summaries[last] if last in summaries else 0.0  # flush + one checkpoint written
    summary_s = (summaries[last] - checkpoints[last - 1] - units[-1]) if last in summaries and count > 1 else 0.0
    extra_checkpoints = (count - 1) * write  # the per-epoch checkpoints a real run does not write
    first = min(checkpoints)
    startup = checkpoints[first] - write - cumulative[0] - launched["launch"]
    train = metrics["train_time_s"]
    outside = launched["wall_s"] - train - extra_checkpoints
    final, outputs = phases.get("final evaluation", 0.0), phases.get("outputs", 0.0)
    exit_s = launched["launch"] + launched["wall_s"] - timing["end"]  # the interpreter's shutdown

    every = config["epochs_til_summary"] if series.unit == "epoch" else config["i_print"]
    projected_summaries = math.ceil(project / every)
    outside_projected = outside + (projected_summaries - len(summaries)) * summary_s
    train_projected = units[0] + (project - 1) * unit_time
    rss_imports = timing.get("rss_after_imports_kb")
    return {
        "series": series.name, "task": series.task, "size": size, "label": series.label(size),
        "samples_per_step": series.samples_per_step(metrics, config), "steps": metrics["steps"], "units": count,
        "unit": series.unit,
        "steps_per_unit": steps_per_unit, "time_per_step_s": unit_time / steps_per_unit,
        "first_unit_s": units[0], "unit_times_s": units, "train_time_s": train, "wall_s": launched["wall_s"],
        "outside_s": outside, "startup_loading_s": startup, "data_and_model_s": phases.get("data and model"),
        "summary_eval_s": summary_s, "final_eval_s": final, "outputs_s": outputs,
        "exit_s": exit_s, "other_s": outside - startup - summary_s - final - outputs - exit_s,
        "checkpoint_write_s": write,
        "phases": phases, "project_length": project, "projected_summaries": projected_summaries,
        "outside_projected_s": outside_projected, "train_projected_s": train_projected,
        "outside_share": outside_projected / (outside_projected + train_projected),
        "peak_train_mb": metrics.get("peak_memory_mb"), "peak_memory_kind": metrics.get("peak_memory_kind"),
        "process_peak_mb": max(launched["process_peak_mb"], metrics.get("peak_memory_mb") or 0.0)
        if metrics.get("peak_memory_kind") == "cpu_peak_rss" else launched["process_peak_mb"],
        "rss_after_imports_mb": rss_imports / 1024 if rss_imports else None,
        "max_memory_gb": config.get("max_memory_gb"), "block_size": config.get("block_size"),
        "final_eval_stride": metrics.get("final_eval_stride"), "argv": None,
    }


def run_arguments(series: Series, size: str, args) -> List[str]:
    """The run's options (but where it logs): the series' at ``size``, a checkpoint after every epoch (step)."""
    length = args.nerf_steps if series.unit == "step" else args.epochs
    run_args = (["--N_iters", str(length), "--i_weights", "1"] if series.unit == "step"
                else ["--num_epochs", str(length), "--epochs_til_ckpt", "1"])
    return [*series.args(size), *(series.quick_args if args.quick else ()), *run_args, "--keep_checkpoints", "0",
            "--no_progress", "--device", args.device, *args.extra]


def run_one(series: Series, size: str, run_args: List[str], args, scratch: Path) -> Dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"{series.name}_{size}_", dir=scratch))
    argv = ["--logging_root", str(folder), "--exp_name", "run", *run_args]
    spec = {"task": series.task, "argv": argv, "events": str(folder / "events.json")}
    launched = launch(spec, folder, args.timeout)
    record: Dict[str, Any]
    if launched["returncode"] != 0 or not (folder / "events.json").exists():
        tail = (folder / "output.txt").read_text()[-2000:]
        record = {"series": series.name, "task": series.task, "size": size, "label": series.label(size),
                  "error": f"exit {launched['returncode']}", "output_tail": tail, "wall_s": launched["wall_s"]}
        print(f"  {series.name} {size}: FAILED (exit {launched['returncode']}); the end of its output:\n{tail}",
              flush=True)
    else:
        timing = json.loads((folder / "events.json").read_text())
        try:
            record = analyse(series, size, launched, folder / "run", timing,
                             args.project_steps if series.unit == "step" else args.project_epochs)
        except (KeyError, ValueError, OSError) as e:  # a run whose records this script does not understand
            record = {"series": series.name, "task": series.task, "size": size, "label": series.label(size),
                      "error": f"analysis: {type(e).__name__}: {e}", "wall_s": launched["wall_s"]}
            print(f"  {series.name} {size}: {record['error']}", flush=True)
    record["argv"] = run_args
    if args.keep_runs:
        target = Path(args.keep_runs) / f"{series.name}_{size}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(folder, target)
    shutil.rmtree(folder, ignore_errors=True)
    return record


# ------------------------------------------------------------------------------------------ summaries
def fits(records: List[Dict[str, Any]], table: Mapping[str, Series]) -> Dict[str, Dict[str, Any]]:
    """Per series whose samples per step vary: the log-log slopes of time per step and of peak training memory
    (also above the memory the process holds after its imports) over the larger half of its sizes, and over all."""
    from common import loglog_slope

    out = {}
    for name in dict.fromkeys(r["series"] for r in records):
        rows = sorted((r for r in records if r["series"] == name and "error" not in r),
                      key=lambda r: r["samples_per_step"])
        if not table[name].samples_vary or len(rows) < 2:
            continue
        large = rows[(len(rows) - 1) // 2:]
        x = lambda rs: [r["samples_per_step"] for r in rs]  # noqa: E731
        above = lambda rs: [(r["peak_train_mb"] or 0) - (r["rss_after_imports_mb"] or 0)  # noqa: E731
                            if r["peak_memory_kind"] == "cpu_peak_rss" else r["peak_train_mb"] for r in rs]
        out[name] = {
            "sizes_fitted": [r["size"] for r in large],
            "time_slope": loglog_slope(x(large), [r["time_per_step_s"] for r in large]),
            "time_slope_all": loglog_slope(x(rows), [r["time_per_step_s"] for r in rows]),
            "memory_slope": loglog_slope(x(large), [r["peak_train_mb"] for r in large]),
            "memory_above_imports_slope": loglog_slope(x(large), above(large)),
            "memory_slope_all": loglog_slope(x(rows), [r["peak_train_mb"] for r in rows]),
        }
    return out


def verdicts(records: List[Dict[str, Any]], slopes: Mapping[str, Dict[str, Any]], budget_gb: Optional[float]
             ) -> Dict[str, Any]:
    ok = [r for r in records if "error" not in r]
    linear = {name: {"time": f["time_slope"], "memory": f["memory_slope"],
                     "time_at_most_linear": f["time_slope"] is not None and f["time_slope"] <= MAX_LINEAR_SLOPE,
                     "memory_at_most_linear": f["memory_slope"] is not None and f["memory_slope"] <= MAX_LINEAR_SLOPE}
              for name, f in slopes.items()}
    worst = max(ok, key=lambda r: r["outside_share"], default=None)
    outside = None if worst is None else {
        "max_share": worst["outside_share"], "run": f"{worst['series']} {worst['label']}",
        "met": all(r["outside_share"] <= GOAL_OUTSIDE_SHARE for r in ok),
        "over": [f"{r['series']} {r['label']}: {r['outside_share']:.0%}" for r in ok
                 if r["outside_share"] > GOAL_OUTSIDE_SHARE]}
    big = [r for r in ok if r["series"] == "image" and r["size"] == "2048"]
    budget = None
    if big:
        r = big[0]
        gb = budget_gb if budget_gb is not None else (r["max_memory_gb"] or 0) + PROCESS_ALLOWANCE_GB
        cpu = r["peak_memory_kind"] == "cpu_peak_rss"  # on CUDA the process's RSS is host memory: not compared
        peak = max(r["peak_train_mb"] or 0, r["process_peak_mb"] if cpu else 0)
        budget = {"budget_gb": gb, "peak_train_gb": (r["peak_train_mb"] or 0) / 1024,
                  "process_peak_gb": r["process_peak_mb"] / 1024, "max_memory_gb": r["max_memory_gb"],
                  "compared": "training and process peak" if cpu else "training peak (CUDA allocator)",
                  "met": peak <= gb * 1024}
    return {"linear": linear, "outside": outside, "budget_2048": budget}


HEADERS = ["series", "size", "samples/step", "s/step", "1st s", "startup+load s", "summary s", "final eval s",
           "outputs s", "exit s", "outside s", "outside share", "train peak MB", "process peak MB"]


def rows_of(records: List[Dict[str, Any]]) -> List[List[str]]:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    rows = []
    for r in records:
        if "error" in r:
            rows.append([r["series"], r["label"], "failed: " + r["error"]] + [""] * (len(HEADERS) - 3))
            continue
        label = r["label"] + (f" (= {r['same_run_as']})" if r.get("same_run_as") else "")
        rows.append([r["series"], label, f"{r['samples_per_step']:,}", num(r["time_per_step_s"], ".3g"),
                     num(r["first_unit_s"], ".3g"), num(r["startup_loading_s"], ".1f"), num(r["summary_eval_s"], ".1f"),
                     num(r["final_eval_s"], ".1f"), num(r["outputs_s"], ".1f"), num(r["exit_s"], ".1f"),
                     num(r["outside_s"], ".1f"),
                     f"{r['outside_share']:.1%}", num(r["peak_train_mb"], ".0f"), num(r["process_peak_mb"], ".0f")])
    return rows


def verdict_lines(v: Mapping[str, Any], slopes: Mapping[str, Dict[str, Any]], args) -> List[str]:
    def s(x):
        return "-" if x is None else f"{x:.2f}"

    def kind(slope):
        if slope is None:
            return "not measured"
        if slope > MAX_LINEAR_SLOPE:
            return "MORE than linear"
        return "linear" if slope >= 2 - MAX_LINEAR_SLOPE else "less than linear"

    lines = []
    for name, f in slopes.items():
        lines.append(f"{name}: log-log slope of time per step {s(f['time_slope'])} ({kind(f['time_slope'])}; all sizes "
                     f"{s(f['time_slope_all'])}), of peak training memory {s(f['memory_slope'])} "
                     f"({kind(f['memory_slope'])}; {s(f['memory_above_imports_slope'])} above the process's memory "
                     f"after its imports; all sizes {s(f['memory_slope_all'])}), fitted over sizes "
                     f"{', '.join(f['sizes_fitted'])}")
    o = v["outside"]
    if o:
        lines.append(f"time outside training in a run of {args.project_epochs} epochs ({args.project_steps} steps for "
                     f"NeRF): at most {o['max_share']:.1%} ({o['run']}); goal <= {GOAL_OUTSIDE_SHARE:.0%}: "
                     + ("met" if o["met"] else "NOT met (" + "; ".join(o["over"]) + ")"))
    b = v["budget_2048"]
    if b:
        lines.append(f"peak memory at 2048x2048 (default options, max_memory_gb {b['max_memory_gb']}): training "
                     f"{b['peak_train_gb']:.2f} GB, whole process {b['process_peak_gb']:.2f} GB; budget "
                     f"{b['budget_gb']:.2f} GB (max_memory_gb + {PROCESS_ALLOWANCE_GB} GB for the process and the "
                     f"data; {b['compared']}): {'met' if b['met'] else 'NOT met'}")
    return lines


def plot(records: List[Dict[str, Any]], table: Mapping[str, Series], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.4))
    axes = fig.subplots(1, 2)
    panels = [("time_per_step_s", "time per step (s)"), ("peak_train_mb", "peak training memory (MB)")]
    for ax, (key, ylabel) in zip(axes, panels):
        xs_all, ys_all = [], []
        for name in dict.fromkeys(r["series"] for r in records):
            rows = sorted((r for r in records if r["series"] == name and "error" not in r and r.get(key)),
                          key=lambda r: r["samples_per_step"])
            if not rows or not table[name].samples_vary:
                continue
            xs, ys = [r["samples_per_step"] for r in rows], [r[key] for r in rows]
            ax.plot(xs, ys, "o-", label=name, lw=1.4)
            if key == "peak_train_mb":
                ax.plot(xs, [r["process_peak_mb"] for r in rows], ":", color=ax.lines[-1].get_color(), lw=1.0)
            xs_all += xs
            ys_all += ys
        if xs_all:
            lo, hi = min(xs_all), max(xs_all)
            mid_x = math.exp(sum(map(math.log, xs_all)) / len(xs_all))
            mid_y = math.exp(sum(map(math.log, ys_all)) / len(ys_all))
            ax.plot([lo, hi], [mid_y * lo / mid_x, mid_y * hi / mid_x], "--", color="0.5", lw=0.9, label="slope 1")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("samples per step (NeRF: rays x samples per ray)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[1].set_title("solid: training steps; dotted: whole process (RSS)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_markdown(path: Path, result: Mapping[str, Any], lines: List[str], args) -> None:
    m = result["machine"]
    text = [f"Scaling ({m['device']}{', ' + m['gpu'] if m.get('gpu') else ''}; torch {m['torch']}, "
            f"{m['torch_threads']} threads on {m['cpu_count']} CPUs; {m['time']}): `{m['command']}`", "",
            "Time per step: the median epoch after the first (NeRF: step), per step; 1st: the first epoch (step). "
            f"Outside: wall time of the process minus training; share: of a {args.project_epochs}-epoch run "
            f"({args.project_steps} steps for NeRF), summaries included. Peak memory: training steps "
            "(CPU: peak RSS; CUDA: allocator) and the whole process (RSS).", "",
            result["table_markdown"], ""] + [f"- {line}" for line in lines]
    path.write_text("\n".join(text) + "\n")


# ------------------------------------------------------------------------------------------ main
def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child(argv[1])
        return {}
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=None, help="series to run (default: all): "
                   "image audio sdf video nerf nerf_scene")
    p.add_argument("--sizes", nargs="+", default=[], metavar="NAME=A,B",
                   help="sizes of a series instead of its defaults, e.g. image=256,512 audio=5")
    p.add_argument("--quick", action="store_true", help="tiny sizes and cheaper final evaluations: a check of the "
                   "script in about a minute, not a measurement")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 4; --quick 3); at least 2")
    p.add_argument("--nerf_steps", type=int, default=None, help="steps per NeRF run (default 5; --quick 3)")
    p.add_argument("--project_epochs", type=int, default=300, help="run length of the outside-training share")
    p.add_argument("--project_steps", type=int, default=1000, help="the same for NeRF, in steps")
    p.add_argument("--nerf_datadir", default="synthetic", help="scene of the NeRF series (an LLFF folder, or the "
                   "embedded synthetic scene)")
    p.add_argument("--budget_gb", type=float, default=None, help="memory budget at 2048x2048 (default: the run's "
                   f"max_memory_gb + {PROCESS_ALLOWANCE_GB})")
    p.add_argument("--timeout", type=float, default=None, help="seconds before a run is killed")
    p.add_argument("--keep_runs", default=None, help="copy every run's folder here (default: deleted)")
    p.add_argument("--out", type=Path, default=None, help="folder of the results (default bench/results/"
                   "scaling_<device>, _quick with --quick)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="options passed to every run; the last "
                   "option of the command line, e.g. --extra --max_memory_gb 2")
    args = p.parse_args(argv)
    args.epochs = args.epochs or (3 if args.quick else 4)
    args.nerf_steps = args.nerf_steps or (3 if args.quick else 5)
    if args.epochs < 2 or args.nerf_steps < 2:
        p.error("--epochs and --nerf_steps must be at least 2 (the first epoch is a warm-up)")

    import torch
    from common import machine_line, machine_record, markdown_table, text_table

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    datadir = args.nerf_datadir if args.nerf_datadir == "synthetic" else str(Path(args.nerf_datadir).resolve())
    table = series_table(datadir)  # runs work in temporary folders: a relative path is made absolute
    names = args.tasks or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        p.error(f"unknown series {unknown}; choose from {list(table)}")
    overrides = {}
    for item in args.sizes:
        name, sep, values = item.partition("=")
        if not sep or name not in table:
            p.error(f"--sizes takes NAME=A,B with NAME one of {list(table)}, got {item!r}")
        overrides[name] = [v for v in values.split(",") if v]
    out = args.out or REPO / "bench" / "results" / f"scaling_{args.device}{'_quick' if args.quick else ''}"
    out.mkdir(parents=True, exist_ok=True)

    device = torch.device(args.device)
    print(machine_line(device), flush=True)
    records: List[Dict[str, Any]] = []
    done: Dict[tuple, Dict[str, Any]] = {}  # the same run asked for by two series is run once
    with tempfile.TemporaryDirectory(prefix="scaling_") as scratch:
        for name in names:
            series = table[name]
            for size in overrides.get(name) or (series.quick_sizes if args.quick else series.sizes):
                t0 = time.time()
                run_args = run_arguments(series, size, args)
                key = (series.task, tuple(run_args))
                if key in done:
                    record = dict(done[key], series=name, size=size, label=series.label(size),
                                  same_run_as=f"{done[key]['series']} {done[key]['label']}")
                else:
                    record = done[key] = run_one(series, size, run_args, args, Path(scratch))
                records.append(record)
                (out / "scaling.json").write_text(json.dumps({"partial": True, "runs": records}, indent=1))
                if "error" not in record:
                    print(f"  {name} {record['label']}: {record['samples_per_step']:,} samples/step, "
                          f"{record['time_per_step_s']:.3g} s/step, outside training {record['outside_s']:.1f} s, "
                          f"peak {record['peak_train_mb'] or 0:.0f} MB ({time.time() - t0:.0f} s)", flush=True)
    slopes = fits(records, table)
    v = verdicts(records, slopes, args.budget_gb)
    lines = verdict_lines(v, slopes, args)
    rows = rows_of(records)
    print()
    print(text_table(HEADERS, rows))
    print()
    for line in lines:
        print(line)
    result = {"machine": machine_record(device, argv), "quick": args.quick, "epochs": args.epochs,
              "nerf_steps": args.nerf_steps, "project_epochs": args.project_epochs,
              "project_steps": args.project_steps, "runs": records, "fits": slopes, "verdicts": v,
              "table_markdown": markdown_table(HEADERS, rows)}
    (out / "scaling.json").write_text(json.dumps(result, indent=1))
    write_markdown(out / "scaling.md", result, lines, args)
    plot(records, table, out / "scaling.png", f"scaling, {device.type}" + (" (--quick: not a measurement)"
                                                                         if args.quick else ""))
    print(f"\nwritten {out}/scaling.json, scaling.md, scaling.png")
    return result


if __name__ == "__main__":
    main()
