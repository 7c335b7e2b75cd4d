#!/usr/bin/env bash
# Builds build/kernels/yqp_kernels.node (exports.kernels only) with nvcc and g++, cudart linked statically so
# the addon loads on machines with no CUDA toolkit (and with no driver: deviceInfo() then says why).
#   bash trt/kernels/standalone/build.sh        (about 30 s; needs nvcc, g++, node-addon-api, node headers)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
out=build/kernels
rm -rf "$out/obj" && mkdir -p "$out/obj"
cuda=${CUDA_HOME:-/usr/local/cuda}
napi=$(node -p "require('node-api-headers').include_dir" 2>/dev/null || echo /usr/include/node)
addon=$(node -p "require('node-addon-api').include_dir" | tr -d '"')
defs=(-DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED)
inc=(-I"$root/trt" -isystem "$cuda/include" -isystem "$napi" -isystem "$addon")
# sm_90 for Hopper plus compute_90 PTX so other recent GPUs can JIT it.
"$cuda/bin/nvcc" -std=c++17 -O3 -Xcompiler -fPIC,-ffp-contract=off -gencode=arch=compute_90,code=sm_90 \
  -gencode=arch=compute_90,code=compute_90 -gencode=arch=compute_80,code=sm_80 \
  "${inc[@]}" -c trt/kernels/sampler.cu -o "$out/obj/sampler.o" &
pids=($!)
# The CUDA core (trt/core), when present, is compiled in: the kernels use its pools and completion.
for f in trt/core/*.cu; do
  [[ -e $f ]] || continue
  "$cuda/bin/nvcc" -std=c++17 -O3 -Xcompiler -fPIC,-ffp-contract=off -gencode=arch=compute_90,code=sm_90 \
    "${inc[@]}" "${defs[@]}" -c "$f" -o "$out/obj/core_$(basename "$f" .cu).o" &
  pids+=($!)
done
for f in trt/kernels/*.cc trt/kernels/standalone/addon.cc trt/core/*.cc; do
  [[ -e $f ]] || continue
  g++ -std=c++17 -O2 -fPIC -Wall -Wextra -ffp-contract=off "${defs[@]}" "${inc[@]}" -c "$f" -o "$out/obj/$(basename "$(dirname "$f")")_$(basename "$f" .cc).o" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
g++ -shared -o "$out/yqp_kernels.node" "$out"/obj/*.o -L"$cuda/lib64" -l:libcudart_static.a -ldl -lpthread -lrt
echo "built $out/yqp_kernels.node"
