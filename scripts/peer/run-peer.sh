#!/usr/bin/env bash
# Side-by-side peer: onnxquant vs onnxruntime's quantize_static on identical tensors.
#   scripts/peer/run-peer.sh [DATA_DIR] [--models a,b]   (DATA_DIR default /tmp/onnxquant-peer)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA="${1:-/tmp/onnxquant-peer}"; shift || true
NODE="${NODE:-node}"
"$NODE" --import tsx scripts/peer/export.ts --out "$DATA" "$@"
PY="${PYTHON:-python3}"
if "$PY" -c 'import onnxruntime, onnx, numpy' 2>/dev/null; then
  "$PY" scripts/peer/ort_quantize.py --data "$DATA"
else
  echo "!! Python onnxruntime/onnx/numpy not importable with $PY: onnxruntime's side CANNOT run on this machine." >&2
  echo "!! See scripts/peer/README.md; showing onnxquant's side only." >&2
fi
"$NODE" --import tsx scripts/peer/compare.ts --data "$DATA"
