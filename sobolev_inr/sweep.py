"""Run a sweep of configs: one after another, N at a time, or as Ray tasks on a cluster.

    python -m sobolev_inr.sweep configs/activation_study_cpu.txt
    python -m sobolev_inr.sweep configs/set5.txt --jobs 2
    python -m sobolev_inr.sweep configs/set5.txt --ray-address auto
    python -m sobolev_inr.sweep my_sweep.txt --experiments path/to/Experiments

A sweep file is a txt file of ``key = value`` lines and bare config paths (``#`` starts a comment):

    task = image_regression              # a registered task (`sobolev-inr list`), or a task folder's name
    experiments = ../Experiments         # optional: the folder of task folders, relative to this file
    args = --num_epochs 1000             # extra arguments for every run (optional)
    logging_root = logs/cpu              # where the runs go, relative to the run folder (optional)
    configs/activation_study/relu.txt    # config paths, relative to the run folder
    configs/activation_study/sine.txt --supervision val   # a config with options of its own; a line
    configs/bird/val/sine.txt --seed 0 --activations \\  # that ends in a backslash goes on on the next
        finer finer finer finer
    grid supervision = [val, val_der]    # optional: every combination of the grid values, applied
    grid activations = [[sine, sine], [tanh, tanh]]   # to every config listed (or to the task defaults)
    seeds = [0, 1, 2]                    # optional: every run once per seed (``grid seed = [...]`` is the same)

A grid is a bracketed list of values. A value is a word (``val``), a list of words (``[sine, sine]``,
passed as ``--activations sine sine``) or a quoted string (``"a, b"``, passed as one argument);
``true``/``false`` give the flag ``--<option>`` or nothing. Grid runs are named after their values
(``<sweep>/<config>/supervision=val/activations=sine-sine``), a config's own options too
(``<sweep>/<config>/supervision=val``), and a seed's run ends in ``/seed=<k>`` (``--seed <k>``); a config line
with its own ``--seed`` runs with that seed only. The report aggregates runs whose names differ only in that
last part (:mod:`sobolev_inr.reporting.summaries`).

A task is looked up in the registry (:mod:`sobolev_inr.tasks`): each run is ``python -m sobolev_inr
<task> train <args>`` and then, for a task with an ``eval`` command, ``... eval <args>`` if training
succeeded, both logged to the run's log. The run folder (where the commands run, and what config paths
and ``logging_root`` are relative to) is the task's folder ``<experiments>/<task>/`` when there is one,
else the sweep file's folder, so a sweep file runs outside a clone of the repository too. A task name
that is not registered is a folder of entry scripts: ``main.py``, else ``train.py`` then ``eval.py``.

The experiments folder is ``--experiments DIR``, else the sweep file's ``experiments`` line, else the
first ``Experiments/`` found walking up from the sweep file's folder, else the one beside this
package (a clone). Before any run starts, every run's arguments are parsed by each step's parser, so
a bad value stops the sweep instead of failing its runs one by one. The task skips a run whose
``metrics.json`` exists with the same config and resumes an interrupted one, so rerunning a sweep only
does what is left.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from .errors import ConfigError, UserError

PACKAGE_EXPERIMENTS = Path(__file__).resolve().parents[1] / "Experiments"
"""The task folders of a clone (the package's parent); absent in an installed package."""

RUN_FLAGS = ["--no_progress"]
"""Added to every entry script's command line (the sweep's logs have no use for progress bars)."""

TRUE_WORDS = ("true", "yes", "on")
FALSE_WORDS = ("false", "no", "off")


@dataclass(frozen=True)
class GridValue:
    """One value of a grid line: the words it puts after ``--<option>`` (one for a scalar)."""

    words: Tuple[str, ...]

    @property
    def is_boolean(self) -> bool:
        return len(self.words) == 1 and self.words[0].lower() in TRUE_WORDS + FALSE_WORDS

    def arguments(self, key: str) -> List[str]:
        """Command-line arguments: ``--key w1 w2 ...``; a true/false word becomes ``--key`` or nothing."""
        if self.is_boolean:
            return [f"--{key}"] if self.words[0].lower() in TRUE_WORDS else []
        return [f"--{key}", *self.words]

    def label(self, key: str) -> str:
        return f"{key}={'-'.join(self.words)}"


_GRID_TOKEN = re.compile(r"""\s*(?:(?P<punct>[\[\],])|"(?P<double>[^"]*)"|'(?P<single>[^']*)'"""
                         r"""|(?P<word>[^\s\[\],"']+)|(?P<quote>["']))""")


def _grid_tokens(text: str) -> List[Tuple[str, str]]:
    """``text`` as (kind, text) tokens: ``[``, ``]``, ``,`` and ("word", word); quotes keep what they hold."""
    tokens, pos, text = [], 0, text.rstrip()
    while pos < len(text):
        match = _GRID_TOKEN.match(text, pos)
        if match.group("quote"):
            raise ValueError(f"unterminated {match.group('quote')} quote")
        punct = match.group("punct")
        tokens.append((punct, punct) if punct else ("word", next(g for g in match.group("double", "single", "word")
                                                                  if g is not None)))
        pos = match.end()
    return tokens


def parse_grid_values(text: str) -> List[GridValue]:
    """The values of a grid line: ``[a, b]`` -> a, b; ``[[sine, sine], [tanh, tanh]]`` -> two lists.

    Inside a value, words separated by spaces make a list too (``[sine sine, tanh]``). Raises
    ValueError saying what is wrong (unbalanced brackets, an empty list or value, lists nested deeper).
    """
    tokens = _grid_tokens(text)
    if not tokens or tokens[0][0] != "[":
        raise ValueError("a grid is a bracketed list, e.g. [a, b] or [[sine, sine], [tanh, tanh]]")
    if tokens[1:2] == [("]", "]")]:
        raise ValueError("empty list")
    values, pos = [], 1
    while True:
        words, pos = _grid_value(tokens, pos)
        values.append(GridValue(tuple(words)))
        closed, pos = _grid_separator(tokens, pos)
        if closed:
            break
    if pos < len(tokens):
        raise ValueError("unbalanced brackets: text after the closing ']'")
    return values


def _grid_value(tokens: List[Tuple[str, str]], pos: int) -> Tuple[List[str], int]:
    """The words of the value at ``tokens[pos]`` (a list ``[w, w]`` or bare words) and the position after it."""
    if pos < len(tokens) and tokens[pos][0] == "[":
        words, pos = [], pos + 1
        while True:
            element, pos = _grid_words(tokens, pos, nested=True)
            if not element:
                raise ValueError("empty list" if not words and tokens[pos:pos + 1] == [("]", "]")] else
                                 "empty list item (two commas in a row, or a trailing comma)")
            words += element
            closed, pos = _grid_separator(tokens, pos)
            if closed:
                break
        if pos < len(tokens) and tokens[pos][0] == "word":
            raise ValueError("a value mixes a list and words")
        return words, pos
    words, pos = _grid_words(tokens, pos, nested=False)
    if not words:
        raise ValueError("empty value (two commas in a row, or a trailing comma)")
    return words, pos


def _grid_words(tokens: List[Tuple[str, str]], pos: int, nested: bool) -> Tuple[List[str], int]:
    """The run of words from ``tokens[pos]`` and the position after it; a ``[`` there is an error."""
    words = []
    while pos < len(tokens) and tokens[pos][0] == "word":
        words.append(tokens[pos][1])
        pos += 1
    if pos < len(tokens) and tokens[pos][0] == "[":
        raise ValueError("lists nest at most two deep" if nested else "a value mixes words and a list")
    return words, pos


def _grid_separator(tokens: List[Tuple[str, str]], pos: int) -> Tuple[bool, int]:
    """Reads the ``,`` or ``]`` at ``tokens[pos]``: (whether it closed the list, the position after it)."""
    if pos == len(tokens):
        raise ValueError("unbalanced brackets: missing ']'")
    return tokens[pos][0] == "]", pos + 1


def task_scripts(task_dir: Path) -> Tuple[str, ...]:
    """The entry scripts one run executes, in order: ``main.py``, else ``train.py`` then ``eval.py``."""
    if (task_dir / "main.py").is_file():
        return ("main.py",)
    if (task_dir / "train.py").is_file():
        return ("train.py", "eval.py") if (task_dir / "eval.py").is_file() else ("train.py",)
    return ()


def available_tasks(experiments: Path = PACKAGE_EXPERIMENTS) -> List[str]:
    """The task folders under ``experiments``: those with a ``main.py`` or a ``train.py``."""
    folder = Path(experiments)
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and task_scripts(p)) if folder.is_dir() else []


