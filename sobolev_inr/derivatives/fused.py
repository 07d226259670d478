"""The fused engine: value and Jacobian (or any forward tangents) of an :class:`MLP` in one
:class:`torch.autograd.Function` per mode, with the backward pass written out by hand.

The encoding runs in ordinary autograd (its jet gives the features and their tangents); the
activated layers and the output layer run in :class:`_ForwardJacobian` (forward mode: tangents
carried with the value) or :class:`_ReverseJacobian` (reverse mode: the C vector-Jacobian products),
which support first-order gradients to the weights, the coordinates and the input tangents. On
CPU the batch runs in row blocks spread over single-threaded workers (:mod:`.cpu_blocks`).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..models.activations import Activation, ReLU, Sine
from ..models.encodings import IdentityEncoding
from ..models.mlp import MLP
from .cpu_blocks import row_blocks, run_blocks

# --------------------------------------------------------------------------------------------------
# The fused engine: value and Jacobian of an MLP with a hand-written backward pass.
#
# Per activated layer, with input features h (rows, K) and width H:
#   u = a (h W^T + b)        the pre-activation, with a = w0 for sine (sin(w0 z) = sin(u)), else 1
#   f(u), f'(u), f''(u)      the activation and its derivatives with respect to u
# Forward mode carries the D input tangents t_j (rows, K) of every layer: tu_j = t_j (a W)^T,
# t'_j = f'(u) tu_j (D = the input dimension for a Jacobian, any number T of directions for
# fused_value_and_tangents). Reverse mode carries the C output co-tangents from the output layer down.
# Tangent and backward products use the folded weight a W; weight gradients are taken with respect to
# a W and a b, then multiplied by a.
# --------------------------------------------------------------------------------------------------


_threshold_backward = torch.ops.aten.threshold_backward  # x where f > 0 else 0, in one pass


def _fold(act: Activation) -> float:
    """The pre-activation scale a folded into the engine's weights: sine(w0 z) = sin(u), u = w0 z."""
    return act.w0 if type(act) is Sine else 1.0


class _Jet:
    """f(u), f'(u), f''(u) (and f'''(u) where asked) of an activation at the folded pre-activation u,
    stored economically: the derivatives are ``sign * d2f`` and ``sign3 * d3f``.

    Sine keeps sin and cos of u and reuses sin for f'' = -f (``sign`` -1) and cos for f''' = -f'
    (``d3f is df``, ``sign3`` -1); ReLU keeps f only (f' is f > 0, f'' = f''' = 0); other activations
    keep what their own ``jet`` returns.
    """

    __slots__ = ("kind", "f", "df", "d2f", "sign", "d3f", "sign3")

    def __init__(self, kind: str, f: Tensor, df: Optional[Tensor] = None, d2f: Optional[Tensor] = None,
                 d3f: Optional[Tensor] = None):
        self.kind, self.f = kind, f
        if kind == "sine":
            self.df, self.d2f, self.sign, self.d3f, self.sign3 = df, f, -1.0, df, -1.0
        elif kind == "relu":
            self.df, self.d2f, self.sign, self.d3f, self.sign3 = None, None, 0.0, None, 0.0
        else:
            self.df, self.d2f, self.sign, self.d3f, self.sign3 = df, d2f, 1.0, d3f, 1.0

    @staticmethod
    def kind_of(act: Activation) -> str:
        return "sine" if type(act) is Sine else "relu" if type(act) is ReLU else "generic"

    @staticmethod
    def of(act: Activation, u: Tensor, third: bool = False, out: Optional[Tensor] = None) -> "_Jet":
        """The jet at u; ``third``: with f''' (other activations than sine and ReLU compute it then);
        ``out``: where to write f (a view into a caller's buffer)."""
        kind = _Jet.kind_of(act)
        if kind == "sine":
            return _Jet(kind, torch.sin(u, out=out), torch.cos(u))
        if kind == "relu":
            return _Jet(kind, torch.clamp_min(u, 0.0, out=out))
        f, *rest = act.jet(u, 3 if third else 2)
        return _Jet(kind, out.copy_(f) if out is not None else f, *rest)

    def tensors(self) -> List[Tensor]:
        """What is saved for the backward pass: :meth:`count` tensors, read back by :meth:`restore`."""
        return {"sine": [self.f, self.df], "relu": [self.f]}.get(self.kind, [self.f, self.df, self.d2f])

    @staticmethod
    def count(act: Activation) -> int:
        return {"sine": 2, "relu": 1}.get(_Jet.kind_of(act), 3)

    @staticmethod
    def restore(act: Activation, items: Sequence[Tensor]) -> "_Jet":
        return _Jet(_Jet.kind_of(act), *items)

    def times_df(self, x: Tensor, inplace: bool = False, out: Optional[Tensor] = None) -> Tensor:
        """x f'(u) (broadcasting), in place into x if asked and possible, or into ``out``."""
        if self.kind == "relu":
            if out is not None:
                return _threshold_backward.grad_input(x, self.f, 0, grad_input=out)
            return _threshold_backward(x, self.f, 0)
        if out is not None:
            return torch.mul(x, self.df, out=out)
        return x.mul_(self.df) if inplace else torch.mul(x, self.df)


