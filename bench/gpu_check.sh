#!/usr/bin/env bash
# The CUDA checks and GPU benchmark for a session lent a GPU machine, as one script:
#   bash bench/gpu_check.sh            (on the GPU machine; results under $OUT, default ./gpu_out)
# Installs nothing from the network. Optional, prepared on a networked machine beforehand:
#   .whl/   wheels of the pure-Python dependencies the GPU image lacks (pydantic, trimesh, ...),
#           installed with --no-index into /tmp/site;
#   .gpu/data/   a copy of ../shared/data (meshes + clouds), linked as ../shared/data there.
# tinycudann is optional (the parity test skips without it). Each step has its own time limit so
# that one hang cannot eat the budget; the log is written as it goes, the reports are tarred at the end.
set -u
OUT=${OUT:-./gpu_out}
WORK=$(mktemp -d)
mkdir -p "$OUT"
LOG="$OUT/log.txt"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
if [ ! -d ../shared/data ] && [ -d .gpu/data ]; then
  mkdir -p ../shared && ln -sfn "$PWD/.gpu/data" ../shared/data
fi
step() {  # step NAME SECONDS COMMAND...: run with a limit, log its output and its time
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date +%T), limit ${limit}s): $*" >> "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$WORK/$name.txt" 2>&1
  local rc=$?
  cat "$WORK/$name.txt" >> "$LOG"
  echo "=== $name: rc=$rc in $((SECONDS - t0))s" >> "$LOG"
}
step env 40 bash -c 'nvidia-smi; python3 -c "import torch, sys; print(sys.version); print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))"; ls ../shared/data/pointclouds | head -3'
# 1. Every test that exercises CUDA (they skip on CPU-only machines).
step pytest_cuda 120 python3 -m pytest -q -p no:cacheprovider -rs --continue-on-collection-errors tests/nfcore -k cuda
# 2. Hash-grid SDF training throughput (target >= 2e7 samples/s): custom Function vs flat autograd,
#    autograd (double backward) vs finite-difference gradients; then a batch sweep and a profile.
step hashgrid 80 python3 -m bench.hashgrid --device cuda --batch 262144 --log2 19 --steps 5 --warmup 2 --repeats 5 \
  --variants explicit function --out "$WORK/hashgrid"
step hashgrid_batch 60 python3 -m bench.hashgrid --device cuda --batch 65536 524288 --log2 19 --steps 5 --warmup 2 \
  --repeats 3 --variants function --gradients autograd --profile --out "$WORK/hashgrid_batch"
# 3. End-to-end fits with the CUDA presets on the bunny (needs the shared data).
step sdf_sparse 180 python3 -m bench.sdf --device cuda --shapes bunny --clouds sparse --presets fast balanced quality \
  --encodings --poisson-depth 0 --out "$WORK/sdf_sparse"
step sdf_dense 110 python3 -m bench.sdf --device cuda --shapes bunny --clouds dense --presets balanced \
  --encodings --poisson-depth 0 --out "$WORK/sdf_dense"
tar czf "$OUT/results.tar.gz" -C "$WORK" . 2>> "$LOG"
grep -E "^===|passed|failed|samples/s|chamfer|Chamfer" "$LOG" > "$OUT/summary.txt"
