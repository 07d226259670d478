"""Small models, coordinates and the error measure shared by the derivative-engine tests
(test_derivatives.py, test_laplacian.py)."""
import torch

from sobolev_inr.models import MLP


def relative_error(actual: torch.Tensor, reference: torch.Tensor) -> float:
    """max |actual - reference| / max |reference| (the absolute error where the reference is identically zero)."""
    err = (actual - reference).abs().max().item()
    peak = reference.abs().max().item()
    return err / peak if peak > 0 else err


def make_model(activation="sine", encoding="none", in_features=2, out_features=3, dtype=torch.float64,
               layers=2, hidden=24, seed=0) -> MLP:
    torch.manual_seed(seed)
    # w0 = 30 for sine / SPDER as in the papers; small encodings keep the tests fast.
    model = MLP(in_features, out_features, [activation] * layers, hidden_features=hidden, w0=30.0,
                encoding=encoding, num_frequencies=3, fourier_num_features=8, fourier_scale=2.0, fourier_seed=1)
    return model.to(dtype)


def make_coords(n=32, d=2, dtype=torch.float64, seed=1) -> torch.Tensor:
    """(n, d) coordinates uniform in [-1, 1], the same for the same seed."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=gen, dtype=dtype) * 2 - 1


# ------------------------------------------------------------------------------ grid encoding cases
# Small grids for tests/test_grid_encoding.py: GRID_DENSE has dense levels only for D = 1, 2, 3; GRID_MIXED
# (cells per axis 3, 10, 40) has dense and hashed levels for D = 1 and 2, hashed ones only for D = 3.
GRID_DENSE = dict(levels=3, features=2, table_size=2 ** 16, base_resolution=2, finest_resolution=30)
GRID_MIXED = dict(levels=3, features=3, table_size=2 ** 5, base_resolution=3, finest_resolution=40)


def make_grid_model(activation="tanh", grid=GRID_MIXED, interpolation="smoothstep", in_features=2, out_features=3,
                    dtype=torch.float64, layers=2, hidden=16, seed=0) -> MLP:
    """An MLP behind a small grid encoding whose tables are redrawn U(-1, 1), so that the features' share of
    the derivatives is not the 1e-4 of Instant-NGP's init."""
    torch.manual_seed(seed)
    model = MLP(in_features, out_features, [activation] * layers, hidden_features=hidden, encoding="grid",
                grid={**grid, "interpolation": interpolation}).to(dtype)
    with torch.no_grad():
        model.encoding.table.uniform_(-1.0, 1.0)
    return model
