"""Experiment summaries a report adds beside its one-row-per-run table, where the papers publish a table over
several runs: SPDER's image protocol at steps 25 / 100 / 500 (paper 003, Table 1), super-resolution against
bicubic per factor (paper 004, Table 1) and derivative precision over images (paper 000, Table 6).

Each summary finds its runs among the collected ones (by the config folders in ``exp_name``, or the task),
returns markdown lines with the published numbers beside ours (``protocol_tables`` and the per-run entries
of ``reference_numbers.json``), and draws one figure. A summary whose runs are absent returns nothing.
"""
from __future__ import annotations

import re
from pathlib import Path
from statistics import mean
from typing import Dict, List, Optional, Sequence, Tuple

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
    ".../nerf_llff_data/fern" -> "fern")."""
    source = str(run.get("image") or run.get("audio") or run.get("scene") or "?")
    source = source[len(SKIMAGE_SOURCE):] if source.startswith(SKIMAGE_SOURCE) else source
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
             f"| model | supervision | images | PSNR, ours | PSNR, paper | rho_AG, ours | rho_AG, paper |", "|---|---|---|---|---|---|---|"]
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
