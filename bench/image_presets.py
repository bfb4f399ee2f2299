"""Image presets as a user runs them: `nfrecon fit photo.png -o out.png --preset P`, timed from the command's start.

    python -m bench.image_presets                          # camera + astronaut (512x512), fast + balanced, 3 repeats
    python -m bench.image_presets --presets balanced --repeats 5

The photos ship with scikit-image (no downloads): camera (grey) and astronaut (RGB), both 512x512.
Each run is one `python -m nfrecon fit` process (Python start-up included), so the wall time is what
a user waits for; the fit's own seconds, training seconds and PSNR/SSIM come from its metrics.json.
Medians over `--repeats`. Issue 11's CPU target: the default (balanced) preset at >= 30 dB within 60 s
on 2 cores. Writes bench/results/image_presets.{json,md}. Run it alone (`flock /tmp/nfrecon-bench.lock`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PHOTOS = ("camera", "astronaut")


def _write_photo(name: str, directory: Path) -> Path:
    from skimage import data, io

    path = directory / f"{name}.png"
    io.imsave(path, getattr(data, name)(), check_contrast=False)
    return path


def _run(photo: Path, preset: str, device: str, out_dir: Path) -> dict:
    out = out_dir / f"{photo.stem}_{preset}.png"
    cmd = [sys.executable, "-m", "nfrecon", "fit", str(photo), "-o", str(out), "--preset", preset, "--device", device]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    m = json.loads(out.with_suffix(".metrics.json").read_text())
    return {"wall_seconds": wall, "fit_seconds": m["seconds"], "train_seconds": m["train_seconds"],
            "steps": m["steps"], "psnr": m["psnr"], "ssim": m["ssim"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.image_presets", description=__doc__.splitlines()[0])
    p.add_argument("--photos", nargs="+", default=list(PHOTOS), choices=PHOTOS)
    p.add_argument("--presets", nargs="+", default=["fast", "balanced"], choices=["fast", "balanced", "quality"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default=str(RESULTS / "image_presets"))
    args = p.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="nfrecon-bench-image-") as tmp:
        tmp_path = Path(tmp)
        for name in args.photos:
            photo = _write_photo(name, tmp_path)
            for preset in args.presets:
                runs = [_run(photo, preset, args.device, tmp_path) for _ in range(args.repeats)]
                row = {"photo": name, "preset": preset, "repeats": len(runs), "runs": runs}
                for key in ("wall_seconds", "fit_seconds", "train_seconds", "psnr", "ssim"):
                    row[key] = statistics.median(r[key] for r in runs)
                row["steps"] = runs[0]["steps"]
                rows.append(row)
                print(f"{name:10s} {preset:9s} wall {row['wall_seconds']:6.1f}s  fit {row['fit_seconds']:6.1f}s  "
                      f"train {row['train_seconds']:5.1f}s  PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.4f}", flush=True)

    meta = {"device": args.device, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "repeats": args.repeats,
            "argv": argv if argv is not None else sys.argv[1:]}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        f"# Image presets through `nfrecon fit` ({args.device}, {meta['date']}, medians of {args.repeats})",
        "",
        "Wall = the whole `python -m nfrecon fit photo.png -o out.png --preset P` command (Python start-up, "
        "read, train, render, write); fit = the fit's own seconds (metrics.json); 512x512 photos from scikit-image.",
        "",
        "| photo | preset | steps | wall s | fit s | train s | PSNR dB | SSIM |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['photo']} | {r['preset']} | {r['steps']} | {r['wall_seconds']:.1f} | {r['fit_seconds']:.1f} | "
                     f"{r['train_seconds']:.1f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
