"""Meta-learned priors (MetaSDF): held-out shapes of a family fitted from a prior vs from scratch, against Poisson.

    python -m bench.meta                          # both families, the settings below
    python -m bench.meta --quick                  # a smoke run (minutes)
    python -m bench.meta --families revolution --meta-steps 300 --test-shapes 4

Per family (nfcore.meta.families): meta-train a prior on the training split (MAML with learned
per-parameter inner learning rates, or Reptile), then for each held-out instance take its sparse
noisy oriented scan (3000 points, noise 0.5% of the size) and report Chamfer-L1 against the
instance's ground-truth mesh (nfcore.metrics, GT bounding box longest side = 1) of:
- `prior@N`: the prior's learned inner steps (at most N of them), then the usual Adam loop up to N steps in all;
- `scratch@N`: the same field from its usual (geometric) initialisation, N steps of the usual Adam loop;
- `poisson-d8`: screened Poisson (Open3D, depth 8) on the same scan.
One shape outside the family (the shared bunny, scanned the same way) checks that a prior does not
hurt a shape it was not made for: prior@N against scratch@N. Meshes: marching cubes at
`--resolution`. Writes bench/results/meta.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"


def _usual_config(prior_or_cfg, steps: int, batch_size: int, resolution: int):
    """The fit's usual loop for this field: Adam, cosine schedule, the presets' SDF weights (surface 300)."""
    from nfcore.config import MethodConfig

    return MethodConfig(
        encoding=prior_or_cfg.encoding, network=prior_or_cfg.network,
        sdf={"surface_weight": 300.0}, train={"steps": max(1, steps), "batch_size": batch_size, "progress_interval_s": 60},
        extraction={"resolution": resolution, "largest_component": True},
    )


def _chamfer(field, sim, gt_mesh, config) -> float:
    from nfcore.mesh import extract_field_mesh
    from nfcore.metrics import mesh_metrics

    try:
        mesh = extract_field_mesh(lambda x: field(x).squeeze(-1), config.extraction, similarity=sim)
    except ValueError:  # no surface at all
        return float("nan")
    return float(mesh_metrics(mesh, gt_mesh, n_samples=50_000, iou=False)["chamfer_l1"])


def fit_case(points, normals, sim, gt_mesh, *, prior, steps: int, args) -> dict:
    """One fit of a scan (cube coordinates) for `steps` steps in all, from `prior` (or scratch when None)."""
    from nfcore.field import NeuralField
    from nfcore.meta.inner import adapt_in_place, inner_task
    from nfcore.tasks.sdf import SDFTask
    from nfcore.train import train

    spec = prior if prior is not None else args.field_spec
    config = _usual_config(spec, steps, args.batch_size, args.resolution)
    task = SDFTask(points, normals, config.sdf, batch_size=args.batch_size)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    inner = 0
    if prior is not None:
        inner = min(steps, prior.inner_steps)
        field = prior.build_field()
        adapt_in_place(field, prior.lrs, inner_task(points, normals, prior.sdf, prior.batch_size, prior.precondition),
                       inner, prior.precondition, gen)
    else:
        field = NeuralField(config.encoding, config.network, 3, 1, sdf=True, generator=torch.Generator().manual_seed(0))
    if steps - inner > 0:
        train(field, task, config.model_copy(update={"train": config.train.model_copy(update={"steps": steps - inner})}),
              device="cpu", generator=gen)
    seconds = time.perf_counter() - t0
    field.eval()
    return {"steps": steps, "inner_steps": inner, "fit_seconds": seconds, "chamfer_l1": _chamfer(field, sim, gt_mesh, config)}


def _poisson(points_world, normals, gt_mesh, depth: int) -> float:
    from bench.poisson import poisson_reconstruct
    from nfcore.metrics import mesh_metrics

    mesh = poisson_reconstruct(points_world, normals, depth=depth)
    return float(mesh_metrics(mesh, gt_mesh, n_samples=50_000, iou=False)["chamfer_l1"])


def evaluate_scan(name, family, shape, sim, gt_mesh, prior, args) -> list[dict]:
    rows = []
    world = sim.from_unit(shape.points.numpy())
    if args.poisson_depth:
        rows.append({"family": family, "shape": name, "method": f"poisson-d{args.poisson_depth}", "steps": 0,
                     "chamfer_l1": _poisson(world, shape.normals.numpy(), gt_mesh, args.poisson_depth)})
    for kind, steps_list in (("prior", args.prior_steps), ("scratch", args.scratch_steps)):
        for steps in steps_list:
            row = fit_case(shape.points, shape.normals, sim, gt_mesh, prior=prior if kind == "prior" else None,
                           steps=steps, args=args)
            rows.append({"family": family, "shape": name, "method": f"{kind}@{steps}", **row})
    for r in rows:
        print(f"  {r['shape']:28s} {r['method']:12s} CL1 {r['chamfer_l1']:.5f}"
              + (f"  ({r['fit_seconds']:.1f} s)" if "fit_seconds" in r else ""), flush=True)
    return rows


def summarise(rows: list[dict], families: list[str], args) -> list[dict]:
    """Medians per family and method, and the targets' verdicts."""
    out = []
    for fam in families + ["outside"]:
        mine = [r for r in rows if r["family"] == fam]
        if not mine:
            continue
        by = {}
        for r in mine:
            by.setdefault(r["method"], []).append(r["chamfer_l1"])
        med = {m: statistics.median(v) for m, v in by.items()}
        out.append({"family": fam, "median_chamfer_l1": med})
    return out


