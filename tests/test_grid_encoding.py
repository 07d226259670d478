"""Tests for the multiresolution grid encoding (:class:`sobolev_inr.models.encodings.GridEncoding`): its levels,
hash and interpolation, its exact input derivatives against autograd and finite differences (float64), the
gradients to its tables, the fused engine with a grid-encoded MLP, bad settings, resume, and the shipped grid
configs (e2e)."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.autograd.functional import jvp as _jvp
from torch.func import functional_call

from sobolev_inr.config import cli
from sobolev_inr.derivatives import reference_jacobian, reference_laplacian, value_and_derivatives
from sobolev_inr.errors import ConfigError
from sobolev_inr.models import MLP
from sobolev_inr.models.encodings import (ENCODINGS, GRID_INTERPOLATIONS, HASH_PRIMES, GridEncoding, build_encoding,
                                          grid_resolutions)
from sobolev_inr.training.checkpoints import latest_checkpoint, list_checkpoints, load_checkpoint
from derivative_cases import GRID_DENSE, GRID_MIXED, make_coords, make_grid_model, relative_error
from task_entry import killed_run_command, load_task_main, run_main

REPO = Path(__file__).resolve().parents[1]
GRIDS = {"dense": GRID_DENSE, "mixed": GRID_MIXED}
DIMS = [1, 2, 3]


def grid_encoding(d: int, grid=GRID_MIXED, interpolation: str = "smoothstep", seed: int = 0) -> GridEncoding:
    """A float64 grid encoding with tables U(-1, 1) (derivatives of a useful size)."""
    torch.manual_seed(seed)
    enc = GridEncoding(d, **grid, interpolation=interpolation).double()
    with torch.no_grad():
        enc.table.uniform_(-1.0, 1.0)
    return enc


def cell_fractions(enc: GridEncoding, x: torch.Tensor) -> torch.Tensor:
    """(levels, N, D): where x lies inside its cell on each level, in [0, 1)."""
    p = torch.stack([(x.clamp(-1, 1) + 1.0) * (0.5 * n) + 0.5 for n in enc.resolutions])
    return p - torch.floor(p)


def interior_points(enc: GridEncoding, n: int, margin: float, seed: int = 1) -> torch.Tensor:
    """n points of [-1, 1]^D at least ``margin`` (in cells) from every level's cell faces."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(40 * n, enc.in_features, generator=gen, dtype=torch.float64) * 2 - 1
    f = cell_fractions(enc, x)
    keep = ((f > margin) & (f < 1 - margin)).all(-1).all(0)
    assert keep.sum() >= n
    return x[keep][:n]


def near(actual, reference, tol: float, floor: float = 1e-9) -> bool:
    """max |actual - reference| <= max(tol max |reference|, floor): relative, absolute where the reference is
    rounding noise around zero (the Laplacian of a ReLU network on linear features is zero; nested autograd
    gives up to 2e-11 from the cancelling mixed terms)."""
    return (actual - reference).abs().max().item() <= max(tol * reference.abs().max().item(), floor)


def jvp(fn, x, v):
    """(fn(x), J v) by autograd, differentiable so that it can be nested."""
    return _jvp(fn, x, v, create_graph=True)


