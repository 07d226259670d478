"""Activation functions, each with its first, second and third derivative and the init that belongs to it.

Every activation returns ``(f, df, d2f)`` from one call so that the derivative engine
(:mod:`sobolev_inr.derivatives`) can propagate exact input-derivatives through a layer without
recomputing shared work (sine's ``sin`` and ``cos`` of the same pre-activation, for instance);
``order=3`` adds ``d3f``, which the backward pass of the fused forward Laplacian reads.
All are ordinary differentiable torch expressions, so a loss on them back-propagates.

Init follows Table 4 of the Sobolev-INR supplement (paper 000) and SIREN for sine, and the reference code of
each newer family (``s``, ``k`` and ``beta`` are ``act_scale``; 0 gives the default in brackets):

==========  ===================================================  ===================================================
name        definition                                           weight init
==========  ===================================================  ===================================================
sine        sin(w0 z)                                            first U(-1/n, 1/n); others U(+-sqrt(6/n)/w0)
relu        max(z, 0)                                            Kaiming normal (fan_in)
elu         z if z > 0 else exp(z) - 1                           normal, std sqrt(1.5505)/sqrt(n) (SIREN's)
selu        scaled ELU (Klambauer et al.)                        normal, std 1/sqrt(n) (SIREN's)
sigmoid     1 / (1 + exp(-z))                                    Xavier normal
softplus    log(1 + exp(z))                                      Kaiming normal
tanh        tanh(z)                                              Xavier normal
spder_*     sin(x) * delta(x), x = w0 z (SPDER, paper 003)       SIREN's
finer       sin(w0 (|z| + 1) z), |z| smoothed (FINER)            SIREN's; first-layer bias U(-k, k) [k = 1]
gauss       exp(-(s z)^2) (Ramasinghe and Lucey) [s = 10]        nn.Linear's own: U(+-1/sqrt(n)), bias too
wire        cos(w0 z) exp(-(s z)^2), real Gabor (WIRE) [s = 10]  nn.Linear's own: U(+-1/sqrt(n)), bias too
sinc        sin(pi x) / (pi x), x = w0 z (Saratchandran et al.)  SIREN's
hosc        tanh(beta sin(w0 z)) (HOSC) [beta = 8]               SIREN's
==========  ===================================================  ===================================================

``n`` is the layer's fan-in. SPDER damps the sine of the w0-scaled pre-activation x = w0 z: the paper's
activation sin(x) delta(x) (its Eq. 3) acts on the input that it multiplies by w0 (A.9.1), as its code
does. With the SIREN init x is of order 1, so the damping keeps activations of order 1 through the
layers; damping z itself, of order 1 / w0, shrinks them layer after layer (cameraman 128x128, 6 layers
of 256, 100 steps: 22.7 dB against 65.1 dB). The damping ``delta`` is one of ``sqrt`` (sqrt|x|, the
paper's default, also registered as plain ``spder``), ``log`` (log|x|), ``arctan`` and ``sqrt_relu``
(sqrt(relu(x))). The three that are not smooth at 0 (paper 003, A.9 guards them) take smooth forms
with a length ``eps`` (``spder_eps`` in configs, recorded in the model; default ``SPDER_EPS``):
(x^2 + eps^2)^(1/4), 0.5 log(x^2 + eps^2) and sqrt((x + sqrt(x^2 + eps^2)) / 2), the paper's
functions for |x| >> eps. f, f', f'' and f''' are then continuous and bounded at 0: adding eps to |x|
instead keeps f finite but makes f'' jump there, and f'' feeds the derivative engine's backward pass
and the Laplacian.

The newer families (issue 26), with the facts read in each paper's reference code:

- ``finer`` (Liu et al., CVPR 2024; liuzhen0212/FINER): |z| has a kink at 0, where f'' of the paper's function
  jumps (by 4 w0) and f''' does not exist. |z| is smoothed as SPDER's guards are, sqrt(z^2 + eps^2) with the
  same ``spder_eps`` (in units of z; within eps^2 / (2|z|) of |z| beyond eps), so that f, f', f'' and f''' are
  continuous (f''' peaks near 3 w0 / eps at z = 0). The first-layer bias is U(-k, k) with k = 1, the ``--fbs
  1.0`` of the authors' paper runs (sdf/bacon/experiments/run_paper_finer.sh; their image script keeps
  nn.Linear's bias, U(+-1/sqrt(n)), by default). Their code detaches the scale |z| + 1 from autograd
  (``scale_req_grad = False``), so its training gradients are not the function's; here f', f'' and f''' are
  the derivatives of sin(w0 (|z| + 1) z) itself, which derivative supervision needs.
- ``gauss`` (Ramasinghe and Lucey, ECCV 2022): s = 10, the default of vishwa91/wire's gauss.py (FINER's image
  runs and kushalvyas/alpine's Gauss model use 30); neither re-initialises nn.Linear, nor do we.
- ``wire`` (Saragadam et al., CVPR 2023; vishwa91/wire): the real Gabor wavelet of one pre-activation (the
  reference's RealGaborLayer feeds the cosine and the Gaussian from two linear maps; here, as in its complex
  layer, one). s = 10, the ``scale`` default of its get_INR; its image setting is w0 = 20 (FINER's WIRE runs:
  w0 = 20, s = 10), set in a config since w0 is shared; nn.Linear's own init, as the reference. The complex
  WIRE, exp(i w0 z - |s z|^2) after complex linear layers, is not offered: complex weights mix the real and
  imaginary channels and |z|^2 couples them inside the activation, which does not fit this engine's real
  linear layers with elementwise activations.
- ``sinc`` (Saratchandran et al., ICML 2024): torch's normalised sinc of x = w0 z, as kushalvyas/alpine's Sinc
  (w0 = 30 there); finite at 0 with all four entries (a Taylor series for |pi x| < 1, the closed form
  beyond). The authors' code was not found; the init is SIREN's, which keeps x of order 1 as for sine (our
  choice).
- ``hosc`` (Serrano et al., 2024): tanh(beta sin(w0 z)); w0 = 1 is the paper's tanh(beta sin z), and the w0
  scaling (as the authors' follow-up, arXiv 2601.07870, writes it) lets SIREN's init serve, as for sine.
  beta = 8 is the default of the reimplementations we found; the paper sweeps beta and its code was not
  found (our choice).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

Jet = Tuple[Tensor, Tensor, Tensor]
Jet3 = Tuple[Tensor, Tensor, Tensor, Tensor]

SPDER_EPS = 1e-4
"""Default smoothing length of SPDER's dampings that are singular or kinked at x = w0 z = 0 (sqrt, log,
sqrt_relu): smooth within about eps of 0, the paper's functions beyond."""

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


