"""The `nfrecon` command: fit, eval, serve, worker, bench.

Each subcommand imports only what it needs, so `nfrecon fit` works without the web stack.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from nfcore.vocab import MESH_FORMATS, METHODS, PRESETS, TASKS, default_task_for

BENCHMARKS = ("sdf", "hashgrid", "image", "occupancy", "service", "poisson", "kernel", "meta", "chaos")


def _overrides_from_args(args: argparse.Namespace, task: str) -> dict:
    """CLI flags as a partial MethodConfig (applied on top of the preset, --spec and --config)."""
    o: dict = {}
    if args.encoding:
        o["encoding"] = {"type": args.encoding}
    if args.network:
        o["network"] = {"type": args.network}
    if args.optimizer:
        o["optimizer"] = {"type": args.optimizer}
    if args.no_precondition:
        o["precondition"] = {"enabled": False}
    elif args.precondition:
        o["precondition"] = {"enabled": True}
    if args.steps:
        o.setdefault("train", {})["steps"] = args.steps
    if args.seed is not None:
        o.setdefault("train", {})["seed"] = args.seed
    if args.resolution:
        o.setdefault("extraction", {})["resolution"] = args.resolution
    if args.trim:
        o.setdefault("extraction", {})["trim"] = args.trim
    if args.scale and task == "image":
        o.setdefault("image", {})["output_scale"] = args.scale
    if args.device:
        o["device"] = args.device
    if getattr(args, "prior", None):
        o["prior"] = {"path": str(Path(args.prior).resolve())}
    if getattr(args, "register", None):
        o.setdefault("input", {})["registration"] = args.register
    return o


def json_option(value: str, flag: str) -> dict:
    """A JSON object given inline (`'{"sdf": {...}}'`) or as the path of a file holding one."""
    text = value if value.lstrip().startswith("{") else Path(value).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{flag}: expected a JSON object, got {type(data).__name__}")
    return data


def _spec_from_args(args: argparse.Namespace, src: Path, out: Path):
    """The MethodSpec the flags describe: --spec (a job's `spec`), then --config, then the flags on top."""
    from nfcore.presets import merge
    from nfcore.spec import MethodSpec

    base = MethodSpec.model_validate_json(Path(args.spec).read_text()) if args.spec else None
    task = args.task or (base.task if base else default_task_for(src))
    preset = args.preset or (base.preset if base else "balanced")
    method = args.method or (base.method if base else "neural")
    overrides = dict(base.overrides) if base else {}
    if args.config:
        overrides = merge(overrides, json_option(args.config, "--config"))
    overrides = merge(overrides, _overrides_from_args(args, task))
    fmt = out.suffix.lower().lstrip(".")
    if task != "image" and fmt in MESH_FORMATS:
        overrides = merge(overrides, {"extraction": {"formats": [fmt]}})
    if overrides.get("device") == "auto":
        del overrides["device"]
    return MethodSpec(task=task, method=method, preset=preset, overrides=overrides)


def _fit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nfcore.device import device_kind, resolve_device
    from nfcore.errors import FitCanceled, InputError
    from nfcore.fit import fit
    from nfcore.spec import resolve

    sources = [Path(p) for p in args.input]  # several: scans (views) of one object, merged (nfcore.scans)
    src = sources[0]
    out = Path(args.output)
    try:
        device = resolve_device(args.device or "auto")
        spec = _spec_from_args(args, src, out)
        config = resolve(spec, device_kind(device))
    except (InputError, ValueError, OSError) as exc:  # pydantic.ValidationError is a ValueError
        print(f"nfrecon: error: {exc}", file=sys.stderr)
        return 2

    bar = tqdm(total=1000, unit="‰", disable=args.quiet, bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")

    def on_progress(p) -> None:
        bar.n = int(p.fraction * 1000)
        bar.set_description(p.phase)
        post = {}
        if p.step is not None and p.phase == "train":
            post["step"] = f"{p.step}/{p.total_steps}"
        if p.loss:
            post["loss"] = f"{sum(p.loss.values()):.4g}"
        if p.noise_scale:
            post["noise"] = f"{p.noise_scale:.3g}"
        bar.set_postfix(post, refresh=False)
        bar.refresh()

    work = Path(args.artifacts) if args.artifacts else Path(tempfile.mkdtemp(prefix="nfrecon-"))
    try:
        result = fit(sources if len(sources) > 1 else src, config, work, device=str(device), callback=on_progress,
                     gt_path=args.gt)
    except InputError as exc:
        bar.close()
        print(f"nfrecon: error: {exc}", file=sys.stderr)
        return 2
    except (FitCanceled, KeyboardInterrupt):
        bar.close()
        print("nfrecon: canceled", file=sys.stderr)
        return 130
    finally:
        bar.close()

    out.parent.mkdir(parents=True, exist_ok=True)
    task = spec.task
    if task == "image":
        scale = config.image.output_scale
        name = "fitted.png" if scale == 1 else f"fitted_x{scale:g}.png"
        _save_image_as(result.artifacts[name], out)
    else:
        shutil.copyfile(result.artifacts[f"mesh.{config.extraction.formats[0]}"], out)
    metrics_path = out.with_name(out.stem + ".metrics.json")
    metrics_path.write_text(json.dumps(result.metrics, indent=2))
    if not args.artifacts:
        shutil.rmtree(work, ignore_errors=True)
    _print_summary(task, result, out, metrics_path)
    return 0


def _save_image_as(src: Path, out: Path) -> None:
    if out.suffix.lower() == src.suffix.lower():
        shutil.copyfile(src, out)
        return
    from nfcore.io.images import read_image, write_image  # keeps 16-bit images 16-bit

    write_image(read_image(src), out)


def _print_summary(task: str, result, out: Path, metrics_path: Path) -> None:
    m = result.metrics
    if m.get("method") == "kernel":
        k = m.get("kernel", {})
        how = f"kernel solve, depth {k.get('depth', '?')}, {k.get('iterations', '?')} CG iterations"
    else:
        how = f"{result.steps} steps"
    lines = [f"wrote {out} in {result.seconds:.1f} s ({how}, device {m.get('device', '?')})"]
    if task == "image":
        ssim = m.get("ssim")
        lines.append(f"PSNR {m.get('psnr', float('nan')):.2f} dB" + (f", SSIM {ssim:.4f}" if ssim is not None else ""))
    else:
        r = m.get("fit_residuals", {})
        if r:
            lines.append(
                f"fit residuals: mean |SDF| {r.get('mean_abs_sdf', float('nan')):.3g} (input units), "
                f"normal agreement {r.get('normal_agreement', float('nan')):.4f}"
            )
        a = m.get("analysis")
        if a:
            extra = "".join([
                f", outliers {a['outlier_fraction']:.1%}" if a.get("outlier_fraction") is not None else "",
                (f", given normals: {a['normals']['flipped_fraction']:.1%} flipped, agreement {a['normals']['agreement']:.3f}"
                 if a.get("normals") else ""),
            ])
            lines.append(
                f"cloud: {a['n_points']} points, spacing {a['spacing']:.3g}, noise {a['noise']:.3g} (cube units), "
                f"{'closed' if a.get('closed', True) else 'open'}{extra}"
            )
        scans = m.get("scans")
        if scans:
            lines.append(f"{scans['n_scans']} scans merged, " + (
                f"registered: median overlap residual {scans['residual_before']} -> {scans['residual_after']} spacings"
                if scans["registered"] else f"not registered ({scans['reason']})"))
            lines.extend(f"  {v['name']}: overlap {v['overlap_fraction']:.0%}, residual {v['residual_before']} -> "
                         f"{v['residual_after']} spacings, moved {v['rotation_degrees']:.3f} deg / "
                         f"{v['translation_spacings']:.2f} spacings" for v in scans["views"])
        chosen = (m.get("settings") or {}).get("chosen") or {}
        if chosen:
            lines.append("chosen from the cloud: " + ", ".join(f"{path} {c['value']}" for path, c in chosen.items()))
        trim = m.get("trim")
        if trim and trim.get("applied"):
            lines.append(f"trimmed unsupported surface: {trim['removed_fraction']:.1%} of the area "
                         f"({trim['removed_regions']} regions)")
        lines.append(f"mesh: {m.get('n_vertices', '?')} vertices, {m.get('n_faces', '?')} faces")
        gt = m.get("ground_truth") or m.get("mesh_metrics")
        if gt:
            lines.append("vs ground truth: " + ", ".join(f"{k} {v:.4g}" for k, v in gt.items() if isinstance(v, float)))
    timings = m.get("timings") or {}
    if timings:
        lines.append("phases: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))
    detail = m.get("timings_detail") or {}
    if detail:
        lines.append("  within: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in detail.items()))
    lines.append(f"metrics: {metrics_path}")
    print("\n".join(lines))


def _eval(args: argparse.Namespace) -> int:
    from nfcore.errors import InputError
    from nfcore.io import read_mesh
    from nfcore.metrics import mesh_metrics

    try:
        recon, gt = read_mesh(args.recon), read_mesh(args.gt)
    except InputError as exc:
        print(f"nfrecon: error: {exc}", file=sys.stderr)
        return 2
    thresholds = tuple(args.threshold) if args.threshold else (0.01, 0.005)
    metrics = mesh_metrics(recon, gt, n_samples=args.samples, thresholds=thresholds, seed=args.seed)
    print(json.dumps(metrics, indent=2))
    return 0


def _meta_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nfcore.device import resolve_device
    from nfcore.errors import FitCanceled, InputError
    from nfcore.meta import MetaTrainConfig, load_shapes, meta_train, save_prior
    from nfcore.presets import merge

    out = Path(args.output)
    checkpoint = Path(args.checkpoint) if args.checkpoint else out.with_name(out.name + ".ckpt")
    try:
        device = resolve_device(args.device or "auto")
        settings = json_option(args.config, "--config") if args.config else {}
        flags = {"algorithm": args.algorithm, "first_order": False if args.second_order else (True if args.first_order else None), "steps": args.steps,
                 "inner_steps": args.inner_steps, "seed": args.seed}
        settings = merge(settings, {k: v for k, v in flags.items() if v is not None})
        if args.network:
            settings["network"] = {"type": args.network}
        if args.encoding:
            settings["encoding"] = {"type": args.encoding}
        cfg = MetaTrainConfig.model_validate(settings)
        if checkpoint.exists() and not args.resume:
            raise InputError(f"{checkpoint} exists: pass --resume to continue it, or remove it")
        load_bar = tqdm(desc="reading shapes", unit="shape", disable=args.quiet)
        shapes = load_shapes(args.inputs, seed=cfg.seed,
                             progress=lambda i, n, name: (setattr(load_bar, "total", n), load_bar.update(1)))
        load_bar.close()
    except (InputError, ValueError, OSError) as exc:  # pydantic.ValidationError is a ValueError
        print(f"nfrecon: error: {exc}", file=sys.stderr)
        return 2

    bar = tqdm(total=cfg.steps, unit="step", desc="meta-train", disable=args.quiet)

    def on_progress(p) -> None:
        bar.n = p.step or 0
        if p.loss:
            bar.set_postfix({"outer loss": f"{p.loss.get('outer', 0.0):.4g}"}, refresh=False)
        bar.refresh()

    try:
        result = meta_train(shapes, cfg, device=device, callback=on_progress, checkpoint_path=checkpoint,
                            info={"sources": [str(s) for s in args.inputs]})
    except InputError as exc:
        bar.close()
        print(f"nfrecon: error: {exc}", file=sys.stderr)
        return 2
    except (FitCanceled, KeyboardInterrupt):
        bar.close()
        print(f"nfrecon: canceled; resume with --resume (checkpoint {checkpoint})", file=sys.stderr)
        return 130
    finally:
        bar.close()
    save_prior(result.prior, out)
    checkpoint.unlink(missing_ok=True)  # the prior is written: the run is complete
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
    print(f"wrote prior {out} ({cfg.algorithm}, {len(shapes)} shapes, {result.steps} outer steps in "
          f"{result.seconds:.1f} s on {device}{resumed}); use it with `nfrecon fit SCAN --prior {out}`")
    return 0


def _bench(args: argparse.Namespace, rest: list[str]) -> int:
    import importlib

    module = importlib.import_module(f"bench.{args.name}")
    return int(module.main(rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nfrecon", description="Surface reconstruction with neural fields.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit a neural field to a point cloud, mesh or image and write the result")
    p.add_argument("input", nargs="+",
                   help="point cloud (.xyz .ply .npz .npy), mesh (.obj .off .stl .ply .glb) or image; several point "
                        "clouds are overlapping scans (views) of one object in one frame, merged into one surface")
    p.add_argument("-o", "--output", required=True, help="output mesh (.ply .obj .glb .stl) or image (.png ...)")
    p.add_argument("--preset", choices=PRESETS, help="default: balanced (or the --spec file's)")
    p.add_argument("--method", choices=METHODS,
                   help="neural (train a field; the default, or the --spec file's) or kernel (training-free solve, sdf only)")
    p.add_argument("--task", choices=TASKS, help="default: image for image files, else sdf (or the --spec file's)")
    p.add_argument("--encoding", choices=["identity", "fourier", "hashgrid", "triplane"])
    p.add_argument("--network", choices=["mlp", "siren", "finer", "gauss", "wire"])
    p.add_argument("--optimizer", choices=["adam", "esgd"])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-precondition", action="store_true", help="turn stochastic preconditioning off")
    g.add_argument("--precondition", action="store_true", help="turn stochastic preconditioning on")
    p.add_argument("--steps", type=int)
    p.add_argument("--resolution", type=int, help="marching cubes resolution")
    p.add_argument("--trim", choices=["auto", "on", "off"],
                   help="remove surface no input point supports (default auto: when the cloud looks open)")
    p.add_argument("--scale", type=float, help="images: render at this multiple of the input size")
    p.add_argument("--register", choices=["auto", "on", "off"],
                   help="several scans: refine their poses by ICP before merging (default auto: when the overlap "
                        "residual is clearly above the scans' noise)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int)
    p.add_argument("--spec", help="method spec JSON {task, method, preset, overrides} (e.g. a job's `spec`); flags override it")
    p.add_argument("--config", help="overrides (a partial MethodConfig) as inline JSON or a JSON file, merged onto the spec; "
                   "flags override it")
    p.add_argument("--gt", help="ground-truth mesh: add Chamfer/F-score/NC/IoU to the metrics")
    p.add_argument("--artifacts", help="keep every artifact (metrics, config, all formats) in this directory")
    p.add_argument("--prior", help="start from a meta-learned prior (`nfrecon meta-train`): its field, weights and "
                                   "learned inner steps, then the usual loop (sdf only)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", help="compare a reconstruction with a ground-truth mesh; prints JSON")
    e.add_argument("recon")
    e.add_argument("gt")
    e.add_argument("--samples", type=int, default=100_000)
    e.add_argument("--threshold", type=float, action="append", help="F-score threshold (repeatable)")
    e.add_argument("--seed", type=int, default=0)

    m = sub.add_parser("meta-train", help="meta-learn a prior (MetaSDF) from meshes or oriented clouds of one kind")
    m.add_argument("inputs", nargs="+", help="mesh or cloud files, directories of them, or .txt lists of paths")
    m.add_argument("-o", "--output", required=True, help="the prior file to write (safetensors)")
    m.add_argument("--algorithm", choices=["maml", "reptile"], help="default maml (learned inner learning rates)")
    order = m.add_mutually_exclusive_group()
    order.add_argument("--first-order", action="store_true", help="maml without second-order terms (the default)")
    order.add_argument("--second-order", action="store_true", help="maml through the inner gradients (about 3x slower)")
    m.add_argument("--steps", type=int, help="outer steps (default 1500)")
    m.add_argument("--inner-steps", type=int, help="inner SGD steps per shape (default 5)")
    m.add_argument("--encoding", choices=["identity", "fourier", "hashgrid", "triplane"])
    m.add_argument("--network", choices=["mlp", "siren", "finer", "gauss", "wire"])
    m.add_argument("--config", help="MetaTrainConfig (nfcore.meta.config) as inline JSON or a JSON file; flags override it")
    m.add_argument("--checkpoint", help="checkpoint file (default: OUTPUT.ckpt, removed once the prior is written)")
    m.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    m.add_argument("--device", choices=["auto", "cpu", "cuda"])
    m.add_argument("--seed", type=int)
    m.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    b = sub.add_parser("bench", help="run a benchmark (extra arguments go to it)")
    b.add_argument("name", choices=BENCHMARKS)

    s = sub.add_parser("serve", help="run the whole service on this machine (no Redis server needed)")
    w = sub.add_parser("worker", help="run a Celery worker against the configured broker")
    try:
        from nfrecon import serve as serve_mod

        serve_mod.add_serve_arguments(s)
        serve_mod.add_worker_arguments(w)
    except ImportError:  # the service stack is optional for library users
        pass
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "bench" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "fit":
        return _fit(args)
    if args.command == "eval":
        return _eval(args)
    if args.command == "bench":
        return _bench(args, rest)
    if args.command == "meta-train":
        return _meta_train(args)
    from nfrecon import serve as serve_mod

    if args.command == "serve":
        return serve_mod.run_serve(args)
    return serve_mod.run_worker(args)


if __name__ == "__main__":
    sys.exit(main())