# -------------------------------------------------------------------------------------------- levels
class TestLevels:
    def test_resolutions_grow_geometrically_from_base_to_finest(self):
        res = grid_resolutions(16, 16, 512)
        b = math.exp(math.log(512 / 16) / 15)
        assert res[0] == 16 and res[-1] == 512 and res == sorted(res) and len(res) == 16
        assert res[:-1] == [math.floor(16 * b ** level + 1e-6) for level in range(15)]
        assert grid_resolutions(1, 7, 100) == [7] and grid_resolutions(3, 5, 5) == [5, 5, 5]

    @pytest.mark.parametrize("d, hashed", [(1, [False, False, True]), (2, [False, True, True]),
                                           (3, [True, True, True])])
    def test_dense_while_the_vertices_fit_the_table_then_hashed(self, d, hashed):
        enc = GridEncoding(d, **GRID_MIXED)  # cells per axis 3, 10, 40: (N + 2)^D vertices against 32 entries
        assert enc.resolutions == [3, 10, 40] and enc.hashed == hashed
        sizes = [32 if h else (n + 2) ** d for n, h in zip(enc.resolutions, hashed)]
        assert enc.table.shape == (sum(sizes), 3) and enc.offsets == [0, sizes[0], sizes[0] + sizes[1]]
        assert enc.out_dim == 9 and enc(torch.rand(5, d) * 2 - 1).shape == (5, 9)
        assert not any(GridEncoding(d, **GRID_DENSE).hashed)

    def test_tables_start_as_instant_ngp_and_are_the_only_state(self):
        enc = GridEncoding(3)  # Instant-NGP's defaults: 16 levels of 2 features, 2^19 entries, 16 to 512 cells
        assert enc.resolutions[0] == 16 and enc.resolutions[-1] == 512 and enc.table.shape[1] == 2
        dense = sum((n + 2) ** 3 for n in enc.resolutions[:7])
        assert sum(enc.hashed) == 9 and enc.table.shape[0] == dense + 9 * 2 ** 19
        assert enc.table.abs().max() <= 1e-4 and enc.table.std() > 1e-5
        assert list(enc.state_dict()) == ["table"]

    def test_registered_and_built_from_the_config_by_the_mlp(self):
        assert "grid" in ENCODINGS and GRID_INTERPOLATIONS == cli.GRID_INTERPOLATIONS
        assert set(cli.GRID_KEYS) == set(GRID_MIXED) | {"interpolation"}
        enc = build_encoding("grid", 2, grid={**GRID_MIXED, "interpolation": "linear"})
        assert isinstance(enc, GridEncoding) and enc.interpolation == "linear" and enc.resolutions == [3, 10, 40]
        model = MLP(2, 3, ["relu", "relu"], hidden_features=8, encoding="grid", grid=GRID_MIXED)
        assert model.hidden[0].in_features == 9
        rebuilt = MLP(**model.config)  # what a checkpoint does
        rebuilt.load_state_dict(model.state_dict())
        x = torch.rand(6, 2) * 2 - 1
        assert torch.equal(rebuilt(x), model(x))

    @pytest.mark.parametrize("settings, words", [
        (dict(table_size=1000), "power of two"), (dict(base_resolution=16, finest_resolution=8), "finest_resolution"),
        (dict(levels=0), "levels must be >= 1"), (dict(interpolation="cubic"), "interpolation"),
    ])
    def test_bad_settings_are_refused(self, settings, words):
        with pytest.raises(ValueError, match=words):
            GridEncoding(2, **settings)
        if "interpolation" not in settings:
            with pytest.raises(ConfigError, match=words.replace("levels", "grid_levels")):
                cli.check_grid(settings)

    def test_four_dimensional_inputs_are_refused(self):
        with pytest.raises(ValueError, match="1-D, 2-D or 3-D"):
            GridEncoding(4)


