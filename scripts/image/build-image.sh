#!/usr/bin/env bash
# npm run image [-- --cuda] [-- --tag NAME]: builds the OCI image localhost/yqp-trt:<version> (and, with --cuda,
# localhost/yqp-trt:<version>-cuda) with podman, from Debian's packages and this checkout's build; no base image
# is pulled from anywhere.
#
#   1. the root filesystem (rootfs.sh: Debian 13's nodejs and its libraries), built once and cached under
#      .cache/image/ by the hash of rootfs.sh;
#   2. the package staged as /opt/yqp-trt: dist/, the native addon (build/Release/yqp_trt.node), schemas/,
#      package.json and its production dependencies (`npm ci --omit=dev`, cached by the lockfile's hash), with the
#      other platforms' onnxruntime binaries removed (onnxruntime-node ships five platforms: 245 of its 290 MB);
#   3. both appended into one tarball and `podman import`ed with the user, entry point, ports and environment;
#   4. --cuda: onnxruntime's GPU libraries (npm packages com.github.asus4.onnxruntime(.linux-x64-gpu)@0.4.9,
#      ONNX Runtime 1.29.0 for CUDA 13, MIT) in a layer on top, at /opt/yqp-trt/ort-gpu.
# Needs: mmdebstrap and podman (apt-get install mmdebstrap podman), a built checkout (npm run build).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd); cd "$top"
cuda=0; tag=
while (($#)); do
  case $1 in
    --cuda) cuda=1 ;;
    --tag) tag=${2:?--tag needs a name}; shift ;;
    *) echo "build-image.sh: unknown argument $1 (expected --cuda or --tag NAME)" >&2; exit 2 ;;
  esac
  shift
done
version=$(node -p 'require("./package.json").version')
tag=${tag:-localhost/yqp-trt:$version}
cache=.cache/image; mkdir -p "$cache"
say() { printf 'image: %s\n' "$*" >&2; }
for tool in mmdebstrap podman; do
  command -v $tool >/dev/null || { say "$tool not found: apt-get install mmdebstrap podman"; exit 3; }
done
[[ -f dist/cli/main.js ]] || { say "dist/ is not built: npm run build"; exit 3; }
addon=build/Release/yqp_trt.node
[[ -f $addon ]] || say "warning: $addon is not built (no CUDA toolkit?): the image runs onnxruntime in worker threads"

# 1. Root filesystem, once per rootfs.sh.
key=$(sha256sum scripts/image/rootfs.sh | cut -c1-16)
rootfs=$cache/rootfs-$key.tar
if [[ ! -s $rootfs ]]; then
  say "building the root filesystem ($rootfs)"
  bash scripts/image/rootfs.sh "$rootfs.part" >"$cache/rootfs.log" 2>&1 || { tail -20 "$cache/rootfs.log" >&2; exit 1; }
  mv "$rootfs.part" "$rootfs"
  find "$cache" -maxdepth 1 -name 'rootfs-*.tar' ! -name "rootfs-$key.tar" -delete
fi

# 2. Production dependencies, once per lockfile. --ignore-scripts: the only install script that matters,
# onnxruntime-node's, would download CUDA providers from outside npm; the libraries it needs are in its package.
lock=$(node -p 'JSON.stringify(require("./package.json").dependencies)' | cat - package-lock.json | sha256sum | cut -c1-16)
deps=$cache/deps-$lock
find "$cache" -maxdepth 1 -name 'deps-*' ! -name "deps-$lock" -exec rm -rf {} +  # earlier lockfiles'
if [[ ! -d $deps/node_modules ]]; then
  say "installing production dependencies ($deps)"
  rm -rf "$deps.part" && mkdir -p "$deps.part"
  cp package.json package-lock.json "$deps.part/"
  (cd "$deps.part" && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error >&2)
  ort=$deps.part/node_modules/onnxruntime-node/bin/napi-v6
  [[ -f $ort/linux/x64/libonnxruntime.so.1 ]] || { say "onnxruntime-node has no linux/x64 libonnxruntime"; exit 1; }
  find "$ort" -mindepth 2 -maxdepth 2 ! -path "$ort/linux/x64" -exec rm -rf {} +
  find "$ort" -mindepth 1 -maxdepth 1 -type d ! -name linux -exec rm -rf {} +
  # Build-time dependencies (the addon is already built) with what only they need, and protobufjs's code
  # generator (pbjs/pbts, 20 MB; onnx-proto uses the runtime only).
  (cd "$deps.part" && npm uninstall cmake-js node-addon-api --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund \
    --loglevel=error >/dev/null && rm -f package.json package-lock.json)
  rm -rf "$deps.part/node_modules/protobufjs/cli" "$deps.part/node_modules/.package-lock.json"
  rm -rf "$deps" && mv "$deps.part" "$deps"
fi

