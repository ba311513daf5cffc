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
    args = ap.parse_args()

    import importlib.util
    missing = [m for m in ("onnxruntime", "onnx", "numpy") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"CANNOT RUN HERE: Python package(s) {', '.join(missing)} not installed for {sys.executable}.\n"
              "onnxruntime's side of the comparison needs `pip install onnxruntime onnx numpy` (no PyPI access here: "
              "see scripts/peer/README.md for running it on another machine).", file=sys.stderr)
        return 2
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
    results = []
    for meta_path in sorted(glob.glob(os.path.join(args.data, "*", "meta.json"))):
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
        for name in args.methods.split(","):
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
            except Exception as e:  # report and go on with the next model/method
                row["seconds"] = time.perf_counter() - t
                row["ok"] = False
                row["error"] = f"{type(e).__name__}: {e}"[:400]
                traceback.print_exc()
            print(json.dumps(row))
            results.append(row)
    with open(os.path.join(args.data, "ort-results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {os.path.join(args.data, 'ort-results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
