#!/usr/bin/env bash
# One call on the GPU machine (device tool), after pack.sh carried dist/, build/kernels/ and node_modules/:
#   bash .devbundle/run.sh bash trt/kernels/standalone/device-run.sh
# GPU tests, compute-sanitizer over every kernel path, then both benchmarks; logs and JSON under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/yqp-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv | tee "$OUT/gpu.txt"
node -e "const k=require('./build/kernels/yqp_kernels.node').kernels; console.log(JSON.stringify(k.deviceInfo()))"
echo "== GPU tests"
YQP_KERNELS_REPORT=$OUT npx vitest run --config vitest.gpu.config.ts test/gpu/kernels.test.ts 2>&1 | tee "$OUT/tests.log" | grep -v "^npm warn"
tests=${PIPESTATUS[0]}
echo "== compute-sanitizer"
san=0
for tool in memcheck racecheck initcheck synccheck; do
  compute-sanitizer --tool $tool --error-exitcode 9 --print-limit 20 node trt/kernels/standalone/sanitize.mjs > "$OUT/sanitize-$tool.log" 2>&1
  rc=$?
  echo "$tool: rc=$rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize-$tool.log" | tr '\n' ' ')"
  [[ $rc -ne 0 ]] && san=1 && tail -20 "$OUT/sanitize-$tool.log"
done
echo "== benchmarks"
npm run --silent bench -- gpu-preprocess --out "$OUT" 2>&1 | grep -v "^npm warn" | tee "$OUT/bench-preprocess.log"
npm run --silent bench -- gpu-graphs --out "$OUT" 2>&1 | grep -v "^npm warn" | tee "$OUT/bench-graphs.log"
nvidia-smi --query-gpu=clocks.sm,temperature.gpu,power.draw --format=csv,noheader
echo "tests rc=$tests sanitizer=$san"