class Activation:
    """An elementwise nonlinearity with its derivatives and its weight init.

    Subclasses implement :meth:`jet`, which returns ``(f(z), f'(z), f''(z))`` up to ``order`` (entries
    above it None) and, for ``order=3``, the four entries ``(f, f', f'', f''')``.
    """

    name: str = ""

    def __init__(self, w0: float = 30.0):
        self.w0 = float(w0)

    def __call__(self, z: Tensor) -> Tensor:
        return self.jet(z, order=0)[0]

    def jet(self, z: Tensor, order: int = 1) -> Union[Jet, Jet3]:
        """Returns (f, df, d2f), entries above ``order`` None; ``order=3``: (f, df, d2f, d3f)."""
        raise NotImplementedError

    def init_first(self, layer: nn.Linear) -> None:
        """Initialises the first linear layer of a network that starts with this activation."""
        self.init_hidden(layer)

    def init_hidden(self, layer: nn.Linear) -> None:
        """Initialises a linear layer that feeds this activation (and, for the last activation,
        the linear output layer, as the original code does)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(w0={self.w0})" if self.uses_w0 else f"{type(self).__name__}()"

    uses_w0 = False


def _up_to(order: int, f: Tensor, df: Optional[Tensor], d2f: Optional[Tensor], d3f: Optional[Tensor] = None):
    """The jet an activation returns for ``order``: (f, df, d2f) with None above it, or all four entries."""
    if order >= 3:
        return f, df, d2f, d3f
    return f, df if order >= 1 else None, d2f if order >= 2 else None


def _siren_first_init(layer: nn.Linear) -> None:
    n = layer.weight.shape[1]
    with torch.no_grad():
        layer.weight.uniform_(-1.0 / n, 1.0 / n)


def _siren_hidden_init(layer: nn.Linear, w0: float) -> None:
    n = layer.weight.shape[1]
    bound = math.sqrt(6.0 / n) / w0
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)


def he_init(layer: nn.Linear) -> None:
    """Kaiming (He) normal weights for a ReLU layer, std sqrt(2 / fan_in); the bias is left as drawn."""
    nn.init.kaiming_normal_(layer.weight, a=0.0, nonlinearity="relu", mode="fan_in")


def _xavier_normal(layer: nn.Linear) -> None:
    nn.init.xavier_normal_(layer.weight)


class Sine(Activation):
    """sin(w0 z); SIREN (Sitzmann et al. 2020)."""

    name = "sine"
    uses_w0 = True

    def jet(self, z: Tensor, order: int = 1):
        s = torch.sin(self.w0 * z)
        if order == 0:
            return s, None, None
        c = torch.cos(self.w0 * z)
        df = self.w0 * c
        d2f = -(self.w0 ** 2) * s if order >= 2 else None
        return _up_to(order, s, df, d2f, -(self.w0 ** 2) * df if order >= 3 else None)  # f''' = -w0^2 f'

    def init_first(self, layer):
        _siren_first_init(layer)

    def init_hidden(self, layer):
        _siren_hidden_init(layer, self.w0)


class ReLU(Activation):
    name = "relu"

    def jet(self, z, order=1):
        f = torch.relu(z)
        if order == 0:
            return f, None, None
        df = (z > 0).to(z.dtype)
        zero = torch.zeros_like(z) if order >= 2 else None
        return _up_to(order, f, df, zero, zero)

    def init_hidden(self, layer):
        he_init(layer)


class ELU(Activation):
    name = "elu"
    scale, alpha = 1.0, 1.0

    def jet(self, z, order=1):
        positive = z > 0
        # exp only of the non-positive part, so that large z cannot overflow into the gradient.
        e = torch.exp(torch.clamp(z, max=0.0))
        f = self.scale * torch.where(positive, z, self.alpha * (e - 1.0))
        if order == 0:
            return f, None, None
        df = self.scale * torch.where(positive, torch.ones_like(z), self.alpha * e)
        d2f = self.scale * torch.where(positive, torch.zeros_like(z), self.alpha * e) if order >= 2 else None
        return _up_to(order, f, df, d2f, d2f)  # for z <= 0 every derivative is scale alpha e^z, else 0

    def init_hidden(self, layer):
        n = layer.weight.shape[1]
        nn.init.normal_(layer.weight, std=math.sqrt(1.5505188080679277) / math.sqrt(n))


class SELU(ELU):
    name = "selu"
    scale, alpha = SELU_SCALE, SELU_ALPHA

    def init_hidden(self, layer):
        n = layer.weight.shape[1]
        nn.init.normal_(layer.weight, std=1.0 / math.sqrt(n))


class Sigmoid(Activation):
    name = "sigmoid"

    def jet(self, z, order=1):
        s = torch.sigmoid(z)
        if order == 0:
            return s, None, None
        df = s * (1.0 - s)
        if order < 2:
            return s, df, None
        d2f = df * (1.0 - 2.0 * s)
        return _up_to(order, s, df, d2f, d2f * (1.0 - 2.0 * s) - 2.0 * df * df if order >= 3 else None)

    def init_hidden(self, layer):
        _xavier_normal(layer)


class Softplus(Activation):
    name = "softplus"

    def jet(self, z, order=1):
        f = nn.functional.softplus(z)
        if order == 0:
            return f, None, None
        s = torch.sigmoid(z)
        if order < 2:
            return f, s, None
        d2f = s * (1.0 - s)
        return _up_to(order, f, s, d2f, d2f * (1.0 - 2.0 * s) if order >= 3 else None)

    def init_hidden(self, layer):
        he_init(layer)


class Tanh(Activation):
    name = "tanh"

    def jet(self, z, order=1):
        t = torch.tanh(z)
        if order == 0:
            return t, None, None
        df = 1.0 - t * t
        if order < 2:
            return t, df, None
        return _up_to(order, t, df, -2.0 * t * df, (6.0 * t * t - 2.0) * df if order >= 3 else None)

    def init_hidden(self, layer):
        _xavier_normal(layer)


# SPDER damping functions: x -> [delta, its first, second and third derivative][:order + 1], with x = w0 z
# and ``eps`` > 0 the smoothing length of the guarded ones (closed forms, checked against autograd and finite
# differences in tests/test_activations.py). Only what an order needs is computed (a value pass: delta alone).
def _delta_sqrt(x: Tensor, eps: float, order: int) -> List[Tensor]:
    """(x^2 + eps^2)^(1/4): sqrt|x| for |x| >> eps, smooth at 0 (sqrt(eps) there)."""
    q = x * x + eps * eps
    d = q.pow(0.25)
    if order == 0:
        return [d]
    q34 = d * d * d  # q^(3/4)
    return [d, 0.5 * x / q34, (0.5 * eps * eps - 0.25 * x * x) / (q34 * q),
            0.375 * x * (x * x - 6.0 * eps * eps) / (q34 * q * q)][:order + 1]


def _delta_log(x: Tensor, eps: float, order: int) -> List[Tensor]:
    """0.5 log(x^2 + eps^2): log|x| for |x| >> eps, smooth at 0 (log(eps) there)."""
    q = x * x + eps * eps
    if order == 0:
        return [0.5 * torch.log(q)]
    return [0.5 * torch.log(q), x / q, (eps * eps - x * x) / (q * q),
            2.0 * x * (x * x - 3.0 * eps * eps) / (q * q * q)][:order + 1]


def _delta_arctan(x: Tensor, eps: float, order: int) -> List[Tensor]:
    """arctan(x), smooth everywhere (``eps`` unused)."""
    if order == 0:
        return [torch.atan(x)]
    q = 1.0 / (1.0 + x * x)
    return [torch.atan(x), q, -2.0 * x * q * q, (6.0 * x * x - 2.0) * q * q * q][:order + 1]


def _delta_sqrt_relu(x: Tensor, eps: float, order: int) -> List[Tensor]:
    """sqrt(r) with r = (x + sqrt(x^2 + eps^2)) / 2, a smooth relu: sqrt(relu(x)) for |x| >> eps (within
    eps / (2 sqrt|x|) below 0), sqrt(eps / 2) at 0. For x < 0, r is computed as eps^2 / (2 (s - x)), free of
    cancellation; each branch is finite everywhere, so that neither spoils the other's gradient."""
    s = torch.sqrt(x * x + eps * eps)
    r = torch.where(x >= 0, 0.5 * (x + s), 0.5 * eps * eps / (s - torch.clamp(x, max=0.0)))
    d = torch.sqrt(r)
    if order == 0:
        return [d]
    s2 = s * s
    return [d, 0.5 * d / s, d * (s - 2.0 * x) / (4.0 * s2 * s),
            d * (12.0 * x * x - 6.0 * x * s - 3.0 * s2) / (8.0 * s2 * s2 * s)][:order + 1]