# ------------------------------------------------------------------------------- hash and interpolation
class TestIndexAndInterpolation:
    def test_hashed_index_is_instant_ngp_spatial_hash(self):
        enc = GridEncoding(3, **GRID_MIXED)
        vertices = torch.tensor([[0, 0, 0], [1, 2, 3], [41, 0, 17], [40, 41, 39], [7, 7, 7]])
        for level in range(3):
            expected = [(v[0] * HASH_PRIMES[0] ^ v[1] * HASH_PRIMES[1] ^ v[2] * HASH_PRIMES[2]) % 32
                        for v in vertices.tolist()]
            assert enc.vertex_index(level, vertices).tolist() == expected
        assert HASH_PRIMES == (1, 2654435761, 805459861)

    def test_dense_index_is_row_major_with_axis_0_fastest(self):
        enc = GridEncoding(2, **GRID_MIXED)
        vertices = torch.tensor([[0, 0], [4, 0], [0, 1], [3, 4]])
        assert enc.vertex_index(0, vertices).tolist() == [0, 4, 5, 23]  # v0 + 5 v1 (3 cells: 5 vertices per axis)

    @pytest.mark.parametrize("interpolation", GRID_INTERPOLATIONS)
    @pytest.mark.parametrize("d", DIMS)
    def test_a_vertex_reads_its_own_row(self, d, interpolation):
        """Vertex v of level l sits at x = 2 (v - 1/2) / N_l - 1 (the half-cell shift), for dense and hashed levels."""
        enc = grid_encoding(d, GRID_MIXED, interpolation)
        for level, n in enumerate(enc.resolutions):
            vertices = torch.tensor([[1] * d, [n] * d, list(range(1, d + 1))])
            x = 2.0 * (vertices.double() - 0.5) / n - 1.0
            rows = enc.table[enc.vertex_index(level, vertices) + enc.offsets[level]]
            features = enc(x)[:, 3 * level:3 * level + 3]
            torch.testing.assert_close(features, rows, rtol=0, atol=1e-12)

    def test_bilinear_and_smoothstep_weights(self):
        enc = grid_encoding(2, dict(levels=1, features=2, table_size=2 ** 10, base_resolution=4, finest_resolution=4),
                            "linear")
        x = torch.tensor([[-0.3, 0.55]], dtype=torch.float64)
        p = (x + 1) * 2 + 0.5  # 4 cells
        i, f = torch.floor(p).long()[0], (p - torch.floor(p))[0]

        def row(a, b):
            return enc.table[(i[0] + a) + 6 * (i[1] + b)]

        for interpolation, w in (("linear", f), ("smoothstep", f * f * (3 - 2 * f))):
            enc.interpolation = interpolation
            expected = ((1 - w[0]) * (1 - w[1]) * row(0, 0) + w[0] * (1 - w[1]) * row(1, 0)
                        + (1 - w[0]) * w[1] * row(0, 1) + w[0] * w[1] * row(1, 1))
            torch.testing.assert_close(enc(x)[0], expected, rtol=0, atol=1e-14)


# -------------------------------------------------------------------------------------- derivatives
@pytest.mark.parametrize("interpolation", GRID_INTERPOLATIONS)
@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("d", DIMS)
class TestJet:
    def test_against_autograd(self, d, grid, interpolation):
        """Anywhere, the cube's outside (clamped) included: the jet is autograd's derivative of the forward pass."""
        enc = grid_encoding(d, GRIDS[grid], interpolation)
        gen = torch.Generator().manual_seed(2)
        x = torch.rand(9, d, generator=gen, dtype=torch.float64) * 2.4 - 1.2
        t = torch.randn(3, 9, d, generator=gen, dtype=torch.float64)
        h = torch.randn(3, 9, d, generator=gen, dtype=torch.float64)
        value, tangent, second = enc.jet(x, t, h)
        torch.testing.assert_close(value, enc(x), rtol=0, atol=1e-14)
        for i in range(3):
            d1 = jvp(enc, x, t[i])[1]
            d2 = jvp(lambda y: jvp(enc, y, t[i])[1], x, t[i])[1] + jvp(enc, x, h[i])[1]
            assert relative_error(tangent[i], d1) < 1e-12 and relative_error(second[i], d2) < 1e-12

    def test_against_finite_differences(self, d, grid, interpolation):
        """Inside cells (at least 2% of a cell from every face: the steps never cross one)."""
        enc = grid_encoding(d, GRIDS[grid], interpolation)
        x = interior_points(enc, 12, margin=0.02)
        t = torch.nn.functional.normalize(torch.randn(2, 12, d, dtype=torch.float64), dim=-1)
        _, tangent, second = enc.jet(x, t, torch.zeros_like(t))
        with torch.no_grad():
            for i in range(2):
                e1, e2 = 1e-6, 1e-4
                d1 = (enc(x + e1 * t[i]) - enc(x - e1 * t[i])) / (2 * e1)
                d2 = (enc(x + e2 * t[i]) - 2 * enc(x) + enc(x - e2 * t[i])) / e2 ** 2
                assert relative_error(tangent[i].detach(), d1) < 1e-7
                # absolute where the reference is zero (linear, 1-D): the quotient's rounding, about 1e-7
                assert (second[i].detach() - d2).abs().max() < 1e-5 * max(d2.abs().max().item(), 1.0)

    def test_jet_summed_is_the_sum_of_the_jet(self, d, grid, interpolation):
        enc = grid_encoding(d, GRIDS[grid], interpolation)
        x, t = make_coords(7, d=d), torch.randn(4, 7, d, dtype=torch.float64)
        value, tangent, second = enc.jet(x, t, torch.zeros_like(t))
        v, tg, s = enc.jet_summed(x, t)
        for a, b in [(v, value), (tg, tangent), (s, second.sum(0))]:
            assert relative_error(a, b) < 1e-13
        assert enc.jet(x, t)[2] is None and enc.jet(x, t)[1].shape == (4, 7, enc.out_dim)
        shared = enc.jet_summed(x, t[:, :1])  # one direction per s, broadcast over the rows
        assert relative_error(shared[2], enc.jet_summed(x, t[:, :1].expand(4, 7, d))[2]) < 1e-15


