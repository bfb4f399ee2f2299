"""Settings that follow from the cloud itself: the analysis (nfcore.analysis) picks what a preset leaves open.

A preset is a speed/quality tier; the settings that depend on the data are listed in its
`MethodConfig.adapt` (dotted paths). `nfcore.spec.resolve` takes a path off that list when the user
sets it in the spec's overrides, so a stated value always wins. When the fit has read its input,
`adapt_config(config, analysis, scale)` fills each listed path by the rule below and returns the
new config with a record of each choice and the figures behind it (the job's `metrics.settings`).

Lengths are in the training cube [-1, 1] (`scale` = cube units per input unit); s is the point
spacing, and the noise ratio r = noise / spacing is scale-free (about 0 for clean scans, 0.5 for the
shared sparse-noisy clouds). The preset's own value bounds each choice: a tier is never pushed past
`CAP` times its value, so its time stays within a known factor.

- extraction.resolution: marching-cubes voxels of about s / `VOXELS_PER_SPACING`. A surface sampled
  every s holds detail down to about s; with the vertices projected onto the zero level
  (`extraction.project`) one voxel per spacing keeps it (on the dense 100k bunny, 256^3 with
  projection scored as 512^3 without: Chamfer-L1 0.000817 with 1M samples, against 0.00103 at 256^3
  without). The preset's value is the floor (sparse clouds) and `CAP` times it the ceiling.
- encoding.finest_resolution (hash grid only): finest cells of about s / `CELLS_PER_SPACING`, as a
  power of two, between the preset's value and `CAP` times it: only raised, for clouds denser than
  the presets were sized for (a million points). Lowering it for sparse clouds did not help: on the
  sparse-noisy bunny, finest 256 instead of 512 gave Chamfer-L1 0.003054 against 0.003037.
- sdf.surface_weight: clean clouds pin the zero level to their exact positions with SIREN's weight
  (`CLEAN_SURFACE_WEIGHT`); noisy ones keep the preset's lower weight, so that the normals, not the
  noisy positions, shape the surface (dense bunny, 1M-sample Chamfer-L1: 0.000809 against 0.000817).
- sdf.normal_weight: normals estimated from the points (the file had none) are only as good as the
  neighbourhoods they come from (median error against the true normals of the shared 10k noisy
  clouds: 7.7 degrees on spot, 10.8 on the bunny, 17.6 on the armadillo), so on noisy clouds the normal
  term keeps `ESTIMATED_NORMAL_FACTOR` of the preset's weight. Clean clouds keep the full weight: their
  surface weight is already raised (`CLEAN_SURFACE_WEIGHT`), and lowering the normal weight as well let the
  positions outweigh the normals 100 to 1, which fails where "clean" points lie in layers (overlapping
  scans). Given normals keep the preset's weight.
- precondition.end: clean clouds (r below `CLEAN_RATIO`) switch the preconditioning noise off after
  `CLEAN_END` of training (but never before `CLEAN_MIN_NOISY_STEPS` steps), so the field fits the exact
  positions for the rest; noisy ones
  keep the residual blur to the end, which averages position noise.
"""

from __future__ import annotations

import math

from nfcore.analysis import CloudAnalysis
from nfcore.config import HashGridEncodingConfig, MethodConfig
from nfcore.presets import merge

