"""End to end: the toolkit's own overhead, and wall time to a held-out PSNR with derivative supervision.

1. Overhead. An epoch of ``Experiments/image_regression/main.py`` with ``val`` supervision (progress
   bar, logging and bookkeeping included; the one summary and checkpoint at the end cancel out,
   because the cost per epoch is the difference between a run of K1 and one of K2 epochs) against a
   bare PyTorch step (forward, MSE, backward, Adam) of the same model on the same pixels.

2. val_der against val through main.py: the per-epoch training time of each supervision, from the
   difference of a long and a short run (the issue's way of measuring what users run).

3. Time to PSNR. The image task with ``val_der`` supervision, trained twice from the same seed
   with the same steps: once with the published per-channel ``autograd.grad`` loop, once with this
   package's engine (``der_mode`` auto). Steps of the two runs alternate, so that load from other
   jobs on the machine falls on both alike; only the training steps are timed, evaluation of the
   held-out PSNR every ``--eval_every`` steps is not. Both runs compute the same thing, so their PSNR
   curves agree; the report is the time each needs to reach ``--target_psnr``.

    python bench/end_to_end.py                      # defaults: about 5 minutes on a 2-core CPU
    python bench/end_to_end.py --size 512 --steps 100 --target_psnr 18   # the Baby protocol size

Writes ``bench/results/end_to_end_<device>.json``. Benchmarks print; tests assert.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sobolev_inr.data.images import load_image, prepare_image  # noqa: E402
from sobolev_inr.derivatives import choose_mode, reference_jacobian  # noqa: E402
from sobolev_inr.losses.sobolev import sobolev_loss  # noqa: E402
from sobolev_inr.models import MLP  # noqa: E402
from sobolev_inr.tasks.image_regression import ImageRegression  # noqa: E402
from sobolev_inr.training.loop import take_step  # noqa: E402
from common import machine_line, machine_record  # noqa: E402  (bench/common.py)


def _image(filename: str, size: int):
    image, source, _ = load_image(filename)
    if image.shape[-1] != size or image.shape[-2] != size:
        image = F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)[0].clamp(-1, 1)
    return image, source


def _load_main():
    spec = importlib.util.spec_from_file_location("image_regression_main",
                                                  REPO / "Experiments" / "image_regression" / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------- overhead
def overhead(args, device: torch.device) -> Dict[str, object]:
    main = _load_main()
    image, _ = _image(args.filename, args.overhead_size)
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "image.png"
        from PIL import Image
        array = ((image.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype("uint8")
        Image.fromarray(array.squeeze()).save(png)
        data = prepare_image(load_image(str(png))[0], factor=4)
        x, y = data.train_coords.to(device), data.train_values.to(device)

        def run_main(epochs: int) -> float:
            argv = ["--filename", str(png), "--supervision", "val", "--num_epochs", str(epochs),
                    "--epochs_til_summary", str(epochs), "--epochs_til_ckpt", str(epochs), "--logging_root", tmp,
                    "--exp_name", f"overhead_{epochs}", "--overwrite", "--device", device.type]
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                metrics = main.main(argv)  # progress bar on, written to a buffer
            return metrics["wall_time_s"]

        def bare(steps: int) -> float:
            torch.manual_seed(0)
            model = MLP(2, y.shape[1], ["sine"] * 4, 256, w0=30.0).to(device)
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = ((model(x) - y) ** 2).mean()
                loss.backward()
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return (time.perf_counter() - t0) / steps

        k1, k2 = args.overhead_epochs
        per_epoch, per_step = [], []
        for _ in range(args.overhead_repeats):
            per_step.append(bare(k2 - k1))
            per_epoch.append((run_main(k2) - run_main(k1)) / (k2 - k1))
    epoch, step = statistics.median(per_epoch), statistics.median(per_step)
    print(f"overhead: image {args.overhead_size}x{args.overhead_size} RGB, {x.shape[0]} training px, SIREN 4x256, "
          f"val supervision, full batch")
    print(f"  main.py epoch {epoch:.4f} s (fit wall time, runs of {k2} minus {k1} epochs), bare PyTorch step "
          f"{step:.4f} s: ratio {epoch / step:.3f}")
    return {"main_epoch_s": epoch, "bare_step_s": step, "ratio": epoch / step, "main_epoch_all": per_epoch,
            "bare_step_all": per_step, "epochs": [k1, k2], "size": args.overhead_size, "pixels": x.shape[0]}


# ------------------------------------------------------------------ val_der against val, through main.py
SHARED_SET5 = REPO.parent / "shared" / "data"


def epoch_ratio(args, device: torch.device) -> Dict[str, object]:
    """Per-epoch training time of main.py with val and with val_der supervision, as a user runs it: the
    difference of a K2- and a K1-epoch run (no summary or checkpoint in between), from each run's
    device-synchronised ``train_time_s``. Cases: Bird gray (72x72 training px) and Baby RGB (128x128),
    SIREN 4x256; from ``--data_root`` (Set5), else skimage camera / astronaut at those sizes."""
    main = _load_main()
    k1, k2 = args.ratio_epochs
    have_set5 = (Path(args.data_root) / "Set5" / "HR" / "baby.png").is_file()
    cases = {"gray": ["--filename", "bird", "--is_gray"] if have_set5 else ["--filename", "skimage:camera", "--is_gray"],
             "rgb": ["--filename", "baby"] if have_set5 else ["--filename", "skimage:astronaut"]}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data_args in cases.items():
            def train_time(sup: str, epochs: int) -> float:
                argv = [*data_args, "--data_root", str(args.data_root), "--supervision", sup, "--num_epochs", str(epochs),
                        "--epochs_til_summary", str(10 * k2), "--epochs_til_ckpt", str(10 * k2), "--no_progress",
                        "--logging_root", tmp, "--exp_name", f"{name}_{sup}_{epochs}", "--overwrite",
                        "--device", device.type]
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    return main.main(argv)["train_time_s"]

            per = {sup: statistics.median((train_time(sup, k2) - train_time(sup, k1)) / (k2 - k1)
                                          for _ in range(args.ratio_repeats)) for sup in ("val", "val_der")}
            out[name] = {**{f"{sup}_epoch_s": v for sup, v in per.items()}, "ratio": per["val_der"] / per["val"]}
            print(f"main.py {name}: val epoch {per['val']:.4f} s, val_der epoch {per['val_der']:.4f} s, "
                  f"ratio {per['val_der'] / per['val']:.2f} (runs of {k2} minus {k1} epochs)", flush=True)
    return {"epochs": [k1, k2], "set5": have_set5, "cases": out}


# ---------------------------------------------------------------------------------- time to PSNR
def time_to_psnr(args, device: torch.device) -> Dict[str, object]:
    image, source = _image(args.filename, args.size)
    data = prepare_image(image, factor=4, source=source)
    task = ImageRegression(data, supervision="val_der", device=device)
    x, y, target, scale = task.coords, task.values, task.target, task.scale
    mode = choose_mode(2, data.channels)

    def make(kind: str):
        torch.manual_seed(args.seed)
        model = MLP(2, data.channels, ["sine"] * 4, 256, w0=30.0).to(device)
        params = list(model.parameters())
        opt = torch.optim.Adam(params, lr=args.lrate)
        if kind == "reference":
            def loss_terms():
                ref = reference_jacobian(model, x, create_graph=True)
                return sobolev_loss("val_der", ref.value, y, ref.jacobian * scale, target, 1.0)
        else:
            def loss_terms():
                return task.loss(model, None)

        return model, lambda: take_step(opt, params, loss_terms)[0]["total"]  # the step fit() takes

    runs = {kind: make(kind) for kind in ("reference", "ours")}
    elapsed = {kind: 0.0 for kind in runs}
    curves: Dict[str, List[dict]] = {kind: [] for kind in runs}
    reached: Dict[str, Optional[dict]] = {kind: None for kind in runs}
    print(f"\ntime to PSNR: {source} {args.size}x{args.size}x{data.channels}, {x.shape[0]} training px, SIREN 4x256, "
          f"val_der, Adam {args.lrate}; ours = fused engine, {mode} mode; target {args.target_psnr} dB held-out")
    for step_no in range(1, args.steps + 1):
        for kind, (model, step) in runs.items():  # alternate: one step of each
            t0 = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed[kind] += time.perf_counter() - t0
        if step_no % args.eval_every == 0 or step_no == args.steps:
            row = []
            for kind, (model, _) in runs.items():
                with torch.no_grad():
                    psnr = task.evaluate(model)["psnr_heldout"]
                point = {"step": step_no, "train_time_s": elapsed[kind], "psnr_heldout": psnr}
                curves[kind].append(point)
                if reached[kind] is None and psnr >= args.target_psnr:
                    reached[kind] = point
                row.append(f"{kind} {psnr:6.2f} dB {elapsed[kind]:7.1f} s")
            print(f"  step {step_no:4d}: " + " | ".join(row), flush=True)
    print()
    for kind in runs:
        r = reached[kind]
        print(f"  {kind:<9}: " + (f"reached {args.target_psnr} dB at step {r['step']} after {r['train_time_s']:.1f} s"
                                  if r else f"did not reach {args.target_psnr} dB in {args.steps} steps")
              + f"; {elapsed[kind] / args.steps:.3f} s/step")
    speedup = None
    if reached["reference"] and reached["ours"]:
        speedup = reached["reference"]["train_time_s"] / reached["ours"]["train_time_s"]
        print(f"  wall time to {args.target_psnr} dB: reference / ours = {speedup:.2f}")
    return {"image": source, "size": args.size, "pixels": x.shape[0], "mode": mode, "steps": args.steps,
            "target_psnr": args.target_psnr, "curves": curves, "reached": reached, "speedup_to_target": speedup,
            "seconds_per_step": {k: elapsed[k] / args.steps for k in runs}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--filename", default="skimage:astronaut", help="image (skimage:<name> or a path)")
    p.add_argument("--size", type=int, default=256, help="image side for the PSNR run (training px: size/4 squared)")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--eval_every", type=int, default=10)
    p.add_argument("--target_psnr", type=float, default=26.0, help="held-out PSNR (dB, RGB) to reach")
    p.add_argument("--lrate", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overhead_size", type=int, default=512, help="image side for the overhead run (Baby's 512)")
    p.add_argument("--overhead_epochs", type=int, nargs=2, default=(2, 22), metavar=("K1", "K2"))
    p.add_argument("--overhead_repeats", type=int, default=1)
    p.add_argument("--ratio_epochs", type=int, nargs=2, default=(20, 80), metavar=("K1", "K2"))
    p.add_argument("--ratio_repeats", type=int, default=1)
    p.add_argument("--data_root", default=str(SHARED_SET5), help="where Set5 is (for the epoch-ratio cases)")
    p.add_argument("--skip", nargs="*", default=[], choices=["overhead", "ratio", "psnr"])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = {"machine": machine_record(device, argv)}
    print(machine_line(device))
    if "overhead" not in args.skip:
        result["overhead"] = overhead(args, device)
    if "ratio" not in args.skip:
        result["epoch_ratio"] = epoch_ratio(args, device)
    if "psnr" not in args.skip:
        result["time_to_psnr"] = time_to_psnr(args, device)
    out = args.out or REPO / "bench" / "results" / f"end_to_end_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