# -------------------------------------------------------------------------------------- functions
def _layer_params(model: MLP) -> Tuple[List[Tensor], List[float]]:
    params: List[Tensor] = []
    for layer in model.hidden:
        params += [layer.weight, layer.bias]
    params += [model.output.weight, model.output.bias]
    return params, [_fold(a) for a in model.activations]


def is_plain_mlp(model: nn.Module) -> bool:
    """An :class:`MLP` whose forward pass (and jet, Laplacian) is MLP's own, which the fused engine reimplements."""
    cls = type(model)
    return (isinstance(model, MLP) and cls.forward is MLP.forward and cls.jet is MLP.jet
            and cls.laplacian is MLP.laplacian)


def fused_value_and_jacobian(model: MLP, coords: Tensor, scale: Tensor, mode: str,
                             recompute_tangents: bool = False) -> Tuple[Tensor, Tensor]:
    """Value (N, C) and Jacobian (N, C, D) of ``model`` at ``coords (N, D)``, columns multiplied by ``scale (D,)``.

    ``mode`` "forward" carries the D scaled unit directions through the layers
    (:func:`fused_value_and_tangents`); "reverse" takes the C vector-Jacobian products.
    """
    seeds = torch.diag(scale).unsqueeze(1)  # (D, 1, D): constant over the batch
    if mode == "forward":
        value, tangents = fused_value_and_tangents(model, coords, seeds, recompute_tangents)
        return value, tangents.permute(1, 2, 0)  # (D, N, C) -> (N, C, D)
    if mode == "reverse":
        h0, t0, _, params, spec = _prepare(model, coords, seeds)
        return _ReverseJacobian.apply(spec, h0, t0, *params)
    raise ValueError(f"unknown fused derivative mode {mode!r}; choose from ['forward', 'reverse']")


def fused_value_and_tangents(model: MLP, coords: Tensor, tangents: Tensor,
                             recompute_tangents: bool = False) -> Tuple[Tensor, Tensor]:
    """Value (N, C) and directional derivatives (T, N, C) of ``model`` at ``coords (N, D)`` in forward mode.

    ``tangents (T, N, D)`` or ``(T, 1, D)`` (one direction shared by every row): d coords / d s for
    T directions s. ``recompute_tangents``: the backward pass recomputes the layers' tangents instead
    of keeping them (see :func:`sobolev_inr.derivatives.value_and_derivatives`).
    """
    h0, t0, _, params, spec = _prepare(model, coords, tangents, recompute_tangents)
    return _ForwardJacobian.apply((*spec, recompute_tangents), h0, t0, *params)