def find_experiments(sweep_file: Path, explicit: Optional[Path] = None, required: bool = True) -> Optional[Path]:
    """The folder of task folders: ``explicit`` if given, else the first ``Experiments/`` walking up
    from the sweep file's folder, else the package's parent's; when none exists, None, or (``required``,
    for a task that is only a folder) a clear error."""
    if explicit is not None:
        if not Path(explicit).is_dir():
            raise ConfigError(f"{sweep_file}: experiments folder {explicit} not found")
        return Path(explicit)
    start = Path(os.path.abspath(sweep_file)).parent
    for folder in (start, *start.parents):
        if (folder / "Experiments").is_dir():
            return folder / "Experiments"
    if PACKAGE_EXPERIMENTS.is_dir():
        return PACKAGE_EXPERIMENTS
    if not required:
        return None
    raise ConfigError(f"{sweep_file}: no Experiments/ folder in {start} or any folder above it, nor beside the "
                      f"sobolev_inr package ({PACKAGE_EXPERIMENTS}); point at the task folders with "
                      f"--experiments DIR or an `experiments = DIR` line in the sweep file")


@dataclass
class RunSpec:
    """One run of a sweep: the folder it runs in, its arguments, a short label, and its steps: the
    command line before the arguments of each (``-m sobolev_inr <task> train``, or a script's name)."""

    work_dir: Path
    argv: List[str]
    label: str
    steps: Tuple[Tuple[str, ...], ...] = (("main.py",),)


