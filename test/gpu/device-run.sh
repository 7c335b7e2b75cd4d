#!/usr/bin/env bash
# One call on the GPU machine for the runtime core (after pack.sh carried dist/, build/Release/, node_modules/):
#   bash .devbundle/run.sh bash test/gpu/device-run.sh
# The GPU suite, compute-sanitizer (memcheck, racecheck, synccheck) over test/gpu/sanitize-core.mjs, then the
# copy and cameras benchmarks; logs under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/yqp-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current,clocks.sm,temperature.gpu,power.draw --format=csv | tee "$OUT/gpu.txt"
python3 -c "import cupy, torch; print('cupy', cupy.__version__, 'torch', torch.__version__)" 2>&1 | tail -1
node -e "const b=require('./build/Release/yqp_trt.node'); console.log(JSON.stringify(b.cudaInfo()))"
echo "== GPU suite (${SUITE:-all})"
timeout 240 npx vitest run --config vitest.gpu.config.ts ${SUITE:-} 2>&1 | grep -v "^npm warn" > "$OUT/tests.log"
tests=${PIPESTATUS[0]}
grep -E "✓|✗|×|↓|FAIL|Error|expected|Tests |Test Files" "$OUT/tests.log" | head -80
echo "== compute-sanitizer"
san=0
# memcheck twice: with CUDA API error reporting but without the deliberate capture failure, then that fallback
# path alone with API errors not reported (its errors are the point of the test).
for run in "memcheck:0:yes" "memcheck-fallback:1:no" "racecheck:1:yes" "synccheck:1:yes"; do
  IFS=: read -r name fb api <<< "$run"
  tool=${name%%-*}
  YQP_SANITIZE_FALLBACK=$fb timeout 80 compute-sanitizer --tool $tool --report-api-errors $([[ $api == yes ]] && echo explicit || echo no) --error-exitcode 9 --print-limit 20 node test/gpu/sanitize-core.mjs > "$OUT/sanitize-$name.log" 2>&1
  rc=$?
  echo "$name: rc=$rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize-core' "$OUT/sanitize-$name.log" | tr '\n' ' ' | cut -c1-200)"
  [[ $rc -ne 0 ]] && san=1 && tail -30 "$OUT/sanitize-$name.log"
done
timeout 120 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 9 node test/gpu/sanitize-ipc.mjs > "$OUT/sanitize-ipc.log" 2>&1
rc=$?
echo "memcheck (IPC, two processes): rc=$rc $(grep -E 'ERROR SUMMARY|sanitize-ipc' "$OUT/sanitize-ipc.log" | tr '\n' ' ')"
[[ $rc -ne 0 ]] && san=1
echo "== benchmarks"
timeout 60 npm run --silent bench -- gpu-copy 2>&1 | grep -v "^npm warn" | tee "$OUT/bench-copy.log"
timeout 60 npm run --silent bench -- gpu-cameras ${CAMERAS_ARGS:-} 2>&1 | grep -v "^npm warn" | tee "$OUT/bench-cameras.log"
echo "tests rc=$tests sanitizer=$san"