SPDER_DELTAS: Dict[str, Callable[[Tensor, float, int], List[Tensor]]] = {
    "sqrt": _delta_sqrt,
    "log": _delta_log,
    "arctan": _delta_arctan,
    "sqrt_relu": _delta_sqrt_relu,
}


class SPDER(Activation):
    """sin(x) * delta(x) with x = w0 z, a semiperiodic damped sine (Shah and Sitawarin, paper 003: its
    Eq. 3 applied to the w0-scaled pre-activation of its A.9.1, as its code does). ``eps`` is the
    smoothing length of the dampings that are not smooth at 0 (see the module docstring)."""

    uses_w0 = True

    def __init__(self, w0: float = 30.0, delta: str = "sqrt", eps: float = SPDER_EPS):
        super().__init__(w0)
        if delta not in SPDER_DELTAS:
            raise ValueError(f"unknown SPDER delta {delta!r}; choose from {sorted(SPDER_DELTAS)}")
        if not eps > 0:
            raise ValueError(f"SPDER eps must be > 0, got {eps}")
        self.delta, self.eps = delta, float(eps)
        self.name = f"spder_{delta}"

    def jet(self, z, order=1):
        w0 = self.w0
        x = w0 * z
        d, dd, d2d, d3d = SPDER_DELTAS[self.delta](x, self.eps, order) + [None] * (3 - min(order, 3))
        s = torch.sin(x)
        f = s * d
        if order == 0:
            return f, None, None
        c = torch.cos(x)
        df = w0 * (c * d + s * dd)  # each derivative in z brings a factor w0 to the one in x
        d2f = w0 * w0 * (2.0 * c * dd + s * d2d - f) if order >= 2 else None
        d3f = w0 ** 3 * (3.0 * c * d2d + s * d3d - 3.0 * s * dd - c * d) if order >= 3 else None
        return _up_to(order, f, df, d2f, d3f)

    def init_first(self, layer):
        _siren_first_init(layer)

    def init_hidden(self, layer):
        _siren_hidden_init(layer, self.w0)

    def __repr__(self):
        return f"SPDER(w0={self.w0}, delta={self.delta!r}, eps={self.eps})"


