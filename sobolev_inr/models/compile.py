"""``torch.compile`` for a coordinate network, in place (the ``--compile`` option)."""
from __future__ import annotations

from torch import nn


def compile_model(model: nn.Module, **options) -> nn.Module:
    """Compiles ``model``'s forward pass in place with ``torch.compile`` (the ``--compile`` option).

    This speeds up the value path: ``val`` supervision, evaluation and rendering (``model(x)``).
    The fused derivative engine (:mod:`sobolev_inr.derivatives`) does not call ``model.forward`` and
    keeps its hand-written passes, and ``MLP.jet`` (the Laplacian) stays eager, so derivative
    supervision is unchanged. The module itself is returned: its class, ``state_dict`` keys and
    checkpoints are those of the eager model. A compiled forward pass cannot be differentiated
    twice, so :func:`sobolev_inr.derivatives.reference_jacobian` with ``create_graph=True`` and the
    autograd engine's reverse mode need the eager model. ``options`` go to
    :meth:`torch.nn.Module.compile` (``mode``, ``dynamic``, ...).
    """
    model.compile(**options)
    return model