@pytest.mark.parametrize("d", DIMS)
def test_linear_has_no_laplacian_inside_a_cell_and_smoothstep_has_one(d):
    x = interior_points(grid_encoding(d), 10, margin=0.01)
    unit = torch.eye(d, dtype=torch.float64).unsqueeze(1).expand(d, 10, d)
    assert grid_encoding(d, interpolation="linear").jet_summed(x, unit)[2].abs().max() < 1e-12
    assert grid_encoding(d, interpolation="smoothstep").jet_summed(x, unit)[2].abs().max() > 1.0


@pytest.mark.parametrize("d", DIMS)
def test_smoothstep_slopes_are_continuous_across_faces_and_linear_ones_jump(d):
    """On either side of a level-0 face (axis 0), the derivative along axis 0 (other levels' cells interior)."""
    enc = grid_encoding(d, dict(levels=1, features=2, table_size=2 ** 12, base_resolution=5, finest_resolution=5))
    face = 2.0 * (3 - 0.5) / 5 - 1.0  # p = 3 on axis 0
    x = torch.tensor([[face] + [0.13] * (d - 1)], dtype=torch.float64)
    e = torch.zeros(1, 1, d, dtype=torch.float64)
    e[..., 0] = 1.0
    step = torch.zeros_like(x)
    step[0, 0] = 1e-9
    for interpolation, jumps in (("smoothstep", False), ("linear", True)):
        enc.interpolation = interpolation
        below, above = enc.jet(x - step, e)[1], enc.jet(x + step, e)[1]
        assert ((above - below).abs().max() > 1e-3) == jumps, interpolation


@pytest.mark.parametrize("d", DIMS)
def test_outside_the_cube_the_features_are_clamped(d):
    enc = grid_encoding(d)
    x = torch.full((1, d), 0.3, dtype=torch.float64)
    x[0, 0] = 1.7
    t = torch.eye(d, dtype=torch.float64).unsqueeze(1)
    value, tangent, second = enc.jet(x, t, torch.zeros_like(t))
    torch.testing.assert_close(value, enc(x.clamp(-1, 1)), rtol=0, atol=0)
    assert tangent[0].abs().max() == 0 and second[0].abs().max() == 0
    if d > 1:  # along the other axes the point is inside the cube
        assert tangent[1].abs().max() > 0


# ----------------------------------------------------------------------------------- table gradients
class _Jet(nn.Module):
    def __init__(self, enc, summed):
        super().__init__()
        self.enc, self.summed = enc, summed

    def forward(self, x, t, h):
        return self.enc.jet_summed(x, t) if self.summed else self.enc.jet(x, t, h)