FINER_BIAS_RANGE = 1.0
"""FINER's default first-layer bias range k, U(-k, k): the authors' paper runs (``--fbs 1.0``)."""
GAUSS_SCALE = 10.0
"""Gauss's default width s of exp(-(s z)^2): vishwa91/wire's gauss.py."""
WIRE_SCALE = 10.0
"""WIRE's default Gaussian width s0: vishwa91/wire's get_INR (and FINER's WIRE runs)."""
HOSC_BETA = 8.0
"""HOSC's default sharpness beta (the reimplementations' default; the paper sweeps it)."""


def _scale_or(scale: float, default: float, what: str) -> float:
    """``scale`` where it is > 0, else ``default`` (``act_scale`` 0 = the paper's default); negative refused."""
    scale = float(scale)
    if scale < 0 or scale != scale:
        raise ValueError(f"{what} must be >= 0 (0 = the default {default}), got {scale}")
    return scale if scale > 0 else float(default)


def _torch_default_init(layer: nn.Linear) -> None:
    """The weights nn.Linear draws itself, U(+-1/sqrt(n)) (kaiming_uniform with a = sqrt(5)); the bias is left as
    drawn (also U(+-1/sqrt(n))). The Gauss and WIRE reference codes keep nn.Linear's init."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5.0))


class FINER(Activation):
    """sin(w0 (|z| + 1) z), a variable-periodic sine (Liu et al., CVPR 2024), |z| smoothed to sqrt(z^2 + eps^2)
    so that f'' and f''' exist at 0 (module docstring); SIREN's init and a first-layer bias U(-k, k)."""

    name = "finer"
    uses_w0 = True

    def __init__(self, w0: float = 30.0, eps: float = SPDER_EPS, bias_range: float = 0.0):
        super().__init__(w0)
        if not eps > 0:
            raise ValueError(f"FINER eps must be > 0, got {eps}")
        self.eps = float(eps)
        self.bias_range = _scale_or(bias_range, FINER_BIAS_RANGE, "FINER's first-layer bias range (act_scale)")

    def jet(self, z, order=1):
        w0 = self.w0
        a = torch.sqrt(z * z + self.eps * self.eps)  # the smoothed |z|
        arg = w0 * (a + 1.0) * z
        s = torch.sin(arg)
        if order == 0:
            return s, None, None
        c = torch.cos(arg)
        r = self.eps * self.eps / (a * a)  # in (0, 1]; keeps phi's derivatives free of eps^4 / a^5 underflow
        p1 = a * (2.0 - r) + 1.0  # phi' of phi = (a + 1) z
        df = w0 * c * p1
        if order < 2:
            return s, df, None
        p2 = z * (2.0 + r) / a  # phi''
        d2f = w0 * (c * p2 - w0 * s * p1 * p1)
        d3f = w0 * (c * (3.0 * r * r / a) - 3.0 * w0 * s * p1 * p2 - w0 * w0 * c * p1 ** 3) if order >= 3 else None
        return _up_to(order, s, df, d2f, d3f)

    def init_first(self, layer):
        _siren_first_init(layer)
        if layer.bias is not None:
            with torch.no_grad():
                layer.bias.uniform_(-self.bias_range, self.bias_range)

    def init_hidden(self, layer):
        _siren_hidden_init(layer, self.w0)

    def __repr__(self):
        return f"FINER(w0={self.w0}, eps={self.eps}, bias_range={self.bias_range})"


def _gauss_jet(z: Tensor, s: float, order: int) -> List[Tensor]:
    """exp(-(s z)^2) and its derivatives in z, up to ``order``: with y = s z, each is s^k P_k(y) exp(-y^2)."""
    y = s * z
    e = torch.exp(-y * y)
    if order == 0:
        return [e]
    y2 = y * y
    return [e, -2.0 * s * y * e, s * s * (4.0 * y2 - 2.0) * e, s ** 3 * y * (12.0 - 8.0 * y2) * e][:order + 1]


class Gauss(Activation):
    """exp(-(s z)^2) (Ramasinghe and Lucey, ECCV 2022); nn.Linear's own init, as the reference codes."""

    name = "gauss"

    def __init__(self, w0: float = 30.0, scale: float = 0.0):
        super().__init__(w0)
        self.scale = _scale_or(scale, GAUSS_SCALE, "Gauss's scale s (act_scale)")

    def jet(self, z, order=1):
        return _up_to(order, *(_gauss_jet(z, self.scale, order) + [None] * (3 - min(order, 3))))

    def init_hidden(self, layer):
        _torch_default_init(layer)

    def __repr__(self):
        return f"Gauss(scale={self.scale})"


class Wire(Activation):
    """cos(w0 z) exp(-(s z)^2), the real Gabor wavelet of WIRE (Saragadam et al., CVPR 2023); nn.Linear's init."""

    name = "wire"
    uses_w0 = True

    def __init__(self, w0: float = 20.0, scale: float = 0.0):
        super().__init__(w0)
        self.scale = _scale_or(scale, WIRE_SCALE, "WIRE's scale s (act_scale)")

    def jet(self, z, order=1):
        w0 = self.w0
        g = _gauss_jet(z, self.scale, order)
        c = torch.cos(w0 * z)
        f = c * g[0]
        if order == 0:
            return f, None, None
        s = torch.sin(w0 * z)  # Leibniz, with cos' = -w0 sin, cos'' = -w0^2 cos, cos''' = w0^3 sin
        df = c * g[1] - w0 * s * g[0]
        d2f = c * g[2] - 2.0 * w0 * s * g[1] - w0 * w0 * f if order >= 2 else None
        d3f = (c * g[3] - 3.0 * w0 * s * g[2] - 3.0 * w0 * w0 * c * g[1] + w0 ** 3 * s * g[0]) if order >= 3 else None
        return _up_to(order, f, df, d2f, d3f)

    def init_hidden(self, layer):
        _torch_default_init(layer)

    def __repr__(self):
        return f"Wire(w0={self.w0}, scale={self.scale})"


