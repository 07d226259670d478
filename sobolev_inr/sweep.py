"""Run a sweep of configs: one after another, N at a time, or as Ray tasks on a cluster.

    python -m sobolev_inr.sweep configs/activation_study_cpu.txt
    python -m sobolev_inr.sweep configs/set5.txt --jobs 2
    python -m sobolev_inr.sweep configs/set5.txt --ray-address auto

A sweep file is a txt file of ``key = value`` lines and bare config paths:

    task = image_regression              # the folder Experiments/<task>/ whose main.py runs each config
    args = --num_epochs 1000             # extra arguments for every run (optional)
    logging_root = logs/cpu              # where the runs go, relative to the task folder (optional)
    configs/activation_study/relu.txt    # config paths, relative to the task folder
    grid supervision = [val, val_der]    # optional: every combination of the grid values, applied
    grid activations = [sine, relu]      #   to every config listed (or to the task defaults)

Each run is ``python main.py --config <config> <args> <grid values>`` in the task folder, in its
own run directory. The task's main.py skips a run whose ``metrics.json`` exists with the same
config and resumes an interrupted one, so rerunning a sweep only does what is left.
"""
from __future__ import annotations

import argparse
import itertools
import re
import shlex
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .errors import ConfigError, UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO_ROOT / "Experiments"


@dataclass
class RunSpec:
    """One run of a sweep: its task folder, arguments and a short label."""

    task_dir: Path
    argv: List[str]
    label: str


@dataclass
class Sweep:
    name: str
    task: str
    configs: List[str] = field(default_factory=list)
    args: List[str] = field(default_factory=list)
    grid: Dict[str, List[str]] = field(default_factory=dict)
    logging_root: Optional[str] = None

    @property
    def task_dir(self) -> Path:
        return EXPERIMENTS / self.task

    def runs(self, extra_args: Sequence[str] = (), logging_root: Optional[str] = None) -> List[RunSpec]:
        """Every run of the sweep, configs x grid combinations, in file order."""
        root = logging_root or self.logging_root
        keys = list(self.grid)
        combos = list(itertools.product(*(self.grid[k] for k in keys))) or [()]
        specs = []
        for config in self.configs or [None]:
            for combo in combos:
                argv = (["--config", config] if config else []) + list(self.args)
                labels = [Path(config).with_suffix("").as_posix().replace("configs/", "", 1)] if config else []
                for key, value in zip(keys, combo):
                    argv += _override(key, value)
                    labels.append(f"{key}={value}")
                if self.grid and not any(a == "--exp_name" for a in argv):
                    argv += ["--exp_name", "/".join([self.name] + [_slug(l) for l in labels])]
                if root:
                    argv += ["--logging_root", root]
                specs.append(RunSpec(self.task_dir, argv + list(extra_args), " ".join(labels) or self.name))
        return specs


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=/-]+", "_", text)


def _override(key: str, value: str) -> List[str]:
    """A grid value as command-line arguments; booleans become a flag or nothing."""
    if value.lower() in ("true", "yes", "on"):
        return [f"--{key}"]
    if value.lower() in ("false", "no", "off"):
        return []
    return [f"--{key}", *value.split()]


def _list_value(text: str) -> List[str]:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return [v.strip() for v in text[1:-1].split(",") if v.strip()]
    return [text]


