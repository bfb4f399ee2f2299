"""Hash-grid SDF training throughput: samples per second of a full training step.

A step is what the SDF fit does: forward on on-surface + off-surface points, the spatial gradient
(autograd with a double backward, or central finite differences), the SIREN loss (surface,
off-surface, normal, eikonal), backward to the table and the MLP, and an Adam step. Samples =
on + off points. Variants, side by side in one run:

- stacked: per-level tables stacked (L, 2^log2, F), sliced per level, weights by `.prod(-1)`
  (the naive port the issue measured);
- explicit: one flat table in explicit differentiable ops (`implementation="autograd"`);
- function: the custom autograd Function with analytic gradients (`implementation="function"`).

Usage: python -m bench.hashgrid [--device cpu] [--batch 16384] [--log2 15 17 19] [--levels 16]
Writes bench/results/hashgrid.json and bench/results/hashgrid.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from nfcore.config import HashGridEncodingConfig, MLPNetworkConfig
from nfcore.encodings.hashgrid import PRIMES, grid_layout
from nfcore.field import NeuralField

RESULTS = Path(__file__).resolve().parent / "results"


class StackedHashGrid(nn.Module):
    """The naive port: the same function as tcnn's grid but one (L, 2^log2, F) stacked table.

    Kept only to measure against; it slices the table per level and forms the trilinear weights
    with `.prod(-1)`.
    """

    has_tables = True

    def __init__(self, cfg: HashGridEncodingConfig, in_dim: int, *, device=None, generator=None):
        super().__init__()
        self.layout = grid_layout(cfg, in_dim)
        self.in_dim, self.out_dim = in_dim, cfg.n_levels * cfg.n_features_per_level
        size = 1 << cfg.log2_hashmap_size
        table = (
            torch.rand((cfg.n_levels, size, cfg.n_features_per_level), generator=generator) * 2 - 1
        ) * cfg.init_scale
        self.table = nn.Parameter(table.to(device))
        corners = torch.tensor([[(c >> a) & 1 for a in range(in_dim)] for c in range(1 << in_dim)])
        self.register_buffer("corners", corners.to(device), persistent=False)  # (C, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x01 = (x + 1) * 0.5
        lay = self.layout
        feats = []
        for level in range(lay.n_levels):
            pos = x01 * lay.scales[level] + 0.5  # (N, d)
            base = pos.floor().detach()
            t = pos - base
            p = base.long().unsqueeze(1) + self.corners  # (N, C, d)
            w = torch.where(self.corners.bool(), t.unsqueeze(1), 1 - t.unsqueeze(1)).prod(-1)  # (N, C)
            if lay.hashed[level]:
                idx = torch.zeros_like(p[..., 0])
                for a in range(self.in_dim):
                    idx = idx ^ ((p[..., a] * PRIMES[a]) & 0xFFFFFFFF)
            else:
                idx = sum(p[..., a] * lay.strides[level][a] for a in range(self.in_dim)) & 0xFFFFFFFF
            idx = idx % lay.sizes[level]
            vals = self.table[level][idx]  # (N, C, F)
            feats.append((w.unsqueeze(-1) * vals).sum(1))
        return torch.cat(feats, dim=-1)


def _field(variant: str, log2: int, levels: int, features: int, hidden: int, layers: int, device, seed: int):
    cfg = HashGridEncodingConfig(
        n_levels=levels,
        n_features_per_level=features,
        log2_hashmap_size=log2,
        backend="torch",
        implementation="autograd" if variant == "explicit" else "function",
    )
    net = MLPNetworkConfig(hidden_features=hidden, hidden_layers=layers)
    gen = torch.Generator().manual_seed(seed)
    field = NeuralField(cfg, net, 3, 1, sdf=True, device=device, generator=gen)
    if variant == "stacked":
        field.encoding = StackedHashGrid(cfg, 3, device=device, generator=gen)
    return field


def sdf_step_fn(field, batch: int, gradient: str, device, seed: int):
    """A closure running one SDF training step on `batch` on-surface + `batch` off-surface points."""
    gen = torch.Generator(device=device).manual_seed(seed)
    tables = field.table_parameters()
    groups = [{"params": field.network_parameters(), "lr": 1e-3}, {"params": tables, "lr": 1e-2}]
    kw = {"fused": True} if device.type in ("cuda", "cpu") else {}
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15, **kw)

    def step() -> torch.Tensor:
        d = torch.randn((batch, 3), generator=gen, device=device)
        normals = d / d.norm(dim=-1, keepdim=True)
        surface = normals * 0.5  # a sphere of radius 0.5
        off = torch.rand((batch, 3), generator=gen, device=device) * 2 - 1
        x = torch.cat([surface, off])  # (2B, 3)
        f, grad = field.value_and_gradient(x, method=gradient, eps=1e-3, create_graph=True)
        on = f[:batch]
        cos = torch.nn.functional.cosine_similarity(grad[:batch], normals, dim=-1)
        loss = (
            3e3 * on.abs().sum() / (2 * batch)
            + 1e2 * torch.exp(-100 * f[batch:].abs()).sum() / (2 * batch)
            + 1e2 * (1 - cos).sum() / (2 * batch)
            + 5e1 * ((grad.norm(dim=-1) - 1) ** 2).mean()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()  # no sync: the CPU queues the next step while the GPU runs this one

    return step


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(combos, *, log2, levels, features, hidden, layers, batch, steps, warmup, repeats, device, seed=0):
    """Median samples/s of each (variant, gradient) over `repeats` timings of `steps` steps.

    The timings are interleaved (repeat r of every combination, then repeat r + 1), so that
    load from other processes on a shared machine affects all combinations alike.
    """
    runs = []
    for variant, gradient in combos:
        field = _field(variant, log2, levels, features, hidden, layers, device, seed)
        step = sdf_step_fn(field, batch, gradient, device, seed)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        runs.append({"step": step, "losses": [step() for _ in range(warmup)], "rates": [], "cpu": []})
        runs[-1]["peak_bytes"] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    for _ in range(repeats):
        for run in runs:
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                run["losses"].append(run["step"]())
            _sync(device)
            run["rates"].append(2 * batch * steps / (time.perf_counter() - t0))
            run["cpu"].append(2 * batch * steps / max(time.process_time() - c0, 1e-9))
    results = []
    for (variant, gradient), run in zip(combos, runs, strict=True):
        losses = [float(v) for v in run["losses"]]
        results.append(
            {
                "variant": variant,
                "gradient": gradient,
                "log2_hashmap_size": log2,
                "batch_samples": 2 * batch,
                "samples_per_s": statistics.median(run["rates"]),
                "samples_per_s_all": run["rates"],
                # The best timing approximates an idle machine; the median includes other load.
                "samples_per_s_best": max(run["rates"]),
                # Samples per second of process CPU time (all threads): less sensitive to other
                # load than wall time (but idle OpenMP threads spinning also count).
                "samples_per_cpu_s": statistics.median(run["cpu"]),
                "final_loss": losses[-1],
                "peak_cuda_bytes": run["peak_bytes"],
                "finite_loss": all(v == v and abs(v) < float("inf") for v in losses),
            }
        )
    return results


def profile(combos, *, log2, levels, features, hidden, layers, batch, device, seed=0, steps=3, rows=25) -> str:
    """torch.profiler's top operators and kernels by device time over `steps` steps of each combination."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    parts = []
    for variant, gradient in combos:
        field = _field(variant, log2, levels, features, hidden, layers, device, seed)
        step = sdf_step_fn(field, batch, gradient, device, seed)
        for _ in range(2):
            step()
        _sync(device)
        with torch_profile(activities=activities) as prof:
            for _ in range(steps):
                step()
            _sync(device)
        averages = prof.key_averages()
        try:
            table = averages.table(sort_by=sort_by, row_limit=rows)
        except (KeyError, AttributeError, RuntimeError):  # renamed "device" time in newer releases
            table = averages.table(sort_by=sort_by.replace("cuda", "device"), row_limit=rows)
        parts.append(f"## log2={log2} {variant} {gradient}: {steps} steps of {2 * batch} samples\n\n{table}\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, nargs="+", default=[16384], help="on-surface points per step (as many off-surface)")
    p.add_argument("--log2", type=int, nargs="+", default=[15, 17, 19])
    p.add_argument("--levels", type=int, default=16)
    p.add_argument("--features", type=int, default=2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="steps per timing")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=["stacked", "explicit", "function"])
    p.add_argument("--gradients", nargs="+", default=["autograd", "finite_difference"])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    p.add_argument("--profile", action="store_true", help="also write profile.txt: top ops by device time")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    combos = [(v, g) for v in args.variants for g in args.gradients]
    for batch in args.batch:
        for log2 in args.log2:
            results = measure(
                combos, log2=log2, levels=args.levels, features=args.features, hidden=args.hidden,
                layers=args.layers, batch=batch, steps=args.steps, warmup=args.warmup,
                repeats=args.repeats, device=device,
            )  # fmt: skip
            for r in results:
                print(
                    f"log2={log2:2d} batch={2 * batch} {r['variant']:9s} {r['gradient']:17s} "
                    f"{r['samples_per_s']:.3e} samples/s median, {r['samples_per_s_best']:.3e} best "
                    f"({r['samples_per_cpu_s']:.3e} per CPU-s, peak GPU {_gib(r['peak_cuda_bytes'])})",
                    flush=True,
                )
            rows += results
    if args.profile:
        args.out.mkdir(parents=True, exist_ok=True)
        text = "\n".join(
            profile(
                combos, log2=log2, levels=args.levels, features=args.features, hidden=args.hidden,
                layers=args.layers, batch=args.batch[0], device=device,
            )  # fmt: skip
            for log2 in args.log2
        )
        (args.out / "profile.txt").write_text(text)
        print(f"profile written to {args.out / 'profile.txt'}", flush=True)
    meta = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_samples": [2 * b for b in args.batch],
        "levels": args.levels,
        "features": args.features,
        "mlp": f"{args.layers}x{args.hidden}",
        "steps_per_timing": args.steps,
        "repeats": args.repeats,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hashgrid.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    lines = [
        f"# Hash-grid SDF training throughput ({meta['device']}, {meta['device_name']}, torch {meta['torch']}, "
        f"{meta['threads']} threads)",
        "",
        f"{meta['levels']} levels x {meta['features']} features, MLP {meta['mlp']}, samples/step (on + off surface) "
        f"in the table, median of {meta['repeats']} timings of {meta['steps_per_timing']} steps; "
        f"load average at the end {meta['load_average']}.",
        "Timings of all variants are interleaved. On a shared machine the median includes other load;",
        "the best timing approximates an idle machine. samples/CPU-s divides by the process CPU time",
        "(all threads, including spinning ones).",
        "",
        "| log2 table | samples/step | variant | gradient | samples/s median | samples/s best | samples/CPU-s | peak GPU memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['log2_hashmap_size']} | {r['batch_samples']} | {r['variant']} | {r['gradient']} | {r['samples_per_s']:.3e} "
        f"| {r['samples_per_s_best']:.3e} | {r['samples_per_cpu_s']:.3e} | {_gib(r['peak_cuda_bytes'])} |"
        for r in rows
    ]
    (args.out / "hashgrid.md").write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main()