def _sinc_series(order: int, terms: int = 11) -> List[Tuple[float, ...]]:
    """Taylor coefficients in v = u^2 of sin(u)/u = sum_k (-1)^k u^2k / (2k+1)! and of its derivatives divided by
    their odd factor: [g, g' / u, g'', g''' / u] (the terms up to u^20: below 1e-17 for |u| < 1)."""
    c = [(-1) ** k / math.factorial(2 * k + 1) for k in range(terms)]
    return [tuple(c),
            tuple(2 * k * c[k] for k in range(1, terms)),
            tuple(2 * k * (2 * k - 1) * c[k] for k in range(1, terms)),
            tuple(2 * k * (2 * k - 1) * (2 * k - 2) * c[k] for k in range(2, terms))][:order + 1]


SINC_SERIES = _sinc_series(3)
SINC_SERIES_BELOW = 1.0
"""|u| = |pi w0 z| below which sinc's jet is the Taylor series (the closed forms lose digits to cancellation
near 0: f''' by about 36 ulp / u^3)."""


def _horner(coeffs: Tuple[float, ...], v: Tensor) -> Tensor:
    out = torch.full_like(v, coeffs[-1])
    for a in coeffs[-2::-1]:
        out = out * v + a
    return out


def _sinc_jet(u: Tensor, order: int) -> List[Tensor]:
    """sin(u)/u and its derivatives in u up to ``order``, finite everywhere, 0 included; each branch is computed
    on inputs where it is finite, so that neither spoils the other's gradient."""
    near = u.abs() < SINC_SERIES_BELOW
    us = torch.where(near, u, torch.zeros_like(u))  # the series' input
    uc = torch.where(near, torch.ones_like(u), u)  # the closed form's input
    v = us * us
    series = [_horner(SINC_SERIES[k], v) * (us if k % 2 else 1.0) for k in range(order + 1)]
    s = torch.sin(uc)
    closed = [s / uc]
    if order >= 1:  # the value step (order 0) needs no cosine
        c = torch.cos(uc)
        closed.append((uc * c - s) / (uc * uc))
    if order >= 2:
        closed.append(((2.0 - uc * uc) * s - 2.0 * uc * c) / uc ** 3)
    if order >= 3:
        closed.append(((3.0 * uc * uc - 6.0) * s + (6.0 - uc * uc) * uc * c) / uc ** 4)
    return [torch.where(near, a, b) for a, b in zip(series, closed)]