def _prepare(model: MLP, coords: Tensor, tangents: Tensor, recompute: bool = False, laplacian: bool = False,
             block_width: int = 1):
    """What the autograd functions take: the encoding's features h0 (N, K0) and feature tangents
    t0 (T, 1 or N, K0), computed in ordinary autograd; with ``laplacian`` the features' second
    directional derivatives summed over the T directions, s0 (N, K0) or None where zero (else None);
    the layers' parameters; and ``spec``, the layers' activations and folds, whether to keep anything
    for a backward pass, and the row blocks, sized for (rows, ``block_width`` x width) tensors."""
    if not isinstance(model.encoding, IdentityEncoding):
        tangents = tangents.expand(-1, coords.shape[0], -1)
    if laplacian:
        h0, t0, s0 = model.encoding.jet_summed(coords, tangents)
    else:
        (h0, t0, _), s0 = model.encoding.jet(coords, tangents, None), None  # (N, K0), (T, 1 or N, K0)
    params, folds = _layer_params(model)
    # Custom functions run their forward without grad mode: decide here whether to keep anything.
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in [h0, t0, s0, *params])
    width = max([model.output.in_features] + [layer.out_features for layer in model.hidden])
    blocks = row_blocks(coords.shape[0], width * block_width, coords.device, recompute)
    spec = (tuple(model.activations), tuple(folds), save, blocks)
    return h0, t0, s0, params, spec


def _split(params: Sequence[Tensor], folds: Sequence[float]):
    """Folded weights a W of the activated layers, the output layer's weight and bias."""
    num = len(folds)
    weights = [params[2 * i] * a if a != 1.0 else params[2 * i] for i, a in enumerate(folds)]
    return weights, params[2 * num], params[2 * num + 1]


def _pre_activation(params: Sequence[Tensor], i: int, a: float, h: Tensor) -> Tensor:
    """u = a (h W^T + b), rounded as :meth:`MLP.forward` rounds it (which matters where |u| is large,
    e.g. audio time axes of [-100, 100] times w0 = 30)."""
    u = torch.addmm(params[2 * i + 1], h, params[2 * i].T)
    return u.mul_(a) if a != 1.0 else u


def _accumulate_mm(acc: List[Optional[Tensor]], i: int, a: Tensor, b: Tensor, alpha: float = 1.0) -> None:
    """acc[i] += alpha * a @ b (allocated on first use)."""
    if acc[i] is None:
        acc[i] = torch.mm(a, b)
        if alpha != 1.0:
            acc[i].mul_(alpha)
    else:
        acc[i].addmm_(a, b, alpha=alpha)


def _accumulate(acc: List[Optional[Tensor]], i: int, value: Tensor, alpha: float = 1.0) -> None:
    if acc[i] is None:
        acc[i] = value * alpha if alpha != 1.0 else value.clone()
    else:
        acc[i].add_(value, alpha=alpha)


def _sum_parts(parts: List[List[Optional[Tensor]]]) -> List[Optional[Tensor]]:
    """Element-wise sum of the workers' accumulators, in worker order (deterministic)."""
    total = list(parts[0])
    for part in parts[1:]:
        for i, x in enumerate(part):
            if x is not None:
                total[i] = x if total[i] is None else total[i].add_(x)
    return total


def _weight_grads(gw: List[Tensor], gb: List[Tensor], folds: Sequence[float]) -> List[Tensor]:
    """Gradients with respect to the parameters from those with respect to the folded ones."""
    grads: List[Tensor] = []
    for i, a in enumerate(folds):
        grads += [gw[i].mul_(a), gb[i].mul_(a)] if a != 1.0 else [gw[i], gb[i]]
    return grads + [gw[-1], gb[-1]]


def _first_layer_tangent_grads(gw0: Tensor, g_tu: Sequence[Tensor], t0: Tensor, rows: slice, w: Tensor,
                               wants_t0: bool, g_t0: Optional[Tensor], g_t0_shared: List[Optional[Tensor]]) -> None:
    """The first layer's tangent stream in a backward pass, for the rows ``rows`` of a block: adds
    sum_j g_tu_j^T t0_j to its weight gradient ``gw0`` and, if ``wants_t0``, writes the input tangents'
    co-tangents g_tu_j w into ``g_t0`` (or, for t0 constant over the batch, (D, 1, K0), adds their sum
    over the rows to ``g_t0_shared``). g_tu: the D co-tangents of the pre-activation tangents (rows, H)."""
    shared = t0.shape[1] == 1
    for j, g in enumerate(g_tu):
        if shared:  # tangents constant over the batch: reduce over the rows first
            gw0.addr_(g.sum(0), t0[j, 0])
        else:
            gw0.addmm_(g.T, t0[j, rows])
    if wants_t0:
        for j, g in enumerate(g_tu):
            if shared:
                _accumulate(g_t0_shared, j, g.sum(0, keepdim=True) @ w)
            else:
                torch.mm(g, w, out=g_t0[j, rows])


