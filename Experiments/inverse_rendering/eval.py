"""Scores the test views of a trained inverse-rendering run: score.txt as the original eval.py wrote it.

    cd Experiments/inverse_rendering
    python eval.py --config configs/fern/val_der/relu.txt                    # renders at the training resolution
    python eval.py --config configs/fern_small/val_der/relu.txt --eval_llff_factor 4   # and at LLFF factor 4

For every ``<basedir>/<expname>/testset_<iter>/`` without a score it pairs each render ``NNN.png``
with the ground truth of view NNN (by index, not by listing order), checks counts and sizes, and
writes ``score.txt`` (``NNN.png PSNR: x, SSIM: y``, then the means) and ``scores.json``; the test
views of the latest checkpoint are rendered first when no testset folder holds them. With
``eval_llff_factor`` the views are also rendered and scored at another LLFF downsample (e.g. 1, the
full images) in ``testset_<iter>_<H>x<W>/``. The run's metrics.json gains the scores.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # train.py, whose options eval.py shares
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a clone without installing

import train  # noqa: E402
from sobolev_inr import cli  # noqa: E402


config_parser = train.config_parser  # one vocabulary: a config runs with both (its evaluation options included)


def main(argv=None):
    args = cli.parse_args(config_parser(), argv)
    device = cli.resolve_device(args.device)

    from sobolev_inr.tasks.inverse_rendering import (find_renders, load_scene_of, load_task, load_trained,
                                                     score_renders, testset_dirs, write_scores)

    run_dir = Path(args.logging_root) / args.exp_name
    model, config, step = load_trained(run_dir, device)
    task = load_task(config, device, run_dir)
    print(f"evaluating {run_dir} (checkpoint at step {step}); test views {task.test_ids}")
    latest = run_dir / f"testset_{step:06d}"
    if args.rerender or not (latest.is_dir() and find_renders(latest)):
        print(f"rendering the test views into {latest}")
        task.write_testset(model, latest)
    truth, results = task.truth(), {}
    for at_step, folder in testset_dirs(run_dir).items():
        if at_step != step and (folder / "score.txt").exists():
            continue  # an older testset already scored (the original's rule)
        scores = score_renders(folder, truth)
        write_scores(folder, scores, at_step)
        results[at_step] = scores
        print(f"{folder}:\n{scores.score_txt()}", end="")
    update = results[step].metrics()
    if args.eval_llff_factor and args.eval_llff_factor != config["llff_factor"]:
        scene = load_scene_of(config, run_dir, args.eval_llff_factor)
        render_factor = args.eval_llff_factor / config["llff_factor"]
        other = run_dir / f"testset_{step:06d}_{scene.height}x{scene.width}"
        if args.rerender or not (other.is_dir() and find_renders(other)):
            print(f"rendering the test views at {scene.height}x{scene.width} (LLFF factor {args.eval_llff_factor}) "
                  f"into {other}")
            task.write_testset(model, other, render_factor=render_factor, align_pixels=args.align_pixels)
        scores = score_renders(other, {v: scene.images[v] for v in task.test_ids})
        write_scores(other, scores, step)
        print(f"{other}:\n{scores.score_txt()}", end="")
        update.update(scores.metrics(f"_{scene.height}x{scene.width}"))
    metrics_file = run_dir / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        metrics.update(update)
        metrics_file.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return update


if __name__ == "__main__":
    cli.run_entry_point(main)
