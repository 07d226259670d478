"""The coordinate MLP: an encoding, activated linear layers, a linear output layer."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .activations import SPDER_EPS, build_activation, he_init
from .encodings import build_encoding

INITS = ("activation", "torch_default", "he")
"""Weight inits of an :class:`MLP`: ``activation``, the init that belongs to each activation (SIREN's for
sine, Table 4 of the Sobolev supplement for the others); ``torch_default``, what ``nn.Linear`` draws
itself (the original inverse-rendering code's TinyNeRF); ``he``, Kaiming normal for every layer (what
the supplement says it used for inverse rendering)."""


class MLP(nn.Module):
    """Coordinate network ``x (N, in_features) -> (N, out_features)``.

    ``activations`` names one activation per activated layer (``[sine, sine, sine, sine]`` is the
    original code's 4 activated layers of ``hidden_features``, then a linear output layer). Each
    linear layer is initialised by the activation that follows it; the first layer by that
    activation's first-layer init, and the output layer like the last hidden layer, as the
    original code does (``init = "activation"``; see :data:`INITS` for the others). Constructor
    arguments are kept in ``self.config`` so a checkpoint can rebuild the model with ``MLP(**config)``.
    ``pe_pi_factor``: the positional encoding's frequencies are 2^k pi (SIREN's, default) or 2^k
    (nerf-pytorch's) per unit of the input. ``spder_eps``: the smoothing length of SPDER's dampings at 0
    (:data:`~sobolev_inr.models.activations.SPDER_EPS`; unused by the other activations). ``act_scale``: the
    scale of the activations that have one (0: each one's paper default). ``grid``: the multiresolution grid
    encoding's settings when ``encoding = "grid"`` (:func:`~sobolev_inr.models.encodings.build_encoding`).
    """

    def __init__(self, in_features: int, out_features: int, activations: Sequence[str],
                 hidden_features: int = 256, w0: float = 30.0, encoding: str = "none",
                 num_frequencies: int = 4, fourier_num_features: int = 256,
                 fourier_scale: float = 10.0, fourier_seed: int = 0, init: str = "activation",
                 pe_pi_factor: bool = True, spder_eps: float = SPDER_EPS, act_scale: float = 0.0,
                 grid: Optional[Mapping[str, Any]] = None):
        super().__init__()
        if len(activations) < 1:
            raise ValueError("activations must name at least one activated layer")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose from {list(INITS)}")
        self.config = dict(in_features=in_features, out_features=out_features, activations=list(activations),
                           hidden_features=hidden_features, w0=w0, encoding=encoding,
                           num_frequencies=num_frequencies, fourier_num_features=fourier_num_features,
                           fourier_scale=fourier_scale, fourier_seed=fourier_seed, init=init,
                           pe_pi_factor=pe_pi_factor, spder_eps=spder_eps, act_scale=act_scale,
                           grid=dict(grid) if grid is not None else None)
        self.in_features, self.out_features = in_features, out_features
        self.encoding = build_encoding(encoding, in_features, num_frequencies, fourier_num_features,
                                       fourier_scale, fourier_seed, pe_pi_factor, grid)
        self.activations = [build_activation(name, w0, spder_eps, act_scale) for name in activations]
        widths = [self.encoding.out_dim] + [hidden_features] * len(activations)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.output = nn.Linear(hidden_features, out_features)
        if init == "activation":
            for i, (layer, act) in enumerate(zip(self.hidden, self.activations)):
                (act.init_first if i == 0 else act.init_hidden)(layer)
            self.activations[-1].init_hidden(self.output)
        elif init == "he":
            for layer in [*self.hidden, self.output]:
                he_init(layer)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, in_features) coordinates in the task's range (images: [-1, 1]); returns (N, C)."""
        h = self.encoding(x)
        for layer, act in zip(self.hidden, self.activations):
            h = act(layer(h))
        return self.output(h)

    def jet(self, x: Tensor, tangents: Tensor, second_order: bool = False
            ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Value and exact directional derivatives in forward mode.

        x: (N, D); tangents: (T, N, D), the input directions (broadcastable over N). Returns
        value (N, C), first directional derivatives (T, N, C) and, if ``second_order``, the
        second directional derivatives (T, N, C) along the same directions. The input is affine
        in itself, so its own second-order term is zero. Everything is a differentiable torch
        expression: a loss on the derivatives back-propagates to the weights.
        """
        tangents = tangents.expand(tangents.shape[0], x.shape[0], x.shape[1])
        second = torch.zeros_like(tangents) if second_order else None
        h, t, s = self.encoding.jet(x, tangents, second)
        order = 2 if second_order else 1
        for layer, act in zip(self.hidden, self.activations):
            w = layer.weight.T
            z, tz = layer(h), t @ w
            f, df, d2f = act.jet(z, order)
            if second_order:
                s = d2f * tz * tz + df * (s @ w)
            h, t = f, df * tz
        w = self.output.weight.T
        return self.output(h), t @ w, (s @ w if second_order else None)

    def laplacian(self, x: Tensor, tangents: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The forward Laplacian (Li et al. 2023, arXiv 2307.08214): value, first directional derivatives
        and the SUM over the T directions of the second directional derivatives, in one pass.

        x: (N, D); tangents: (T, N, D), broadcastable over N (T = D scaled unit directions give the
        Laplacian). Returns value (N, C), first directional derivatives (T, N, C) and the summed second
        derivatives (N, C). Per layer it carries one summed second-order stream s instead of
        :meth:`jet`'s T: with u = z(h), s' = f'(u) (s W^T) + f''(u) sum_j (t_j W^T)^2. A subclass that
        overrides :meth:`jet` gets the sum of its jet's second-order terms instead. Differentiable torch
        expressions throughout, like :meth:`jet`.
        """
        if type(self).jet is not MLP.jet:
            value, out, second = self.jet(x, tangents, second_order=True)
            return value, out, second.sum(0)
        tangents = tangents.expand(tangents.shape[0], x.shape[0], x.shape[1])
        h, t, s = self.encoding.jet_summed(x, tangents)  # s: (N, K0), None where zero (no encoding)
        for layer, act in zip(self.hidden, self.activations):
            w = layer.weight.T
            z, tz = layer(h), t @ w
            f, df, d2f = act.jet(z, 2)
            s = d2f * (tz * tz).sum(0) + (df * (s @ w) if s is not None else 0.0)
            h, t = f, df * tz
        w = self.output.weight.T
        return self.output(h), t @ w, s @ w

    def extra_repr(self) -> str:
        return f"activations={[repr(a) for a in self.activations]}"
