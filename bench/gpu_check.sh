#!/usr/bin/env bash
# The CUDA checks and GPU benchmark for a session that is lent a GPU machine, as one script:
#   bash bench/gpu_check.sh            (on the GPU machine; results under $OUT, default ./gpu_out)
# Installs nothing from the network: it needs the machine's PyTorch with CUDA; tinycudann is optional
# (the parity test skips without it). Each step has its own time limit so one hang cannot eat the budget.
set -u
OUT=${OUT:-./gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))" > "$OUT/torch.txt" 2>&1
# 1. Unit tests that exercise CUDA (they skip on CPU-only machines).
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/nfcore/test_hashgrid.py tests/nfcore/test_field.py \
    tests/nfcore/test_encodings.py tests/nfcore/test_mesh.py -k "cuda or tcnn or Cuda" > "$OUT/pytest_cuda.txt" 2>&1
# 2. Hash-grid SDF training throughput on the GPU (target: >= 2e7 samples/s).
timeout 150 python3 -m bench.hashgrid --device cuda --batch 262144 --log2 19 --steps 5 --warmup 2 --repeats 5 \
    --variants explicit function --out "$OUT/hashgrid_cuda" > "$OUT/hashgrid_cuda.txt" 2>&1
# 3. One end-to-end fit with the CUDA balanced preset on the sparse bunny (if the shared data came along).
if [ -d ../shared/data ] || [ -d shared/data ]; then
  timeout 180 python3 -m bench.sdf --device cuda --shapes bunny --clouds sparse --presets balanced --encodings \
      --poisson-depth 0 --out "$OUT/sdf_cuda" > "$OUT/sdf_cuda.txt" 2>&1
fi
tail -n 3 "$OUT"/*.txt
