"""`run_meta_train`: the meta-train job's work inside `run_job` (extract, load shapes, meta-train, write the prior).

The shapes are the job's zip, extracted under our own names, or (a job from a list of uploads) the
job's own copies of them (`ArtifactStore.job_listed_inputs`), read where they are.

Progress: "load" (0-0.1, one report per shape read), "meta-train" (0.1-0.95, nfcore's reports
rescaled), "write" (0.95-1). Cancellation goes through the same callback as a fit's. The
checkpoint lives beside the job's attempts (`metatrain.ckpt`), so an attempt that takes over a lost
one resumes meta-training instead of starting again; it is removed once the prior is registered.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

from service.metatrain import MetaTrainSpec, parse_config
from service.priors import add_prior
from service.shapesets import ShapeSetLimits, extract_shapes
from store import PriorStore
from worker.output import RunOutput

LOAD_SPAN, TRAIN_SPAN = (0.0, 0.1), (0.1, 0.95)


def run_meta_train(job, ctx, attempt: int, log, on_progress: Callable[[object], bool], device: str) -> RunOutput:
    """Meta-train a prior from the job's zip of shapes into a fresh attempt directory.

    Args:
        ctx: the runner's RunContext; log: its JobLog; device: where to run ("cpu" or "cuda").

    Raises:
        InputError: the zip holds no usable shapes (a member nfcore cannot read is named), or the
            config is unusable: the job fails `invalid_input`.
        FitCanceled: the job was canceled.
    """
    from nfcore.errors import FitCanceled, InputError

    store, settings, job_id = ctx.store, ctx.settings, job.id
    spec = MetaTrainSpec.model_validate(job.spec)
    cfg = parse_config(spec, ["spec"])  # limits were checked at submit
    # The service reports progress at its own pace (and it is how a cancel is noticed).
    cfg = cfg.model_copy(update={"progress_interval_s": min(cfg.progress_interval_s, settings.progress_interval_s)})
    store.record_config(job_id, attempt, cfg.model_dump(mode="json"), device)
    if len(job.inputs or []) > 1:  # a list of uploads: the job's own copies, one file per shape
        archive = ctx.artifacts.job_listed_inputs(job_id, "shapes")
        if len(archive) != len(job.inputs):
            raise FileNotFoundError(f"inputs of job {job_id} are missing from the data directory")
    else:
        archive = ctx.artifacts.find_job_input(job_id)
        if archive is None:
            raise FileNotFoundError(f"input of job {job_id} is missing from the data directory")

    def report(phase: str, fraction: float, message: str, **extra) -> None:
        if on_progress({"phase": phase, "fraction": fraction, "message": message, **extra}) is False:
            raise FitCanceled(f"canceled during {phase}")

    try:
        return _run(job, ctx, attempt, log, on_progress, report, cfg, spec, archive, device)
    except (FitCanceled, InputError):
        # Canceled or unusable input: this job will never resume (a retry is a new job), so its scratch
        # goes now. Other failures keep it: a lost or stopped attempt is taken over and resumes.
        ctx.artifacts.metatrain_checkpoint(job_id).unlink(missing_ok=True)
        shutil.rmtree(ctx.artifacts.shapes_dir(job_id), ignore_errors=True)
        raise


def _run(job, ctx, attempt: int, log, on_progress, report, cfg, spec: MetaTrainSpec, archive, device: str) -> RunOutput:
    """Extract, load, meta-train and write (see `run_meta_train`).

    Args:
        archive: the zip, or the list of the job's own copies of its listed uploads.
    """
    from nfcore.errors import InputError
    from nfcore.meta import load_shapes, meta_train, save_prior

    store, settings, job_id = ctx.store, ctx.settings, job.id
    if isinstance(archive, list):
        # {our file: the client's name}; the file names are ours, so nfcore's messages are mapped back.
        names = {p.name: inp["filename"] for p, inp in zip(archive, job.inputs, strict=True)}
        sources, paths = archive, {p.name: p for p in archive}
        report("load", 0.0, f"reading {len(archive)} uploaded shapes")
    else:
        report("load", 0.0, f"extracting {archive.name}")
        names = extract_shapes(archive, ctx.artifacts.shapes_dir(job_id), ShapeSetLimits.from_settings(settings))
        sources, paths = [ctx.artifacts.shapes_dir(job_id)], {n: ctx.artifacts.shapes_dir(job_id) / n for n in names}
    log.write(f"meta-train ({cfg.algorithm}) on {device}: {len(names)} shapes")
    lo, hi = LOAD_SPAN

    def loaded(i: int, n: int, name: str) -> None:
        report("load", lo + (hi - lo) * i / n, f"read {names.get(name, name)} ({i}/{n})")

    try:
        shapes = load_shapes(sources, seed=cfg.seed, n_points=spec.shapes.n_points,
                             noise=spec.shapes.noise, n_sdf=spec.shapes.n_sdf, progress=loaded)
    except InputError as exc:
        # nfcore names our file; the client knows the member's (or the upload's) name.
        text = str(exc)
        for ours, theirs in names.items():
            text = text.replace(str(paths[ours]), theirs).replace(ours, theirs)
        raise InputError(text) from None
    lo, hi = TRAIN_SPAN

    def trained(p) -> bool:
        data = p.to_dict()
        data["fraction"] = lo + (hi - lo) * float(data.get("fraction") or 0.0)
        return on_progress(data)

    result = meta_train(shapes, cfg, device=device, callback=trained,
                        checkpoint_path=ctx.artifacts.metatrain_checkpoint(job_id),
                        info={"job": job_id, "shapes": [names[k] for k in sorted(names)][:100]})
    report("write", TRAIN_SPAN[1], "writing the prior")
    out_dir = ctx.artifacts.attempt_dir(job_id, attempt)
    save_prior(result.prior, out_dir / "prior.safetensors")
    history = [{"step": s, "loss": v} for s, v in result.history]
    metrics = {"task": "meta-train", "algorithm": cfg.algorithm, "n_shapes": len(shapes),
               "meta_steps": cfg.steps, "resumed_from": result.resumed_from, "inner_steps": cfg.inner_steps,
               "final_loss": history[-1]["loss"] if history else None, "loss_history": history,
               "meta_train_seconds": round(result.seconds, 3)}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / "config.json").write_text(cfg.model_dump_json(indent=2))

    def register(final: dict):
        """Record the published prior as one of the key's priors; its id goes into the job's metrics."""
        priors = PriorStore(store.engine)
        row = add_prior(priors, ctx.artifacts, job.owner, ctx.artifacts.artifacts_dir(job_id) / "prior.safetensors",
                        name=f"{job.name or job_id}.safetensors", source_job=job_id, move=False)
        final["prior_id"] = row.id
        final["prior"] = {"id": row.id, "url": f"/v1/priors/{row.id}"}
        log.write(f"registered prior {row.id}")
        # The run is complete: its scratch files are not needed for a retry.
        ctx.artifacts.metatrain_checkpoint(job_id).unlink(missing_ok=True)
        shutil.rmtree(ctx.artifacts.shapes_dir(job_id), ignore_errors=True)

        def undo() -> None:
            priors.delete(row.id)
            ctx.artifacts.remove_prior(row.id)

        return undo

    return RunOutput(out_dir=out_dir, metrics=metrics, seconds=result.seconds, steps=result.steps, device=device,
                     on_published=register)