@pytest.mark.parametrize("summed", [False, True], ids=["jet", "jet_summed"])
@pytest.mark.parametrize("d", DIMS)
def test_gradcheck_on_the_tables_and_the_inputs(d, summed):
    enc = grid_encoding(d, dict(levels=2, features=2, table_size=2 ** 4, base_resolution=2, finest_resolution=5))
    module = _Jet(enc, summed)
    table = enc.table.detach().clone().requires_grad_(True)
    x = interior_points(enc, 3, margin=0.05).requires_grad_(True)
    t = torch.randn(2, 3, d, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 3, d, dtype=torch.float64, requires_grad=True)
    assert enc.hashed[-1] or d == 1
    assert torch.autograd.gradcheck(lambda tb, a, b, c: functional_call(module, {"enc.table": tb}, (a, b, c)),
                                    (table, x, t, h))


# ------------------------------------------------------------------------------- the fused engine
@pytest.mark.parametrize("interpolation", GRID_INTERPOLATIONS)
@pytest.mark.parametrize("activation", ["tanh", "relu", "sine"])
class TestFusedEngine:
    """A grid-encoded MLP (float64): the fused engine's Jacobian (forward and reverse) and Laplacian, and the
    gradients of losses on them to every parameter (the tables included), equal autograd's."""

    @pytest.mark.parametrize("mode", ["forward", "reverse"])
    def test_jacobian_and_its_gradients(self, activation, interpolation, mode):
        model = make_grid_model(activation, interpolation=interpolation, in_features=3, out_features=2)
        x = make_coords(20, d=3)
        out = value_and_derivatives(model, x, mode=mode, engine="fused")
        ref = reference_jacobian(model, x, create_graph=True)
        assert relative_error(out.value, ref.value) < 1e-12 and relative_error(out.jacobian, ref.jacobian) < 1e-12
        params = list(model.parameters())
        target = torch.randn_like(ref.jacobian)
        grads = torch.autograd.grad(((out.jacobian - target) ** 2).sum() + out.value.square().sum(), params)
        ref_grads = torch.autograd.grad(((ref.jacobian - target) ** 2).sum() + ref.value.square().sum(), params)
        assert grads[0].abs().max() > 0  # the table
        for g, r in zip(grads, ref_grads):
            assert relative_error(g, r) < 1e-10

    def test_laplacian_and_its_gradients(self, activation, interpolation):
        model = make_grid_model(activation, interpolation=interpolation)
        x = make_coords(20)
        scale = torch.tensor([0.5, 2.0], dtype=torch.float64)
        out = value_and_derivatives(model, x, scale=scale, laplacian=True, engine="fused")
        xr = x.clone().requires_grad_(True)
        value = model(xr)
        ref = []
        for c in range(value.shape[1]):
            (g,) = torch.autograd.grad(value[:, c].sum(), xr, create_graph=True)
            ref.append(sum(scale[k] ** 2 * torch.autograd.grad(g[:, k].sum(), xr, create_graph=True)[0][:, k]
                           for k in range(2)))
        ref = torch.stack(ref, 1)
        assert near(out.laplacian, ref, 1e-11)
        if interpolation == "linear" and activation == "relu":
            assert out.laplacian.abs().max() < 1e-12  # piecewise multilinear features, piecewise linear network
        params = list(model.parameters())
        target = torch.randn_like(ref)
        grads = torch.autograd.grad(((out.laplacian - target) ** 2).sum(), params, allow_unused=True)
        ref_grads = torch.autograd.grad(((ref - target) ** 2).sum(), params, allow_unused=True)
        for g, r, p in zip(grads, ref_grads, params):  # None: no path from the parameter (the output bias)
            g, r = (torch.zeros_like(p) if a is None else a for a in (g, r))
            assert near(g, r, 1e-10)

    def test_engines_agree(self, activation, interpolation):
        model = make_grid_model(activation, interpolation=interpolation)
        x = make_coords(16)
        fused = value_and_derivatives(model, x, laplacian=True, engine="fused", create_graph=False)
        auto = value_and_derivatives(model, x, laplacian=True, engine="autograd", create_graph=False)
        assert relative_error(fused.jacobian, auto.jacobian) < 1e-12
        assert relative_error(fused.laplacian, auto.laplacian) < 1e-12
        assert near(fused.laplacian, reference_laplacian(model, x).detach(), 1e-11)