class Sinc(Activation):
    """sinc(w0 z) = sin(pi w0 z) / (pi w0 z) (Saratchandran et al., ICML 2024; torch's normalised sinc), 1 at 0;
    SIREN's init (our choice: the authors' code was not found)."""

    name = "sinc"
    uses_w0 = True

    def jet(self, z, order=1):
        k = math.pi * self.w0
        g = _sinc_jet(k * z, min(order, 3))
        out = [g[i] * k ** i for i in range(len(g))]  # each derivative in z brings a factor pi w0
        return _up_to(order, *(out + [None] * (4 - len(out))))

    def init_first(self, layer):
        _siren_first_init(layer)

    def init_hidden(self, layer):
        _siren_hidden_init(layer, self.w0)


class HOSC(Activation):
    """tanh(beta sin(w0 z)), the hyperbolic oscillator (Serrano et al., 2024; w0 = 1 is the paper's form);
    SIREN's init."""

    name = "hosc"
    uses_w0 = True

    def __init__(self, w0: float = 30.0, beta: float = 0.0):
        super().__init__(w0)
        self.beta = _scale_or(beta, HOSC_BETA, "HOSC's beta (act_scale)")

    def jet(self, z, order=1):
        w0, b = self.w0, self.beta
        x = w0 * z
        sn = torch.sin(x)
        t = torch.tanh(b * sn)
        if order == 0:
            return t, None, None
        cs = torch.cos(x)
        q = 1.0 - t * t  # tanh' at beta sin x
        df = w0 * b * cs * q
        if order < 2:
            return t, df, None
        c2 = cs * cs
        d2f = -(w0 * w0) * b * q * (sn + 2.0 * b * t * c2)
        d3f = (w0 ** 3 * b * q * cs * (6.0 * b * t * sn + 4.0 * b * b * t * t * c2 - 1.0 - 2.0 * b * b * q * c2)
               if order >= 3 else None)
        return _up_to(order, t, df, d2f, d3f)

    def init_first(self, layer):
        _siren_first_init(layer)

    def init_hidden(self, layer):
        _siren_hidden_init(layer, self.w0)

    def __repr__(self):
        return f"HOSC(w0={self.w0}, beta={self.beta})"


