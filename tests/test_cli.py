"""Tests for sobolev_inr.config.cli: option groups, their run-identity roles, aliases, and a torch-free --help."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from sobolev_inr.config import cli
from sobolev_inr.errors import ConfigError
from task_entry import REPO, load_task_main


def test_choice_lists_equal_the_registries_they_name():
    """The parser's choices are plain names (no torch import to build it); they must not drift."""
    from sobolev_inr.data.coords import DER_UNITS
    from sobolev_inr.data.targets import DERIVATIVE_OPERATORS
    from sobolev_inr.derivatives import DERIVATIVE_MODES, ENGINES
    from sobolev_inr.losses.sobolev import DER_ESTIMATORS, SUPERVISIONS
    from sobolev_inr.models import ACTIVATIONS, INITS

    assert cli.ACTIVATION_NAMES == tuple(sorted(ACTIVATIONS))
    assert cli.INIT_NAMES == tuple(INITS)
    assert cli.SUPERVISION_NAMES == tuple(SUPERVISIONS)
    assert cli.OPERATOR_NAMES == tuple(sorted(DERIVATIVE_OPERATORS))
    assert cli.DER_UNIT_NAMES == tuple(DER_UNITS)
    assert cli.DER_MODE_NAMES == tuple(DERIVATIVE_MODES)
    assert cli.ENGINE_NAMES == tuple(ENGINES)
    assert cli.DER_ESTIMATOR_NAMES == DER_ESTIMATORS


@pytest.mark.parametrize("task", ["image_regression", "audio_regression", "video_regression", "sdf"])
def test_help_and_parser_import_no_torch(task):
    code = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("m", "{REPO / 'Experiments' / task / 'main.py'}")
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        m.config_parser().format_help()
        assert "torch" not in sys.modules, sorted(k for k in sys.modules if k.startswith("torch"))[:5]
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_nerf_pytorch_aliases_in_a_config_file(tmp_path):
    cfg = tmp_path / "c.txt"
    cfg.write_text("expname = fern/test\nbasedir = ./elsewhere\nnetwidth = 64\nlrate = 5e-4\n")
    args = cli.parse_args(load_task_main("image_regression").config_parser(), ["--config", str(cfg)])
    assert (args.exp_name, args.logging_root, args.hidden_features, args.lrate) == ("fern/test", "./elsewhere", 64, 5e-4)


def test_groups_declare_their_roles():
    p = cli.make_parser("t")
    cli.add_run_options(p)
    cli.add_epoch_options(p, num_epochs=10)
    cli.add_engine_options(p)
    identity = p.identity
    assert {"device", "no_progress", "logging_root", "exp_name", "der_engine", "der_recompute", "der_mode",
            "epochs_til_summary"} <= identity.ignored
    assert identity.resumable == {"num_epochs", "final_eval_stride", "skip_final_eval"}
    assert "seed" not in identity.ignored and "batch_size" not in identity.ignored
    assert identity.defaults["num_epochs"] == 10 and "config" not in identity.defaults
    # a task brings its own vocabulary and roles
    p.add_argument("--my_option", type=int, default=3)
    p.declare(ignored=["my_option"])
    assert "my_option" in p.identity.ignored


@pytest.mark.parametrize("argv, words", [
    (["--num_epochs", "0"], "num_epochs must be >= 1"),
    (["--activations", "sine", "relu", "--num_hidden_layers", "2"], "num_hidden_layers + 1 = 3"),
    (["--has_pos_encoding", "--has_fourier_feature"], "exclusive"),
    (["--lrate", "0"], "lrate must be > 0"),
    (["--max_skipped_steps", "0"], "max_skipped_steps must be >= 1"),
])
def test_checks_raise_config_errors(argv, words):
    with pytest.raises(ConfigError, match=words.replace("+", r"\+")):
        cli.parse_args(load_task_main("image_regression").config_parser(), argv)


def test_booleans_that_default_to_true_parse_from_configs(tmp_path):
    cfg = tmp_path / "c.txt"
    cfg.write_text("pe_pi_factor = false\n")
    parser = load_task_main("image_regression").config_parser()
    assert cli.parse_args(parser, ["--config", str(cfg)]).pe_pi_factor is False
    assert cli.parse_args(parser, []).pe_pi_factor is True
    cfg.write_text("pe_pi_factor = maybe\n")
    with pytest.raises(SystemExit):
        parser.parse_args(["--config", str(cfg)])


@pytest.mark.e2e
def test_spder_eps_reaches_the_model_and_is_recorded(tmp_path):
    """spder_eps from a config builds SPDER activations with that smoothing length, recorded in the model's config
    (checkpoints rebuild it); a value that is not > 0 is refused in one line naming the option."""
    from sobolev_inr.training.checkpoints import model_from_state

    parser = load_task_main("image_regression").config_parser()
    args = cli.parse_args(parser, ["--activations", "spder_log", "--spder_eps", "0.003"])
    model = cli.build_model(args, in_features=2, out_features=1, num_frequencies=4)
    assert {a.eps for a in model.activations} == {0.003} and model.config["spder_eps"] == 0.003
    rebuilt = model_from_state({"model": model.state_dict(), "model_config": model.config})
    assert {a.eps for a in rebuilt.activations} == {0.003}
    for bad in ("0", "-1e-3", "small"):
        proc = subprocess.run([sys.executable, "main.py", "--spder_eps", bad, "--logging_root", str(tmp_path)],
                              cwd=REPO / "Experiments" / "image_regression", capture_output=True, text=True)
        assert proc.returncode == 2 and "spder_eps" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