def parse_sweep(path: Path) -> Sweep:
    """Reads a sweep file (see the module docstring); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {path} not found")
    sweep = Sweep(name=path.stem, task="")
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        if "=" not in line:
            sweep.configs.append(line)
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key == "task":
            sweep.task = value
        elif key == "args":
            sweep.args += shlex.split(value)
        elif key == "logging_root":
            sweep.logging_root = value
        elif key.startswith("grid "):
            sweep.grid[key[5:].strip()] = _list_value(value)
        else:
            raise ConfigError(f"{where}: unknown sweep key {key!r}; use task, args, logging_root, "
                              f"'grid <option> = [...]', or a bare config path")
    if not sweep.task:
        raise ConfigError(f"{path}: no `task = <name>` line (one of: {', '.join(available_tasks())})")
    if not (sweep.task_dir / "main.py").is_file():
        raise ConfigError(f"{path}: task {sweep.task!r} has no Experiments/{sweep.task}/main.py "
                          f"(available: {', '.join(available_tasks())})")
    missing = [c for c in sweep.configs if not (sweep.task_dir / c).is_file()]
    if missing:
        raise ConfigError(f"{path}: config(s) not found under {sweep.task_dir}: {', '.join(missing)}")
    if not sweep.configs and not sweep.grid:
        raise ConfigError(f"{path}: lists no config and no grid")
    return sweep


def available_tasks() -> List[str]:
    return sorted(p.parent.name for p in EXPERIMENTS.glob("*/main.py"))


@dataclass
class RunResult:
    spec: RunSpec
    returncode: int
    seconds: float
    status: str  # done | skipped | failed
    log: str
    message: str = ""


def _status(returncode: int, output: str) -> str:
    if returncode != 0:
        return "failed"
    return "skipped" if "skipping:" in output else "done"


def run_local(spec: RunSpec, log_file: Path) -> RunResult:
    """Runs one config in a subprocess; its output goes to ``log_file``."""
    start = time.time()
    cmd = [sys.executable, "main.py", *spec.argv, "--no_progress"]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as log:
        log.write("$ " + " ".join(shlex.quote(c) for c in cmd) + f"\n# cwd: {spec.task_dir}\n")
        log.flush()
        proc = subprocess.run(cmd, cwd=spec.task_dir, stdout=log, stderr=subprocess.STDOUT, text=True)
    output = log_file.read_text()
    last = next((l for l in reversed(output.splitlines()) if l.strip()), "")
    return RunResult(spec, proc.returncode, time.time() - start, _status(proc.returncode, output), str(log_file), last)


def _reachable(address: str, timeout: float = 3.0) -> bool:
    """Whether something listens at ``HOST:PORT`` (Ray itself retries for minutes before giving up)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _ray_runner(address: str):
    """Connects to Ray and returns a function that runs a RunSpec as a Ray task (one GPU when the
    cluster has GPUs, else one CPU)."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray-address needs Ray: pip install -e '.[ray]'") from None
    how = "start one with `ray start --head` (add --num-cpus / --num-gpus), or drop --ray-address to run locally"
    if address != "auto" and not _reachable(address):
        raise UserError(f"no Ray cluster answers at {address!r}; {how}")
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except (ConnectionError, RuntimeError) as e:
        raise UserError(f"no Ray cluster at {address!r} ({e}); {how}") from None
    gpus = ray.cluster_resources().get("GPU", 0)

    @ray.remote(num_cpus=0 if gpus else 1, num_gpus=1 if gpus else 0)
    def remote_run(task_dir: str, argv: List[str], log_file: str):
        spec = RunSpec(Path(task_dir), argv, "")
        result = run_local(spec, Path(log_file))
        return result.returncode, result.seconds, result.status, result.message

    def submit(spec: RunSpec, log_file: Path):
        return remote_run.remote(str(spec.task_dir), spec.argv, str(log_file))

    return ray, submit


def run_sweep(sweep: Sweep, jobs: int = 1, extra_args: Sequence[str] = (), logging_root: Optional[str] = None,
              ray_address: Optional[str] = None, dry_run: bool = False) -> List[RunResult]:
    """Runs every run of ``sweep``; returns their results (in sweep order)."""
    specs = sweep.runs(extra_args, logging_root)
    log_dir = sweep.task_dir / (logging_root or sweep.logging_root or "logs") / "sweeps" / sweep.name
    logs = [log_dir / f"{i:03d}.log" for i in range(len(specs))]
    print(f"sweep {sweep.name}: {len(specs)} runs of Experiments/{sweep.task}/main.py; logs in {log_dir}")
    if dry_run:
        for spec in specs:
            print("  python main.py " + " ".join(shlex.quote(a) for a in spec.argv))
        return []
    results: List[Optional[RunResult]] = [None] * len(specs)

    def report(i: int, r: RunResult) -> None:
        results[i] = r
        done = sum(x is not None for x in results)
        print(f"[{done}/{len(specs)}] {r.status:7s} {r.spec.label} ({r.seconds:.1f} s)"
              + (f": {r.message}" if r.status == "failed" else ""), flush=True)

    if ray_address:
        ray, submit = _ray_runner(ray_address)
        refs = {submit(s, l): i for i, (s, l) in enumerate(zip(specs, logs))}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = refs[ready[0]]
            code, seconds, status, message = ray.get(ready[0])
            report(i, RunResult(specs[i], code, seconds, status, str(logs[i]), message))
    else:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(run_local, s, l): i for i, (s, l) in enumerate(zip(specs, logs))}
            for future in as_completed(futures):
                report(futures[future], future.result())
    failed = [r for r in results if r.status == "failed"]
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    print(f"sweep {sweep.name}: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed")
    for r in failed:
        print(f"  failed: {r.spec.label}: see {r.log}")
    return results


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sobolev_inr.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_file", help="the sweep file (e.g. configs/activation_study.txt)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time on this machine")
    p.add_argument("--ray-address", default=None, help="run each config as a Ray task on this cluster (auto | HOST:PORT)")
    p.add_argument("--logging_root", default=None, help="override the sweep's logging_root (relative to the task folder)")
    p.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    p.epilog = "Arguments after `--` are added to every run, e.g. `-- --num_epochs 100 --device cuda`."
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    try:
        sweep = parse_sweep(Path(args.sweep_file))
        results = run_sweep(sweep, args.jobs, extra, args.logging_root, args.ray_address, args.dry_run)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