# 3. One tarball: the root filesystem, then /opt/yqp-trt (files owned by root, read-only for the server's user).
stage=$cache/stage; rm -rf "$stage"; mkdir -p "$stage/opt/yqp-trt/build/Release"
cp -r dist schemas package.json "$stage/opt/yqp-trt/"
[[ -f $addon ]] && cp "$addon" "$stage/opt/yqp-trt/build/Release/"
[[ -f LICENSE ]] && cp LICENSE "$stage/opt/yqp-trt/"
cp -r "$deps/node_modules" "$stage/opt/yqp-trt/"
find "$stage/opt/yqp-trt" \( -name '*.map' -o -name '*.md' -o -name '*.d.ts' \) -type f -delete
chmod -R u=rwX,go=rX "$stage/opt"
tarball=$cache/image.tar
cp "$rootfs" "$tarball"
tar -C "$stage" --owner=0 --group=0 --numeric-owner -rf "$tarball" opt
say "importing $tag"
# The images these tags name now: removed once the new ones hold the tags (a rebuild leaves no untagged copy).
old=$(podman image inspect --format '{{.Id}}' "$tag" "$tag-cuda" 2>/dev/null || true)
entry='["/usr/bin/node","--initial-old-space-size=128","/opt/yqp-trt/dist/cli/main.js","serve"]'
podman import -q \
  --change "ENTRYPOINT $entry" \
  --change 'CMD ["--model-repository","/mnt/models","--host","0.0.0.0","--port","8080"]' \
  --change 'USER 10001:10001' \
  --change 'WORKDIR /home/yqp' \
  --change 'ENV NODE_ENV=production' \
  --change 'EXPOSE 8080' \
  --change 'STOPSIGNAL SIGTERM' \
  --change "LABEL org.opencontainers.image.title=yqp-trt org.opencontainers.image.version=$version org.opencontainers.image.licenses=Apache-2.0" \
  "$tarball" "$tag" >/dev/null
rm -rf "$stage" "$tarball"
size() { podman image inspect --format '{{.Size}}' "$1"; }
say "$tag: $(($(size "$tag") / 1000000)) MB"
echo "$tag"

# 4. The CUDA variant: onnxruntime's GPU core and providers. The CUDA 13 user-space libraries they load (cudart,
# cuBLAS, cuRAND, cuDNN 9) are not Debian packages and not on npm, so they are not in the image: see docs/deploy.md.
if ((cuda)); then
  ortver=0.4.9; gpu=$cache/ort-gpu-$ortver
  if [[ ! -s $gpu/lib/VERSION ]]; then
    say "fetching onnxruntime's GPU libraries (npm pack, data: $gpu)"
    rm -rf "$gpu.part" && mkdir -p "$gpu.part/core" "$gpu.part/gpu" "$gpu.part/lib"
    (cd "$gpu.part" && npm pack -s "com.github.asus4.onnxruntime@$ortver" \
      "com.github.asus4.onnxruntime.linux-x64-gpu@$ortver" >/dev/null)
    tar -xzf "$gpu.part/com.github.asus4.onnxruntime-$ortver.tgz" -C "$gpu.part/core"
    tar -xzf "$gpu.part/com.github.asus4.onnxruntime.linux-x64-gpu-$ortver.tgz" -C "$gpu.part/gpu"
    cp "$gpu.part/core/package/Plugins/Linux/x64/libonnxruntime.so" "$gpu.part/core/package/LICENSE" "$gpu.part/lib/"
    cp "$gpu.part"/gpu/package/Plugins/Linux/x64/libonnxruntime_providers_{shared,cuda,tensorrt}.so "$gpu.part/lib/"
    echo 1.29.0 >"$gpu.part/lib/VERSION"  # the ONNX Runtime these packages hold, read by the GPU backend
    (cd "$gpu.part/lib" && sha256sum -- * >SHA256SUMS)
    rm -rf "$gpu.part/core" "$gpu.part/gpu" "$gpu.part"/*.tgz "$gpu" && mv "$gpu.part" "$gpu"
  fi
  cat >"$cache/Containerfile.cuda" <<CF
FROM $tag
COPY --chown=0:0 --chmod=0755 lib/ /opt/yqp-trt/ort-gpu/
ENV YQP_ORT_GPU_DIR=/opt/yqp-trt/ort-gpu \\
    LD_LIBRARY_PATH=/opt/yqp-trt/ort-gpu:/usr/local/cuda/lib64:/usr/local/nvidia/lib64 \\
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
LABEL org.opencontainers.image.version=$version-cuda
CF
  say "building $tag-cuda"
  podman build -q --pull=never --layers=false -f "$cache/Containerfile.cuda" -t "$tag-cuda" "$gpu" >/dev/null
  say "$tag-cuda: $(($(size "$tag-cuda") / 1000000)) MB"
  echo "$tag-cuda"
fi
for id in $(printf "%s\n" $old | tac); do podman rmi "$id" >/dev/null 2>&1 || true; done  # fails, harmlessly, for an image still tagged