VOXELS_PER_SPACING = 1.0
"""Marching-cubes voxels per point spacing (before the preset's floor and cap)."""
CELLS_PER_SPACING = 2.0
"""Finest hash-grid cells per point spacing (before the preset's bounds)."""
CAP = 2.0
"""A tier's data-driven resolutions stay within [preset, preset * CAP]."""
CLEAN_RATIO = 0.25
"""Noise below this fraction of the spacing counts as a clean scan."""
CLEAN_SURFACE_WEIGHT = 3000.0
"""Clean scans: the surface term's weight (SIREN's), at least the preset's."""
CLEAN_END = 0.15
"""Clean scans: fraction of training after which the preconditioning noise is off. On a clean scan the
noise's job is the coarse-to-fine start; the rest of the fit goes to the exact positions. Measured
(`balanced`, CPU, stress-benchmark clouds, Chamfer-L1 with 100k / 1M samples; 0.7 was the earlier value):
dense clean spot (100k points) 0.7: 0.002210 / 0.000740, 0.5: 0.002207 / 0.000721, 0.3: 0.002201 /
0.000710, 0.15: 0.002197 / 0.000708, 0 (no noise at all): 0.002204 / 0.000712 (Poisson depth 8:
0.002199 / 0.000707); sparse clean clouds (10k points), 0.7 / 0.3 / 0.15: spot 0.002235 / 0.002233 /
0.002231, armadillo 0.002190 / 0.002166 / 0.002183."""
CLEAN_MIN_NOISY_STEPS = 150
"""Clean scans: the noise stays on for at least this many steps, however short the fit. The early, blurred
steps set the coarse shape (the topology); a 300-step `fast` fit of an unoriented torus (5000 points,
noise 0.12 spacings) with the noise off after 45 steps came out with the wrong genus (Chamfer-L1 0.035),
with 150 steps 0.0026; 1000 steps x 0.15 = 150 steps gave 0.0026 too."""
ESTIMATED_NORMAL_FACTOR = 0.3
"""Estimated normals of a noisy cloud (noise ratio at least `CLEAN_RATIO`): the normal term's weight as a
fraction of the preset's. Chosen on the four closed shared 10k noisy clouds read without their normals
(Chamfer-L1, weight 100 -> 30): `fast` bunny -3.3%, spot +0.3%, armadillo -5.8%, rocker arm -4.5%;
`balanced` (the default) bunny -3.8% (0.004126 -> 0.003968), spot -1.2%, armadillo -3.4%, rocker arm -3.9%.

Clean clouds do not get it. On clean stress cells (10k points, no noise, `balanced`) weight 10 / 30 / 100
gave spot 0.002256 / 0.002252 / 0.002262 and armadillo 0.002796 / 0.002379 / 0.002447 (30 slightly
better), but on overlapping range scans merged into one cloud (`bench.multiview`, bunny all round, 8
registered views, noise 0.16 spacings: "clean"), `fast` with weight 30 and the clean surface weight 3000
scored 0.01508 against Poisson's 0.00317; weight 100 scored 0.00316.

A lower factor (0.1) on noisy clouds helped 5 of 6 noisy stress cells on the shared shapes
(weight 30 -> 10, Chamfer-L1: 10k points bunny 0.003957 -> 0.003932, armadillo 0.003930 -> 0.003796, rocker
arm 0.002878 -> 0.002825, spot 0.003136 -> 0.003235; 100k spot 0.002883 -> 0.002756, armadillo 0.003139 ->
0.003058), and 0.05 helped none of them (bunny 0.004066, armadillo 0.003814), but on a shape they were not
measured on it failed: the thin tube of `bench.unseen`'s torus knot (10k points, 0.5% noise, estimated
normals with no sign wrong, 7.7 degrees median error) scored 0.00437 at weight 10, 0.002945 at 30 and 0.002883
at 100, against 0.00314 for Poisson with the same normals. The small gains do not pay for that risk."""


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _pow2(value: float) -> int:
    return int(2 ** round(math.log2(max(value, 1.0))))


