"""Audio regression (Sobolev-INR paper, section 4.2): fit an MLP to a clip from every factor-th sample,
scored on the others; derivative targets are central differences per sample step.

    sobolev-inr audio_regression --config configs/bach/val_der_sine.txt
    cd Experiments/audio_regression && python main.py --config configs/synthetic/val_der_sine.txt

The task object, its metrics and figures: :mod:`.task`.
"""
from __future__ import annotations

from ...config import cli
from ...errors import ConfigError
from .. import register_task
from ..entry import TaskEntry, Training, task_module_attributes
from ..image_regression import check_final_eval_stride


class AudioRegressionEntry(TaskEntry):
    name = "audio_regression"
    description = "Fit a coordinate MLP to an audio clip with value and/or derivative supervision."

    def add_options(self, p: cli.ArgumentParser) -> None:
        # The paper's audio budget (original code's defaults): 8,000 full-batch epochs, Adam 5e-5.
        cli.add_mlp_task_options(p, num_epochs=8000, lrate=5e-5)
        g = p.add_argument_group("audio")
        g.add_argument("--filename", type=str, default="synthetic",
                       help="a WAV under <data_root>/Audio/ (gt_bach.wav), a path to a WAV file, or "
                            "synthetic[:<seconds>] (embedded chirp, no download)")
        g.add_argument("--data_root", type=str, default="../../data",
                       help="root of the data sets; clips are looked up in <data_root>/Audio/, then <data_root>/")
        g.add_argument("--factor", type=int, default=5,
                       help="train on every factor-th sample, evaluate on the rest (1 = every sample, nothing held "
                            "out)")
        g.add_argument("--time_scale", type=float, default=100.0,
                       help="the network's time axis spans [-time_scale, time_scale] (SIREN's audio scaling: 100)")
        cli.add_eval_chunk_option(p, g, "samples per chunk when rendering the clip")
        # Derivative targets are central differences ('diff'), per sample step.
        p.set_defaults(der_operator="diff")

        def check(a):
            if a.der_operator != "diff":
                raise ConfigError(f"der_operator = {a.der_operator}: audio derivative targets are central "
                                  f"differences (der_operator = diff); sobel is an image operator")
            check_final_eval_stride(a, "sample")

        p.declare(check=check)

    def load(self, args, metadata, device):
        from ...data.audio import load_audio, prepare_audio

        return prepare_audio(load_audio(args.filename, args.data_root), args.factor, args.time_scale)

    def build(self, args, metadata, data, device, run) -> Training:
        from ...config.options import EngineOptions, MemoryOptions, SupervisionOptions
        from ...data.audio import describe
        from ...models import nyquist_num_frequencies
        from .task import AudioRegression

        # Positional encoding: SIREN's Nyquist rule on the number of training samples (the original passes
        # fn_samples = len(downsampled_wav)); the rule assumes inputs on [-1, 1] (see the task's README).
        model = cli.build_model(args, in_features=1, out_features=1,
                                num_frequencies=nyquist_num_frequencies(len(data.train_index))).to(device)
        task = AudioRegression(data, supervision=SupervisionOptions.from_config(metadata),
                               engine=EngineOptions.from_config(metadata), batch_size=args.batch_size,
                               eval_chunk_size=args.eval_chunk_size, device=device,
                               memory=MemoryOptions.from_config(metadata))
        notes = list(describe(data))
        if not task.has_heldout:
            notes.append("note: factor = 1 trains on every sample: no held-out metrics (metrics.json reports "
                         "psnr_full)")
        if model.config["encoding"] == "positional" and args.time_scale != 1.0:
            notes.append(f"note: positional encoding on a [-{args.time_scale:g}, {args.time_scale:g}] time axis: "
                         f"its frequencies are {args.time_scale:g}x those of SIREN's Nyquist rule (made for "
                         f"[-1, 1]); time_scale = 1 follows the rule")
        summary = ("psnr_heldout", "psnr_full", "psnr_der_heldout") if task.has_heldout else ("psnr_full",
                                                                                             "psnr_der_full")
        return Training(model, task, notes, summary,
                        extra_metrics={"audio": data.source, "sample_rate": data.rate, "num_samples": data.num_samples,
                                       "num_train_samples": len(data.train_index), "factor": data.factor,
                                       "time_scale": data.time_scale})


register_task(AudioRegressionEntry)
__getattr__ = task_module_attributes(__name__)
