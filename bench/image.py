"""Image-fitting benchmark: activations x optimizers (Adam, ESGD) x stochastic preconditioning.

    python -m bench.image                      # default matrix: 4 scikit-image images at 64x64
    python -m bench.image --images astronaut --activations wire relu_pe --steps 1000 --size 128
    nfrecon bench image --quick                # a small smoke run

Protocol (after Chng et al. 2025, scaled to CPU): images that ship with scikit-image (no
downloads), resized to size x size, RGB (camera stays grey) in [0, 1]; pixel-centre coordinates
in [-1, 1]^2; random minibatches of `--batch` pixels; MSE; constant learning rate, no clipping;
the paper's learning rates (Adam 1e-4, or 1e-3 for ReLU+PE; ESGD 0.15, or 0.1 for ReLU+PE) and
ESGD settings (D refreshed on the first 50 steps, then every 100; damping 1e-4).
PSNR = -10 log10(MSE) over the whole image.

Two budgets per configuration:
- fixed steps: `--steps` optimiser steps;
- fixed time: as many steps as fit in `--seconds` of training time on this machine (measured from
  the fixed-step run's own speed, so ESGD's Hessian-vector products and WIRE's two linear maps
  per layer cost what they cost), run as a separate fit so schedules fit the budget.
Training time counts forward, backward and the optimiser step (not PSNR evaluation).

The paper's reference point: a wavelet (WIRE) network on DIV2K reaches 29.36 dB with ESGD
against 26.61 dB with Adam at epoch 10, and ESGD gives no gain for ReLU+PE. The report says
whether the same direction holds here. Writes bench/results/image.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

IMAGES = ("astronaut", "camera", "coffee", "chelsea")
ACTIVATIONS = ("siren", "finer", "gauss", "wire", "relu_pe")
OPTIMIZERS = ("adam", "esgd")
LABELS = {"siren": "SIREN", "finer": "FINER", "gauss": "Gaussian", "wire": "WIRE", "relu_pe": "ReLU+PE"}


def load_image(name: str, size: int) -> np.ndarray:
    """A scikit-image sample image as float32 (size, size, C) in [0, 1]."""
    from skimage import data
    from skimage.transform import resize

    img = getattr(data, name)()
    img = img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
    if img.ndim == 2:
        img = img[:, :, None]
    return resize(img[:, :, :3], (size, size), order=1, anti_aliasing=True).astype(np.float32)


def method_overrides(activation: str, optimizer: str, sp: bool, args: argparse.Namespace) -> dict:
    """The MethodConfig overrides for one cell of the matrix."""
    width, layers = args.width, args.layers
    if activation == "relu_pe":
        encoding = {"type": "fourier", "n_frequencies": 8, "include_pi": True, "include_input": True}
        # The MLP counts hidden layers (first + `layers` hidden = layers + 1), the others FCBlock-style.
        network = {"type": "mlp", "activation": "relu", "geometric_init": False, "hidden_features": width, "hidden_layers": layers + 1}
    else:
        encoding = {"type": "identity"}
        network = {"type": {"siren": "siren", "finer": "finer", "gauss": "gauss", "wire": "wire"}[activation]}
        network.update(hidden_features=width, hidden_layers=layers)
    if optimizer == "adam":
        opt = {"type": "adam", "lr": 1e-3 if activation == "relu_pe" else 1e-4, "betas": [0.9, 0.999], "eps": 1e-8}
    else:
        opt = {"type": "esgd", "lr": 0.1 if activation == "relu_pe" else 0.15, "update_d_every": 100, "d_warmup": 50, "eps": 1e-4}
    precondition = {"enabled": sp, "initial_scale": args.sp_scale, "start": args.sp_start, "end": args.sp_end}
    return {
        "encoding": encoding,
        "network": network,
        "optimizer": opt,
        "precondition": precondition,
        "schedule": {"kind": "constant"},
        "train": {"batch_size": args.batch, "clip_grad_norm": None, "seed": args.seed, "progress_interval_s": 3600},
        "image": {"full_batch": False},
    }


def fit_once(image: np.ndarray, overrides: dict, steps: int, *, device: str, n_evals: int) -> dict:
    """Train one field for `steps` steps; PSNR curve over (step, training seconds)."""
    import torch

    from nfcore.field import NeuralField
    from nfcore.spec import MethodSpec, resolve
    from nfcore.tasks.image import ImageTask
    from nfcore.train import train

    config = resolve(MethodSpec(task="image", preset="fast", overrides={**overrides, "train": {**overrides["train"], "steps": steps}}), device)
    task = ImageTask(torch.as_tensor(image, device=device), batch_size=config.train.batch_size, boundary=config.precondition.boundary)
    field = NeuralField(
        config.encoding, config.network, 2, image.shape[2], device=device, generator=torch.Generator().manual_seed(config.train.seed)
    )
    generator = torch.Generator(device=device).manual_seed(config.train.seed)
    every = max(1, steps // max(1, n_evals))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    curve: list[tuple[int, float, float]] = [(0, 0.0, task.psnr(field))]
    state = {"eval": 0.0}
    sync()
    t0 = time.perf_counter()

    def on_step(step: int, field_) -> None:
        done = step + 1
        if done % every == 0 or done == steps:
            sync()
            t = time.perf_counter()
            curve.append((done, t - t0 - state["eval"], task.psnr(field_)))
            state["eval"] += time.perf_counter() - t

    train(field, task, config, device=device, generator=generator, on_step=on_step)
    return {"steps": steps, "train_seconds": curve[-1][1], "psnr": curve[-1][2], "curve": curve}


def run_cell(image_name: str, image: np.ndarray, activation: str, optimizer: str, sp: bool, args) -> dict:
    """Both budgets for one (image, activation, optimizer, SP) cell."""
    overrides = method_overrides(activation, optimizer, sp, args)
    fixed = fit_once(image, overrides, args.steps, device=args.device, n_evals=args.evals)
    seconds_per_step = fixed["train_seconds"] / fixed["steps"]
    steps_in_budget = max(1, int(args.seconds / seconds_per_step))
    if steps_in_budget == fixed["steps"]:
        timed = fixed
    else:
        timed = fit_once(image, overrides, steps_in_budget, device=args.device, n_evals=args.evals)
    return {
        "image": image_name,
        "activation": activation,
        "optimizer": optimizer,
        "precondition": sp,
        "psnr_fixed_steps": fixed["psnr"],
        "seconds_fixed_steps": fixed["train_seconds"],
        "ms_per_step": 1000 * seconds_per_step,
        "steps_in_budget": steps_in_budget,
        "psnr_fixed_time": timed["psnr"],
        "seconds_fixed_time": timed["train_seconds"],
        "curve_fixed_steps": fixed["curve"],
    }


def summarize(rows: list[dict]) -> dict:
    """Mean PSNR per (activation, optimizer, SP) and the ESGD - Adam gaps (no SP) per activation."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["activation"], r["optimizer"], r["precondition"]), []).append(r)
    means = {
        f"{a}/{o}/{'sp' if sp else 'nosp'}": {
            "psnr_fixed_steps": statistics.mean(r["psnr_fixed_steps"] for r in rs),
            "psnr_fixed_time": statistics.mean(r["psnr_fixed_time"] for r in rs),
            "ms_per_step": statistics.mean(r["ms_per_step"] for r in rs),
            "steps_in_budget": statistics.mean(r["steps_in_budget"] for r in rs),
            "n_images": len(rs),
        }
        for (a, o, sp), rs in groups.items()
    }
    gaps = {}
    for a in ACTIVATIONS:
        adam, esgd = means.get(f"{a}/adam/nosp"), means.get(f"{a}/esgd/nosp")
        if adam and esgd:
            gaps[a] = {
                "esgd_minus_adam_fixed_steps": esgd["psnr_fixed_steps"] - adam["psnr_fixed_steps"],
                "esgd_minus_adam_fixed_time": esgd["psnr_fixed_time"] - adam["psnr_fixed_time"],
            }
    verdict = {}
    for budget in ("fixed_steps", "fixed_time"):
        if "wire" in gaps:
            verdict[f"WIRE: ESGD beats Adam ({budget.replace('_', ' ')})"] = gaps["wire"][f"esgd_minus_adam_{budget}"] > 0
        if "relu_pe" in gaps:
            verdict[f"ReLU+PE: no gain from ESGD ({budget.replace('_', ' ')})"] = gaps["relu_pe"][f"esgd_minus_adam_{budget}"] <= 0
    return {"means": means, "esgd_gaps": gaps, "paper_direction": verdict}


