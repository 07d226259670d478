"""Typed options (sobolev_inr.config.options): built from a config's keys, checked once, taken by the constructors."""
import pytest

from sobolev_inr.config import cli
from sobolev_inr.config.options import EngineOptions, SupervisionOptions
from sobolev_inr.errors import ConfigError, UserError


def test_options_take_their_own_keys_of_a_config_and_default_the_rest():
    config = {"supervision": "der", "lambda_der": 0.5, "der_mode": "reverse", "filename": "baby", "seed": 3}
    assert SupervisionOptions.from_config(config) == SupervisionOptions("der", lambda_der=0.5)
    assert EngineOptions.from_config(config) == EngineOptions(der_mode="reverse")
    assert SupervisionOptions.from_config({}) == SupervisionOptions()


@pytest.mark.parametrize("kwargs, words", [
    (dict(supervision="sobolev"), r"unknown supervision 'sobolev'; choose from \['val', 'val_der', 'der', 'lapl'\]"),
    (dict(der_units="metre"), "unknown der_units 'metre'"),
    (dict(der_operator="scharr"), "unknown der_operator 'scharr'"),
    (dict(der_directions=0, der_estimator="directional"), "der_directions must be >= 1, got 0"),
    (dict(der_fraction=0.0), r"der_fraction must be in \(0, 1\], got 0.0"),
    (dict(supervision="lapl", der_estimator="directional"),
     "der_estimator = directional estimates the Jacobian loss of val_der or der; supervision = lapl has none"),
])
def test_bad_supervision_options_are_one_config_error_that_is_also_a_value_error(kwargs, words):
    with pytest.raises(ConfigError, match=words) as info:
        SupervisionOptions(**kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)


def test_bad_engine_options_are_rejected():
    with pytest.raises(ConfigError, match="unknown der_engine 'cuda'"):
        EngineOptions(der_engine="cuda")


def test_the_parser_checks_supervision_through_the_options():
    p = cli.make_parser("t")
    cli.add_run_options(p)
    cli.add_supervision_options(p)
    with pytest.raises(ConfigError, match="der_fraction < 1 estimates the Jacobian loss"):
        cli.parse_args(p, ["--supervision", "val", "--der_fraction", "0.5"])
    args = cli.parse_args(p, ["--supervision", "der", "--der_estimator", "directional", "--der_directions", "2"])
    assert SupervisionOptions.from_config(vars(args)).der_directions == 2


def test_options_are_frozen():
    options = SupervisionOptions()
    with pytest.raises(AttributeError):
        options.lambda_der = 2.0


def test_a_task_s_options_nest_and_are_built_from_one_flat_config():
    from sobolev_inr.config.options import ImageSource
    from sobolev_inr.tasks.image_regression import ImageRegressionOptions
    from sobolev_inr.tasks.inverse_rendering import InverseRenderingOptions

    options = ImageRegressionOptions.from_config({"filename": "skimage:astronaut", "sidelength": 64,
                                                  "supervision": "lapl", "der_units": "coord", "factor": 1})
    assert options.source == ImageSource("skimage:astronaut", sidelength=64)
    assert options.supervision == SupervisionOptions("lapl", der_units="coord") and options.factor == 1
    nerf = InverseRenderingOptions.from_config({"datadir": "synthetic", "N_samples": 8, "netwidth": 16,
                                                "activations": ["relu"] * 8, "supervision": "der"})
    assert (nerf.scene.datadir, nerf.rays.N_samples, nerf.model.netwidth) == ("synthetic", 8, 16)
    assert nerf.supervision.supervision == "der" and nerf.scene.llffhold == 8


@pytest.mark.parametrize("task, config, words", [
    ("sdf", {"mc_resolution": 4}, "mc_resolution must be >= 8, got 4"),
    ("sdf", {"lambda_grad": -1.0}, "lambda_grad must be >= 0, got -1.0"),
    ("video_regression", {"time_factor": 0}, "time_factor must be >= 1, got 0"),
    ("image_editing", {"edit": "clone", "mask_centre": [0.9, 0.0]}, "outside the image's"),
    ("image_editing", {"alpha": 1.5}, r"alpha must be in \[0, 1\], got 1.5"),
])
def test_a_task_s_options_check_themselves(task, config, words):
    import importlib

    module = importlib.import_module(f"sobolev_inr.tasks.{task}")
    cls = {"sdf": "SDFOptions", "video_regression": "VideoRegressionOptions", "image_editing": "EditOptions"}[task]
    with pytest.raises(ConfigError, match=words):
        getattr(module, cls).from_config(config)