def _save_context(ctx, save, acts, folds, blocks, h0, t0, params, saved) -> None:
    """Stores what a fused backward pass reads: the layers' description, inputs, parameters and the
    per-block tensors kept in the forward pass (flattened in block order)."""
    if save:
        ctx.acts, ctx.folds, ctx.blocks = acts, folds, blocks
        ctx.save_for_backward(h0, t0, *params, *[x for keep in saved for x in keep])
    ctx.set_materialize_grads(False)


def _load_context(ctx):
    """The inverse of :func:`_save_context`: (acts, folds, blocks, h0, t0, params, kept tensors)."""
    acts = ctx.acts
    h0, t0, *rest = ctx.saved_tensors
    num_params = 2 * len(acts) + 2
    return acts, ctx.folds, ctx.blocks, h0, t0, rest[:num_params], rest[num_params:]


class _ForwardJacobian(torch.autograd.Function):
    """Forward mode: returns value (N, C) and tangents (D, N, C); backward written out by hand.

    Saved per row block and layer: the activation's jet (:class:`_Jet`) and the D pre-activation
    tangents tu_j, which the f'' term of the backward pass needs; where f'' vanishes (ReLU) the
    layer's output tangents f' tu_j are saved instead, which the weight gradient needs. Tangents
    are D separate (rows, H) tensors, so that each is released as soon as it is used. With
    ``recompute`` only the jets are saved, and the backward pass recomputes a block's tangents
    (tu_j = t_j (a W)^T from the saved jets) just before it needs them.
    """

    @staticmethod
    def forward(ctx, spec, h0: Tensor, t0: Tensor, *params: Tensor):
        acts, folds, save, blocks, recompute = spec
        weights, w_out, b_out = _split(params, folds)
        n, d, c = h0.shape[0], t0.shape[0], w_out.shape[0]
        shared = t0.shape[1] == 1  # feature tangents constant over the batch (no encoding)
        value = h0.new_empty(n, c)
        tangents = h0.new_empty(d, n, c)
        saved: List[Optional[List[Tensor]]] = [None] * len(blocks)

        def work(ids: List[int]) -> None:
            for b_id in ids:
                s0, s1 = blocks[b_id]
                h = h0[s0:s1]
                t = [t0[j] if shared else t0[j, s0:s1] for j in range(d)]
                keep: List[Tensor] = []
                for i, (act, w, a) in enumerate(zip(acts, weights, folds)):
                    u = _pre_activation(params, i, a, h)
                    tu = [torch.mm(x, w.T) for x in t]
                    jet = _Jet.of(act, u)
                    del u
                    t = [jet.times_df(x) for x in tu]
                    h = jet.f
                    if save:
                        keep += jet.tensors() + ([] if recompute else tu if jet.d2f is not None else t)
                    del tu, jet
                torch.addmm(b_out, h, w_out.T, out=value[s0:s1])
                for j in range(d):
                    torch.mm(t[j], w_out.T, out=tangents[j, s0:s1])
                saved[b_id] = keep

        run_blocks(work, len(blocks), h0.device)
        _save_context(ctx, save, acts, folds, blocks, h0, t0, params, saved)
        ctx.recompute = recompute
        return value, tangents

    @staticmethod
    @once_differentiable
    def backward(ctx, g_value: Optional[Tensor], g_tangents: Optional[Tensor]):
        acts, folds, blocks, h0, t0, params, saved = _load_context(ctx)
        num = len(acts)
        weights, w_out, b_out = _split(params, folds)
        n, d, c = h0.shape[0], t0.shape[0], w_out.shape[0]
        shared = t0.shape[1] == 1
        if g_value is None:
            g_value = h0.new_zeros(n, c)
        if g_tangents is None:
            g_tangents = h0.new_zeros(d, n, c)
        g_h0 = h0.new_empty(h0.shape) if ctx.needs_input_grad[1] else None
        g_t0 = t0.new_zeros(t0.shape) if ctx.needs_input_grad[2] and not shared else None
        recompute = ctx.recompute
        per_block = sum(_Jet.count(act) + (0 if recompute else d) for act in acts)

        def work(ids: List[int]):
            gw: List[Optional[Tensor]] = [None] * (num + 1)  # index num: the output layer
            gb: List[Optional[Tensor]] = [None] * (num + 1)
            g_t0_shared: List[Optional[Tensor]] = [None] * d
            for b_id in ids:
                s0, s1 = blocks[b_id]
                pos = b_id * per_block
                layers = []  # per layer: (jet, tu or None, t or None)
                t_in = [t0[j] if shared else t0[j, s0:s1] for j in range(d)]
                for i, act in enumerate(acts):
                    m = _Jet.count(act)
                    jet = _Jet.restore(act, saved[pos:pos + m])
                    if recompute:
                        tu = [torch.mm(x, weights[i].T) for x in t_in]
                        if jet.d2f is not None:
                            t_in = [jet.times_df(x) for x in tu]
                            layers.append((jet, tu, None))
                        else:
                            t_in = [jet.times_df(x, inplace=True) for x in tu]
                            layers.append((jet, None, t_in))
                        pos += m
                        continue
                    vecs = list(saved[pos + m:pos + m + d])
                    pos += m + d
                    layers.append((jet, vecs, None) if jet.d2f is not None else (jet, None, vecs))
                del t_in

                def weight_grad(i: int, gh: Tensor, gt: List[Tensor], fed_by: tuple) -> None:
                    """gw[i] += g_h^T f + sum_j g_t,j^T t_j for a layer fed by value f, tangents t_j = f' tu_j."""
                    jet, tu, t = fed_by
                    _accumulate_mm(gw, i, gh.T, jet.f)
                    for j in range(d):
                        gw[i].addmm_(gt[j].T, t[j] if t is not None else jet.times_df(tu[j]))

                gh = g_value[s0:s1]
                gt = [g_tangents[j, s0:s1] for j in range(d)]
                weight_grad(num, gh, gt, layers[-1])
                _accumulate(gb, num, gh.sum(0))
                gh = torch.mm(gh, w_out)  # (rows, H)
                gt = [torch.mm(g, w_out) for g in gt]
                for i in range(num - 1, -1, -1):
                    jet, tu, _ = layers[i]
                    # Through the activation: g_u = g_h f' + f'' sum_j g_t,j tu_j; g_tu,j = g_t,j f'.
                    if jet.d2f is not None:
                        q = torch.mul(gt[0], tu[0])
                        for j in range(1, d):
                            q.addcmul_(gt[j], tu[j])
                        gh = jet.times_df(gh, inplace=True).addcmul_(jet.d2f, q, value=jet.sign)
                        del q
                    else:
                        gh = jet.times_df(gh, inplace=True)
                    gt = [jet.times_df(g, inplace=True) for g in gt]
                    layers[i] = None
                    del jet, tu
                    _accumulate(gb, i, gh.sum(0))
                    w = weights[i]
                    if i > 0:
                        weight_grad(i, gh, gt, layers[i - 1])
                        gh = torch.mm(gh, w)
                        gt = [torch.mm(g, w) for g in gt]
                        continue
                    _accumulate_mm(gw, 0, gh.T, h0[s0:s1])
                    _first_layer_tangent_grads(gw[0], gt, t0, slice(s0, s1), w, ctx.needs_input_grad[2],
                                               g_t0, g_t0_shared)
                    if g_h0 is not None:
                        torch.mm(gh, w, out=g_h0[s0:s1])
                del gh, gt, layers
            return gw, gb, g_t0_shared

        parts = run_blocks(work, len(blocks), h0.device)
        gw = _sum_parts([p[0] for p in parts])
        gb = _sum_parts([p[1] for p in parts])
        if ctx.needs_input_grad[2] and shared:
            g_t0 = torch.stack(_sum_parts([p[2] for p in parts]))
        return (None, g_h0, g_t0, *_weight_grads(gw, gb, folds))