@dataclass
class Sweep:
    """A parsed sweep file: one task, its configs and grid, and where the task folders are."""

    name: str
    task: str
    experiments: Optional[Path] = PACKAGE_EXPERIMENTS
    path: Optional[Path] = None
    configs: List[str] = field(default_factory=list)
    args: List[str] = field(default_factory=list)
    grid: Dict[str, List[GridValue]] = field(default_factory=dict)
    grid_lines: Dict[str, int] = field(default_factory=dict)  # option -> its line in the sweep file
    logging_root: Optional[str] = None
    config_args: List[List[str]] = field(default_factory=list)  # per config: the options after its path
    seeds: List[int] = field(default_factory=list)  # the seed axis: every run once per seed
    seeds_line: int = 0

    @property
    def registered(self) -> bool:
        """Whether the task is a registered one (else a folder of entry scripts)."""
        from .tasks import task_names

        return self.task in task_names()

    @property
    def task_dir(self) -> Optional[Path]:
        """The task's folder ``<experiments>/<task>/``, if there is one."""
        folder = self.experiments / self.task if self.experiments is not None else None
        return folder if folder is not None and folder.is_dir() else None

    @property
    def work_dir(self) -> Path:
        """Where the runs run: the task's folder, else (a registered task outside a clone) the sweep file's."""
        if self.task_dir is not None:
            return self.task_dir
        return Path(os.path.abspath(self.path)).parent if self.path is not None else Path.cwd()

    @property
    def commands(self) -> Tuple[str, ...]:
        """What each run does in order: the registered task's train (then eval), or the folder's scripts."""
        if self.registered:
            from .tasks import get_task

            return tuple(c for c in ("train", "eval") if c in get_task(self.task).commands)
        return task_scripts(self.task_dir) if self.task_dir is not None else ()

    @property
    def steps(self) -> Tuple[Tuple[str, ...], ...]:
        if self.registered:
            return tuple(("-m", "sobolev_inr", self.task, command) for command in self.commands)
        return tuple((script,) for script in self.commands)

    def runs(self, extra_args: Sequence[str] = (), logging_root: Optional[str] = None) -> List[RunSpec]:
        """Every run of the sweep, configs x grid combinations x seeds, in file order; grid and seeded runs, and
        configs with options of their own, get distinct names (a seed's run ends in ``/seed=<k>``)."""
        root = logging_root or self.logging_root
        keys = list(self.grid)
        combos = list(itertools.product(*(self.grid[k] for k in keys))) or [()]
        if self.seeds and "--seed" in [*self.args, *extra_args]:
            raise ConfigError(f"{self.path or self.name}: the sweep has a seed axis (line {self.seeds_line}); "
                              f"--seed in its args or after -- would give every seed's run the same seed")
        specs, named = [], {}
        config_args = self.config_args or [[] for _ in self.configs]
        for config, own in zip(self.configs, config_args) if self.configs else [(None, [])]:
            own_seed, own = _pop_option(own, "seed")
            seeds = [own_seed] if own_seed is not None else self.seeds or [None]
            for combo, seed in itertools.product(combos, seeds):
                argv = (["--config", config] if config else []) + list(self.args) + list(own)
                labels = [Path(config).with_suffix("").as_posix().replace("configs/", "", 1)] if config else []
                labels += _option_labels(own)
                for key, value in zip(keys, combo):
                    argv += value.arguments(key)
                    labels.append(value.label(key))
                if seed is not None:
                    argv += ["--seed", str(seed)]
                    labels.append(f"seed={seed}")
                label = " ".join(labels) or self.name
                exp_name = None
                if "--exp_name" in argv:  # named by the config line or the args: a seed's run still gets its own
                    if seed is not None:
                        at = len(argv) - 1 - argv[::-1].index("--exp_name")
                        exp_name = argv[at + 1] = f"{argv[at + 1].rstrip('/')}/seed={seed}"
                elif self.grid or own or seed is not None:
                    exp_name = "/".join([self.name] + [_slug(l) for l in labels])
                    argv += ["--exp_name", exp_name]
                if exp_name is not None:
                    if exp_name in named:
                        raise ConfigError(f"{self.path or self.name}: runs {named[exp_name]!r} and {label!r} would "
                                          f"share the run directory {exp_name!r}; make their grid values or options "
                                          f"differ")
                    named[exp_name] = label
                if root:
                    argv += ["--logging_root", root]
                specs.append(RunSpec(self.work_dir, argv + list(extra_args), label, self.steps))
        return specs


