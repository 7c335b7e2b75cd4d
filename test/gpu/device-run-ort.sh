#!/usr/bin/env bash
# One call on the GPU machine for onnxruntime's CUDA provider (issue 20), after the staged providers' own call:
#   call 1: bash .devbundle-ort/recv.sh                 (../shared/device/stage-ort-gpu.sh made .devbundle-ort/)
#   call 2: bash .devbundle/run.sh bash test/gpu/device-run-ort.sh
# the route to the CUDA provider, doctor, the gpu-inference benchmark beside its PyTorch peer (BENCH=0 skips it;
# BENCHES='gpu-inference face-pipeline' runs several, BENCH_ARGS_face_pipeline='--device cuda' gives each its args),
# the GPU suite (SUITE= narrows it, TESTS=0 skips it, FILE_TIMEOUT=s runs it file by file), compute-sanitizer memcheck over CUDA sessions (SANITIZE=0 skips it),
# the probes (PROBE=1: the ring path's host time step by step, the CUDA form's rewrites), all within DEADLINE
# seconds (500: the bundle's unpacking before this script takes 30-60 s of the call's 600); logs under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/yqp-out}
mkdir -p "$OUT"
if [[ ! -f /tmp/ort-gpu/env.sh ]]; then echo "no /tmp/ort-gpu: run .devbundle-ort/recv.sh first (same warm machine)"; exit 3; fi
source /tmp/ort-gpu/env.sh
nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())" 2>&1 | tail -1
start=$SECONDS
left() { local t=$(( ${DEADLINE:-500} - (SECONDS - start) )); (( t > $1 )) && t=$1; (( t < 5 )) && t=5; echo $t; }
echo "== route to the CUDA provider (default, then the option structs)"
timeout 90 node test/gpu/probe-route.mjs 2>&1 | tail -3 | tee "$OUT/route.log"
if grep -q 'EP-device route' "$OUT/route.log"; then  # only a refused route falls back, not any failure
  YQP_ORT_CUDA_ROUTE=options timeout 60 node test/gpu/probe-route.mjs 2>&1 | tail -3 | tee -a "$OUT/route.log"
  grep -q '"ok":true' "$OUT/route.log" && export YQP_ORT_CUDA_ROUTE=options && echo "falling back: YQP_ORT_CUDA_ROUTE=options"
fi
echo "== doctor"
node dist/cli/main.js doctor 2>&1 | grep -E "onnxruntime|CUDA|GPU" | head -12
tests=skipped
if [[ ${TESTS:-1} == 1 ]]; then
  echo "== GPU suite (${SUITE:-all})"
  if [[ -n ${FILE_TIMEOUT:-} ]]; then  # file by file, each within FILE_TIMEOUT: a hang costs one file, not the rest
    tests=0
    for f in ${SUITE:-test/gpu/*.test.ts}; do
      t0=$SECONDS
      timeout $(left $FILE_TIMEOUT) npx vitest run --config vitest.gpu.config.ts --reporter=verbose "$f" > "$OUT/tests-$(basename "$f" .test.ts).log" 2>&1
      rc=$?; (( rc != 0 )) && tests=$rc
      echo "-- $f rc=$rc $((SECONDS - t0)) s"
      grep -E "✓|✗|×|↓|FAIL|AssertionError|Error:|expected|Tests |inter-ocular|CUDA vs CPU" "$OUT/tests-$(basename "$f" .test.ts).log" | grep -v "^npm warn" | head -25
    done
  else
    timeout $(left ${SUITE_TIMEOUT:-300}) npx vitest run --config vitest.gpu.config.ts ${SUITE:-} > "$OUT/tests.log" 2>&1
    tests=$?
    grep -E "✓|✗|×|↓|FAIL|Error|expected|received|Tests |Test Files|inter-ocular|CUDA vs CPU" "$OUT/tests.log" | grep -v "^npm warn" | head -80
  fi
fi
if [[ ${BENCH:-1} == 1 ]]; then
  for bench in ${BENCHES:-gpu-inference}; do
    args_var="BENCH_ARGS_${bench//-/_}"
    args=${!args_var:-${BENCH_ARGS:-}}
    echo "== bench $bench $args"
    # BENCH_NODE_ARGS: e.g. --cpu-prof --cpu-prof-dir=$OUT/prof (a profile of the bench process)
    timeout $(left ${BENCH_TIMEOUT:-200}) node ${BENCH_NODE_ARGS:-} scripts/bench.mjs "$bench" --out "$OUT" $args 2>&1 | tee "$OUT/bench-$bench.log"
  done
fi
if [[ ${SANITIZE:-1} == 1 ]]; then
  echo "== compute-sanitizer memcheck over CUDA sessions"
  timeout -k 5 $(left 150) compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 10 node test/gpu/sanitize-ort.mjs > "$OUT/sanitize-ort.log" 2>&1
  echo "memcheck (onnxruntime CUDA): rc=$? $(grep -E 'ERROR SUMMARY|sanitize-ort|selectRows' "$OUT/sanitize-ort.log" | tr '\n' ' ' | cut -c1-700)"
fi
if [[ ${PROBE:-0} == 1 ]]; then  # the ring path's host time, step by step; the CUDA form's rewrites
  # Each step in its own process, output to a file (no pipe a stuck process could hold), within its own timeout.
  step() { local t=$1; shift; timeout -k 5 $(left $t) "$@" > /tmp/probe-step.log 2>&1; local rc=$?; cat /tmp/probe-step.log >> "$OUT/probe.log"; grep -v '"nodes"' /tmp/probe-step.log | tail -40; echo "rc=$rc"; }
  echo "== probe: the ring path's host time"
  step 45 node --cpu-prof --cpu-prof-dir="$OUT/prof-ring" test/gpu/probe-ring-latency.mjs 2000
  for v in ${PROBE_VARIANTS:-built fused widened both}; do
    echo "== probe: graph rewrites on the CUDA provider, $v"
    PROBE_VARIANT=$v step ${PROBE_TIMEOUT:-60} node test/gpu/probe-cuda-form.mjs
  done
fi
# CPU profiles (a bench's --server-node-args --cpu-prof,--cpu-prof-dir=$OUT/prof, BENCH_NODE_ARGS): summarized here,
# the raw files dropped (few files come back from this machine).
for f in $(find "$OUT" -name '*.cpuprofile' 2>/dev/null); do
  node scripts/profile-summary.mjs "$f" 40 > "${f%.cpuprofile}.txt" 2>&1 && rm -f "$f" && head -${PROFILE_LINES:-0} "${f%.cpuprofile}.txt"
done
echo "tests rc=$tests"