def adapt_config(config: MethodConfig, analysis: CloudAnalysis, scale: float) -> tuple[MethodConfig, dict]:
    """Fill `config.adapt`'s paths from `analysis` (input units; `scale` = cube units per input unit).

    Returns the new config and {"analysis": the figures used, "chosen": {path: {"value", "preset",
    "reason"}}}; paths that do not apply to this config (e.g. a finest resolution without a hash
    grid) are reported under "skipped".
    """
    spacing = analysis.spacing * scale  # cube units
    ratio = analysis.noise_ratio
    clean = ratio < CLEAN_RATIO
    figures = {"spacing_cube": spacing, "noise_cube": analysis.noise * scale, "noise_ratio": ratio,
               "closed": analysis.closed, "n_points": analysis.n_points}
    chosen: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    patch: dict = {}
    for path in config.adapt:
        if path == "extraction.resolution":
            preset = config.extraction.resolution
            wanted = _round_up(2.0 / spacing * VOXELS_PER_SPACING, 32) if spacing > 0 else preset
            value = int(min(max(wanted, preset), CAP * preset))
            patch.setdefault("extraction", {})["resolution"] = value
            chosen[path] = {"value": value, "preset": preset,
                            "reason": f"spacing {spacing:.4g} (cube units): {VOXELS_PER_SPACING:g} voxels per "
                                      f"spacing asks for {wanted}, kept within [{preset}, {int(CAP * preset)}]"}
        elif path == "encoding.finest_resolution":
            if not isinstance(config.encoding, HashGridEncodingConfig):
                skipped[path] = f"the {config.encoding.type} encoding has no finest resolution"
                continue
            preset = config.encoding.finest_resolution
            wanted = _pow2(2.0 / spacing * CELLS_PER_SPACING) if spacing > 0 else preset
            value = int(min(max(wanted, preset), preset * CAP))
            patch.setdefault("encoding", {})["finest_resolution"] = value
            chosen[path] = {"value": value, "preset": preset,
                            "reason": f"spacing {spacing:.4g} (cube units): {CELLS_PER_SPACING:g} finest cells per "
                                      f"spacing asks for {wanted}, kept within [{preset}, {int(preset * CAP)}]"}
        elif path == "sdf.surface_weight":
            preset = config.sdf.surface_weight
            value = max(preset, CLEAN_SURFACE_WEIGHT) if clean else preset
            patch.setdefault("sdf", {})["surface_weight"] = value
            chosen[path] = {"value": value, "preset": preset,
                            "reason": (f"noise {ratio:.2f} spacings (< {CLEAN_RATIO}): exact positions, pinned with "
                                       f"weight {value:g}") if clean else
                                      (f"noise {ratio:.2f} spacings (>= {CLEAN_RATIO}): the normals shape the surface "
                                       "more than the noisy positions")}
        elif path == "sdf.normal_weight":
            preset = config.sdf.normal_weight
            estimated = not analysis.has_normals
            value = preset * ESTIMATED_NORMAL_FACTOR if estimated and not clean else preset
            patch.setdefault("sdf", {})["normal_weight"] = value
            if not estimated:
                reason = "normals given with the cloud: the preset's weight"
            elif clean:
                reason = (f"normals estimated from the points of a clean cloud (noise {ratio:.2f} spacings): the "
                          "preset's weight, against the raised surface weight")
            else:
                reason = (f"normals estimated from the points of a noisy cloud (noise {ratio:.2f} spacings): "
                          f"{ESTIMATED_NORMAL_FACTOR:g} of the preset's weight (their errors would otherwise shape "
                          "the surface)")
            chosen[path] = {"value": value, "preset": preset, "reason": reason}
        elif path == "precondition.end":
            preset = config.precondition.end
            floor = min(1.0, CLEAN_MIN_NOISY_STEPS / max(config.train.steps, 1))
            value = min(preset, max(CLEAN_END, floor)) if clean else preset
            patch.setdefault("precondition", {})["end"] = value
            chosen[path] = {"value": value, "preset": preset,
                            "reason": (f"noise {ratio:.2f} spacings (< {CLEAN_RATIO}): a clean scan, noise off after "
                                       f"{value:.0%} of training") if clean else
                                      (f"noise {ratio:.2f} spacings (>= {CLEAN_RATIO}): the residual blur stays on to "
                                       "average position noise")}
    adapted = MethodConfig.model_validate(merge(config.model_dump(mode="json"), patch)) if patch else config
    record: dict = {"analysis": figures, "chosen": chosen}
    if skipped:
        record["skipped"] = skipped
    return adapted, record


__all__ = ["adapt_config", "VOXELS_PER_SPACING", "CELLS_PER_SPACING", "CAP", "CLEAN_RATIO", "CLEAN_END", "CLEAN_MIN_NOISY_STEPS",
           "CLEAN_SURFACE_WEIGHT", "ESTIMATED_NORMAL_FACTOR"]
