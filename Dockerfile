# nfrecon image for the API and the GPU workers (docker-compose.yml).
# Build:  docker build --build-arg CUDA_ARCH=86 -t nfrecon .
#   CUDA_ARCH: compute capability without the dot (75 T4, 80 A100, 86 RTX 30xx/A10, 89 L4/RTX 40xx, 90 H100).
# The install steps are those of the README's GPU section: PyTorch with CUDA first, then tiny-cuda-nn's
# PyTorch bindings built from source for one architecture, then the project.

ARG CUDA_VERSION=12.6.3
ARG UBUNTU=22.04

# ---- build stage: compilers and CUDA headers, for tiny-cuda-nn --------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU} AS build
ARG CUDA_ARCH=86
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
ARG TCNN_REF=master
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev build-essential git ninja-build \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip setuptools wheel
# 1. PyTorch built for CUDA (the CPU wheel is what CI pins; here the CUDA index).
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
# 2. tiny-cuda-nn's PyTorch extension, compiled for CUDA_ARCH only (a full build takes much longer).
ENV TCNN_CUDA_ARCHITECTURES=${CUDA_ARCH}
RUN pip install --no-build-isolation "git+https://github.com/NVlabs/tiny-cuda-nn@${TCNN_REF}#subdirectory=bindings/torch"
# 3. The project, with the PostgreSQL driver for the job store.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY nfcore nfcore
COPY api api
COPY worker worker
COPY store store
COPY nfrecon nfrecon
COPY bench bench
RUN pip install ".[postgres]"

# ---- runtime stage: CUDA runtime only -------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU}
ENV DEBIAN_FRONTEND=noninteractive
# libgomp/libgl/libusb: Open3D at import time; python3: the venv's interpreter.
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 libgomp1 libgl1 libusb-1.0-0 curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NFRECON_DATA_DIR=/data
RUN useradd --create-home --uid 1000 nfrecon && mkdir -p /data && chown nfrecon /data
USER nfrecon
WORKDIR /home/nfrecon
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD curl -fsS http://127.0.0.1:8000/v1/health || exit 1
CMD ["uvicorn", "api.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
