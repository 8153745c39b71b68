# Sourced by the ci scripts: PATH for the CUDA toolkit, parallelism.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
export CUDACXX=${CUDACXX:-$(command -v nvcc)}
JOBS=${JOBS:-$(nproc)}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
