#!/usr/bin/env bash
# The CUDA path in one command, about 5 minutes on one GPU machine (issue 33): the CUDA tests, a smoke search on the
# GPU, and the throughput figure (trials per hour and images per second per trial, k trials sharing the GPU).
# Each stage has its own time limit and writes under $OUT (default gpu-check/); a failed stage does not stop the
# next one, and the last line says which passed. Record the figures in docs/benchmarks.md, "GPU check".
#
#     bash benchmarks/gpu_check.sh                  # needs torch with CUDA and the project installed
#     DATA_DIR=/path/to/fashion-mnist bash benchmarks/gpu_check.sh   # where the four IDX files are, if not Debian's
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
declare -A STATUS
stage() {  # stage NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (≤ ${limit}s)"
    local t0=$SECONDS
    if timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; then STATUS[$name]="ok $((SECONDS - t0))s"
    else STATUS[$name]="FAILED (exit $?, $((SECONDS - t0))s; $OUT/$name.log)"; fi
    tail -n 5 "$OUT/$name.log"
}
python - > "$OUT/device.txt" 2>&1 <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(i, p.name, f"{p.total_memory / 2**30:.0f} GiB", f"sm {p.major}.{p.minor}")
PY
cat "$OUT/device.txt"
DATA_FLAG=()
[ -n "${DATA_DIR:-}" ] && DATA_FLAG=(--data-dir "$DATA_DIR")
stage cuda-tests 120 python -m pytest -q -x tests/test_train.py -k "cuda" -p no:cacheprovider
stage smoke-search 120 autokd search --dataset fashion-mnist --preset smoke --device cuda "${DATA_FLAG[@]}" \
    --run-dir "$OUT/smoke-search" --executor local --quiet
stage throughput 150 python benchmarks/throughput.py --k 4 --steps 30  # its last lines: the JSON summary
echo "== gpu check: $(for k in cuda-tests smoke-search throughput; do printf '%s %s; ' "$k" "${STATUS[$k]}"; done)"
