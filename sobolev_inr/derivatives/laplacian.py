"""The fused forward Laplacian: value, Jacobian and Laplacian of an :class:`MLP` in one
:class:`torch.autograd.Function` with a hand-written backward pass.

The forward Laplacian (Li et al. 2023, arXiv 2307.08214) carries through each layer the value h
(rows, K), the D first-order tangents t_j (rows, K) along the scaled unit directions, and ONE
summed second-order stream s (rows, K) = sum_j (second directional derivative along j), instead of
D second-order tensors. Per activated layer, with the folded weight w = a W and bias a b (as in
:mod:`.fused`):

    u = h w^T + a b,   tu_j = t_j w^T,   su = s w^T,   q = sum_j tu_j^2
    h' = f(u),   t'_j = f'(u) tu_j,   s' = f'(u) su + f''(u) q

and the output layer, linear, gives the Laplacian s_L W_out^T. The 1 + D + 1 streams of a hidden
layer are rows of one stacked (S rows, K) matrix, S = D + 2, so that each layer takes one matrix
product forward and two backward (one big product runs faster than S small ones on a CPU). The
backward pass, from the output co-tangents (gh', gt'_j, gs') of a layer:

    g_u = f' gh' + f'' (sum_j gt'_j tu_j + gs' su) + f''' gs' q
    g_tu_j = f' gt'_j + 2 f'' gs' tu_j,   g_su = f' gs'

then the weight gradient [g_u; g_tu; g_su]^T [h; t; s] and the inputs' co-tangents [g_u; g_tu; g_su] w,
one stacked product each. Only the pre-activation streams [u; tu_j; su] of each layer are saved
(S tensors (rows, width)): the backward pass recomputes each layer's jet and output from them
elementwise, which costs a few passes over cache-sized row blocks and keeps the memory near the
minimum. The first layer's input tangents are constant over the batch where there is no encoding
(shape (D, 1, K0)): its tangent products are then (1, width).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..models.activations import Activation
from ..models.mlp import MLP
from .cpu_blocks import run_blocks
from .fused import (_Jet, _accumulate, _accumulate_mm, _first_layer_tangent_grads, _load_context, _pre_activation,
                    _prepare, _save_context, _split, _sum_parts, _weight_grads)

PreActivation = Tuple[Tensor, List[Tensor], Optional[Tensor]]
"""A layer's pre-activation streams: u (rows, H), tu_j (rows or 1, H) for each direction, su (rows, H) or None."""


def fused_value_and_laplacian(model: MLP, coords: Tensor, scale: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Value (N, C), Jacobian (N, C, D) and Laplacian (N, C) = sum_d scale[d]^2 d^2 f / d x_d^2 of a
    plain ``model`` at ``coords (N, D)``, by the fused forward Laplacian."""
    seeds = torch.diag(scale).unsqueeze(1)  # (D, 1, D): direction d = scale[d] e_d, constant over the batch
    streams = seeds.shape[0] + 2
    h0, t0, s0, params, spec = _prepare(model, coords, seeds, laplacian=True, block_width=streams)
    value, tangents, lap = _ForwardLaplacian.apply(spec, h0, t0, s0, *params)
    return value, tangents.permute(1, 2, 0), lap  # (D, N, C) -> (N, C, D)


def _streams(stacked: Tensor, rows: int, d: int) -> PreActivation:
    """Views of a stacked (S rows, H) matrix as its streams: value part, D tangent parts, summed second part."""
    return stacked[:rows], [stacked[(1 + j) * rows:(2 + j) * rows] for j in range(d)], stacked[(1 + d) * rows:]


def _sum_of_squares(tu: Sequence[Tensor]) -> Tensor:
    """q = sum_j tu_j^2: (rows, H), or (1, H) for tangents constant over the batch."""
    q = torch.mul(tu[0], tu[0])
    for x in tu[1:]:
        q.addcmul_(x, x)
    return q


def _layer_output(act: Activation, u: Tensor, tu: List[Tensor], su: Optional[Tensor], third: bool = False
                  ) -> Tuple[_Jet, Tensor]:
    """The activation's jet at u (with f''' if ``third``) and the layer's output streams stacked as
    [f(u); f'(u) tu_j; f'(u) su + f''(u) q], (S rows, H), the next layer's input."""
    rows, d = u.shape[0], len(tu)
    out = u.new_empty((d + 2) * rows, u.shape[1])
    h, t, s = _streams(out, rows, d)
    jet = _Jet.of(act, u, third, out=h)
    for x, o in zip(tu, t):
        jet.times_df(x, out=o)
    if jet.d2f is None:  # ReLU: f'' = 0
        jet.times_df(su, out=s) if su is not None else s.zero_()
        return jet, out
    q = _sum_of_squares(tu)
    if su is not None:
        jet.times_df(su, out=s).addcmul_(jet.d2f, q, value=jet.sign)
    else:
        torch.mul(jet.d2f, q if jet.sign == 1.0 else q.mul_(jet.sign), out=s)
    return jet, out


