#!/usr/bin/env bash
# Builds the test-only bridge_check.node (MemoryOrder + the core completion) (CUDA runtime static, libstdc++ static so it loads on the GPU machine).
#   bash trt/tensorrt/testing/build.sh [out.node]    (default build/tensorrt-testing/bridge_check.node)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
out=${1:-$root/build/tensorrt-testing/bridge_check.node}
mkdir -p "$(dirname "$out")"
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
"$nvcc" -std=c++17 -shared -Xcompiler -fPIC,-Wall,-Wextra -O2 \
  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
  -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS \
  -isystem "$root/node_modules/node-api-headers/include" -isystem "$root/node_modules/node-addon-api" -I "$root/trt" \
  "$root/trt/tensorrt/testing/bridge_check.cu" "$root/trt/tensorrt/memory_order.cc" "$root/trt/core/completion.cc" \
  -cudart static -Xcompiler -static-libstdc++,-static-libgcc -o "$out"
echo "$out"