class _ReverseJacobian(torch.autograd.Function):
    """Reverse mode: returns value (N, C) and Jacobian (N, C, D); backward written out by hand.

    Forward: the value pass, then the C vector-Jacobian products from a_L = W_out down to the
    encoding features, a_{l-1} = delta_l (a W_l) with delta_l = a_l f'(u_l). Backward: the loss on
    the Jacobian reaches the weights through those products (a sweep up, which is a tangent pass)
    and through the value pass (the ordinary sweep down). Saved per row block: every layer's jet
    and its delta_l and a_{l-1} (C, rows, H), the latter only where the f'' term reads it (not
    after a ReLU layer) and for the encoding features.
    """

    @staticmethod
    def forward(ctx, spec, h0: Tensor, t0: Tensor, *params: Tensor):
        acts, folds, save, blocks = spec
        weights, w_out, b_out = _split(params, folds)
        num = len(acts)
        n, d, c = h0.shape[0], t0.shape[0], w_out.shape[0]
        shared = t0.shape[1] == 1
        value = h0.new_empty(n, c)
        jac = h0.new_empty(n, c, d)
        saved: List[Optional[List[Tensor]]] = [None] * len(blocks)

        def work(ids: List[int]) -> None:
            for b_id in ids:
                s0, s1 = blocks[b_id]
                h = h0[s0:s1]
                jets = []
                for i, (act, a) in enumerate(zip(acts, folds)):
                    jets.append(_Jet.of(act, _pre_activation(params, i, a, h)))
                    h = jets[-1].f
                torch.addmm(b_out, h, w_out.T, out=value[s0:s1])
                del h
                deltas: List[Tensor] = []
                a_list: List[Tensor] = []
                a = w_out.unsqueeze(1)  # (C, 1, H): d value / d (last hidden output), the same for every row
                for i in range(num - 1, -1, -1):
                    delta = jets[i].times_df(a)  # (C, rows, H)
                    a = torch.matmul(delta, weights[i])  # (C, rows, K)
                    deltas.insert(0, delta)
                    a_list.insert(0, a)
                jac[s0:s1] = _contract_features(a, t0 if shared else t0[:, s0:s1])
                if save:  # a_l (l > 0) is read only by the f'' term of layer l - 1: none for ReLU
                    a_kept = [a if k == 0 or jets[k - 1].d2f is not None else None for k, a in enumerate(a_list)]
                    saved[b_id] = [x for jet in jets for x in jet.tensors()] + deltas + a_kept

        run_blocks(work, len(blocks), h0.device)
        _save_context(ctx, save, acts, folds, blocks, h0, t0, params, saved)
        return value, jac

    @staticmethod
    @once_differentiable
    def backward(ctx, g_value: Optional[Tensor], g_jac: Optional[Tensor]):
        acts, folds, blocks, h0, t0, params, saved = _load_context(ctx)
        num = len(acts)
        weights, w_out, b_out = _split(params, folds)
        n, c = h0.shape[0], w_out.shape[0]
        shared = t0.shape[1] == 1
        if g_value is None:
            g_value = h0.new_zeros(n, c)
        g_h0 = h0.new_empty(h0.shape) if ctx.needs_input_grad[1] else None
        g_t0 = t0.new_zeros(t0.shape) if ctx.needs_input_grad[2] and not shared else None
        per_block = sum(_Jet.count(act) for act in acts) + 2 * num

        def work(ids: List[int]):
            gw: List[Optional[Tensor]] = [None] * (num + 1)  # true gradients wrt the folded weights
            gb: List[Optional[Tensor]] = [None] * (num + 1)
            g_t0_shared: List[Optional[Tensor]] = [None]
            for b_id in ids:
                s0, s1 = blocks[b_id]
                pos = b_id * per_block
                jets = []
                for act in acts:
                    m = _Jet.count(act)
                    jets.append(_Jet.restore(act, saved[pos:pos + m]))
                    pos += m
                deltas = list(saved[pos:pos + num])
                a_list = list(saved[pos + num:pos + 2 * num])  # a_0 ... a_{L-1}
                gu_jac: List[Optional[Tensor]] = [None] * num
                # Sweep up: the loss on J = a_0 . t0 back through the products (a tangent pass).
                if g_jac is not None:
                    gj = g_jac[s0:s1]  # (rows, C, D)
                    if shared:
                        ga = torch.matmul(gj.permute(1, 0, 2), t0[:, 0, :])  # (C, rows, K0)
                    else:
                        ga = torch.einsum("ncd,dnk->cnk", gj, t0[:, s0:s1])
                    if ctx.needs_input_grad[2]:
                        gt0 = torch.einsum("ncd,cnk->dnk", gj, a_list[0])
                        if shared:
                            _accumulate(g_t0_shared, 0, gt0.sum(1, keepdim=True))
                        else:
                            g_t0[:, s0:s1] = gt0
                    for i in range(num):
                        jet = jets[i]
                        a = a_list[i + 1] if i < num - 1 else w_out.unsqueeze(1)
                        delta = deltas[i]
                        deltas[i] = None
                        _accumulate_mm(gw, i, delta.reshape(-1, delta.shape[-1]).T, ga.reshape(-1, ga.shape[-1]))
                        g_delta = torch.matmul(ga, weights[i].T)  # (C, rows, H)
                        if jet.d2f is not None:  # d loss / d u through f'(u), without its sign: f'' sum_c g_delta a
                            gu = torch.mul(g_delta[0], a[0])
                            for j in range(1, c):
                                gu.addcmul_(g_delta[j], a[j])
                            gu_jac[i] = gu.mul_(jet.d2f)
                            del gu
                        ga = jet.times_df(g_delta, inplace=True)  # (C, rows, H)
                        del g_delta, delta, a
                    _accumulate(gw, num, ga.sum(1))  # through a_L = W_out
                    del ga
                # Sweep down: the value's backward pass plus the Jacobian's share of d loss / d u.
                # gh holds gsign * (true gradient), so that sign flips cost no pass over the data.
                gv = g_value[s0:s1]
                _accumulate_mm(gw, num, gv.T, jets[-1].f)
                _accumulate(gb, num, gv.sum(0))
                gh, gsign = torch.mm(gv, w_out), 1.0  # (rows, H)
                for i in range(num - 1, -1, -1):
                    jet = jets[i]
                    if gu_jac[i] is not None:  # gu_jac + gsign sign gh f' = sign (true gradient of u)
                        gu, usign = gu_jac[i].addcmul_(gh, jet.df, value=gsign * jet.sign), jet.sign
                        gu_jac[i] = None
                    else:
                        gu, usign = jet.times_df(gh, inplace=True), gsign
                    del gh
                    h_in = jets[i - 1].f if i > 0 else h0[s0:s1]
                    _accumulate_mm(gw, i, gu.T, h_in, alpha=usign)
                    _accumulate(gb, i, gu.sum(0), alpha=usign)
                    if i > 0 or g_h0 is not None:
                        gh, gsign = torch.mm(gu, weights[i]), usign
                    del gu, jet
                if g_h0 is not None:
                    torch.mul(gh, gsign, out=g_h0[s0:s1])
                del jets, deltas, a_list
            return gw, gb, g_t0_shared

        parts = run_blocks(work, len(blocks), h0.device)
        gw = _sum_parts([p[0] for p in parts])
        gb = _sum_parts([p[1] for p in parts])
        if ctx.needs_input_grad[2] and shared:
            g_t0 = _sum_parts([p[2] for p in parts])[0]
            if g_t0 is None:
                g_t0 = torch.zeros_like(t0)
        return (None, g_h0, g_t0, *_weight_grads(gw, gb, folds))


def _contract_features(a0: Tensor, t0: Tensor) -> Tensor:
    """J[n, c, d] = sum_k a0[c, n, k] t0[d, n, k]; t0 may be constant over n (shape (D, 1, K0))."""
    if t0.shape[1] == 1:
        return torch.matmul(a0, t0[:, 0, :].T).permute(1, 0, 2)
    return torch.einsum("cnk,dnk->ncd", a0, t0)

