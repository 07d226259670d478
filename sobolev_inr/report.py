"""Collect finished runs into a table beside the papers' numbers, and draw the comparison figures.

    python -m sobolev_inr.report Experiments/image_regression/logs/cpu/activation_study
    python -m sobolev_inr.report <runs dir> --imgs imgs/activation_study   # also copy figures for the README

Writes into ``<runs dir>/report/`` (or ``--out``):

* ``report.csv`` and ``report.md``: one row per run (every ``metrics.json`` below the folder), with the
  published number beside ours where one matches (``reference_numbers.json``, each with its source);
* ``activation_bars.png``: PSNR and SSIM per activation, without and with positional encoding, ours
  against the paper (the Sobolev supplement's Table 5), when activation-study runs are present;
* ``supervision_bars.png``: held-out PSNR with value against value + derivative supervision, per image or
  clip and model, ours against the paper's where it has the number (Set5, the audio pair);
* ``derivative_loss.png``: derivative loss against the step per run, without and with positional
  encoding (the supplement's Figures 5 and 6);
* ``reconstructions.png``: what each image run renders, side by side;
* ``heldout_views.png``: inverse rendering, a held-out view of each scene rendered by every run beside its
  ground truth;
* the experiment summaries of :mod:`sobolev_inr.reporting.summaries`, appended to ``report.md`` where their runs are
  present, with ``spder_curves.png`` (SPDER's protocol: PSNR and rho_AG against the step, beside its Table 1),
  ``super_resolution.png`` (PSNR against the factor, beside bicubic and paper 004's Table 1) and
  ``derivative_precision.png`` (value against value + derivatives of the downsampled or the full image,
  beside Table 6);
* for runs over several seeds (exp_names ending in ``seed=<k>``, the sweep's seed axis): ``report_seeds.md`` and
  ``report_seeds.csv`` (mean ± sample standard deviation and n per config), ``report_seed_pairs.csv`` (val_der - val
  per seed, its mean and 95% Student t interval) and ``seed_bars.png`` (mean ± std, val beside val_der, the paper's
  numbers where they match); these runs are left out of the single-run bars above.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .errors import UserError
from .reporting import summaries
from .reporting.references import load_protocol_tables, load_references, match_reference
from .training.progress import QUIET, Progress
from .training.runs import METRICS_FILE, read_scalars

POISSON_COLUMNS = ["psnr_minmax_full", "psnr_offset_full", "psnr_grad_full", "psnr_lapl_full"]
"""Poisson reconstruction (image regression with der or lapl supervision): the image after SIREN's and after
our alignment, the gradient and the Laplacian (SIREN's table reports image / gradient / Laplacian PSNR)."""
COLUMNS = ["exp_name", "task", "supervision", "activations", "encoding", "steps", "psnr_luma_heldout", "ssim_heldout",
           "psnr_heldout", "psnr_bicubic_heldout", "psnr_der_heldout", "psnr_full", "rho_ag_full", "rho_ag_heldout",
           *POISSON_COLUMNS, "wall_time_s", "device"]
PAPER_COLUMNS = ["paper_psnr_luma_heldout", "paper_ssim_heldout", "paper_psnr_heldout", "paper_psnr_bicubic_heldout",
                 *["paper_" + c for c in POISSON_COLUMNS], "paper_source"]
AT_RESOLUTION = re.compile(r"^(psnr|ssim)_heldout_\d+x\d+$")
"""Scores at another resolution than the training one (inverse rendering's ``eval.py --eval_llff_factor``,
e.g. ``psnr_heldout_756x1008``): a column each, beside the paper's number at that resolution."""


def resolution_columns(runs: Sequence[Dict]) -> List[str]:
    """``psnr_heldout_<H>x<W>`` / ``ssim_heldout_<H>x<W>`` keys present in any run, by resolution."""
    keys = {k for m in runs for k in m if AT_RESOLUTION.match(k)}
    return sorted(keys, key=lambda k: (k.split("_")[-1], k))


def collect_runs(root: Path) -> List[Dict]:
    """Every finished run below ``root``: its metrics plus ``run_dir``."""
    runs = []
    for path in sorted(Path(root).rglob(METRICS_FILE)):
        metrics = json.loads(path.read_text())
        metrics["run_dir"] = str(path.parent)
        runs.append(metrics)
    return runs


def _short_activations(acts) -> str:
    if not isinstance(acts, list):
        return str(acts)
    return f"{acts[0]} x{len(acts)}" if len(set(acts)) == 1 else ",".join(acts)


def table_rows(runs: Sequence[Dict], references: Sequence[Dict]) -> List[Dict]:
    rows, extra = [], resolution_columns(runs)
    for m in runs:
        row = {c: m.get(c) for c in COLUMNS + extra}
        row["activations"] = _short_activations(m.get("activations"))
        ref = match_reference(summaries.reference_name(str(m.get("exp_name", ""))), references)
        for c in PAPER_COLUMNS[:-1] + ["paper_" + c for c in extra]:
            row[c] = ref.get(c[len("paper_"):]) if ref else None
        row["paper_source"] = ref["source"] if ref else None
        rows.append(row)
    return rows


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1.5 else f"{value:.2f}"
    return str(value)


def write_tables(rows: Sequence[Dict], out: Path) -> None:
    extra = resolution_columns(rows)
    columns = COLUMNS + extra + PAPER_COLUMNS + ["paper_" + c for c in extra]
    with open(out / "report.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    shown = ["exp_name", "supervision", "activations", "encoding", "steps", "psnr_luma_heldout", "paper_psnr_luma_heldout",
             "ssim_heldout", "paper_ssim_heldout", "psnr_heldout", "paper_psnr_heldout", "psnr_bicubic_heldout",
             "paper_psnr_bicubic_heldout", "rho_ag_full", "rho_ag_heldout",
             *[c for k in extra for c in (k, "paper_" + k)], "psnr_der_heldout",
             *[c for k in POISSON_COLUMNS for c in (k, "paper_" + k)], "wall_time_s"]
    shown = [c for c in shown if any(r.get(c) is not None for r in rows)]
    lines = ["| " + " | ".join(c.replace("paper_", "paper ") for c in shown) + " |",
             "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in shown) + " |" for r in rows]
    shown_paper = [c for c in shown if c.startswith("paper_")]
    sources = sorted({r["paper_source"] for r in rows if any(r.get(c) is not None for c in shown_paper)})
    if sources:
        lines += ["", "Paper numbers: " + "; ".join(sources) + "."]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _activation_name(m: Dict) -> str:
    acts = m.get("activations") or ["?"]
    return acts[0] if len(set(acts)) == 1 else ",".join(acts)


def draw_activation_bars(runs: Sequence[Dict], references: Sequence[Dict], path: Path) -> bool:
    """Table 5 as bars: PSNR and SSIM per activation, without / with PE, ours (solid) vs paper (outline)."""
    from .reporting.plots import figure

    study = [m for m in runs if "activation_study/" in str(m.get("exp_name", ""))
             and summaries.seed_group_name(str(m.get("exp_name", ""))) is None]  # seeded runs: seed_bars.png
    if not study:
        return False
    order = ["relu", "elu", "selu", "sigmoid", "softplus", "tanh", "sine"]
    names = [a for a in order if any(_activation_name(m) == a for m in study)]
    names += sorted({_activation_name(m) for m in study} - set(names))
    fig, axes = figure(1, 2, (13, 4.2))
    axes = axes[0]
    width = 0.2
    for ax, metric, label in ((axes[0], "psnr_luma_heldout", "PSNR (dB)"), (axes[1], "ssim_heldout", "SSIM")):
        for j, (pe, colour) in enumerate(((False, "tab:blue"), (True, "tab:orange"))):
            ours, paper = [], []
            for a in names:
                m = next((m for m in study if _activation_name(m) == a and (m.get("encoding") == "positional") == pe), None)
                ours.append(m.get(metric) if m else None)
                ref = match_reference(str(m.get("exp_name", "")), references) if m else None
                paper.append(ref.get(metric) if ref else None)
            xs = [i + (j - 0.5) * 2 * width for i in range(len(names))]
            ax.bar([x - width / 2 for x, v in zip(xs, ours) if v is not None], [v for v in ours if v is not None],
                   width, color=colour, label=f"ours{' + PE' if pe else ''}")
            ax.bar([x + width / 2 for x, v in zip(xs, paper) if v is not None], [v for v in paper if v is not None],
                   width, facecolor="none", edgecolor=colour, hatch="//", label=f"paper{' + PE' if pe else ''}")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=2)
    steps = sorted({m.get("steps") for m in study})
    fig.suptitle(f"Activation study (Bird, grayscale, held-out pixels): ours at {', '.join(map(str, steps))} steps, "
                 f"paper at 10k (supplement Table 5)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def _model_name(m: Dict) -> str:
    return _activation_name(m) + {"positional": " + PE", "fourier": " + FF"}.get(str(m.get("encoding")), "")


def draw_supervision_bars(runs: Sequence[Dict], references: Sequence[Dict], path: Path) -> bool:
    """Value against value + derivative supervision: held-out PSNR per (signal, model), ours (solid)
    and the paper's where it has the number (outline). Drawn when some (signal, model) has both."""
    from .reporting.plots import figure

    groups: Dict[tuple, Dict[str, Dict]] = {}
    for m in runs:
        if (m.get("supervision") in ("val", "val_der") and not summaries.summarised(m)
                and summaries.seed_group_name(str(m.get("exp_name", ""))) is None):  # seeded runs: seed_bars.png
            groups.setdefault((m.get("task"), summaries.signal_name(m), _model_name(m)), {})[m["supervision"]] = m
    pairs = sorted(k for k, v in groups.items() if len(v) == 2)
    if not pairs:
        return False
    tasks = sorted({k[0] for k in pairs})
    fig, axes = figure(1, len(tasks), (max(6.0, 1.1 * len(pairs) + 2), 4.4))
    width = 0.2
    for ax, task in zip(axes[0], tasks):
        keys = [k for k in pairs if k[0] == task]
        metric = "psnr_luma_heldout" if task == "image_regression" else "psnr_heldout"
        papers = {sup: [(match_reference(str(groups[k][sup].get("exp_name", "")), references) or {}).get(metric)
                        for k in keys] for sup in ("val", "val_der")}
        with_paper = any(v is not None for p in papers.values() for v in p)  # else our bars take the whole slot
        for j, (sup, colour) in enumerate((("val", "tab:gray"), ("val_der", "tab:green"))):
            xs = [i + (j - 0.5) * 2 * width for i in range(len(keys))]
            ours, paper = [groups[k][sup].get(metric) for k in keys], papers[sup]
            shift, ours_width = (width / 2, width) if with_paper else (0.0, 2 * width)
            ax.bar([x - shift for x, v in zip(xs, ours) if v is not None], [v for v in ours if v is not None],
                   ours_width, color=colour, label=f"ours, {sup}")
            if any(v is not None for v in paper):
                ax.bar([x + width / 2 for x, v in zip(xs, paper) if v is not None], [v for v in paper if v is not None],
                       width, facecolor="none", edgecolor=colour, hatch="//", label=f"paper (full budget), {sup}")
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([f"{k[1]}\n{k[2]}" for k in keys], fontsize=8)
        ax.set_ylabel(("luma " if metric == "psnr_luma_heldout" else "") + "PSNR, held-out (dB)")
        steps = sorted({groups[k][s].get("steps") for k in keys for s in ("val", "val_der")})
        ax.set_title(f"{task}: value vs value + derivative supervision, ours at {', '.join(map(str, steps))} steps",
                     fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def draw_derivative_loss(runs: Sequence[Dict], path: Path) -> bool:
    """Derivative loss against the step, one line per run; left without PE, right with PE."""
    from .reporting.plots import figure

    curves = []
    for m in runs:
        csv_path = Path(m["run_dir"]) / "scalars.csv"
        if csv_path.exists():
            series = read_scalars(csv_path)
            if "train/derivative" in series:
                curves.append((m, series["train/derivative"]))
    if not curves:
        return False
    from matplotlib import colormaps

    fig, axes = figure(1, 2, (12, 4.2), sharey=True)
    axes = axes[0]
    names = sorted({_activation_name(m) for m, _ in curves})
    colours = {name: colormaps["tab10"](i % 10) for i, name in enumerate(names)}  # one per activation, both panels
    for ax, pe in ((axes[0], False), (axes[1], True)):
        for m, (steps, values) in curves:
            if (m.get("encoding") == "positional") == pe:
                name = _activation_name(m)
                ax.plot(steps, values, label=name, color=colours[name], linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title("with positional encoding" if pe else "without positional encoding")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("derivative loss (per pixel step)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def draw_reconstructions(runs: Sequence[Dict], path: Path, columns: int = 7) -> bool:
    """Each image run's full rendering, titled with its held-out PSNR (a Poisson reconstruction: with the best
    constant removed, titled with that PSNR)."""
    from .metrics import remove_offset, to_unit_range
    from .reporting.plots import figure
    from .tasks.image_regression import load_run

    image_runs = [m for m in runs if m.get("task") == "image_regression"]
    if not image_runs:
        return False
    rows = (len(image_runs) + columns - 1) // columns
    fig, axes = figure(rows, min(columns, len(image_runs)), (2.6 * min(columns, len(image_runs)), 2.9 * rows))
    for ax in axes.flat:
        ax.axis("off")
    for ax, m in zip(axes.flat, image_runs):
        try:
            model, task, _ = load_run(Path(m["run_dir"]))
        except (UserError, OSError, KeyError) as e:
            print(f"reconstructions: skipping {m['run_dir']}: {e}", file=sys.stderr)
            continue
        img = task.render(model)
        if task.is_poisson:
            img = remove_offset(img, task.data.image)
        arr = to_unit_range(img).clamp(0, 1).permute(1, 2, 0).numpy()
        ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray", vmin=0, vmax=1)
        parts = str(m.get("exp_name", "")).split("/")
        name, shown = ("/".join(parts[-2:]), "psnr_offset_full") if task.is_poisson else (parts[-1], "psnr_luma_heldout")
        ax.set_title(f"{name}\n{m.get(shown, float('nan')):.2f} dB", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def draw_heldout_views(runs: Sequence[Dict], path: Path) -> bool:
    """Inverse rendering: the first held-out view of each scene, ground truth beside every run's render of it
    (its latest testset), titled with the run's held-out PSNR and SSIM (all test views)."""
    import torch

    from .reporting.plots import save_view_grid
    from .tasks.inverse_rendering import read_render, run_views

    scene_runs: Dict[str, List[Dict]] = {}
    for m in runs:
        if m.get("task") == "inverse_rendering":
            scene_runs.setdefault(summaries.signal_name(m), []).append(m)
    rows = []
    for scene, members in sorted(scene_runs.items()):
        row = []
        for m in sorted(members, key=lambda m: str(m.get("exp_name"))):
            try:
                truth, renders = run_views(Path(m["run_dir"]))
            except (UserError, OSError, KeyError) as e:
                print(f"heldout views: skipping {m['run_dir']}: {e}", file=sys.stderr)
                continue
            view = min(truth)
            if view not in renders:
                continue
            render = torch.from_numpy(read_render(renders[view]))
            if not row:
                row.append((f"{scene}, view {view}: ground truth", torch.from_numpy(truth[view])))
            row.append((f"{'/'.join(str(m.get('exp_name')).split('/')[-2:])}, {m.get('steps')} it.\n"
                        f"{m.get('psnr_heldout', float('nan')):.2f} dB, SSIM {m.get('ssim_heldout', float('nan')):.3f}",
                        render))
        if row:
            rows.append(row)
    if not rows:
        return False
    save_view_grid(path, rows, suptitle="held-out views (PSNR, SSIM: mean over the test views)")
    return True


def make_report(root: Path, out: Optional[Path] = None, imgs: Optional[Path] = None, figures: bool = True,
                progress: Progress = QUIET) -> Path:
    """Tables (report.csv, report.md) and figures of every finished run below ``root`` into ``out``
    (default ``<root>/report``), copied to ``imgs`` if given; ``progress`` shows a bar over the figures
    and logs the report's duration."""
    with progress.phase("report"):
        return _make_report(Path(root), out, imgs, figures, progress)


def _make_report(root: Path, out: Optional[Path], imgs: Optional[Path], figures: bool, progress: Progress) -> Path:
    runs = collect_runs(root)
    if not runs:
        raise FileNotFoundError(f"no finished run (metrics.json) below {root}")
    out = Path(out) if out else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    references, tables = load_references(), load_protocol_tables()
    write_tables(table_rows(runs, references), out)
    summary = [*summaries.spder_markdown(runs, tables), "", *summaries.super_resolution_markdown(runs, references), "",
               *summaries.precision_markdown(runs, tables)]
    seeded = summaries.write_seed_tables(runs, references, out)
    if seeded:
        summary += ["", f"Runs over several seeds: mean ± std per config and the val / val_der paired gains in "
                        f"{', '.join(seeded)}" + (" and seed_bars.png." if figures else ".")]
    if any(summary):
        with open(out / "report.md", "a") as f:
            f.write("\n" + "\n".join(summary).strip() + "\n")
    made = ["report.csv", "report.md", *seeded]
    if figures:
        drawings = (("activation_bars.png", lambda p: draw_activation_bars(runs, references, p)),
                    ("supervision_bars.png", lambda p: draw_supervision_bars(runs, references, p)),
                    ("derivative_loss.png", lambda p: draw_derivative_loss(runs, p)),
                    ("reconstructions.png", lambda p: draw_reconstructions(runs, p)),
                    ("heldout_views.png", lambda p: draw_heldout_views(runs, p)),
                    ("spder_curves.png", lambda p: summaries.draw_spder_curves(runs, tables, p)),
                    ("super_resolution.png", lambda p: summaries.draw_super_resolution(runs, references, p)),
                    ("derivative_precision.png", lambda p: summaries.draw_precision_bars(runs, tables, p)),
                    ("seed_bars.png", lambda p: summaries.draw_seed_bars(runs, references, p)))
        for name, draw in progress.bar(drawings, desc="report figures", unit="figure"):
            if draw(out / name):
                made.append(name)
    if imgs:
        Path(imgs).mkdir(parents=True, exist_ok=True)
        for name in made:
            if name.endswith(".png") or name.endswith(".md"):
                shutil.copy(out / name, Path(imgs) / name)
    print(f"{len(runs)} runs -> {out}: {', '.join(made)}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sobolev_inr.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs_dir", help="folder holding run directories (searched recursively for metrics.json)")
    p.add_argument("--out", help="where to write the report (default: <runs_dir>/report)")
    p.add_argument("--imgs", help="also copy the figures and report.md here (e.g. imgs/activation_study)")
    p.add_argument("--no_figures", action="store_true", help="tables only")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        make_report(Path(args.runs_dir), args.out and Path(args.out), args.imgs and Path(args.imgs),
                    not args.no_figures, Progress(bars=not args.no_progress, log=print))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