def _pop_option(args: Sequence[str], key: str) -> Tuple[Optional[int], List[str]]:
    """``args`` without ``--key VALUE`` and that value as an int (None when absent)."""
    args = list(args)
    if f"--{key}" not in args:
        return None, args
    at = args.index(f"--{key}")
    return int(args[at + 1]), args[:at] + args[at + 2:]


def _option_labels(args: Sequence[str]) -> List[str]:
    """``--key w1 w2 --flag`` -> ``["key=w1-w2", "flag"]``: a config line's options as name parts."""
    labels: List[str] = []
    for arg in args:
        if arg.startswith("--"):
            labels.append(arg[2:])
        else:
            labels[-1] += ("=" if "=" not in labels[-1] else "-") + arg
    return labels


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=/-]+", "_", text)


SWEEP_KEY = re.compile(r"^[A-Za-z_]\w*(\s+[A-Za-z0-9][\w-]*)?\s*=")
"""A ``key = value`` line (``task = ...``, ``grid <option> = ...``); any other line is a config path."""


def _config_line(line: str, where: str) -> Tuple[str, List[str]]:
    """A config line: its path and the options after it (``configs/a.txt --supervision val``)."""
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise ConfigError(f"{where}: {line}: {e}") from None
    config, options = words[0], []
    for word in words[1:]:  # --key=value as --key value, so that --seed and --exp_name are found either way
        options += word.split("=", 1) if word.startswith("--") and "=" in word else [word]
    if options and not options[0].startswith("--"):
        raise ConfigError(f"{where}: after the config path {config!r} come its options (--key value ...), "
                          f"not {options[0]!r}")
    for key in ("--seed", "--exp_name"):
        if options.count(key) > 1:
            raise ConfigError(f"{where}: {key} given twice")
    if "--seed" in options:
        at = options.index("--seed")
        if not re.fullmatch(r"\d+", options[at + 1] if at + 1 < len(options) else ""):
            raise ConfigError(f"{where}: --seed takes a non-negative integer")
    return config, options