def _f(v: float, spec: str = ".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def write_report(rows: list[dict], summary: dict, out: Path, meta: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=2))
    images = sorted({r["image"] for r in rows}, key=lambda n: IMAGES.index(n) if n in IMAGES else 99)
    lines = [
        "# Image fitting: PSNR (dB) by activation, optimizer and stochastic preconditioning",
        "",
        f"{meta['device_name']}, {meta['threads']} thread(s); images {meta['size']}x{meta['size']}; "
        f"network {meta['width']} wide, {meta['layers']} hidden layers; batch {meta['batch']} pixels; "
        f"fixed steps = {meta['steps']}; fixed time = {meta['seconds']} s of training; {meta['date']}.",
        "",
        "## Mean over images",
        "",
        "| activation | optimizer | SP | PSNR @ steps | PSNR @ time | ms/step | steps in budget |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for key, m in summary["means"].items():
        a, o, sp = key.split("/")
        lines.append(
            f"| {LABELS[a]} | {o} | {'yes' if sp == 'sp' else 'no'} | {_f(m['psnr_fixed_steps'])} | {_f(m['psnr_fixed_time'])} "
            f"| {_f(m['ms_per_step'], '.1f')} | {m['steps_in_budget']:.0f} |"
        )
    lines += ["", "## ESGD minus Adam (no SP), dB", "", "| activation | @ steps | @ time |", "|---|---:|---:|"]
    for a, g in summary["esgd_gaps"].items():
        lines.append(f"| {LABELS[a]} | {_f(g['esgd_minus_adam_fixed_steps'], '+.2f')} | {_f(g['esgd_minus_adam_fixed_time'], '+.2f')} |")
    v = summary["paper_direction"]
    if v:
        lines += [
            "",
            "Paper (Chng et al. 2025, Fig. 1): WIRE on DIV2K, epoch 10: ESGD 29.36 dB vs Adam 26.61 dB; no ESGD gain for ReLU+PE.",
            "",
            *(f"- {k}: **{'yes' if ok else 'no'}**" for k, ok in v.items()),
        ]
    lines += ["", "## Per image (PSNR @ steps / @ time)", "", "| activation | optimizer | SP | " + " | ".join(images) + " |"]
    lines.append("|---|---|---|" + "---:|" * len(images))
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["activation"], r["optimizer"], r["precondition"]), {})[r["image"]] = r
    for (a, o, sp), per in cells.items():
        vals = [f"{_f(per[i]['psnr_fixed_steps'])} / {_f(per[i]['psnr_fixed_time'])}" if i in per else "-" for i in images]
        lines.append(f"| {LABELS[a]} | {o} | {'yes' if sp else 'no'} | " + " | ".join(vals) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.image", description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", default=list(IMAGES), choices=IMAGES)
    p.add_argument("--activations", nargs="+", default=list(ACTIVATIONS), choices=ACTIVATIONS)
    p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    p.add_argument("--sp", nargs="+", default=["off", "on"], choices=["off", "on"], help="stochastic preconditioning")
    p.add_argument("--size", type=int, default=64, help="images are resized to size x size")
    p.add_argument("--width", type=int, default=64, help="hidden features (paper: 256)")
    p.add_argument("--layers", type=int, default=3, help="hidden layers after the first (paper: 3)")
    p.add_argument("--batch", type=int, default=512, help="pixels per step (paper: 512)")
    p.add_argument("--steps", type=int, default=300, help="the fixed step budget")
    p.add_argument("--seconds", type=float, default=1.0, help="the fixed training-time budget per fit")
    p.add_argument("--sp-scale", type=float, default=0.01, help="SP noise std in unit-square units")
    p.add_argument("--sp-start", type=float, default=0.25)
    p.add_argument("--sp-end", type=float, default=0.5)
    p.add_argument("--evals", type=int, default=10, help="PSNR evaluations per fit (the curve in the JSON)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=str(RESULTS / "image"))
    p.add_argument("--quick", action="store_true", help="smoke run: one image, SIREN and ReLU+PE, 40 steps")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.images, args.activations, args.sp = args.images[:1], ["siren", "relu_pe"], ["off"]
        args.size, args.steps, args.seconds, args.width = 32, 40, 0.3, 32
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    rows = []
    t_start = time.perf_counter()
    # Warm-up: the first fits in a process pay one-off costs (allocator, kernels) that would
    # otherwise be charged to whichever configuration runs first and skew its time budget.
    warm = load_image(args.images[0], 16)
    for activation in args.activations:
        for optimizer in args.optimizers:
            fit_once(warm, method_overrides(activation, optimizer, False, args), 3, device=args.device, n_evals=1)
    for image_name in args.images:
        image = load_image(image_name, args.size)
        for activation in args.activations:
            for optimizer in args.optimizers:
                for sp in args.sp:
                    row = run_cell(image_name, image, activation, optimizer, sp == "on", args)
                    rows.append(row)
                    print(
                        f"{image_name:10s} {LABELS[activation]:9s} {optimizer:5s} SP {sp:3s}  "
                        f"{args.steps} steps: {row['psnr_fixed_steps']:6.2f} dB ({row['seconds_fixed_steps']:5.2f} s)  "
                        f"{args.seconds:g} s: {row['psnr_fixed_time']:6.2f} dB ({row['steps_in_budget']} steps)",
                        flush=True,
                    )
    summary = summarize(rows)
    meta = {
        "device": args.device,
        "device_name": device_name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "total_seconds": time.perf_counter() - t_start,
        **{k: getattr(args, k) for k in ("size", "width", "layers", "batch", "steps", "seconds", "sp_scale", "sp_start", "sp_end", "seed")},
        "argv": argv if argv is not None else sys.argv[1:],
    }
    write_report(rows, summary, Path(args.out), meta)
    for a, g in summary["esgd_gaps"].items():
        print(f"ESGD - Adam, {LABELS[a]:9s}: {g['esgd_minus_adam_fixed_steps']:+.2f} dB @ steps, {g['esgd_minus_adam_fixed_time']:+.2f} dB @ time")
    print(f"wrote {Path(args.out).with_suffix('.json')} and .md ({meta['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