# ---------------------------------------------------------------------------------- configs and runs
IMAGE_TASK = REPO / "Experiments" / "image_regression"


def _grid_configs():
    """Experiments/<task>/configs/families/grid*: files, or the .txt files of folders."""
    found = []
    for path in REPO.glob("Experiments/*/configs/families/grid*"):
        found += sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    return sorted(found)


GRID_CONFIGS = _grid_configs()


def test_grid_configs_one_per_task_and_a_val_val_der_pair_for_the_study():
    names = {str(p.relative_to(REPO / "Experiments")) for p in GRID_CONFIGS}
    assert names == {"image_regression/configs/families/grid/val.txt",
                     "image_regression/configs/families/grid/val_der.txt",
                     "audio_regression/configs/families/grid.txt",
                     "video_regression/configs/families/grid.txt",
                     "sdf/configs/families/grid.txt",
                     "inverse_rendering/configs/families/grid.txt"}
    val, val_der = (IMAGE_TASK / "configs/families/grid" / f"{s}.txt" for s in ("val", "val_der"))
    differ = set(val.read_text().splitlines()) ^ set(val_der.read_text().splitlines())
    assert differ == {"exp_name = families/grid/val", "exp_name = families/grid/val_der", "supervision = val",
                      "supervision = val_der"}


def test_the_nerf_config_builds_a_grid_encoded_tiny_nerf():
    from sobolev_inr.tasks.inverse_rendering import InverseRenderingOptions
    from sobolev_inr.tasks.inverse_rendering.task import build_model

    train = load_task_main("inverse_rendering", "train")
    cfg = REPO / "Experiments/inverse_rendering/configs/families/grid.txt"
    args = train.config_parser().parse_args(["--config", str(cfg)])
    model = build_model(InverseRenderingOptions.from_config(vars(args)).model)
    enc = model.encoding
    assert isinstance(enc, GridEncoding) and enc.resolutions[0] == 8 and enc.resolutions[-1] == 128
    assert enc.table_size == 2 ** 17 and any(enc.hashed) and model.config["grid"]["levels"] == 8
    args = train.config_parser().parse_args(["--config", str(cfg), "--i_embed", "0"])
    assert build_model(InverseRenderingOptions.from_config(vars(args)).model).config["grid"] is None


def test_the_image_config_builds_its_grid():
    parser = load_task_main("image_regression").config_parser()
    args = parser.parse_args(["--config", str(IMAGE_TASK / "configs/families/grid/val_der.txt")])
    model = cli.build_model(args, in_features=2, out_features=1, num_frequencies=4)
    assert isinstance(model.encoding, GridEncoding) and model.encoding.resolutions == grid_resolutions(8, 4, 64)
    assert model.config["grid"] == cli.grid_settings(args)
    assert [layer.out_features for layer in model.hidden] == [64] * 2


BAD_GRIDS = [
    (["--grid_table_size", "1000"], "grid_table_size must be a power of two"),
    (["--grid_base_resolution", "16", "--grid_finest_resolution", "8"], "grid_finest_resolution (8) must be >="),
]


@pytest.mark.e2e
@pytest.mark.parametrize("task, script, extra", [("image_regression", "main.py", ["--has_grid_encoding"]),
                                                 ("inverse_rendering", "train.py", ["--i_embed", "1"])])
@pytest.mark.parametrize("bad, words", BAD_GRIDS)
def test_bad_grid_settings_stop_with_one_line_and_exit_2(task, script, extra, bad, words, tmp_path):
    proc = subprocess.run([sys.executable, script, *extra, *bad, "--logging_root", str(tmp_path), "--no_progress"],
                          cwd=REPO / "Experiments" / task, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], proc.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.e2e