def _parse_seeds(value: str, where: str) -> List[int]:
    """``[0, 1, 2]`` -> [0, 1, 2]: distinct non-negative integers."""
    try:
        values = parse_grid_values(value)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    words = [" ".join(v.words) for v in values]
    bad = next((w for w in words if not re.fullmatch(r"\d+", w)), None)
    if bad is not None:
        raise ConfigError(f"{where}: a seed is a non-negative integer, not {bad!r}")
    seeds = [int(w) for w in words]
    twice = next((k for i, k in enumerate(seeds) if k in seeds[:i]), None)
    if twice is not None:
        raise ConfigError(f"{where}: seed {twice} is listed twice")
    return seeds


def _logical_lines(text: str) -> Iterator[Tuple[int, str]]:
    """(number of its first line, text) of each line without its comment; a line ending in ``\\`` goes on
    on the next."""
    pending, first = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if pending:
            line, number = f"{pending} {line}".strip(), first
        if line.endswith("\\"):
            pending, first = line[:-1].strip(), number
            continue
        pending = ""
        yield number, line
    if pending:
        yield first, pending


def parse_sweep(path: Path, experiments: Optional[Path] = None) -> Sweep:
    """Reads a sweep file (see the module docstring); errors name the file and line.

    ``experiments`` (``--experiments``) overrides the file's ``experiments`` line and the search.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {path} not found")
    sweep = Sweep(name=path.stem, task="", path=path)
    experiments_line = None
    for number, line in _logical_lines(path.read_text()):
        if not line:
            continue
        where = f"{path}:{number}"
        if "=" not in line or not SWEEP_KEY.match(line):
            config, options = _config_line(line, where)
            sweep.configs.append(config)
            sweep.config_args.append(options)
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key == "seeds" or (key.startswith("grid ") and key[5:].strip() == "seed"):
            if sweep.seeds_line:
                raise ConfigError(f"{where}: {key} is already set on line {sweep.seeds_line}"
                                  + ("" if key == "seeds" else " (`grid seed` is the `seeds` axis)"))
            sweep.seeds, sweep.seeds_line = _parse_seeds(value, f"{where}: {key} = {value}"), number
            continue
        if key == "task":
            sweep.task = value
        elif key == "experiments":
            experiments_line = path.parent / value
        elif key == "args":
            sweep.args += shlex.split(value)
        elif key == "logging_root":
            sweep.logging_root = value
        elif key.startswith("grid "):
            option = key[5:].strip()
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", option):
                raise ConfigError(f"{where}: {option!r} is not an option name; write `grid <option> = [a, b]`")
            if option in sweep.grid:
                raise ConfigError(f"{where}: grid {option} is already set on line {sweep.grid_lines[option]}")
            try:
                values = parse_grid_values(value)
            except ValueError as e:
                raise ConfigError(f"{where}: grid {option} = {value}: {e}") from None
            twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
            if twice:
                raise ConfigError(f"{where}: grid {option} lists {' '.join(twice.words)!r} twice")
            sweep.grid[option], sweep.grid_lines[option] = values, number
        else:
            raise ConfigError(f"{where}: unknown sweep key {key!r}; use task, experiments, args, logging_root, "
                              f"seeds, 'grid <option> = [...]', or a config path (with its own options after it)")
    from .tasks import task_names

    sweep.experiments = find_experiments(path, experiments if experiments is not None else experiments_line,
                                         required=sweep.task not in task_names())
    folders = available_tasks(sweep.experiments) if sweep.experiments is not None else []
    tasks = ", ".join(sorted(set(task_names()) | set(folders)))
    if not sweep.task:
        raise ConfigError(f"{path}: no `task = <name>` line (tasks: {tasks})")
    if not sweep.commands:
        raise ConfigError(f"{path}: task {sweep.task!r} is not a registered task, and has no main.py or train.py in "
                          f"{sweep.experiments / sweep.task} (tasks: {tasks})")
    missing = [c for c in sweep.configs if not (sweep.work_dir / c).is_file()]
    if missing:
        raise ConfigError(f"{path}: config(s) not found under {sweep.work_dir}: {', '.join(missing)}")
    if not sweep.configs and not sweep.grid and not sweep.seeds:
        raise ConfigError(f"{path}: lists no config, no grid and no seeds")
    return sweep


@contextlib.contextmanager
def _working_directory(folder: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def load_config_parser(script: Path):
    """The parser that ``script`` reads its arguments with, from its module-level ``config_parser()``.

    The script is imported under a private name (its ``__main__`` block does not run); the
    ``sys.path`` entries it adds are removed again.
    """
    name = f"_sweep_entry_{script.parent.name}_{script.stem}"
    module_spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(module_spec)
    saved_path = list(sys.path)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
        if not callable(getattr(module, "config_parser", None)):
            raise ConfigError(f"{script} has no module-level config_parser(), which the sweep needs to check "
                              f"each run's arguments before starting any")
        return module.config_parser()
    except UserError:
        raise
    except (Exception, SystemExit) as e:
        raise UserError(f"cannot load {script} to check the runs' arguments ({type(e).__name__}: {e}); "
                        f"`python {script.name} --help` in {script.parent} shows the traceback") from None
    finally:
        sys.path[:] = saved_path
        sys.modules.pop(name, None)


def _check_grid_options(sweep: Sweep, parser, step: str) -> None:
    """Each grid option exists and takes the kind of value its grid gives (a flag, one value or a list)."""
    actions = getattr(parser, "_option_string_actions", None)  # argparse's own table; absent: argv check only
    if actions is None:
        return
    if (sweep.seeds or any("--seed" in a for a in sweep.config_args)) and "--seed" not in actions:
        raise ConfigError(f"{sweep.path}:{sweep.seeds_line or ''}: the sweep sets seeds, but {step} has no option "
                          f"--seed")
    for key, values in sweep.grid.items():
        where = f"{sweep.path}:{sweep.grid_lines[key]}: grid {key}"
        action = actions.get(f"--{key}")
        if action is None:
            raise ConfigError(f"{where}: {step} has no option --{key}")
        for value in values:
            shown = " ".join(value.words)
            if action.nargs == 0 and not value.is_boolean:
                raise ConfigError(f"{where}: --{key} is a flag; its grid is [false, true], not {shown!r}")
            if action.nargs != 0 and value.is_boolean:
                raise ConfigError(f"{where}: {shown!r} would make --{key} a bare flag, but it takes a value")
            if action.nargs in (None, "?") and len(value.words) > 1:
                raise ConfigError(f"{where}: [{', '.join(value.words)}] is a list, but --{key} takes one value")


def _step_parser(sweep: Sweep, command: str):
    """The parser of one step: the registered task's command's, or the entry script's ``config_parser()``."""
    if sweep.registered:
        from .tasks import get_task

        return get_task(sweep.task).parser(command)
    return load_config_parser(sweep.task_dir / command)


