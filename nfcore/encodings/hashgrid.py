"""Multiresolution hash grid (Instant-NGP) in pure PyTorch, computing tiny-cuda-nn's HashGrid.

The function is tiny-cuda-nn's (`include/tiny-cuda-nn/encodings/grid.h`, `common_device.h`):
- input x in [-1, 1]^d is first mapped to [0, 1]^d (tcnn expects [0, 1]);
- level l has scale s_l = exp2(l * log2(per_level_scale)) * base_resolution - 1 (float32) and
  resolution ceil(s_l) + 1 vertices per axis;
- position p = x01 * s_l + 0.5, corner floor(p), trilinear weights from frac(p);
- level l owns min(next_multiple(resolution^d, 8), 2^log2_hashmap_size) table rows starting at
  offset_l = sum of the sizes of the coarser levels; the parameters are one flat (rows, F) table;
- a level whose dense index fits its rows (strides accumulated in uint32 while stride <= size) is
  indexed densely, index = sum_d p_d * stride_d; otherwise by the coherent prime hash
  XOR_d p_d * prime_d with primes (1, 2654435761, 805459861, ...), both in uint32 and modulo the
  level size; output columns are level-major: column = l * F + f.

Why hand-written: no maintained pure-PyTorch package computes tcnn's function (nerfstudio's torch
fallback differs: no +0.5, always hashes, no uint32 wrap), and the fast path needs its own autograd.

Implementations (option `implementation`):
- "function" (default): a custom `torch.autograd.Function` with analytic gradients. The table
  gradient is one scatter-add into the flat table; d/dx comes from the derivatives of the
  multilinear weights. The backward is itself differentiable with analytic second-order terms
  (autograd eikonal/normal losses); third order (Hessian-vector products of such a loss, ESGD)
  falls back to the same formulas in differentiable torch ops.
- "autograd": the same function in explicit differentiable torch ops on the flat table
  (any derivative order; slower). It is the reference the tests compare against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from nfcore.config import HashGridEncodingConfig
from nfcore.errors import InputError

# tiny-cuda-nn's coherent_prime_hash factors (uint32), one per input dimension.
PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
_U32 = 0xFFFFFFFF


@dataclass(frozen=True)
class GridLayout:
    """Per-level geometry of a hash grid, computed exactly as tiny-cuda-nn does on the host."""

    in_dim: int
    n_levels: int
    n_features: int
    log2_hashmap_size: int
    scales: tuple[float, ...]
    """s_l (float32 values) per level."""
    resolutions: tuple[int, ...]
    """ceil(s_l) + 1 per level."""
    sizes: tuple[int, ...]
    """Table rows owned by each level."""
    offsets: tuple[int, ...]
    """First row of each level; offsets[-1] = total rows (n_levels + 1 entries)."""
    hashed: tuple[bool, ...]
    """Whether the level uses the spatial hash (else dense indexing)."""
    strides: tuple[tuple[int, ...], ...]
    """Dense-index stride per level and axis (uint32 products; 0 for axes past the cut-off)."""

    @property
    def n_rows(self) -> int:
        return self.offsets[-1]

    @property
    def n_params(self) -> int:
        return self.n_rows * self.n_features


def _next_multiple(v: int, m: int) -> int:
    return (v + m - 1) // m * m


def grid_layout(cfg: HashGridEncodingConfig, in_dim: int) -> GridLayout:
    """Level scales, resolutions, sizes, offsets and index kind, as tiny-cuda-nn computes them."""
    if not 1 <= in_dim <= len(PRIMES):
        raise InputError(f"hash grid supports 1 to {len(PRIMES)} input dimensions, got {in_dim}")
    f32 = np.float32
    log2_scale = f32(np.log2(f32(cfg.resolved_per_level_scale())))
    hashmap = 1 << cfg.log2_hashmap_size
    max_params = _U32 // 2
    scales, resolutions, sizes, offsets, hashed, strides = [], [], [], [], [], []
    offset = 0
    for level in range(cfg.n_levels):
        scale = f32(np.exp2(f32(level) * log2_scale) * f32(cfg.base_resolution) - f32(1.0))
        res = int(math.ceil(float(scale))) + 1
        dense = max_params if float(res) ** in_dim > max_params else res**in_dim
        size = min(_next_multiple(dense, 8), hashmap)
        # grid_index(): the loop stops once stride exceeds the level size; stride is uint32.
        stride, level_strides = 1, []
        for _ in range(in_dim):
            if stride <= size:
                level_strides.append(stride)
                stride = (stride * res) & _U32
            else:
                level_strides.append(0)
        scales.append(float(scale))
        resolutions.append(res)
        sizes.append(size)
        offsets.append(offset)
        hashed.append(size < stride)
        strides.append(tuple(level_strides))
        offset += size
    offsets.append(offset)
    for size, h in zip(sizes, hashed, strict=True):
        if h and size & (size - 1):
            raise AssertionError("a hashed level must have a power-of-two size")  # tcnn invariant
    return GridLayout(
        in_dim=in_dim,
        n_levels=cfg.n_levels,
        n_features=cfg.n_features_per_level,
        log2_hashmap_size=cfg.log2_hashmap_size,
        scales=tuple(scales),
        resolutions=tuple(resolutions),
        sizes=tuple(sizes),
        offsets=tuple(offsets),
        hashed=tuple(hashed),
        strides=tuple(strides),
    )


class _GridConstants:
    """Layout tensors on one device (built once per device, reused every call)."""

    def __init__(self, layout: GridLayout, device: torch.device):
        self.layout = layout
        self.device = device
        lev = torch.arange(layout.n_levels)
        self.scale = torch.tensor(layout.scales, dtype=torch.float32, device=device)  # (L,)
        self.offsets = torch.tensor(layout.offsets[:-1], dtype=torch.int64, device=device)  # (L,)
        dense = [i for i in range(layout.n_levels) if not layout.hashed[i]]
        hashed = [i for i in range(layout.n_levels) if layout.hashed[i]]
        self.dense_levels = torch.tensor(dense, dtype=torch.int64, device=device)
        self.hashed_levels = torch.tensor(hashed, dtype=torch.int64, device=device)
        # Dense levels come first whenever strides do not wrap (the usual case): slice, don't gather.
        self.dense_prefix = dense == list(range(len(dense)))
        self.n_dense = len(dense)
        self.dense_strides = torch.tensor(
            [layout.strides[i] for i in dense] or [[0] * layout.in_dim], dtype=torch.int64, device=device
        )[: len(dense)]  # (Ld, d)
        self.dense_sizes = torch.tensor([layout.sizes[i] for i in dense], dtype=torch.int64, device=device)  # (Ld,)
        self.hash_mask = (1 << layout.log2_hashmap_size) - 1
        self.primes = PRIMES[: layout.in_dim]
        order = dense + hashed
        self.restore = None if order == list(lev) else torch.argsort(torch.tensor(order)).to(device)
        # int32 halves the memory traffic of the index math on CUDA; CPU scatter wants int64.
        self.index_dtype = torch.int32 if device.type == "cuda" else torch.int64


# Layout of the working tensors: "structure of arrays", small axes first and the (L, N) level x
# point axes last and contiguous, e.g. corner weights (C, L, N) and values (F, C, L, N). Products
# of per-axis pairs then vectorise over L N; the same ops on (N, L, 2, 1) x (N, L, 1, 2) shapes
# ran 10-20x slower on CPU (tiny broadcast inner dimensions).


def _outer(pairs: list[torch.Tensor], op) -> torch.Tensor:
    """Combine per-axis pairs (2, L, N) into corners (C, L, N), C = 2^d.

    Corner c takes the upper vertex along axis a when bit a of c is set (tcnn's order).
    """
    out = pairs[0]
    for k in range(1, len(pairs)):
        out = op(pairs[k].unsqueeze(1), out.unsqueeze(0)).flatten(0, 1)
    return out


def _corner_rows(x01: torch.Tensor, k: _GridConstants) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat table rows of the 2^d corners per level, and the fractional positions.

    x01 (N, d) -> rows (L, N, C) int64 (int32 on CUDA), t (d, L, N) in [0, 1). Rows are
    computed corner-major (vectorised) and returned level-major with the corners innermost:
    gathering a level's corners together keeps the working set to one level's table and reuses
    the cache lines shared by x-neighbours (prime 1), ~20% faster than corner-major on CPU.
    """
    d = x01.shape[1]
    pos = torch.addcmul(
        torch.full((), 0.5, dtype=x01.dtype, device=x01.device),
        x01.T.unsqueeze(1),
        k.scale.to(x01.dtype).view(1, -1, 1),
    )  # (d, L, N): tcnn's fma(scale, x, 0.5)
    base = pos.floor()
    t = pos - base
    lo = base.to(torch.int64)  # negative only for inputs below -1
    parts = []
    if k.n_dense:
        lo_d = lo[:, : k.n_dense] if k.dense_prefix else lo.index_select(1, k.dense_levels)
        terms = []
        for a in range(d):
            v0 = lo_d[a] * k.dense_strides[:, a].view(-1, 1)  # (Ld, N)
            terms.append(torch.stack((v0, v0 + k.dense_strides[:, a].view(-1, 1))))  # (2, Ld, N)
        idx = _outer(terms, torch.add)
        # uint32 arithmetic as in tcnn, then modulo the (not necessarily power-of-two) level size.
        idx = torch.remainder(idx & _U32, k.dense_sizes.view(1, -1, 1))
        parts.append(idx.to(k.index_dtype))
    n_hashed = k.layout.n_levels - k.n_dense
    if n_hashed:
        lo_h = lo[:, k.n_dense :] if k.dense_prefix else lo.index_select(1, k.hashed_levels)
        terms = []
        for a in range(d):
            p = k.primes[a]
            # Low bits of a uint32 product are those of the int64 product; XOR commutes with masking.
            v0 = (lo_h[a] * p) & k.hash_mask
            v1 = ((lo_h[a] + 1) * p) & k.hash_mask
            terms.append(torch.stack((v0, v1)).to(k.index_dtype))  # (2, Lh, N)
        parts.append(_outer(terms, torch.bitwise_xor))
    rows = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (C, L, N)
    if k.restore is not None:
        rows = rows.index_select(1, k.restore)
    rows += k.offsets.view(1, -1, 1).to(rows.dtype)  # in place: rows is a fresh tensor here
    # One contiguous copy in the gather's order: a strided (L, N, C) view would be copied again by
    # every reshape, in the forward's gather and in the backward's scatter.
    return rows.permute(1, 2, 0).contiguous(), t  # (L, N, C)


def _linear_pairs(t: torch.Tensor) -> torch.Tensor:
    """Per-axis linear weights (1 - t, t): (d, L, N) -> (d, 2, L, N)."""
    return torch.stack((1 - t, t), dim=1)


def _corner_weights(pq: torch.Tensor) -> torch.Tensor:
    """Multilinear weights (C, L, N) from per-axis pairs (d, 2, L, N)."""
    return _outer(list(pq.unbind(0)), torch.mul)


def _directional_weights(pq: torch.Tensor, u: torch.Tensor, dp: torch.Tensor) -> torch.Tensor:
    """a[c, l, n] = sum_a u[n, a] d w_c / d x01_a: corner weights of a directional derivative.

    pq (d, 2, L, N), u (N, d), dp (L,) = d p / d x01 (the level scale) -> (C, L, N). Built
    axis by axis with the product rule (A' = A p + W s, W' = W p): two outer products per axis.
    """
    d = pq.shape[0]
    ud = u.T.unsqueeze(1) * dp.view(1, -1, 1)  # (d, L, N)
    signs = torch.stack((-ud, ud), dim=1)  # (d, 2, L, N): d(1 - t)/dx, dt/dx
    w, a = pq[0], signs[0]
    for k in range(1, d):
        p, s = pq[k].unsqueeze(1), signs[k].unsqueeze(1)
        a = (p * a.unsqueeze(0) + s * w.unsqueeze(0)).flatten(0, 1)
        if k < d - 1:
            w = (p * w.unsqueeze(0)).flatten(0, 1)
    return a


def _contract(v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """sum_b v[..., b, :, :] p[b] over the last corner axis: v (..., 2, L, N), p (2, L, N)."""
    return v.select(-3, 0) * p[0] + v.select(-3, 1) * p[1]


def _spatial_derivatives(
    v: torch.Tensor, pq: torch.Tensor, dp: torch.Tensor, hessian: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """First (and mixed second) x01-derivatives of sum_l sum_c w_c v[c, l, n].

    v (C, L, N), pq (d, 2, L, N), dp (L,) -> grad (N, d) and, if asked, H (N, d, d) (zero
    diagonal: multilinear weights are linear along each axis). Contracts one axis at a time and
    carries the partial derivatives along, ~2 passes over v in all.
    """
    d = pq.shape[0]
    lv, n = v.shape[1:]
    val = v.view(*([2] * d), lv, n)  # axis 0 is the last corner axis
    first: list[torch.Tensor] = []
    second: dict[tuple[int, int], torch.Tensor] = {}
    for a in range(d):
        p = pq[a]
        if hessian:
            for key in list(second):
                second[key] = _contract(second[key], p)
            for b in range(a):
                second[(b, a)] = first[b].select(-3, 1) - first[b].select(-3, 0)
        first = [_contract(f, p) for f in first]
        first.append(val.select(-3, 1) - val.select(-3, 0))
        val = _contract(val, p)
    dpr = dp.view(1, lv)
    grad = torch.cat([dpr @ f.reshape(lv, n) for f in first]).T  # (N, d)
    if not hessian:
        return grad, None
    hess = v.new_zeros(n, d, d)
    dp2 = dpr * dpr
    for (a, b), h in second.items():
        hess[:, a, b] = hess[:, b, a] = (dp2 @ h.reshape(lv, n))[0]
    return grad, hess


def _gather_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """table (R, F) at rows (L, N, C) -> values (F, C, L, N).

    The gather reads whole (F,) rows; one transposing copy then puts F and C first for the
    vectorised arithmetic.
    """
    vals = table.index_select(0, rows.reshape(-1)).view(*rows.shape, table.shape[1])
    return vals.permute(3, 2, 0, 1).contiguous()


def _scatter_rows(rows: torch.Tensor, src: torch.Tensor, n_rows: int, differentiable: bool = False) -> torch.Tensor:
    """Sum src (F, C, L, N) into a zero (n_rows, F) table at rows (L, N, C).

    Measured on CPU (2M corners, 2^19-row levels): a 1-D scatter_add_ into the flattened table
    beats index_add_ on 2-D rows (~2x) and index_put_(accumulate) (~2.5x); with an even F,
    adding float pairs as complex64 needs no flat index and is ~1.6x faster again. CUDA keeps
    the float path (float atomics are its fast case). `differentiable` uses the out-of-place
    float scatter, which autograd can differentiate (third-order derivatives).
    """
    f = src.shape[0]
    rows = rows.reshape(-1)
    src = src.permute(2, 3, 1, 0).contiguous()  # (L, N, C, F), the order of rows
    if not differentiable and src.device.type == "cpu" and f % 2 == 0 and src.dtype == torch.float32:
        h = f // 2
        pairs = src.view(-1, 2)  # (L N C h, 2)
        out = torch.zeros(n_rows * h, dtype=torch.complex64, device=src.device)
        index = rows.to(torch.int64)
        if h > 1:
            index = (index.unsqueeze(-1) * h + torch.arange(h, device=rows.device)).view(-1)
        out.scatter_add_(0, index, torch.view_as_complex(pairs))
        return torch.view_as_real(out).view(n_rows, f)
    index = rows.to(torch.int64).unsqueeze(-1) * f + torch.arange(f, device=rows.device)  # (L N C, F)
    out = torch.zeros(n_rows * f, dtype=src.dtype, device=src.device)
    if differentiable:
        return out.scatter_add(0, index.view(-1), src.reshape(-1)).view(n_rows, f)
    out.scatter_add_(0, index.view(-1), src.reshape(-1))
    return out.view(n_rows, f)


def _weighted_sum(vals: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_c w[c, l, n] vals[f, c, l, n] -> (F, L, N).

    Accumulated corner by corner in place: no (F, C, L, N) temporary (on CPU a fresh 16 MB
    buffer per call costs more in page faults than the arithmetic).
    """
    out = vals[:, 0] * w[0]
    for c in range(1, w.shape[0]):
        out.addcmul_(vals[:, c], w[c])
    return out


def _feature_dot(vals: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """sum_f vals[f, c, l, n] g[f, l, n] -> (C, L, N)."""
    out = vals[0] * g[0]
    for f in range(1, g.shape[0]):
        out.addcmul_(vals[f], g[f])
    return out


def _to_features(out: torch.Tensor) -> torch.Tensor:
    """(F, L, N) -> (N, L F), column l F + f (tcnn's output layout)."""
    return out.permute(2, 1, 0).reshape(out.shape[2], -1)


def _from_features(g: torch.Tensor, lv: int) -> torch.Tensor:
    """(N, L F) -> (F, L, N) contiguous."""
    return g.view(g.shape[0], lv, -1).permute(2, 1, 0).contiguous()


def _will_run(ctx, i: int) -> bool:
    """Whether autograd will use the gradient of input i in this backward pass.

    `torch.autograd.grad(f, x)` still asks a Function for every input that requires grad; the
    table's would be a full-table scatter thrown away. Falls back to needs_input_grad.
    """
    if not ctx.needs_input_grad[i]:
        return False
    try:
        node = ctx.next_functions[i][0]
        return node is None or bool(torch._C._will_engine_execute_node(node))
    except (AttributeError, RuntimeError, IndexError):
        return True


class _HashGridFunction(torch.autograd.Function):
    """x01 (N, d) in [0, 1], table (R, F) -> features (N, L F) and corner values (F, C, L, N).

    The corner values T[rows] are a second output so that the second-order table gradient (from
    the spatial-gradient path) comes back into this node's backward and is added to the
    first-order one before a single scatter into the table.
    """

    @staticmethod
    def forward(ctx, x01: torch.Tensor, table: torch.Tensor, k: _GridConstants, x_grad_once: bool = False):
        rows, t = _corner_rows(x01, k)  # (L, N, C), (d, L, N)
        pq = _linear_pairs(t)  # (d, 2, L, N)
        vals = _gather_rows(table, rows)  # (F, C, L, N)
        out = _to_features(_weighted_sum(vals, _corner_weights(pq)))  # (N, L F)
        ctx.k = k
        ctx.n_rows = table.shape[0]
        ctx.x_grad_once, ctx.x_grad_done = x_grad_once, False
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x01, rows, pq, vals)
        return out, vals

    @staticmethod
    def backward(ctx, g: torch.Tensor | None, gvals: torch.Tensor | None):
        x01, rows, pq, vals = ctx.saved_tensors
        k = ctx.k
        lv = k.layout.n_levels
        need_x, need_table = _will_run(ctx, 0), _will_run(ctx, 1)
        if ctx.x_grad_once:
            # x is value_and_gradient's private leaf: only the first backward's d/dx is read.
            need_x, ctx.x_grad_done = need_x and not ctx.x_grad_done, True
        gx = gt = None
        if torch.is_grad_enabled():
            # create_graph: Functions whose own backward is analytic too.
            if g is not None:
                gf = _from_features(g, lv)  # (F, L, N), differentiable w.r.t. g
                if need_x:
                    gx = _HashGridInputGrad.apply(gf, x01, rows, pq, vals, k, ctx.x_grad_once)
                if need_table:
                    gt = _HashGridTableGrad.apply(gf, x01, rows, pq, k, ctx.n_rows)
            if need_table and gvals is not None:
                gv = _scatter_rows(rows, gvals, ctx.n_rows, differentiable=True)
                gt = gv if gt is None else gt + gv
            return gx, gt, None, None
        gf = None if g is None else _from_features(g, lv)
        if need_x and gf is not None:
            gx = _spatial_gradient(_feature_dot(vals, gf), pq, k.scale.to(pq.dtype))
        if need_table:
            src = None if gf is None else _corner_weights(pq).unsqueeze(0) * gf.unsqueeze(1)  # (F, C, L, N)
            if gvals is not None:
                src = gvals if src is None else src + gvals
            if src is not None:
                gt = _scatter_rows(rows, src, ctx.n_rows)
        return gx, gt, None, None


class _HashGridInputGrad(torch.autograd.Function):
    """gx[n, a] = sum_{l,c,f} (d w_c / d x01_a) g[f, l, n] T[row_c, f]: the first backward's d/dx.

    Differentiable inputs: g (F, L, N), x01 (N, d) and vals = T[rows] (F, C, L, N), the latter
    an output of `_HashGridFunction`, through which the table gradient flows.
    """

    @staticmethod
    def forward(ctx, g, x01, rows, pq, vals, k, skip_x=False):
        v = _feature_dot(vals, g)  # (C, L, N)
        ctx.k, ctx.skip_x = k, skip_x
        ctx.save_for_backward(g, x01, pq, vals, v)
        return _spatial_gradient(v, pq, k.scale.to(pq.dtype))

    @staticmethod
    def backward(ctx, u):
        g, x01, pq, vals, v = ctx.saved_tensors
        scale = ctx.k.scale.to(pq.dtype)
        if torch.is_grad_enabled():
            # Third order (e.g. Hessian-vector products of an eikonal loss): the same formulas in
            # differentiable torch ops, with the weights rebuilt from x01 so autograd sees them.
            pq = _pairs_from_x(x01, ctx.k) if x01.requires_grad else pq
            v = _feature_dot(vals, g)
        gg = gx = gvals = None
        need_g, need_x, need_vals = _will_run(ctx, 0), _will_run(ctx, 1) and not ctx.skip_x, _will_run(ctx, 4)
        if need_g or need_vals:
            a = _directional_weights(pq, u, scale)  # (C, L, N)
            if need_g:
                gg = _weighted_sum(vals, a)  # (F, L, N)
            if need_vals:
                gvals = a.unsqueeze(0) * g.unsqueeze(1)  # (F, C, L, N)
        if need_x:
            gx = (_spatial_hessian(v, pq, scale) @ u.unsqueeze(-1)).squeeze(-1)  # (N, d)
        return gg, gx, None, None, gvals, None, None


class _HashGridTableGrad(torch.autograd.Function):
    """gt = scatter of w_c g[f, l, n] into the (R, F) table: the first backward's d/dtable.

    Its backward (w.r.t. g and x01) serves Hessian-vector products over the parameters (ESGD).
    """

    @staticmethod
    def forward(ctx, g, x01, rows, pq, k, n_rows):
        ctx.k = k
        ctx.save_for_backward(g, x01, rows, pq)
        return _scatter_rows(rows, _corner_weights(pq).unsqueeze(0) * g.unsqueeze(1), n_rows)

    @staticmethod
    def backward(ctx, ut):
        g, x01, rows, pq = ctx.saved_tensors
        if torch.is_grad_enabled() and x01.requires_grad:
            pq = _pairs_from_x(x01, ctx.k)  # third order: let autograd see the weights' x-dependence
        gg = gx = None
        need_g, need_x = _will_run(ctx, 0), _will_run(ctx, 1)
        if need_g or need_x:
            uvals = _gather_rows(ut, rows)  # (F, C, L, N)
            if need_g:
                gg = _weighted_sum(uvals, _corner_weights(pq))
            if need_x:
                gx = _spatial_gradient(_feature_dot(uvals, g), pq, ctx.k.scale.to(pq.dtype))
        return gg, gx, None, None, None, None


def _pairs_from_x(x01: torch.Tensor, k: _GridConstants) -> torch.Tensor:
    """Per-axis pairs (d, 2, L, N) as a differentiable function of x01 (N, d)."""
    pos = x01.T.unsqueeze(1) * k.scale.to(x01.dtype).view(1, -1, 1) + 0.5  # (d, L, N)
    return _linear_pairs(pos - pos.detach().floor())


def _spatial_gradient(v: torch.Tensor, pq: torch.Tensor, dp: torch.Tensor) -> torch.Tensor:
    """sum_l sum_c (d w_c / d x01_a) v[c, l, n] for each axis a: (C, L, N) -> (N, d)."""
    return _spatial_derivatives(v, pq, dp)[0]


def _spatial_hessian(v: torch.Tensor, pq: torch.Tensor, dp: torch.Tensor) -> torch.Tensor:
    """H[n, a, b] = sum_l sum_c (d^2 w_c / d x01_a d x01_b) v[c, l, n]: (C, L, N) -> (N, d, d)."""
    return _spatial_derivatives(v, pq, dp, hessian=True)[1]


def hashgrid_encode(
    x01: torch.Tensor, table: torch.Tensor, k: _GridConstants, x_grad_once: bool = False
) -> torch.Tensor:
    """Fast path: x01 (N, d) in [0, 1], table (R, F) -> (N, L F)."""
    out, _ = _HashGridFunction.apply(x01, table, k, x_grad_once)
    return out


def hashgrid_encode_autograd(x01: torch.Tensor, table: torch.Tensor, k: _GridConstants) -> torch.Tensor:
    """Reference: the same function in differentiable torch ops on the flat table (any order).

    One flat table and explicit products (the issue's second variant); autograd does the rest.
    """
    pos = x01.T.unsqueeze(1) * k.scale.to(x01.dtype).view(1, -1, 1) + 0.5  # (d, L, N)
    with torch.no_grad():
        rows, _ = _corner_rows(x01, k)  # (L, N, C)
    t = pos - pos.detach().floor()  # differentiable w.r.t. x01
    w = _corner_weights(_linear_pairs(t)).permute(1, 2, 0)  # (L, N, C), explicit products (no .prod)
    vals = table[rows.reshape(-1)].view(*rows.shape, table.shape[1])  # (L, N, C, F)
    out = (w.unsqueeze(-1) * vals).sum(2)  # (L, N, F)
    return out.permute(1, 0, 2).reshape(x01.shape[0], -1)


class HashGridEncoding(nn.Module):
    """tiny-cuda-nn's HashGrid in PyTorch: (N, d) in [-1, 1] -> (N, L F).

    Args:
        cfg: grid configuration (levels, features, table size, resolutions, init scale).
        in_dim: input dimension d.
        implementation: "function" (analytic custom autograd, default) or "autograd" (reference).
    """

    has_tables = True

    def __init__(
        self,
        cfg: HashGridEncodingConfig,
        in_dim: int,
        *,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        implementation: Literal["function", "autograd"] = "function",
    ):
        super().__init__()
        if implementation not in ("function", "autograd"):
            raise InputError(f"hash grid implementation must be 'function' or 'autograd', got {implementation!r}")
        self.layout = grid_layout(cfg, in_dim)
        self.in_dim = in_dim
        self.out_dim = cfg.n_levels * cfg.n_features_per_level
        self.implementation = implementation
        gen_device = generator.device if generator is not None else torch.device("cpu")
        table = torch.rand((self.layout.n_rows, cfg.n_features_per_level), generator=generator, device=gen_device)
        # tcnn initialises every entry U(-init_scale, init_scale).
        self.table = nn.Parameter(((table * 2 - 1) * cfg.init_scale).to(device))  # (R, F), tcnn's params layout
        self._constants: _GridConstants | None = None

    def constants(self) -> _GridConstants:
        """Layout tensors on the table's device (rebuilt after .to(device))."""
        device = self.table.device
        if self._constants is None or self._constants.device != device:
            self._constants = _GridConstants(self.layout, device)
        return self._constants

    def forward(self, x: torch.Tensor, *, x_grad_once: bool = False) -> torch.Tensor:
        """(N, d) in [-1, 1] -> (N, L F).

        x_grad_once: x is a private leaf whose gradient only the first backward pass reads
        (NeuralField.value_and_gradient); later passes skip the d/dx work.
        """
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise InputError(f"hash grid expects (N, {self.in_dim}) coordinates, got {tuple(x.shape)}")
        x01 = (x + 1) * 0.5  # (N, d) in [0, 1]
        k = self.constants()
        if self.implementation == "function":
            return hashgrid_encode(x01, self.table, k, x_grad_once)
        return hashgrid_encode_autograd(x01, self.table, k)

    def extra_repr(self) -> str:
        lay = self.layout
        return (
            f"in_dim={lay.in_dim}, levels={lay.n_levels}, features={lay.n_features}, "
            f"log2_hashmap_size={lay.log2_hashmap_size}, rows={lay.n_rows}, implementation={self.implementation}"
        )
