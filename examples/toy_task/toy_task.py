"""A new task in one module: fit f(x) = sin(pi k x) on [-1, 1] from samples of f and of f'.

The worked example of docs/adding_a_task.md. Importing this module registers the task ``toy_sine``;
``main.py`` beside it is its shim, and ``sobolev_inr.tasks.run_task("toy_sine", argv)`` runs it from Python.
"""
import math

import torch

from sobolev_inr.config import cli
from sobolev_inr.config.options import SupervisionOptions
from sobolev_inr.metrics import derivative_psnr, psnr
from sobolev_inr.tasks import TaskEntry, Training, register_task
from sobolev_inr.tasks.regression import SobolevRegression, predict, predict_jacobian


class SineRegression(SobolevRegression):
    """The task object the training loop drives: training samples and loss come from SobolevRegression
    (values, and derivatives per sample step); evaluation is on a grid 8x finer than the training one."""

    def __init__(self, frequency: float, num_samples: int, supervision: str, lambda_der: float, device):
        w = math.pi * frequency
        x = torch.linspace(-1.0, 1.0, num_samples).unsqueeze(1)         # (N, 1) on [-1, 1]
        step = 2.0 / (num_samples - 1)                                 # coordinate distance per sample
        jacobian = (w * torch.cos(w * x) * step).unsqueeze(2)          # (N, 1, 1): f' per sample step
        super().__init__(x, torch.sin(w * x), jacobian, None, [step], device=device,
                         supervision=SupervisionOptions(supervision, lambda_der=lambda_der))
        self.eval_x = torch.linspace(-1.0, 1.0, 8 * num_samples, device=device).unsqueeze(1)
        self.eval_f = torch.sin(w * self.eval_x)
        self.eval_df = (w * torch.cos(w * self.eval_x) * step).unsqueeze(2)

    def evaluate(self, model):
        f = predict(model, self.eval_x)
        df = predict_jacobian(model, self.eval_x, self.scale)
        return {"psnr_heldout": psnr(f, self.eval_f, peak=2.0), "psnr_der_heldout": derivative_psnr(df, self.eval_df)}

    def final_metrics(self, model, stride=1):
        x = self.eval_x[::stride]                                       # every stride-th evaluation point
        f, df = predict(model, x), predict_jacobian(model, x, self.scale)
        return {"psnr_heldout": psnr(f, self.eval_f[::stride], peak=2.0),
                "psnr_der_heldout": derivative_psnr(df, self.eval_df[::stride]), "final_eval_shape": [len(x)]}

    def write_outputs(self, model, run_dir, metrics):
        torch.save({"x": self.eval_x.cpu(), "f": predict(model, self.eval_x).cpu()}, run_dir / "curve.pt")


@register_task
class ToySine(TaskEntry):
    name = "toy_sine"
    description = "Fit sin(pi k x) on [-1, 1] from samples of it and of its derivative."

    def add_options(self, p):
        cli.add_run_options(p)
        cli.add_epoch_options(p, num_epochs=300)
        cli.add_optimizer_options(p, lrate=1e-3)
        cli.add_model_options(p)
        p.set_defaults(w0=5.0, hidden_features=32)  # a smooth 1-D signal: a small, low-frequency SIREN
        cli.add_supervision_options(p, supervisions=("val", "val_der"), units=False, estimator=False)
        g = p.add_argument_group("toy signal")
        g.add_argument("--frequency", type=float, default=2.0, help="k in sin(pi k x)")
        g.add_argument("--num_samples", type=int, default=32, help="training samples on [-1, 1]")

    def build(self, args, metadata, loaded, device, run):
        model = cli.build_model(args, in_features=1, out_features=1, num_frequencies=4).to(device)
        task = SineRegression(args.frequency, args.num_samples, args.supervision, args.lambda_der, device)
        return Training(model, task, notes=[f"sin({args.frequency:g} pi x) from {args.num_samples} samples"],
                        summary=("psnr_heldout", "psnr_der_heldout"))
