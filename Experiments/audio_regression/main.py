"""Audio regression with Sobolev training.

    cd Experiments/audio_regression
    python main.py --config configs/bach/val_der_sine.txt              # SIREN's Bach clip (link data/ first)
    python main.py --config configs/synthetic/val_der_sine.txt --num_epochs 300   # embedded default

Results: <logging_root>/<exp_name>/ (metrics.json, reconstruction.wav, waveform and spectrogram figures,
checkpoints, TensorBoard events).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a clone without installing

from sobolev_inr import cli  # noqa: E402
from sobolev_inr.errors import ConfigError  # noqa: E402


def config_parser():
    p = cli.make_parser("Fit a coordinate MLP to an audio clip with value and/or derivative supervision.")
    cli.add_run_options(p)
    # The paper's audio budget (original code's defaults): 8,000 full-batch epochs, Adam 5e-5.
    cli.add_epoch_options(p, num_epochs=8000)
    cli.add_optimizer_options(p, lrate=5e-5)
    cli.add_model_options(p)
    cli.add_supervision_options(p)
    cli.add_engine_options(p)
    g = p.add_argument_group("audio")
    g.add_argument("--filename", type=str, default="synthetic",
                   help="a WAV under <data_root>/Audio/ (gt_bach.wav), a path to a WAV file, or "
                        "synthetic[:<seconds>] (embedded chirp, no download)")
    g.add_argument("--data_root", type=str, default="../../data",
                   help="root of the data sets; clips are looked up in <data_root>/Audio/, then <data_root>/")
    g.add_argument("--factor", type=int, default=5,
                   help="train on every factor-th sample, evaluate on the rest (1 = every sample, nothing held out)")
    g.add_argument("--time_scale", type=float, default=100.0,
                   help="the network's time axis spans [-time_scale, time_scale] (SIREN's audio scaling: 100)")
    g.add_argument("--eval_chunk_size", type=int, default=65536, help="samples per chunk when rendering the clip")
    # Derivative targets are central differences ('diff'), per sample step.
    p.set_defaults(der_operator="diff")

    def check(a):
        if a.der_operator != "diff":
            raise ConfigError(f"der_operator = {a.der_operator}: audio derivative targets are central differences "
                              f"(der_operator = diff); sobel is an image operator")
        cli._at_least(a, 1, ["eval_chunk_size"])

    p.declare(ignored=["eval_chunk_size"], check=check)
    return p


def main(argv=None):
    parser = config_parser()
    args = cli.parse_args(parser, argv)
    device = cli.resolve_device(args.device)
    metadata = cli.run_metadata(args)

    from sobolev_inr.data.audio import describe, load_audio, prepare_audio
    from sobolev_inr.experiment import describe_model, open_run, train_and_report
    from sobolev_inr.models import nyquist_num_frequencies
    from sobolev_inr.regression import engine_options
    from sobolev_inr.tasks.audio_regression import AudioRegression
    from sobolev_inr.training import seed_everything

    data = prepare_audio(load_audio(args.filename, args.data_root), args.factor, args.time_scale)
    run = open_run(args.logging_root, args.exp_name, metadata, parser.identity, args.resume, args.overwrite)
    if run.mode == "skip":
        return run.read_metrics()
    seed_everything(args.seed, args.deterministic)
    # Positional encoding: SIREN's Nyquist rule on the number of training samples (the original passes
    # fn_samples = len(downsampled_wav)); the rule assumes inputs on [-1, 1] (see the README).
    model = cli.build_model(args, in_features=1, out_features=1,
                            num_frequencies=nyquist_num_frequencies(len(data.train_index))).to(device)
    task = AudioRegression(data, args.supervision, args.lambda_der, args.der_units, args.der_mode,
                           args.batch_size, args.eval_chunk_size, device,
                           **engine_options(vars(args)))
    for line in describe(data):
        run.print(line)
    if not task.has_heldout:
        run.print("note: factor = 1 trains on every sample: no held-out metrics (metrics.json reports psnr_full)")
    describe_model(model, args.supervision, device, run)
    if model.config["encoding"] == "positional" and args.time_scale != 1.0:
        run.print(f"note: positional encoding on a [-{args.time_scale:g}, {args.time_scale:g}] time axis: its "
                  f"frequencies are {args.time_scale:g}x those of SIREN's Nyquist rule (made for [-1, 1]); "
                  f"time_scale = 1 follows the rule")
    summary = ("psnr_heldout", "psnr_full", "psnr_der_heldout") if task.has_heldout else ("psnr_full", "psnr_der_full")
    return train_and_report("audio_regression", model, task, run, cli.epoch_fit_config(args, run.mode == "resume"),
                            metadata, device, summary=summary,
                            extra_metrics={"audio": data.source, "sample_rate": data.rate,
                                           "num_samples": data.num_samples,
                                           "num_train_samples": len(data.train_index), "factor": data.factor,
                                           "time_scale": data.time_scale})


if __name__ == "__main__":
    cli.run_entry_point(main)
