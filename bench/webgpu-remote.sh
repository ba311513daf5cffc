#!/usr/bin/env bash
# bench/webgpu.ts on a GPU machine that has neither Node nor network (how the issue-6 WebGPU figures were taken).
#   bench/webgpu-remote.sh pack DIR model.onnx[=N,C,H,W] …   here: DIR gets the bundled script, Node, onnxruntime-node
#                                                            (linux-x64 only) and the models, xz-compressed (~60 MB)
#   bench/webgpu-remote.sh run DIR [OUT] [--reps 3 …]        there: unpack and run; tables on stdout, JSON in OUT
# The GPU machine needs the Vulkan loader: where `ldconfig -p | grep libvulkan` prints nothing, unpack libvulkan1's
# .deb (`apt-get download libvulkan1` here) with `dpkg -x` into / and run ldconfig first. If Dawn then finds no
# driver, point VK_DRIVER_FILES at the NVIDIA ICD file (run does so when /usr/local/nvidia/... holds one).
set -euo pipefail
cmd="${1:?pack or run}"; dir="${2:?folder}"; shift 2
case "$cmd" in
pack)
  root="$(cd "$(dirname "$0")/.." && pwd)"
  mkdir -p "$dir/m"
  npx esbuild "$root/bench/webgpu.ts" --bundle --platform=node --format=esm --target=node20 --external:onnxruntime-node \
    --banner:js="import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);" --outfile="$dir/webgpu.mjs" --log-level=warning
  xz -T0 -6 -c "$(command -v node)" > "$dir/node.xz"
  tar -C "$root/node_modules" -cJf "$dir/ort.tar.xz" onnxruntime-node/package.json onnxruntime-node/dist onnxruntime-node/lib \
    onnxruntime-node/bin/napi-v6/linux/x64 onnxruntime-common
  args=()
  for a in "$@"; do f="${a%%=*}"; cp "$f" "$dir/m/"; args+=("m/$(basename "$a")"); done
  tar -C "$dir" -cJf "$dir/models.tar.xz" m && rm -r "$dir/m"
  printf '%s\n' "${args[@]}" > "$dir/models.txt"
  du -sh "$dir"
  ;;
run)
  out="${1:-$dir/out}"; shift || true
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
  cd "$dir"
  mkdir -p node_modules "$out"
  xz -dc node.xz > node && chmod +x node
  tar -xJf ort.tar.xz -C node_modules && tar -xJf models.tar.xz
  mapfile -t models < models.txt
  ./node webgpu.mjs --out "$out" "$@" "${models[@]}"
  ;;
*) echo "usage: $0 pack|run DIR …" >&2; exit 2 ;;
esac
