"""Experiment summaries a report adds beside its one-row-per-run table, where the papers publish a table over
several runs: SPDER's image protocol at steps 25 / 100 / 500 (paper 003, Table 1), super-resolution against
bicubic per factor (paper 004, Table 1) and derivative precision over images (paper 000, Table 6); and the runs of
one config over several seeds (named ``.../seed=<k>`` by the sweep's seed axis): mean ± standard deviation per
group, and for a val / val_der pair the paired gain with its Student t interval.

Each summary finds its runs among the collected ones (by the config folders in ``exp_name``, or the task),
returns markdown lines with the published numbers beside ours (``protocol_tables`` and the per-run entries
of ``reference_numbers.json``), and draws one figure. A summary whose runs are absent returns nothing.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import AbstractSet, Dict, List, Optional, Sequence, Tuple

from ..training.runs import read_scalars
from .references import match_reference

SPDER_RUN = re.compile(r"(?:^|/)spder/(val|val_der)/([a-z_]+)(?:/|$)")
PRECISION_RUN = re.compile(r"(?:^|/)derivative_precision/(val|val_der|val_der_fullres)/([a-z_]+)(?:/|$)")
MODEL_LABELS = {"sine": "SIREN", "relu_pos": "ReLU + PE", "spder": "SPDER (sqrt)", "spder_log": "SPDER (log)",
                "spder_arctan": "SPDER (arctan)", "spder_sqrt_relu": "SPDER (sqrt relu)"}
SUPERVISION_LABELS = {"val": "value", "val_der": "value + derivative"}
SKIMAGE_SOURCE = "scikit-image "
"""How an image task records a scikit-image source (:func:`sobolev_inr.data.images.load_image`)."""


def summarised(run: Dict) -> bool:
    """Whether a run belongs to one of these summaries (whose comparisons replace the report's generic ones)."""
    name = str(run.get("exp_name", ""))
    return run.get("task") == "super_resolution" or bool(SPDER_RUN.search(name) or PRECISION_RUN.search(name))


def model_key(run: Dict) -> str:
    """``sine``, ``relu_pos``, ``spder``, ... from a run's activations and encoding (the config names)."""
    acts = run.get("activations") or ["?"]
    name = acts[0] if len(set(acts)) == 1 else ",".join(acts)
    return name + ("_pos" if run.get("encoding") == "positional" else "")


def signal_name(run: Dict) -> str:
    """The image, clip or scene a run fitted, by file stem ("baby", "gt_bach", "scikit-image camera" -> "camera",
    ".../nerf_llff_data/fern" -> "fern", "synthetic clip (33 frames, ...)" -> "synthetic clip")."""
    source = str(run.get("image") or run.get("audio") or run.get("video") or run.get("scene") or "?")
    source = source[len(SKIMAGE_SOURCE):] if source.startswith(SKIMAGE_SOURCE) else source
    source = re.sub(r" \(.*\)$", "", source)  # an embedded signal's description
    return Path(source.split(":")[-1]).stem


def _fmt(value: Optional[float], digits: int = 2) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if value > 1.5 or digits != 2 else f"{value:.4f}"


def _at_steps(run: Dict, name: str, steps: Sequence[int]) -> List[Optional[float]]:
    """The scalar ``name`` of a run at each of ``steps`` (None where it was not logged)."""
    path = Path(run["run_dir"]) / "scalars.csv"
    series = read_scalars(path).get(name) if path.exists() else None
    if not series:
        return [None] * len(steps)
    logged = dict(zip(*series))
    return [logged.get(s) for s in steps]


# ----------------------------------------------------------------------------------- SPDER's Table 1
def spder_runs(runs: Sequence[Dict]) -> Dict[Tuple[str, str], List[Dict]]:
    """{(model, supervision): runs} of the SPDER protocol (``.../spder/<val|val_der>/<model>``)."""
    groups: Dict[Tuple[str, str], List[Dict]] = {}
    for m in runs:
        hit = SPDER_RUN.search(str(m.get("exp_name", "")))
        if hit and m.get("task") == "image_regression":
            groups.setdefault((hit.group(2), hit.group(1)), []).append(m)
    return groups


def _mean_at_steps(members: Sequence[Dict], name: str, steps: Sequence[int]) -> List[Optional[float]]:
    values = [_at_steps(m, name, steps) for m in members]
    return [mean(v[i] for v in values) if all(v[i] is not None for v in values) else None for i in range(len(steps))]


def spder_markdown(runs: Sequence[Dict], tables: Dict) -> List[str]:
    groups = spder_runs(runs)
    if not groups:
        return []
    table = tables["spder_table1"]
    steps = table["steps"]
    head = " / ".join(str(s) for s in steps)
    lines = [f"### SPDER's image protocol: PSNR (dB, [-1, 1] range) and rho_AG at steps {head}", "",
             "| model | supervision | images | PSNR, ours | PSNR, paper | rho_AG, ours | rho_AG, paper |",
             "|---|---|---|---|---|---|---|"]
    order = list(MODEL_LABELS)
    for (model, sup), members in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order
                                                                         else len(order), kv[0][0], kv[0][1])):
        psnr = _mean_at_steps(members, "eval/psnr_full", steps)
        rho = _mean_at_steps(members, "eval/rho_ag_full", steps)
        paper = table["rows"].get(model, {}) if sup == "val" else {}
        images = ", ".join(sorted({signal_name(m) for m in members}))
        lines.append(f"| {MODEL_LABELS.get(model, model)} | {SUPERVISION_LABELS.get(sup, sup)} | {images} | "
                     f"{' / '.join(_fmt(v) for v in psnr)} | {' / '.join(_fmt(v) for v in paper.get('psnr', []))} | "
                     f"{' / '.join(_fmt(v, 5) for v in rho)} | {' / '.join(_fmt(v, 5) for v in paper.get('rho_ag', []))} |")
    lines += ["", f"Paper: {table['source']}; ours: the mean over the images listed."]
    return lines