def _through_activation(jet: _Jet, tu: List[Tensor], su: Optional[Tensor], g: Tensor, rows: int) -> Tensor:
    """The co-tangents of a layer's outputs, stacked [gh'; gt'_j; gs'] (S rows, H), turned in place into
    those of its pre-activation streams [g_u; g_tu_j; g_su] (formulas in the module docstring)."""
    d = len(tu)
    gh, gt, gs = _streams(g, rows, d)
    if jet.d2f is None:  # ReLU: f'' = f''' = 0, every stream just times f'
        for part in (gh, *gt, gs):
            jet.times_df(part, out=part)
        return g
    q = _sum_of_squares(tu)
    p = torch.mul(gt[0], tu[0])  # sum_j gt'_j tu_j + gs' su
    for x, y in zip(gt[1:], tu[1:]):
        p.addcmul_(x, y)
    if su is not None:
        p.addcmul_(gs, su)
    m = torch.mul(gs, jet.d2f).mul_(2.0 * jet.sign)  # 2 f'' gs'
    if jet.d3f is jet.df:  # f''' = sign3 f' (sine): g_u = f' (gh' + sign3 gs' q) + f'' p
        jet.times_df(gh.addcmul_(gs, q, value=jet.sign3), inplace=True).addcmul_(jet.d2f, p, value=jet.sign)
    else:
        jet.times_df(gh, inplace=True).addcmul_(jet.d2f, p, value=jet.sign)
        gh.addcmul_(jet.d3f, torch.mul(gs, q), value=jet.sign3)
    del p, q
    for x, y in zip(gt, tu):
        jet.times_df(x, inplace=True).addcmul_(m, y)
    jet.times_df(gs, inplace=True)
    return g


