"""Exact derivatives of a network's output with respect to its input coordinates.

One call gives the value ``(N, C)``, the Jacobian ``(N, C, D)`` for all output channels at once and,
when asked, the Laplacian ``(N, C)``. Two exact modes:

* ``forward``: carries D tangents through the network alongside the value. Costs about (1 + D)
  value passes forward and the same again twice backward: 3x a value step's matrix FLOPs for
  D = 2; the better choice when D < C (RGB images: D = 2, C = 3).
* ``reverse``: the C vector-Jacobian products of the value pass, then their own backward pass.
  Costs about (1 + C) value passes: 2x a value step for C = 1; the better choice when C < D
  (grayscale images: D = 2, C = 1).

``mode="auto"`` picks forward when D <= C, else reverse: at D = C (audio: D = C = 1) the two cost
the same matrix work, and forward mode keeps less for the backward pass (per layer D tangents
against reverse mode's C products and C co-tangents). The Laplacian always uses forward mode, as
the forward Laplacian (Li et al. 2023, arXiv 2307.08214): with the value and the D tangents each
layer carries ONE summed second-order stream s = sum_j (second directional derivative along j),
s' = f'(u) (s W^T) + f''(u) sum_j (t_j W^T)^2, not D second-order tensors, and no double backward
pass is needed: (1 + D + 1) value passes forward and twice that backward. Both modes are differentiable:
with ``create_graph=True`` a loss on the result back-propagates to the weights and, where
``coords`` requires grad, to the coordinates.

Engines (``engine``): for an :class:`~sobolev_inr.models.MLP`, ``"fused"`` (what ``"auto"`` picks)
computes value and Jacobian (and the Laplacian) in one :class:`torch.autograd.Function` per mode whose
backward pass is written out by hand, so that a training step does little more than the matrix
products above: sine's ``sin`` and ``cos`` are computed once per layer and ``sin`` is reused for
``f'' = -f``; ``w0`` is folded into the weights of the tangent and backward products; only what the backward pass reads is kept (the
activation's jet and the pre-activation tangents), nothing that autograd would keep besides; and
on CPU the batch runs in row blocks spread over torch's threads (see
:data:`.cpu_blocks.BLOCK_ELEMENTS`; the workers run single-threaded and leave torch's thread
settings as they found them). The fused Laplacian (:mod:`.laplacian`) stacks the 1 + D + 1 streams
of a layer into one matrix product and keeps only the layers' pre-activation streams, recomputing
the activations' jets (f''' included) in the backward pass. The fused engine
supports first-order gradients, to the weights and to the coordinates. ``"autograd"`` is the
plain-autograd version of the same (:meth:`MLP.jet` for forward mode, :meth:`MLP.laplacian` for the
forward Laplacian, one ``autograd.grad`` with ``is_grads_batched`` for reverse mode): it serves models
other than a plain :class:`MLP` (with their own ``jet`` or ``laplacian``) and double backward. Both are
tested equal to :func:`reference_jacobian` and :func:`reference_laplacian`, nested per-channel loops;
``bench/derivatives.py`` measures them against those.

``scale`` (D,) changes the unit of the derivatives: the result is d f / d u with x = scale * u,
i.e. the Jacobian's column d is multiplied by ``scale[d]`` and the Laplacian sums
``scale[d]^2 d^2 f / d x_d^2``. With ``scale`` = coordinate distance per pixel step this gives
derivatives per pixel step, the unit of the Sobel targets (see :mod:`sobolev_inr.data.coords`).

:func:`value_and_tangents` is the general forward-mode entry: the value at points ``x (..., D)`` of any
leading shape and its directional derivatives along given input tangents ``(T, ..., D)``, e.g. the
derivatives of a ray's sample points with respect to the pixel coordinates (NeRF). The same two
engines serve it: the fused forward pass for an :class:`MLP`, plain autograd for any other module.

Layout: :mod:`.api` (the entry points and :class:`Derivatives`), :mod:`.fused` (the fused engine's
two Jacobian autograd functions and their shared helpers), :mod:`.laplacian` (the fused forward
Laplacian), :mod:`.cpu_blocks` (their row blocks and CPU worker pool), :mod:`.autograd_engine` (the
plain-autograd modes and the Laplacian) and :mod:`.reference` (the per-channel and per-direction
loops the engines are tested against).
"""
from .api import DERIVATIVE_MODES, ENGINES, Derivatives, choose_mode, value_and_derivatives, value_and_tangents
from .reference import reference_jacobian, reference_laplacian, reference_tangents

__all__ = ["Derivatives", "choose_mode", "DERIVATIVE_MODES", "ENGINES", "value_and_derivatives",
           "value_and_tangents", "reference_jacobian", "reference_laplacian", "reference_tangents"]