def _step_name(sweep: Sweep, command: str) -> str:
    return f"{sweep.task} {command}" if sweep.registered else command


def check_runs(sweep: Sweep, specs: Sequence[RunSpec]) -> None:
    """Parses every run's arguments with each step's parser, in the run folder (config paths are
    relative to it), before any run starts: a bad value stops the sweep with a ConfigError naming the
    run instead of failing runs one by one."""
    for command in sweep.commands:
        script = _step_name(sweep, command)
        with _working_directory(sweep.work_dir):
            parser = _step_parser(sweep, command)
            _check_grid_options(sweep, parser, script)
            for spec in specs:
                messages = io.StringIO()
                try:
                    with contextlib.redirect_stderr(messages), contextlib.redirect_stdout(io.StringIO()):
                        parser.parse_args(list(spec.argv) + RUN_FLAGS)
                except SystemExit as e:
                    lines = [line for line in messages.getvalue().splitlines() if line.strip()]
                    reason = re.sub(r"^(\S+: )?error: ", "", lines[-1]) if lines else f"exit status {e.code}"
                    raise ConfigError(f"{sweep.path}: run {spec.label!r}: {script} rejects its arguments: "
                                      f"{reason}") from None


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
    """Runs the steps of one run in order, in subprocesses, all output going to ``log_file``; a step
    that fails ends the run (``eval`` does not run after a failed ``train``)."""
    start = time.time()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    returncode = 0
    with open(log_file, "w") as log:
        for step in spec.steps:
            cmd = [sys.executable, *step, *spec.argv, *RUN_FLAGS]
            log.write("$ " + " ".join(shlex.quote(c) for c in cmd) + f"\n# cwd: {spec.work_dir}\n")
            log.flush()
            returncode = subprocess.run(cmd, cwd=spec.work_dir, stdout=log, stderr=subprocess.STDOUT).returncode
            if returncode != 0:
                break
    output = log_file.read_text()
    last = next((l for l in reversed(output.splitlines()) if l.strip()), "")
    return RunResult(spec, returncode, time.time() - start, _status(returncode, output), str(log_file), last)


