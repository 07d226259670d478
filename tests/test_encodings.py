"""Tests for sobolev_inr.models.encodings: out_dim, the formulas, the jets and reproducibility."""
from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jvp as _jvp

from sobolev_inr.models import MLP
from sobolev_inr.models.encodings import (ENCODINGS, IdentityEncoding, build_encoding, fourier_features,
                                          nyquist_num_frequencies, positional_encoding)


class TestOutDim:
    @pytest.mark.parametrize("d", [1, 2, 3])
    def test_none(self, d):
        enc = build_encoding("none", d)
        assert enc.out_dim == d
        assert enc(torch.rand(5, d)).shape == (5, d)

    @pytest.mark.parametrize("d", [1, 2, 3])
    @pytest.mark.parametrize("num_frequencies", [1, 4, 7])
    def test_positional(self, d, num_frequencies):
        enc = build_encoding("positional", d, num_frequencies=num_frequencies)
        assert enc.out_dim == d + 2 * d * num_frequencies
        assert enc(torch.rand(5, d)).shape == (5, enc.out_dim)

    @pytest.mark.parametrize("d", [1, 2, 3])
    @pytest.mark.parametrize("k", [1, 16])
    def test_fourier(self, d, k):
        enc = build_encoding("fourier", d, fourier_num_features=k)
        assert enc.out_dim == 2 * k
        assert enc(torch.rand(5, d)).shape == (5, 2 * k)

    @pytest.mark.parametrize("encoding", ENCODINGS)
    def test_mlp_reads_out_dim(self, encoding):
        model = MLP(2, 3, ["sine"], hidden_features=8, encoding=encoding, num_frequencies=3, fourier_num_features=5)
        assert model.hidden[0].in_features == model.encoding.out_dim
        assert model(torch.rand(4, 2)).shape == (4, 3)


class TestBadInput:
    def test_unknown_encoding_lists_choices(self):
        with pytest.raises(ValueError) as info:
            build_encoding("hash", 2)
        for name in ENCODINGS:
            assert name in str(info.value)

    def test_positional_needs_a_frequency(self):
        with pytest.raises(ValueError, match="num_frequencies"):
            positional_encoding(2, 0)


class TestPositionalFormula:
    @pytest.mark.parametrize("d,num_frequencies", [(1, 3), (2, 4), (3, 2)])
    def test_matches_nerf_gamma(self, d, num_frequencies):
        p = torch.rand(7, d) * 2 - 1
        enc = positional_encoding(d, num_frequencies)
        columns = [p[:, j] for j in range(d)]
        for k in range(num_frequencies):
            for j in range(d):
                arg = (2.0 ** k) * math.pi * p[:, j].double()
                columns += [torch.sin(arg).float(), torch.cos(arg).float()]
        expected = torch.stack(columns, dim=1)
        torch.testing.assert_close(enc(p), expected, rtol=0, atol=2e-5)

    def test_identity_is_identity(self):
        x = torch.randn(4, 3)
        assert torch.equal(IdentityEncoding(3)(x), x)


class TestNyquist:
    @pytest.mark.parametrize("samples,expected", [(8, 1), (16, 2), (64, 4), (128, 5), (256, 6), (512, 7),
                                                  (100, 4), (4, 1), (1, 1)])
    def test_values(self, samples, expected):
        # SIREN: floor(log2(nyquist rate)) with nyquist rate = samples / 4 on [-1, 1]
        assert nyquist_num_frequencies(samples) == expected

    def test_is_integer(self):
        assert isinstance(nyquist_num_frequencies(128), int)


class TestFourierFeatures:
    def test_reproducible_for_same_seed(self):
        a = fourier_features(2, 16, 10.0, seed=3)
        b = fourier_features(2, 16, 10.0, seed=3)
        c = fourier_features(2, 16, 10.0, seed=4)
        assert torch.equal(a.projection, b.projection)
        assert not torch.equal(a.projection, c.projection)

    def test_independent_of_global_rng(self):
        torch.manual_seed(1)
        a = fourier_features(2, 16, 10.0, seed=0)
        torch.manual_seed(2)
        torch.rand(100)
        b = fourier_features(2, 16, 10.0, seed=0)
        assert torch.equal(a.projection, b.projection)

    def test_does_not_advance_global_rng(self):
        state = torch.get_rng_state()
        fourier_features(3, 32, 10.0, seed=5)
        assert torch.equal(torch.get_rng_state(), state)

    def test_formula(self):
        enc = fourier_features(2, 8, 2.0, seed=0)
        b = torch.randn(8, 2, generator=torch.Generator().manual_seed(0)) * 2.0
        x = torch.rand(5, 2)
        arg = 2 * math.pi * x @ b.T
        expected = torch.stack((torch.sin(arg), torch.cos(arg)), dim=-1).flatten(-2)  # sin_k, cos_k interleaved
        torch.testing.assert_close(enc(x), expected, rtol=1e-5, atol=1e-5)

    def test_projection_is_a_saved_buffer(self):
        enc = fourier_features(2, 4, 1.0)
        assert "projection" in enc.state_dict()


def jvp(fn, primals, tangents):
    """(fn(x), J t) by autograd (double-backward), differentiable so that it can be nested."""
    return _jvp(fn, primals[0], tangents[0], create_graph=True)


class TestJet:
    """The encoding's hand-made forward-mode derivatives against autograd's directional derivatives."""

    @pytest.mark.parametrize("name", ENCODINGS)
    def test_tangent_and_second_order(self, name):
        enc = build_encoding(name, 2, num_frequencies=3, fourier_num_features=6, fourier_scale=1.0).double()
        x = torch.rand(5, 2, dtype=torch.float64) * 2 - 1
        t = torch.randn(3, 5, 2, dtype=torch.float64)
        h = torch.randn(3, 5, 2, dtype=torch.float64)
        value, tangent, second = enc.jet(x, t, h)
        torch.testing.assert_close(value, enc(x))
        for i in range(t.shape[0]):
            _, d1 = jvp(enc, (x,), (t[i],))
            d2 = jvp(lambda y: jvp(enc, (y,), (t[i],))[1], (x,), (t[i],))[1] + jvp(enc, (x,), (h[i],))[1]
            torch.testing.assert_close(tangent[i], d1, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(second[i], d2, rtol=1e-10, atol=1e-10)

    @pytest.mark.parametrize("name", ENCODINGS)
    def test_without_second_order(self, name):
        enc = build_encoding(name, 2, num_frequencies=2, fourier_num_features=3)
        value, tangent, second = enc.jet(torch.rand(4, 2), torch.randn(2, 4, 2))
        assert second is None
        assert value.shape == (4, enc.out_dim) and tangent.shape == (2, 4, enc.out_dim)

    def test_gradcheck(self):
        enc = positional_encoding(2, 2).double()
        x = torch.rand(3, 2, dtype=torch.float64, requires_grad=True)
        t = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
        h = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b, c: enc.jet(a, b, c), (x, t, h))
