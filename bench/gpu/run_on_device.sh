#!/usr/bin/env bash
# run_on_device.sh -- for a session lent a GPU machine: build snakepit in place,
# run the `gpu` tests, benchmark a CUDA tensor to a worker and back; results
# under $OUT (the device tool's output folder). About 5 minutes in all.
#
# The machine: python3 (3.12) with CUDA torch, CuPy, JAX, Cython, numpy,
# pyarrow, pytest, pytest-benchmark; no network (nothing is installed here).
#
#   bench/gpu/run_on_device.sh            # on the GPU machine, from the repository root
#   bench/gpu/run_on_device.sh --dry-run  # anywhere: print the steps, run the harness on the CPU
#
# Every step has its own time limit and log ($OUT/<step>.log); a failing step
# is reported and the next one still runs, so one run gives every answer.
set -u -o pipefail

cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
PY=${PYTHON:-python3}
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; fi
mkdir -p "$OUT"
: > "$OUT/steps.log"
FAILED=0

step() {
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/steps.log"
    if [ "$DRY" = 1 ]; then
        return 0
    fi
    local start rc
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    echo "== $name: rc=$rc in $(( $(date +%s) - start ))s" | tee -a "$OUT/steps.log"
    tail -n 40 "$OUT/$name.log"
    if [ "$rc" != 0 ]; then FAILED=1; fi
    return 0
}

# What the machine has (for the report).
step env 30 bash -c "$PY -V; nvidia-smi -L; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'"

# Build in place: the C core, the Cython extension, the driver double.
step build 180 bash -c "make -C csrc lib fakecuda && $PY setup.py --quiet build_ext --inplace"

# The gpu-marked tests (real driver, torch CUDA tensors), then the double-driven ones once more.
step gpu-tests 150 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs -W default \
    tests/zero_copy/test_cuda_carrier_gpu.py tests/zero_copy/test_cuda_gpu.py
step double-tests 90 "$PY" -m pytest -q -p no:cacheprovider -rs -W default \
    tests/zero_copy/test_cuda_carrier.py

# The benchmark: snakepit vs torch.multiprocessing vs ProcessPoolExecutor, 8 B to 1 GiB.
if [ "$DRY" = 1 ]; then
    "$PY" -m bench.gpu.cuda_ipc --mode cpu --out "$OUT/bench" --budget 3 --rounds 2 --calls 3 \
        --peers "${DRY_PEERS:-snakepit,snakepit-all-ipc}" || FAILED=1
else
    step bench 240 "$PY" -m bench.gpu.cuda_ipc --out "$OUT/bench" --budget 150
fi

echo "== done (failed steps: $FAILED); results in $OUT" | tee -a "$OUT/steps.log"
exit "$FAILED"