ACTIVATIONS: Dict[str, Callable[[float, float, float], Activation]] = {
    "sine": lambda w0, eps, scale: Sine(w0),
    "relu": lambda w0, eps, scale: ReLU(w0),
    "elu": lambda w0, eps, scale: ELU(w0),
    "selu": lambda w0, eps, scale: SELU(w0),
    "sigmoid": lambda w0, eps, scale: Sigmoid(w0),
    "softplus": lambda w0, eps, scale: Softplus(w0),
    "tanh": lambda w0, eps, scale: Tanh(w0),
    "spder": lambda w0, eps, scale: SPDER(w0, "sqrt", eps),
    **{f"spder_{name}": (lambda w0, eps, scale, name=name: SPDER(w0, name, eps)) for name in SPDER_DELTAS},
    "finer": lambda w0, eps, scale: FINER(w0, eps, scale),
    "gauss": lambda w0, eps, scale: Gauss(w0, scale),
    "wire": lambda w0, eps, scale: Wire(w0, scale),
    "sinc": lambda w0, eps, scale: Sinc(w0),
    "hosc": lambda w0, eps, scale: HOSC(w0, scale),
}
"""Config name -> builder taking ``w0``, SPDER's ``eps`` (FINER's smoothing length too) and a ``scale`` (Gauss's and
WIRE's s, HOSC's beta, FINER's first-layer bias range k; 0: the activation's own default; each ignored by the
activations without it)."""


def build_activation(name: str, w0: float = 30.0, spder_eps: float = SPDER_EPS, scale: float = 0.0) -> Activation:
    """Builds the activation registered under ``name``; unknown names list the valid ones. ``scale``: the
    width or gain parameter of the activations that have one (0: the default of the activation's paper)."""
    try:
        builder = ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None
    return builder(w0, spder_eps, scale)