def _reachable(address: str, timeout: float = 3.0) -> bool:
    """Whether something listens at ``HOST:PORT`` (Ray itself retries for minutes before giving up)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _ray_runner(address: str):
    """Connects to Ray and returns a function that runs a RunSpec (all its scripts) as one Ray task
    (one GPU when the cluster has GPUs, else one CPU)."""
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
    def remote_run(work_dir: str, argv: List[str], steps: Tuple[Tuple[str, ...], ...], log_file: str):
        result = run_local(RunSpec(Path(work_dir), argv, "", steps), Path(log_file))
        return result.returncode, result.seconds, result.status, result.message

    def submit(spec: RunSpec, log_file: Path):
        return remote_run.remote(str(spec.work_dir), spec.argv, spec.steps, str(log_file))

    return ray, submit


def run_sweep(sweep: Sweep, jobs: int = 1, extra_args: Sequence[str] = (), logging_root: Optional[str] = None,
              ray_address: Optional[str] = None, dry_run: bool = False) -> List[RunResult]:
    """Runs every run of ``sweep``; returns their results (in sweep order).

    Every run's arguments are checked (:func:`check_runs`) before the first starts.
    """
    specs = sweep.runs(extra_args, logging_root)
    check_runs(sweep, specs)
    log_dir = sweep.work_dir / (logging_root or sweep.logging_root or "logs") / "sweeps" / sweep.name
    logs = [log_dir / f"{i:03d}.log" for i in range(len(specs))]
    print(f"sweep {sweep.name}: {len(specs)} runs of {sweep.task} in {sweep.work_dir} "
          f"({' then '.join(_step_name(sweep, c) for c in sweep.commands)}); logs in {log_dir}")
    if dry_run:
        for spec in specs:
            for step in spec.steps:
                print("  python " + " ".join(shlex.quote(a) for a in [*step, *spec.argv, *RUN_FLAGS]))
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
    p.add_argument("--ray-address", default=None,
                   help="run each config as a Ray task on this cluster (auto | HOST:PORT)")
    p.add_argument("--logging_root", default=None,
                   help="override the sweep's logging_root (relative to the run folder)")
    p.add_argument("--experiments", type=Path, default=None,
                   help="the folder of task folders, where runs run and configs are found (default: the sweep "
                        "file's `experiments` line, else the first Experiments/ above the sweep file, else the one "
                        "beside the package, else the sweep file's folder)")
    p.add_argument("--dry-run", action="store_true", help="check and print the commands, and stop")
    p.epilog = "Arguments after `--` are added to every run, e.g. `-- --num_epochs 100 --device cuda`."
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    try:
        sweep = parse_sweep(Path(args.sweep_file), args.experiments)
        results = run_sweep(sweep, args.jobs, extra, args.logging_root, args.ray_address, args.dry_run)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
