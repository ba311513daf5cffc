#!/usr/bin/env python3
"""onnxruntime's own static quantizer on the tensors exported by scripts/peer/export.ts.

    python3 scripts/peer/ort_quantize.py [--data /tmp/onnxquant-peer] [--methods MinMax,Percentile]
                                         [--percentile 99.99] [--no-opset-upgrade] [--preprocess]

For every <data>/<id>/meta.json: quantize_static(QDQ, per_channel=True, QInt8 activations and weights,
symmetric activations) once per calibration method, reading calib/batch_*.npy in file order, and timing the
quantize_static call (calibration included). Writes <data>/<id>/ort-<Method>.onnx and <data>/ort-results.json;
scripts/peer/compare.ts then evaluates these models with the same onnxruntime-node session and metric code as
onnxquant's own output, so accuracy differences come from quantization only.

Per-channel QDQ needs opset >= 13 (DequantizeLinear's axis): models below it are converted with
onnx.version_converter first (reported as opset_upgraded; --no-opset-upgrade keeps the original opset, which
for en_number_mobile_v2.0_rec gives an invalid model).

Each (model, method) runs in its own child process so that its peak RSS can be read (os.wait4) and so that one
run killed by the kernel's OOM killer (seen: Percentile on en_number_rec at 24 GiB) is recorded as such and the
others still run.
"""
import argparse
import glob
import json
import os
import sys
import time
import traceback


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/tmp/onnxquant-peer")
    ap.add_argument("--methods", default="MinMax,Percentile")
    ap.add_argument("--percentile", type=float, default=99.99,
                    help="CalibPercentile (onnxquant's rule uses 0.9999, i.e. 99.99)")
    ap.add_argument("--no-opset-upgrade", action="store_true")
    ap.add_argument("--preprocess", action="store_true",
                    help="run onnxruntime.quantization.shape_inference.quant_pre_process first")
    ap.add_argument("--one", nargs=2, metavar=("META_JSON", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    import importlib.util
    missing = [m for m in ("onnxruntime", "onnx", "numpy") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"CANNOT RUN HERE: Python package(s) {', '.join(missing)} not installed for {sys.executable}.\n"
              "onnxruntime's side of the comparison needs `pip install onnxruntime onnx numpy` "
              "(see scripts/peer/README.md).", file=sys.stderr)
        return 2
    if not args.one:
        return run_all(args)

    import numpy as np
    import onnx
    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class NpyReader(CalibrationDataReader):
        """Feeds calib/batch_*.npy in order, each as the model input; rewind() restarts."""

        def __init__(self, files, input_name):
            self.files = files
            self.input_name = input_name
            self.i = 0

        def get_next(self):
            if self.i >= len(self.files):
                return None
            x = np.load(self.files[self.i]).astype(np.float32, copy=False)
            self.i += 1
            return {self.input_name: x}

        def rewind(self):
            self.i = 0

    methods = {"MinMax": CalibrationMethod.MinMax, "Percentile": CalibrationMethod.Percentile,
               "Entropy": CalibrationMethod.Entropy, "Distribution": CalibrationMethod.Distribution}
    meta_path, name = args.one
    with open(meta_path) as f:
        meta = json.load(f)
    d = os.path.dirname(meta_path)
    files = sorted(glob.glob(os.path.join(d, "calib", "batch_*.npy")))
    src = meta["model"]
    note = []
    model = onnx.load(src)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13 and not args.no_opset_upgrade:
        from onnx import version_converter
        model = version_converter.convert_version(model, 13)
        src = os.path.join(d, "float-opset13.onnx")
        onnx.save(model, src)
        note.append(f"opset {opset}->13")
    if args.preprocess:
        from onnxruntime.quantization.shape_inference import quant_pre_process
        pre = os.path.join(d, "float-pre.onnx")
        quant_pre_process(src, pre)
        src = pre
        note.append("quant_pre_process")
    out = os.path.join(d, f"ort-{name}.onnx")
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True}
    if name == "Percentile":
        extra["CalibPercentile"] = args.percentile
    row = {"id": meta["id"], "method": name, "model": out, "batches": len(files), "note": ", ".join(note),
           "onnxruntime": onnxruntime.__version__}
    t = time.perf_counter()
    try:
        quantize_static(src, out, NpyReader(files, meta["input"]),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[name], extra_options=extra)
        row["seconds"] = time.perf_counter() - t
        row["ok"] = True
    except Exception as e:  # report; the parent goes on with the next model/method
        row["seconds"] = time.perf_counter() - t
        row["ok"] = False
        row["error"] = f"{type(e).__name__}: {e}"[:400]
        traceback.print_exc()
    print("RESULT " + json.dumps(row), flush=True)
    return 0


def run_all(args) -> int:
    """Runs every (model, method) in a child process; records its wall time, peak RSS and how it ended."""
    import subprocess
    passthrough = ["--percentile", str(args.percentile)] + (["--no-opset-upgrade"] if args.no_opset_upgrade else []) \
        + (["--preprocess"] if args.preprocess else [])
    results = []
    for meta_path in sorted(glob.glob(os.path.join(args.data, "*", "meta.json"))):
        with open(meta_path) as f:
            meta = json.load(f)
        for name in args.methods.split(","):
            t = time.perf_counter()
            child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--one", meta_path, name] + passthrough,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            out = child.stdout.read()
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            row = next((json.loads(l[7:]) for l in out.splitlines() if l.startswith("RESULT ")), None)
            if row is None:
                how = f"killed by signal {-child.returncode}" if child.returncode < 0 else f"exit {child.returncode}"
                if child.returncode == -9:
                    how += " (the kernel's OOM killer, at the machine's memory limit)"
                row = {"id": meta["id"], "method": name, "model": "", "ok": False, "seconds": time.perf_counter() - t,
                       "error": how}
            row["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
            print(json.dumps(row), flush=True)
            results.append(row)
    with open(os.path.join(args.data, "ort-results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {os.path.join(args.data, 'ort-results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