class _ForwardLaplacian(torch.autograd.Function):
    """Returns value (N, C), tangents (D, N, C) and Laplacian (N, C); backward written out by hand.

    Inputs: h0 (N, K0), t0 (D, 1 or N, K0) and s0 (N, K0) or None (zero: no encoding), the encoding's
    features, their tangents and their summed second-order term; then the layers' parameters.
    Saved per row block: the first layer's u, tu_j, su and every later layer's stacked [u; tu_j; su].
    """

    @staticmethod
    def forward(ctx, spec, h0: Tensor, t0: Tensor, s0: Optional[Tensor], *params: Tensor):
        acts, folds, save, blocks = spec
        weights, w_out, b_out = _split(params, folds)
        biases = [params[2 * i + 1] * a for i, a in enumerate(folds)]  # folded: u = h (a W)^T + a b
        n, d, c = h0.shape[0], t0.shape[0], w_out.shape[0]
        shared = t0.shape[1] == 1
        value, tangents, lap = h0.new_empty(n, c), h0.new_empty(d, n, c), h0.new_empty(n, c)
        saved: List[Optional[List[Optional[Tensor]]]] = [None] * len(blocks)

        def work(ids: List[int]) -> None:
            for b_id in ids:
                r0, r1 = blocks[b_id]
                rows = r1 - r0
                w = weights[0]
                u = _pre_activation(params, 0, folds[0], h0[r0:r1])
                tu = [torch.mm(t0[j] if shared else t0[j, r0:r1], w.T) for j in range(d)]
                su = torch.mm(s0[r0:r1], w.T) if s0 is not None else None
                keep: List[Optional[Tensor]] = [u, *tu, su]
                _, z = _layer_output(acts[0], u, tu, su)
                for i in range(1, len(acts)):
                    stacked = torch.mm(z, weights[i].T)  # (S rows, H): [u; tu_j; su]
                    del z
                    u, tu, su = _streams(stacked, rows, d)
                    u.add_(biases[i])
                    keep.append(stacked)
                    _, z = _layer_output(acts[i], u, tu, su)
                h, t, s = _streams(z, rows, d)
                torch.addmm(b_out, h, w_out.T, out=value[r0:r1])
                for j in range(d):
                    torch.mm(t[j], w_out.T, out=tangents[j, r0:r1])
                torch.mm(s, w_out.T, out=lap[r0:r1])
                if save:
                    saved[b_id] = keep

        run_blocks(work, len(blocks), h0.device)
        _save_context(ctx, save, acts, folds, blocks, h0, t0, params, [[s0], *saved] if save else [])
        return value, tangents, lap

    @staticmethod
    @once_differentiable
    def backward(ctx, g_value: Optional[Tensor], g_tangents: Optional[Tensor], g_lap: Optional[Tensor]):
        acts, folds, blocks, h0, t0, params, kept = _load_context(ctx)
        s0, kept = kept[0], kept[1:]
        num = len(acts)
        weights, w_out, b_out = _split(params, folds)
        n, d, c = h0.shape[0], t0.shape[0], w_out.shape[0]
        shared = t0.shape[1] == 1
        g_h0 = h0.new_empty(h0.shape) if ctx.needs_input_grad[1] else None
        g_t0 = t0.new_empty(t0.shape) if ctx.needs_input_grad[2] and not shared else None
        g_s0 = s0.new_empty(s0.shape) if ctx.needs_input_grad[3] else None
        per_block = d + 2 + num - 1

        def work(ids: List[int]):
            gw: List[Optional[Tensor]] = [None] * (num + 1)  # index num: the output layer
            gb: List[Optional[Tensor]] = [None] * (num + 1)
            g_t0_shared: List[Optional[Tensor]] = [None] * d
            for b_id in ids:
                r0, r1 = blocks[b_id]
                rows = r1 - r0
                items = kept[b_id * per_block:(b_id + 1) * per_block]
                pre: List[Optional[PreActivation]] = [(items[0], list(items[1:1 + d]), items[1 + d])]
                pre += [_streams(x, rows, d) for x in items[d + 2:]]
                jet, z = _layer_output(acts[-1], *pre[-1], third=True)

                g_out = h0.new_zeros((d + 2) * rows, c)  # [g_value; g_tangents; g_lap] of this block
                gv, gt, gs = _streams(g_out, rows, d)
                if g_value is not None:
                    gv.copy_(g_value[r0:r1])
                    _accumulate(gb, num, g_value[r0:r1].sum(0))
                if g_tangents is not None:
                    for j in range(d):
                        gt[j].copy_(g_tangents[j, r0:r1])
                if g_lap is not None:
                    gs.copy_(g_lap[r0:r1])
                _accumulate_mm(gw, num, g_out.T, z)
                g = torch.mm(g_out, w_out)  # (S rows, H)
                del z, g_out, gv, gt, gs
                for i in range(num - 1, -1, -1):
                    _, tu, su = pre[i]
                    _through_activation(jet, tu, su, g, rows)
                    pre[i] = None
                    _accumulate(gb, i, g[:rows].sum(0))
                    w = weights[i]
                    if i > 0:
                        jet, z = _layer_output(acts[i - 1], *pre[i - 1], third=True)
                        _accumulate_mm(gw, i, g.T, z)
                        g = torch.mm(g, w)
                        del z
                        continue
                    del jet
                    gu, gtu, gsu = _streams(g, rows, d)
                    _accumulate_mm(gw, 0, gu.T, h0[r0:r1])
                    _first_layer_tangent_grads(gw[0], gtu, t0, slice(r0, r1), w, ctx.needs_input_grad[2],
                                               g_t0, g_t0_shared)
                    if s0 is not None:
                        gw[0].addmm_(gsu.T, s0[r0:r1])
                    if g_h0 is not None:
                        torch.mm(gu, w, out=g_h0[r0:r1])
                    if g_s0 is not None:
                        torch.mm(gsu, w, out=g_s0[r0:r1])
                del g, pre
            return gw, gb, g_t0_shared

        parts = run_blocks(work, len(blocks), h0.device)
        gw = _sum_parts([p[0] for p in parts])
        gb = _sum_parts([p[1] for p in parts])
        if ctx.needs_input_grad[2] and shared:
            g_t0 = torch.stack(_sum_parts([p[2] for p in parts]))
        return (None, g_h0, g_t0, g_s0, *_weight_grads(gw, gb, folds))
