#!/usr/bin/env bash
# One call on the GPU machine for onnxruntime's CUDA provider (issue 20), after the staged providers' own call:
#   call 1: bash .devbundle-ort/recv.sh                 (../shared/device/stage-ort-gpu.sh made .devbundle-ort/)
#   call 2: bash .devbundle/run.sh bash test/gpu/device-run-ort.sh
# doctor, the GPU suite (SUITE= narrows it), compute-sanitizer memcheck over CUDA sessions (SANITIZE=0 skips it),
# the gpu-inference benchmark beside its PyTorch peer (BENCH=0 skips it, BENCH_NAME= picks another); logs under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/yqp-out}
mkdir -p "$OUT"
if [[ ! -f /tmp/ort-gpu/env.sh ]]; then echo "no /tmp/ort-gpu: run .devbundle-ort/recv.sh first (same warm machine)"; exit 3; fi
source /tmp/ort-gpu/env.sh
nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())" 2>&1 | tail -1
echo "== doctor"
node dist/cli/main.js doctor 2>&1 | grep -E "onnxruntime|CUDA|GPU" | head -12
echo "== GPU suite (${SUITE:-all})"
timeout ${SUITE_TIMEOUT:-300} npx vitest run --config vitest.gpu.config.ts ${SUITE:-} > "$OUT/tests.log" 2>&1
tests=$?
grep -E "✓|✗|×|↓|FAIL|Error|expected|received|Tests |Test Files|inter-ocular|CUDA vs CPU" "$OUT/tests.log" | grep -v "^npm warn" | head -80
if [[ ${SANITIZE:-1} == 1 ]]; then
  echo "== compute-sanitizer memcheck over CUDA sessions"
  timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 10 node test/gpu/sanitize-ort.mjs > "$OUT/sanitize-ort.log" 2>&1
  echo "memcheck (onnxruntime CUDA): rc=$? $(grep -E 'ERROR SUMMARY|sanitize-ort' "$OUT/sanitize-ort.log" | tr '\n' ' ' | cut -c1-300)"
fi
if [[ ${BENCH:-1} == 1 ]]; then
  # BENCH_NAME=face-pipeline BENCH_ARGS='--device cuda' runs the face pipeline's benchmark instead.
  bench=${BENCH_NAME:-gpu-inference}
  echo "== bench $bench"
  timeout ${BENCH_TIMEOUT:-200} node scripts/bench.mjs "$bench" --out "$OUT" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench-$bench.log"
fi
echo "tests rc=$tests"