def draw_spder_curves(runs: Sequence[Dict], tables: Dict, path: Path) -> bool:
    """PSNR and 1 - rho_AG against the step, one colour per model, solid value-only and dashed value +
    derivative; Table 1's points as crosses."""
    from matplotlib import colormaps

    from .plots import figure

    groups = spder_runs(runs)
    if not groups:
        return False
    table = tables["spder_table1"]
    models = [m for m in MODEL_LABELS if any(k[0] == m for k in groups)]
    colours = {m: colormaps["tab10"](i % 10) for i, m in enumerate(models)}
    fig, axes = figure(1, 2, (13, 4.6))
    for (model, sup), members in groups.items():
        series = [read_scalars(Path(m["run_dir"]) / "scalars.csv") for m in members]
        for ax, name, transform in ((axes[0, 0], "eval/psnr_full", lambda v: v), (axes[0, 1], "eval/rho_ag_full",
                                                                                   lambda v: max(1.0 - v, 1e-12))):
            curves = [dict(zip(*s[name])) for s in series if name in s]
            if not curves:
                continue
            steps = sorted(set.intersection(*(set(c) for c in curves)))  # logged by every image's run
            ax.plot(steps, [transform(mean(c[t] for c in curves)) for t in steps], color=colours.get(model, "k"),
                    linestyle="-" if sup == "val" else "--",
                    label=f"{MODEL_LABELS.get(model, model)}, {SUPERVISION_LABELS.get(sup, sup)}")
    for model, row in table["rows"].items():
        if model in colours:
            axes[0, 0].plot(table["steps"], row["psnr"], "x", color=colours[model], markersize=9, mew=2)
            axes[0, 1].plot(table["steps"], [1 - r for r in row["rho_ag"]], "x", color=colours[model], markersize=9, mew=2)
    axes[0, 0].set_ylabel("PSNR (dB, [-1, 1] range)")
    axes[0, 1].set_ylabel("1 - rho_AG")
    axes[0, 1].set_yscale("log")
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=2)
    images = ", ".join(sorted({signal_name(m) for ms in groups.values() for m in ms}))
    fig.suptitle(f"SPDER's image protocol on {images} (lines: ours, mean over images; crosses: paper 003 Table 1, DIV2K)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


# ------------------------------------------------------------------------------- super-resolution
def super_resolution_runs(runs: Sequence[Dict]) -> List[Dict]:
    return sorted((m for m in runs if m.get("task") == "super_resolution"),
                  key=lambda m: (m.get("sr_factor", 0), list(MODEL_LABELS).index(model_key(m))
                                 if model_key(m) in MODEL_LABELS else 99, m.get("supervision", "")))


def super_resolution_markdown(runs: Sequence[Dict], references: Sequence[Dict]) -> List[str]:
    members = super_resolution_runs(runs)
    if not members:
        return []
    lines = ["### Super-resolution: PSNR (dB, peak 1) and SSIM on the original, beside bicubic", "",
             "| factor | model | supervision | PSNR, ours | paper | SSIM, ours | paper | bicubic PSNR, ours | paper | "
             "steps | low / high resolution |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in members:
        ref = match_reference(str(m.get("exp_name", "")), references) or {}
        lines.append(f"| x{m.get('sr_factor')} | {MODEL_LABELS.get(model_key(m), model_key(m))} | "
                     f"{SUPERVISION_LABELS.get(m.get('supervision'), m.get('supervision'))} | "
                     f"{_fmt(m.get('psnr_heldout'))} | {_fmt(ref.get('psnr_heldout'))} | "
                     f"{_fmt(m.get('ssim_heldout'), 3)} | {_fmt(ref.get('ssim_heldout'), 3)} | "
                     f"{_fmt(m.get('psnr_bicubic_heldout'))} | {_fmt(ref.get('psnr_bicubic_heldout'))} | {m.get('steps')} | "
                     f"{'x'.join(map(str, m.get('low_shape', [])))} / {'x'.join(map(str, m.get('high_shape', [])))} |")
    sources = sorted({r["source"] for m in members for r in [match_reference(str(m.get("exp_name", "")), references)]
                      if r and "psnr_bicubic_heldout" in r})
    if sources:
        lines += ["", "Paper: " + "; ".join(sources) + "."]
    return lines


def draw_super_resolution(runs: Sequence[Dict], references: Sequence[Dict], path: Path) -> bool:
    """PSNR against the factor: a line per (model, supervision), bicubic in black, the paper's as crosses."""
    from matplotlib import colormaps

    from .plots import figure
    members = super_resolution_runs(runs)
    if not members:
        return False
    fig, axes = figure(1, 1, (7.5, 4.6))
    ax = axes[0, 0]
    models = [m for m in MODEL_LABELS if any(model_key(r) == m for r in members)]
    colours = {m: colormaps["tab10"](i % 10) for i, m in enumerate(models)}
    lines: Dict[Tuple[str, str], List[Tuple[int, float]]] = {}
    bicubic: Dict[int, float] = {}
    for m in members:
        lines.setdefault((model_key(m), m["supervision"]), []).append((m["sr_factor"], m["psnr_heldout"]))
        bicubic[m["sr_factor"]] = m["psnr_bicubic_heldout"]
        ref = match_reference(str(m.get("exp_name", "")), references)
        if ref and "psnr_bicubic_heldout" in ref:
            ax.plot(m["sr_factor"], ref["psnr_heldout"], "x", color=colours[model_key(m)], markersize=9, mew=2)
            ax.plot(m["sr_factor"], ref["psnr_bicubic_heldout"], "x", color="k", markersize=9, mew=2)
    for (model, sup), points in sorted(lines.items()):
        points.sort()
        ax.plot(*zip(*points), "o-" if sup == "val" else "s--", color=colours.get(model, "k"),
                label=f"{MODEL_LABELS.get(model, model)}, {SUPERVISION_LABELS.get(sup, sup)}")
    ax.plot(*zip(*sorted(bicubic.items())), "k^-", label="bicubic")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(bicubic), [f"x{f}" for f in sorted(bicubic)])
    ax.set_xlabel("super-resolution factor")
    ax.set_ylabel("PSNR on the original (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    shape = members[0].get("high_shape", [])
    ax.set_title(f"super-resolution of a {'x'.join(map(str, shape))} image (crosses: paper 004 Table 1, 512x512)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


# ----------------------------------------------------------------------------- derivative precision
def precision_runs(runs: Sequence[Dict]) -> Dict[Tuple[str, str], Dict[str, Dict]]:
    """{(model, supervision): {image: run}} of the derivative-precision protocol."""
    groups: Dict[Tuple[str, str], Dict[str, Dict]] = {}
    for m in runs:
        hit = PRECISION_RUN.search(str(m.get("exp_name", "")))
        if hit:
            groups.setdefault((hit.group(2), hit.group(1)), {})[signal_name(m)] = m
    return groups


PRECISION_LABELS = {"val": "value", "val_der": "+ derivatives of the downsampled image",
                    "val_der_fullres": "+ derivatives at full resolution"}


def precision_markdown(runs: Sequence[Dict], tables: Dict) -> List[str]:
    groups = precision_runs(runs)
    if not groups:
        return []
    table = tables["derivative_precision_table6"]
    images = sorted({i for g in groups.values() for i in g})
    lines = ["### Derivative precision: held-out luma PSNR (dB) and SSIM", "",
             "| model | supervision | mean PSNR, ours | Table 6 | mean SSIM, ours | Table 6 | "
             + " | ".join(images) + " | epochs |", "|---|---|---|---|---|---|" + "---|" * len(images) + "---|"]
    for (model, sup), members in sorted(groups.items(), key=lambda kv: (kv[0][0] != "relu_pos", list(PRECISION_LABELS).index(kv[0][1]))):
        psnrs = [members[i].get("psnr_luma_heldout") for i in images if i in members]
        ssims = [members[i].get("ssim_heldout") for i in images if i in members]
        paper = table["rows"].get(f"{model}/{sup}", {})
        lines.append(f"| {MODEL_LABELS.get(model, model)} | {PRECISION_LABELS[sup]} | {_fmt(mean(psnrs))} | "
                     f"{_fmt(paper.get('psnr'))} | {_fmt(mean(ssims), 3)} | {_fmt(paper.get('ssim'), 3)} | "
                     + " | ".join(_fmt(members[i].get("psnr_luma_heldout")) if i in members else "" for i in images)
                     + f" | {', '.join(sorted({str(m.get('epochs')) for m in members.values()}))} |")
    lines += ["", f"Paper: {table['source']}; ours: the mean over the images in the columns."]
    return lines


def draw_precision_bars(runs: Sequence[Dict], tables: Dict, path: Path) -> bool:
    """Held-out luma PSNR per image and model: value, + derivatives of the downsampled image, + derivatives at full
    resolution; their means, and Table 6's means (hatched)."""
    from .plots import figure

    groups = precision_runs(runs)
    if not groups:
        return False
    table = tables["derivative_precision_table6"]
    models = sorted({k[0] for k in groups}, key=lambda m: m != "relu_pos")
    images = sorted({i for g in groups.values() for i in g})
    labels = images + ["mean", "Table 6"]
    fig, axes = figure(1, len(models), (6.5 * len(models), 4.4), sharey=True)
    colours = {"val": "tab:gray", "val_der": "tab:green", "val_der_fullres": "tab:blue"}
    width = 0.27
    for ax, model in zip(axes[0], models):
        for j, sup in enumerate(PRECISION_LABELS):
            members = groups.get((model, sup), {})
            if not members:
                continue
            values = [members[i]["psnr_luma_heldout"] if i in members else None for i in images]
            values.append(mean(v for v in values if v is not None))
            xs = [i + (j - 1) * width for i in range(len(values))]
            ax.bar([x for x, v in zip(xs, values) if v is not None], [v for v in values if v is not None], width,
                   color=colours[sup], label=PRECISION_LABELS[sup])
            paper = table["rows"].get(f"{model}/{sup}")
            if paper:
                ax.bar(len(labels) - 1 + (j - 1) * width, paper["psnr"], width, facecolor="none",
                       edgecolor=colours[sup], hatch="//")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(MODEL_LABELS.get(model, model))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("held-out luma PSNR (dB)")
    epochs = sorted({str(m.get("epochs")) for g in groups.values() for m in g.values()})
    fig.suptitle(f"Derivative precision, ours at {', '.join(epochs)} epochs; Table 6: mean over 5 DIV2K images "
                 f"(hatched), 50,000 epochs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


# ------------------------------------------------------------------------------------ seeds
SEED_PART = re.compile(r"/seed=?(\d+)$")
"""The last part of a seeded run's exp_name (``.../seed=<k>``, as the sweep names it, or ``.../seed<k>``)."""
SEED_METRICS = ("psnr_heldout", "psnr_luma_heldout", "psnr_heldout_frames", "ssim_heldout", "ssim_heldout_frames",
                "psnr_der_heldout", "time_per_1k_steps_s")
SEED_METRIC_LABELS = {"psnr_heldout": "held-out PSNR (dB)", "psnr_luma_heldout": "held-out luma PSNR (dB)",
                      "psnr_heldout_frames": "PSNR, frames never trained on (dB)",
                      "ssim_heldout": "SSIM", "ssim_heldout_frames": "SSIM, frames never trained on",
                      "psnr_der_heldout": "derivative PSNR (dB)",
                      "time_per_1k_steps_s": "time per 1k steps (s)"}
SUPERVISION_PART = re.compile(r"^(?:supervision=[^/]*|(?:val_der|val)(?:_(?P<rest>.+))?)$")
"""A part of a group's name that says its supervision (``val_der``, or a prefix as in ``val_der_sine``); a val /
val_der pair's names differ only there."""
CONFIG_NOT_COMPARED = frozenset({"seed", "exp_name", "logging_root", "no_progress", "device", "config", "no_figures"})
"""Keys of ``config.json`` that runs differing only in seed may differ in (names, where and how they ran)."""
FAMILY_ORDER = ["sine", "relu_pos", "spder", "finer", "gauss", "wire", "sinc", "hosc"]
FAMILY_LABELS = {**MODEL_LABELS, "spder": "SPDER", "finer": "FINER", "gauss": "Gauss", "wire": "WIRE",
                 "sinc": "sinc", "hosc": "HOSC", "relu": "ReLU"}
ENCODING_SUFFIXES = {"none": "", None: "", "positional": " + PE", "fourier": " + FF", "grid": " + grid"}


def seed_group_name(exp_name: str) -> Optional[str]:
    """``a/b/seed=2`` -> ``a/b``; None for a name without a seed part."""
    hit = SEED_PART.search(str(exp_name))
    return str(exp_name)[:hit.start()] if hit else None


def reference_name(exp_name: str) -> str:
    """The name a run's published number is matched by: its exp_name without the seed part."""
    return seed_group_name(exp_name) or str(exp_name)


def seed_of(run: Dict) -> Optional[int]:
    """A run's seed: ``metrics.json``'s ``seed``, else its exp_name's seed part."""
    if run.get("seed") is not None:
        return int(run["seed"])
    hit = SEED_PART.search(str(run.get("exp_name", "")))
    return int(hit.group(1)) if hit else None


def seed_model_label(run: Dict) -> str:
    """SIREN, ReLU + PE, FINER, relu + grid, ...: the activation and the encoding."""
    key, encoding = model_key(run), run.get("encoding")
    if key in FAMILY_LABELS and encoding in (None, "none", "positional"):
        return FAMILY_LABELS[key]
    acts = run.get("activations") or ["?"]
    name = acts[0] if len(set(acts)) == 1 else ",".join(acts)
    return FAMILY_LABELS.get(name, name) + ENCODING_SUFFIXES.get(encoding, f" + {encoding}")


def seed_signal_label(run: Dict) -> str:
    """The signal, and for an image whether it was fitted gray or in colour."""
    name = signal_name(run)
    shape = run.get("image_shape")
    if run.get("task") == "image_regression" and isinstance(shape, list) and shape:
        name += ", gray" if shape[-1] == 1 else ", RGB"
    if run.get("task") == "video_regression" and run.get("time_factor") and run.get("space_factor"):
        t, s = int(run["time_factor"]), int(run["space_factor"])
        name += f", 1 frame in {t}" if s == 1 else f", 1 sample in {t * s * s}"
    return name


def mean_std(values: Sequence[float]) -> Tuple[Optional[float], Optional[float], int]:
    """Mean, sample standard deviation (ddof = 1; None for one value) and n of the values that are not None."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None, 0
    from statistics import stdev

    return mean(values), stdev(values) if len(values) > 1 else None, len(values)


def t_interval(values: Sequence[float], level: float = 0.95) -> Tuple[Optional[float], Optional[float],
                                                                     Optional[float], int]:
    """Mean and the Student t interval of the mean (n - 1 degrees of freedom): (mean, low, high, n);
    low and high are None for fewer than two values."""
    centre, std, n = mean_std(values)
    if std is None:
        return centre, None, None, n
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, n - 1)) * std / n ** 0.5
    return centre, centre - half, centre + half, n


def _config_differences(members: Sequence[Dict], ignored: AbstractSet[str] = CONFIG_NOT_COMPARED) -> List[str]:
    """Keys of the members' ``config.json`` (where present) that differ beyond ``ignored``."""
    configs = []
    for m in members:
        path = Path(m.get("run_dir", "")) / "config.json"
        if m.get("run_dir") and path.is_file():
            configs.append(json.loads(path.read_text()))
    keys = sorted({k for c in configs for k in c} - set(ignored))
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]


@dataclass
class SeedGroup:
    """Runs whose exp_names differ only in the seed part, by seed."""

    name: str
    task: str
    runs: List[Dict]

    @property
    def seeds(self) -> List[int]:
        return [seed_of(m) for m in self.runs]

    @property
    def supervision(self) -> str:
        return "/".join(sorted({str(m.get("supervision")) for m in self.runs}))

    @property
    def model(self) -> str:
        return seed_model_label(self.runs[0])

    @property
    def signal(self) -> str:
        return seed_signal_label(self.runs[0])

    @property
    def steps(self) -> str:
        return ", ".join(sorted({str(m.get("steps")) for m in self.runs}))

    def by_seed(self, metric: str) -> Dict[int, float]:
        return {seed_of(m): m[metric] for m in self.runs if m.get(metric) is not None}

    def stats(self, metric: str) -> Tuple[Optional[float], Optional[float], int]:
        return mean_std([m.get(metric) for m in self.runs])

    def differences(self) -> List[str]:
        """Config keys (``config.json``) and metrics keys ``steps`` / ``task`` where the members differ."""
        keys = _config_differences(self.runs)
        return keys + [k for k in ("steps",) if k not in keys and len({m.get(k) for m in self.runs}) > 1]


@dataclass
class SeedPair:
    """A ``val`` and a ``val_der`` group of the same config: the paired difference per common seed."""

    name: str
    val: SeedGroup
    val_der: SeedGroup

    @property
    def seeds(self) -> List[int]:
        return sorted(set(self.val.seeds) & set(self.val_der.seeds))

    def gains(self, metric: str) -> List[float]:
        """val_der - val per common seed where both have the metric."""
        a, b = self.val.by_seed(metric), self.val_der.by_seed(metric)
        return [b[s] - a[s] for s in self.seeds if s in a and s in b]

    def gain(self, metric: str, level: float = 0.95):
        """(mean, low, high, n) of the paired gain val_der - val (:func:`t_interval`)."""
        return t_interval(self.gains(metric), level)


def seed_groups(runs: Sequence[Dict]) -> List[SeedGroup]:
    """Runs with a seed part in their exp_name, grouped by (task, exp_name without it), in table order."""
    groups: Dict[Tuple[str, str], List[Dict]] = {}
    for m in runs:
        name = seed_group_name(str(m.get("exp_name", "")))
        if name is not None:
            groups.setdefault((str(m.get("task")), name), []).append(m)
    found = [SeedGroup(name, task, sorted(members, key=lambda m: (seed_of(m) is None, seed_of(m) or 0)))
             for (task, name), members in groups.items()]
    return sorted(found, key=_seed_order)


def _seed_order(group: SeedGroup):
    key = model_key(group.runs[0])
    family = FAMILY_ORDER.index(key) if key in FAMILY_ORDER else len(FAMILY_ORDER)
    return (group.task, group.signal.endswith(", RGB"), group.signal, family, group.model, pair_name(group.name),
            group.supervision != "val", group.supervision, group.name)


def pair_name(name: str) -> str:
    """A group's name without what says its supervision (``x/val_der/sine`` and ``x/val_der_sine`` -> ``x/sine``)."""
    kept = []
    for part in name.split("/"):
        hit = SUPERVISION_PART.match(part)
        kept.append(hit.group("rest") if hit else part)
    return "/".join(p for p in kept if p)


def seed_pairs(groups: Sequence[SeedGroup]) -> List[SeedPair]:
    """The val / val_der pairs among the groups: same task, names equal but for the supervision parts."""
    sides: Dict[Tuple[str, str], Dict[str, List[SeedGroup]]] = {}
    for g in groups:
        sides.setdefault((g.task, pair_name(g.name)), {}).setdefault(g.supervision, []).append(g)
    return [SeedPair(name, s["val"][0], s["val_der"][0]) for (_, name), s in sides.items()
            if len(s.get("val", [])) == 1 and len(s.get("val_der", [])) == 1]


HEADLINE_METRICS = {"image_regression": ("psnr_luma_heldout", "ssim_heldout"),
                    "video_regression": ("psnr_heldout_frames", "ssim_heldout_frames")}
"""The PSNR and SSIM a task's seed tables lead with where they are not ``psnr_heldout`` and ``ssim_heldout``:
luma for images (Table 5's), the frames never trained on for video (its README's; SSIM is defined per frame)."""


def headline_metrics(task: str) -> Tuple[str, str]:
    """The (PSNR, SSIM) metrics a task's tables lead with (:data:`HEADLINE_METRICS`)."""
    return HEADLINE_METRICS.get(task, ("psnr_heldout", "ssim_heldout"))


def _mean_pm(stats: Tuple[Optional[float], Optional[float], int], digits: int) -> str:
    centre, std, _ = stats
    if centre is None:
        return ""
    return f"{centre:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _digits(metric: str) -> int:
    return 3 if metric.startswith("ssim") else 2


def _signed(value: float, digits: int) -> str:
    """``+1.23``; a value that rounds to zero is ``+0.00``, never ``-0.00``."""
    return f"{0.0 if round(value, digits) == 0 else value:+.{digits}f}"


def _gain_text(gain, digits: int = 2) -> str:
    centre, low, high, n = gain
    if centre is None:
        return ""
    if low is None:
        return f"{_signed(centre, digits)} (n = 1: no interval)"
    return f"{_signed(centre, digits)} [{_signed(low, digits)}, {_signed(high, digits)}]"


def seed_markdown(groups: Sequence[SeedGroup], pairs: Sequence[SeedPair], references: Sequence[Dict]) -> List[str]:
    """Two tables: every group's metrics as mean ± std over seeds (with the paper's number where one matches),
    and every val / val_der pair's paired gain with its 95% interval."""
    if not groups:
        return []
    lines = ["### Over seeds: mean ± sample standard deviation (ddof = 1)", "",
             "| model | signal | supervision | n | seeds | steps | PSNR | paper | SSIM | paper | derivative PSNR | "
             "time / 1k steps (s) | note |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    sources = set()
    for g in groups:
        metric, ssim = headline_metrics(g.task)
        ref = match_reference(g.name, references) or {}
        if ref.get(metric) is not None or ref.get(ssim) is not None:
            sources.add(ref["source"])
        differ = g.differences()
        lines.append(f"| {g.model} | {g.signal} | {g.supervision} | {len(g.runs)} | "
                     f"{', '.join(map(str, g.seeds))} | {g.steps} | {_mean_pm(g.stats(metric), 2)} | "
                     f"{_fmt(ref.get(metric))} | {_mean_pm(g.stats(ssim), 3)} | "
                     f"{_fmt(ref.get(ssim), 3)} | {_mean_pm(g.stats('psnr_der_heldout'), 2)} | "
                     f"{_mean_pm(g.stats('time_per_1k_steps_s'), 2)} | "
                     f"{'runs differ in: ' + ', '.join(differ) if differ else ''} |")
    lines += ["", "PSNR and SSIM: held-out luma PSNR for images (the held-out PSNR of a gray one), the frames never "
                  "trained on for video, else the held-out PSNR and SSIM; a group is the runs whose names differ "
                  "only in `seed=<k>`; no ± for one seed."]
    if sources:
        lines += ["Paper: " + "; ".join(sorted(sources)) + " (its full budget and one run each)."]
    if pairs:
        lines += ["", "### Value + derivative against value supervision: paired gain (val_der - val per seed), "
                      "mean and 95% interval (Student t, n - 1 dof)", "",
                  "| model | signal | n | seeds | PSNR val | PSNR val_der | PSNR gain | SSIM gain | "
                  "derivative PSNR gain |", "|---|---|---|---|---|---|---|---|---|"]
        for p in pairs:
            metric, ssim = headline_metrics(p.val.task)
            lines.append(f"| {p.val.model} | {p.val.signal} | {len(p.seeds)} | {', '.join(map(str, p.seeds))} | "
                         f"{_mean_pm(p.val.stats(metric), 2)} | {_mean_pm(p.val_der.stats(metric), 2)} | "
                         f"{_gain_text(p.gain(metric))} | {_gain_text(p.gain(ssim), 3)} | "
                         f"{_gain_text(p.gain('psnr_der_heldout'))} |")
        lines += ["", "An interval that excludes 0 says the gain is larger than the spread over seeds (at 95%)."]
    return lines


def seed_rows(groups: Sequence[SeedGroup], references: Sequence[Dict]) -> List[Dict]:
    """report_seeds.csv: one row per group."""
    rows = []
    for g in groups:
        ref = match_reference(g.name, references) or {}
        row = {"group": g.name, "task": g.task, "model": g.model, "signal": g.signal, "supervision": g.supervision,
               "steps": g.steps, "n": len(g.runs), "seeds": " ".join(map(str, g.seeds))}
        for metric in SEED_METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"], _ = g.stats(metric)
        row.update({"paper_psnr_luma_heldout": ref.get("psnr_luma_heldout"),
                    "paper_ssim_heldout": ref.get("ssim_heldout"), "paper_source": ref.get("source"),
                    "differs_in": " ".join(g.differences())})
        rows.append(row)
    return rows


def pair_rows(pairs: Sequence[SeedPair]) -> List[Dict]:
    """report_seed_pairs.csv: one row per val / val_der pair, each metric's means and paired gain."""
    rows = []
    for p in pairs:
        row = {"pair": p.name, "task": p.val.task, "model": p.val.model, "signal": p.val.signal, "n": len(p.seeds),
               "seeds": " ".join(map(str, p.seeds))}
        for metric in SEED_METRICS:
            centre, low, high, _ = p.gain(metric)
            row.update({f"val_{metric}_mean": p.val.stats(metric)[0],
                        f"val_der_{metric}_mean": p.val_der.stats(metric)[0], f"gain_{metric}_mean": centre,
                        f"gain_{metric}_low95": low, f"gain_{metric}_high95": high})
        rows.append(row)
    return rows


def write_seed_tables(runs: Sequence[Dict], references: Sequence[Dict], out: Path) -> List[str]:
    """``report_seeds.md``, ``report_seeds.csv`` and (with pairs) ``report_seed_pairs.csv`` into ``out``; returns
    the names written (none without seeded runs)."""
    import csv

    groups = seed_groups(runs)
    if not groups:
        return []
    pairs = seed_pairs(groups)
    (out / "report_seeds.md").write_text("\n".join(seed_markdown(groups, pairs, references)) + "\n")
    made = ["report_seeds.md"]
    tables = (("report_seeds.csv", seed_rows(groups, references)), ("report_seed_pairs.csv", pair_rows(pairs)))
    for name, rows in tables:
        if rows:
            with open(out / name, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            made.append(name)
    return made


def _seed_slot_bars(groups: Sequence[SeedGroup], slots, metric: str, references: Sequence[Dict]):
    """Per supervision: (x offset, mean, std or 0, paper or None) of each slot that has the group."""
    bars: Dict[str, List[Tuple[int, float, float, Optional[float]]]] = {"val": [], "val_der": []}
    for i, slot in enumerate(slots):
        for g in groups:
            if (pair_name(g.name), g.model, g.signal) == slot and g.supervision in bars:
                centre, std, _ = g.stats(metric)
                ref = match_reference(g.name, references) or {}
                if centre is not None:
                    bars[g.supervision].append((i, centre, std or 0.0, ref.get(metric)))
    return bars


def draw_seed_bars(runs: Sequence[Dict], references: Sequence[Dict], path: Path) -> bool:
    """Mean ± std over seeds per model and signal, val (gray) beside val_der (green), the paper's number hatched
    where one matches; a pair's paired gain and its 95% interval written above it. Per task, PSNR above SSIM."""
    from .plots import figure

    groups = seed_groups(runs)
    if not groups:
        return False
    tasks = sorted({g.task for g in groups})
    panels = [0, 1]  # PSNR above SSIM (:func:`headline_metrics`)
    if not any(m.get(headline_metrics(g.task)[1]) is not None for g in groups for m in g.runs):
        panels = panels[:1]
    slots_per_task = {t: list(dict.fromkeys((pair_name(g.name), g.model, g.signal) for g in groups if g.task == t))
                      for t in tasks}
    widest = max(len(s) for s in slots_per_task.values())
    # the panels of a task one above the other: a study of many models stays readable across the page
    height = 4.2 * len(tasks) * len(panels)
    fig, grid = figure(len(tasks) * len(panels), 1, (max(6.0, 0.9 * widest + 1.5), height))
    axes = [[grid[t * len(panels) + k, 0] for k in range(len(panels))] for t in range(len(tasks))]
    pairs = {(p.val.task, p.name): p for p in seed_pairs(groups)}
    colours = {"val": "tab:gray", "val_der": "tab:green"}
    width = 0.2
    legend: Dict[str, object] = {}
    for row, task in zip(axes, tasks):
        slots = slots_per_task[task]
        for ax, panel in zip(row, panels):
            metric = headline_metrics(task)[panel]
            bars = _seed_slot_bars([g for g in groups if g.task == task], slots, metric, references)
            with_paper = any(b[3] is not None for side in bars.values() for b in side)
            tops: Dict[int, float] = {}
            lows = []
            for j, sup in enumerate(("val", "val_der")):
                if not bars[sup]:
                    continue
                xs = [i + (j - 0.5) * 2 * width - (width / 2 if with_paper else 0) for i, *_ in bars[sup]]
                ax.bar(xs, [b[1] for b in bars[sup]], width if with_paper else 2 * width,
                       yerr=[b[2] for b in bars[sup]], capsize=3, color=colours[sup], label=f"ours, {sup}")
                paper = [(i + (j - 0.5) * 2 * width + width / 2, v) for i, _, _, v in bars[sup] if v is not None]
                if paper:
                    ax.bar(*zip(*paper), width, facecolor="none", edgecolor=colours[sup], hatch="//",
                           label=f"paper (full budget), {sup}")
                for i, centre, std, ref in bars[sup]:
                    tops[i] = max(tops.get(i, -math.inf), centre + std, ref if ref is not None else -math.inf)
                    lows.append(min(centre - std, ref if ref is not None else math.inf))
            digits = _digits(metric)
            for i, (name, _, _) in enumerate(slots):
                pair = pairs.get((task, name))
                centre, low, high, _ = pair.gain(metric) if pair else (None, None, None, 0)
                if centre is not None and i in tops:
                    text = (f"{_signed(centre, digits)}\n[{_signed(low, digits)}, {_signed(high, digits)}]"
                            if low is not None else f"{_signed(centre, digits)}\nn = 1")
                    ax.annotate(text, (i, tops[i]), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=6)
            span = max(tops.values()) - min(lows) if tops else 1.0
            bottom = max(0.0, min(lows) - 0.5 * span - (2.0 if metric.startswith("psnr") else 0.02)) if lows else 0.0
            ax.set_ylim(bottom, max(tops.values()) + 0.35 * span + (1.0 if metric.startswith("psnr") else 0.01))
            ax.set_xticks(range(len(slots)))
            ax.set_xticklabels([f"{model}\n{signal}" for _, model, signal in slots], fontsize=7)
            ax.set_ylabel(SEED_METRIC_LABELS.get(metric, metric))
            ax.grid(axis="y", alpha=0.3)
            for handle, label in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(label, handle)
        ns = sorted({len(g.runs) for g in groups if g.task == task})
        steps = sorted({g.steps for g in groups if g.task == task})
        row[0].set_title(f"{task} at {', '.join(steps)} steps: mean ± std over {' or '.join(map(str, ns))} seeds "
                         f"(bars from the axis' bottom);\nabove: val_der - val, mean and 95% interval", fontsize=8,
                         loc="left")
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=len(legend), fontsize=7)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
    fig.savefig(path, dpi=110)
    return True