def _fmt(v):
    return "-" if v is None else (f"{v:.5f}" if isinstance(v, float) else str(v))


def write_report(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    meta = result["meta"]
    lines = [f"# Meta-learned priors ({meta['device']}, {meta['date']})"
             + ("" if meta.get("complete") else " (PARTIAL: the run stopped early)"), "",
             f"Settings: {json.dumps(meta['settings'])}", ""]
    lines += ["## Meta-training", "", "| family | algorithm | shapes | outer steps | inner steps | seconds |", "|---|---|---|---|---|---|"]
    for t in result["meta_training"]:
        lines.append(f"| {t['family']} | {t['algorithm']} | {t['n_shapes']} | {t['steps']} | {t['inner_steps']} | {t['seconds']:.0f} |")
    lines += ["", "## Chamfer-L1 (median over the held-out shapes)", ""]
    methods = sorted({m for s in result["summary"] for m in s["median_chamfer_l1"]},
                     key=lambda m: (m.split("@")[0], int(m.split("@")[1]) if "@" in m else 0))
    lines += ["| family | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for s in result["summary"]:
        lines.append(f"| {s['family']} | " + " | ".join(_fmt(s["median_chamfer_l1"].get(m)) for m in methods) + " |")
    lines += ["", "## Targets", ""] + [f"- {t}" for t in result["targets"]]
    lines += ["", "## Every fit", "", "| family | shape | method | steps | Chamfer-L1 | seconds |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['family']} | {r['shape']} | {r['method']} | {r.get('steps', 0)} | {_fmt(r['chamfer_l1'])} | "
                     f"{_fmt(r.get('fit_seconds'))} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def targets(summary: list[dict], args) -> list[str]:
    """The issue's targets, each stated with the figures it rests on."""
    lines = []
    big = max(args.scratch_steps)
    for s in summary:
        med = s["median_chamfer_l1"]
        if s["family"] == "outside":
            for steps in sorted(set(args.prior_steps) & set(args.scratch_steps)):
                p, q = med.get(f"prior@{steps}"), med.get(f"scratch@{steps}")
                if p is not None and q is not None:
                    ok = p <= 1.05 * q
                    lines.append(f"outside the family (bunny), {steps} steps: prior {p:.5f} vs scratch {q:.5f} "
                                 f"({'met' if ok else 'NOT met'}: at most 5% worse)")
            continue
        ref = med.get(f"scratch@{big}")
        for steps in sorted(args.prior_steps):
            p = med.get(f"prior@{steps}")
            if p is not None and ref is not None and steps <= 25:
                lines.append(f"{s['family']}: prior@{steps} {p:.5f} vs scratch@{big} {ref:.5f} "
                             f"({'met' if p <= ref else 'NOT met'}: prior within 25 steps reaches scratch@{big})")
        for steps in sorted(set(args.prior_steps) & set(args.scratch_steps)):
            p, q = med.get(f"prior@{steps}"), med.get(f"scratch@{steps}")
            if p is not None and q is not None:
                lines.append(f"{s['family']}: prior@{steps} {p:.5f} vs scratch@{steps} {q:.5f} "
                             f"({'better' if p < q else 'not better'} at equal steps; {q / p:.2f}x)")
        poisson = med.get(f"poisson-d{args.poisson_depth}")
        p5 = med.get("prior@5")
        if poisson is not None and p5 is not None:
            lines.append(f"{s['family']}: prior@5 {p5:.5f} vs Poisson depth {args.poisson_depth} {poisson:.5f} "
                         f"({'met' if p5 < poisson else 'NOT met'})")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.meta", description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=["superquadrics", "revolution"])
    p.add_argument("--train-shapes", type=int, default=32)
    p.add_argument("--test-shapes", type=int, default=3)
    p.add_argument("--algorithm", default="maml", choices=["maml", "reptile"])
    p.add_argument("--second-order", action="store_true", help="maml through the inner gradients (default first order)")
    p.add_argument("--meta-steps", type=int, default=1500)
    p.add_argument("--meta-batch", type=int, default=4)
    p.add_argument("--inner-steps", type=int, default=5)
    p.add_argument("--inner-lr", type=float, default=3e-4)
    p.add_argument("--outer-lr", type=float, default=1e-4)
    p.add_argument("--outer-schedule", default="cosine", choices=["constant", "cosine"])
    p.add_argument("--lr-lr", type=float, default=None, help="Adam lr of the inner learning rates (default: --outer-lr)")
    p.add_argument("--prior-steps", type=int, nargs="+", default=[0, 5, 25, 100])
    p.add_argument("--scratch-steps", type=int, nargs="+", default=[5, 25, 100, 1000])
    p.add_argument("--batch-size", type=int, default=2048, help="on-surface points per step of the usual loop")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--poisson-depth", type=int, default=8)
    p.add_argument("--outside", default="bunny", help="shared mesh for the outside-the-family check ('' = none)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "meta"))
    p.add_argument("--quick", action="store_true", help="smoke run: 1 family, few shapes and steps")
    args = p.parse_args(argv)
    if args.quick:
        args.families, args.train_shapes, args.test_shapes, args.meta_steps = args.families[:1], 6, 1, 20
        args.scratch_steps, args.prior_steps, args.resolution = [5, 100], [0, 5, 25], 64

    from nfcore.meta import MetaTrainConfig, meta_train
    from nfcore.meta.data import shape_from_mesh
    from nfcore.meta.families import family_shapes

    torch.set_num_threads(args.threads)
    cfg = MetaTrainConfig(algorithm=args.algorithm, first_order=not args.second_order, steps=args.meta_steps,
                          meta_batch_size=args.meta_batch, inner_steps=args.inner_steps, inner_lr=args.inner_lr,
                          outer_lr=args.outer_lr, lr_lr=args.lr_lr, outer_schedule=args.outer_schedule,
                          progress_interval_s=30)
    args.field_spec = cfg
    rows, trainings, priors = [], [], {}
    t_all = time.perf_counter()
    settings = {k: v for k, v in vars(args).items() if k not in ("field_spec", "out")}

    def report(complete: bool) -> list[str]:
        """Write what is measured so far (a run cut short by a time limit still leaves its figures)."""
        summary = summarise(rows, args.families, args)
        verdicts = targets(summary, args) + [
            f"{t['family']}: meta-training {t['seconds']:.0f} s on {t['threads']} threads "
            f"({'met' if t['seconds'] <= 1800 else 'NOT met'}: at most 30 minutes on 2 CPU cores)" for t in trainings]
        result = {"meta": {"device": args.device, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "settings": settings,
                           "complete": complete, "total_seconds": time.perf_counter() - t_all,
                           "field": {"encoding": cfg.encoding.model_dump(), "network": cfg.network.model_dump()}},
                  "meta_training": trainings, "summary": summary, "targets": verdicts, "rows": rows}
        write_report(result, Path(args.out))
        return verdicts
    for fam in args.families:
        t0 = time.perf_counter()
        train = [s for s, _, _ in family_shapes(fam, "train", args.train_shapes, n_sdf=20_000)]
        print(f"{fam}: {len(train)} training shapes generated in {time.perf_counter() - t0:.0f} s", flush=True)
        res = meta_train(train, cfg, device=args.device, callback=lambda pr: print(
            f"  meta-train {pr.step}/{pr.total_steps} outer loss {pr.loss.get('outer', float('nan')):.5f} "
            f"{pr.elapsed_seconds:.0f} s", flush=True), info={"family": fam})
        priors[fam] = res.prior
        trainings.append({"family": fam, "algorithm": cfg.algorithm + ("-fo" if cfg.first_order and cfg.algorithm == "maml" else ""),
                          "n_shapes": len(train), "steps": cfg.steps, "inner_steps": cfg.inner_steps,
                          "seconds": res.seconds, "device": args.device, "threads": args.threads})
        print(f"{fam}: meta-training {res.seconds:.0f} s", flush=True)
        for shape, sim, inst in family_shapes(fam, "test", args.test_shapes, n_sdf=1000):  # SDF samples unused
            rows += evaluate_scan(shape.name, fam, shape, sim, inst.mesh, res.prior, args)
            report(False)
    if args.outside and (DATA / "meshes" / f"{args.outside}.ply").is_file():
        from nfcore.io import read_mesh

        gt = read_mesh(DATA / "meshes" / f"{args.outside}.ply")
        shape, sim = shape_from_mesh(gt, np.random.default_rng(0), inside=lambda q: np.zeros(len(q), bool), n_sdf=10,
                                     name=args.outside)
        fam = args.families[0]
        args_out = argparse.Namespace(**{**vars(args), "scratch_steps": sorted(set(args.prior_steps) - {0}),
                                         "prior_steps": sorted(set(args.prior_steps) - {0})})
        rows += evaluate_scan(f"{args.outside} (prior: {fam})", "outside", shape, sim, gt, priors[fam], args_out)
    for line in report(True):
        print(line)
    print(f"wrote {Path(args.out).with_suffix('.json')} and .md ({time.perf_counter() - t_all:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