@pytest.mark.slow
def test_a_killed_grid_run_resumes_to_the_uninterrupted_result(tiny_gray_png, tmp_path):
    """As tests/test_reliability.py: killed (SIGKILL) right after its 2nd checkpoint, then the same command."""
    common = ["--filename", tiny_gray_png, "--has_grid_encoding", "--grid_levels", 3, "--grid_base_resolution", 2,
              "--grid_finest_resolution", 8, "--grid_table_size", 32, "--activations", "relu", "--num_hidden_layers", 1,
              "--hidden_features", 16, "--lrate", 1e-2, "--num_epochs", 30, "--epochs_til_ckpt", 10,
              "--logging_root", tmp_path, "--no_progress", "--supervision", "val_der"]

    def run(args, prefix=(sys.executable, "main.py")):
        return subprocess.run([*prefix, *map(str, args)], cwd=IMAGE_TASK, capture_output=True, text=True, timeout=300)

    assert run(common + ["--exp_name", "whole"]).returncode == 0
    killed = run(common + ["--exp_name", "killed"], prefix=killed_run_command("image_regression", 2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ckpts = tmp_path / "killed" / "checkpoints"
    assert [p.name for p in list_checkpoints(ckpts)] == ["epoch_0000010.pt", "epoch_0000020.pt"]
    rerun = run(common + ["--exp_name", "killed"])
    assert rerun.returncode == 0 and "resume: continuing from epoch_0000020.pt" in rerun.stdout, rerun.stderr
    a = load_checkpoint(latest_checkpoint(tmp_path / "whole" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(ckpts))
    assert a["epoch"] == b["epoch"] == 30 and "encoding.table" in a["model"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    killed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert whole["psnr_heldout"] == killed["psnr_heldout"] and whole["encoding"] == "grid"


def _tiny_overrides(task: str, tiny_gray_png, tmp_path_factory) -> dict:
    """Each task's smallest inputs for a few steps (as its own shipped-config test)."""
    if task == "image_regression":
        return dict(filename=tiny_gray_png, num_epochs=2)
    if task == "audio_regression":
        return dict(filename="synthetic:0.05", num_epochs=2)
    if task == "video_regression":
        return dict(filename="synthetic:5", sidelength=16, batch_size=0, num_epochs=2, epochs_til_summary=1)
    if task == "sdf":
        return dict(num_points=400, batch_size=400, num_epochs=2, mc_resolution=16)
    from sobolev_inr.data.scenes import make_synthetic_scene

    scene = make_synthetic_scene(tmp_path_factory.mktemp("scene") / "tiny", width=32, height=24, num_views=10,
                                 factors=(2,))
    return dict(datadir=scene, llff_factor=2, factor=2, N_iters=2, N_samples=8, N_rand=64, i_print=1, i_img=1000,
                i_weights=1000, i_testset=1000, i_video=1000, eval_rays=32, chunk=512)


@pytest.mark.e2e
@pytest.mark.parametrize("config", GRID_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "Experiments")))
def test_each_grid_config_runs_a_few_steps(config, tiny_gray_png, tmp_path, tmp_path_factory, one_thread):
    task = config.relative_to(REPO / "Experiments").parts[0]
    overrides = _tiny_overrides(task, tiny_gray_png, tmp_path_factory)
    if task == "inverse_rendering":
        argv = ["--config", str(config), "--basedir", str(tmp_path), "--no_progress"]
        for key, value in overrides.items():
            argv += [f"--{key}", str(value)]
        metrics = load_task_main(task, "train").main(argv)
    else:
        metrics = run_main(load_task_main(task), ["--config", str(config)], tmp_path, **overrides)
    assert metrics["steps"] == 2 and metrics["encoding"] == "grid", config
    assert metrics["supervision"] in config.read_text()
