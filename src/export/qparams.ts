/**
 * The per-tensor quantization parameters every export starts from: the `.qparams.json` sidecar written by
 * `onnxquant quantize` (src/realise/sidecar.ts), read back, or rebuilt from a QDQ model's QuantizeLinear /
 * DequantizeLinear nodes when only the model is at hand.
 */
import { TensorProto_DataType as DT, type ModelProto } from 'onnx-buf';
import { readUserFile, UserError } from '../errors.ts';
import { attrInt, GraphView } from '../ir/graph.ts';
import { loadModel } from '../onnx/model-io.ts';
import { float8MaxFinite } from '../onnx/float-formats.ts';
import { tensorDims, tensorToFloat32 } from '../onnx/tensor-codec.ts';
import { SIDECAR_SCHEMA, type Sidecar, type SidecarTensor } from '../realise/sidecar.ts';

export function parseQParamsJson(text: string, source = 'qparams'): Sidecar {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`not JSON (${(e as Error).message})`, source);
  }
  const s = json as Sidecar;
  if (s?.schema !== SIDECAR_SCHEMA || !Array.isArray(s.tensors)) throw new UserError(`not an onnxquant sidecar (schema '${SIDECAR_SCHEMA}' expected)`, source);
  for (const t of s.tensors)
    if (typeof t.tensor !== 'string' || !Array.isArray(t.scale) || !Array.isArray(t.min) || !Array.isArray(t.max))
      throw new UserError(`tensor entry without tensor/scale/min/max`, source);
  return s;
}

/** The sidecar's own text form, as `onnxquant quantize` writes it. */
export function writeQParamsJson(s: Sidecar): string {
  return JSON.stringify(s, null, 1);
}

const RANGES: Record<number, [number, number]> = {
  [DT.INT8]: [-128, 127],
  [DT.UINT8]: [0, 255],
  [DT.INT16]: [-32768, 32767],
  [DT.UINT16]: [0, 65535],
  [DT.INT4]: [-8, 7],
  [DT.UINT4]: [0, 15],
};

/** Bit width of a stored integer type (Q/DQ zero points and quantized weights). */
function bitsOf(dt: number): number {
  return dt === DT.INT16 || dt === DT.UINT16 ? 16 : dt === DT.INT4 || dt === DT.UINT4 ? 4 : 8;
}

/** The number format a Q/DQ stores in: integers by their range, FP8 by its largest finite value (the FP8 rules'
 * qmin/qmax). undefined for anything else (int32 biases). */
function storedFormat(dt: number): Pick<SidecarTensor, 'format' | 'bits' | 'qmin' | 'qmax'> | undefined {
  const range = RANGES[dt];
  if (range) return { format: 'int', bits: bitsOf(dt), qmin: range[0], qmax: range[1] };
  const fp8 = dt === DT.FLOAT8E4M3FN ? ({ format: 'fp8e4m3', kind: 'e4m3fn' } as const) : dt === DT.FLOAT8E5M2 ? ({ format: 'fp8e5m2', kind: 'e5m2' } as const) : undefined;
  if (!fp8) return undefined;
  const max = float8MaxFinite(fp8.kind);
  return { format: fp8.format, bits: 8, qmin: -max, qmax: max };
}

/**
 * Rebuild the sidecar from a QDQ model: each QuantizeLinear is an activation (range = the representable range
 * (qmin − z)·s … (qmax − z)·s), each DequantizeLinear over an integer or FP8 initializer is a weight (range = the
 * dequantized values per channel). int32 DequantizeLinears (biases) are left out. Weight names lose the
 * `_quantized` suffix realiseQdq gives them.
 */
export function sidecarFromModel(model: ModelProto): Sidecar {
  const view = new GraphView(model.graph!);
  const tensors: SidecarTensor[] = [];
  const usesOf = (dqOut: string) =>
    view.uses(dqOut).flatMap((c) => c.input.map((x, i) => (x === dqOut ? { node: c.name, op: c.opType, input: i } : undefined)).filter((u) => u !== undefined));
  const num = (name: string | undefined) => (name && view.initializers.has(name) ? Array.from(tensorToFloat32(view.initializers.get(name)!)) : undefined);
  for (const n of view.graph.node) {
    if (n.opType === 'QuantizeLinear') {
      const scale = num(n.input[1]);
      if (!scale) continue;
      const zpT = n.input[2] ? view.initializers.get(n.input[2]) : undefined;
      const dt = zpT?.dataType ?? DT.UINT8;
      const stored = storedFormat(dt);
      if (!stored) continue;
      const zp = num(n.input[2]) ?? [0];
      const { qmin, qmax } = stored;
      const dqs = view.uses(n.output[0]).filter((c) => c.opType === 'DequantizeLinear');
      tensors.push({
        tensor: n.input[0],
        role: 'activation',
        ...stored,
        symmetric: zp.every((z) => z === 0) && qmin < 0,
        pow2: scale.every((s) => Number.isInteger(Math.log2(s))),
        observer: 'unknown',
        scale,
        zeroPoint: zp,
        min: scale.map((s, i) => Math.fround((qmin - zp[i]) * s)),
        max: scale.map((s, i) => Math.fround((qmax - zp[i]) * s)),
        uses: dqs.flatMap((d) => usesOf(d.output[0])),
      });
    } else if (n.opType === 'DequantizeLinear' && view.isConstant(n.input[0])) {
      const q = view.initializers.get(n.input[0])!;
      const stored = storedFormat(q.dataType);
      if (!stored) continue; // int32 biases
      const scale = num(n.input[1])!;
      const zp = num(n.input[2]) ?? scale.map(() => 0);
      const dims = tensorDims(q);
      const values = tensorToFloat32(q);
      const perAxis = scale.length > 1 || (view.initializers.get(n.input[1])!.dims.length === 1 && dims.length > 1);
      const axis = perAxis ? (attrInt(n, 'axis', 1) + dims.length) % dims.length : undefined;
      const C = axis === undefined ? 1 : dims[axis];
      const inner = axis === undefined ? values.length : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
      const min = new Array<number>(C).fill(Infinity);
      const max = new Array<number>(C).fill(-Infinity);
      for (let i = 0; i < values.length; i++) {
        const c = C === 1 ? 0 : Math.floor(i / inner) % C;
        const v = Math.fround((values[i] - zp[c]) * scale[c]);
        if (v < min[c]) min[c] = v;
        if (v > max[c]) max[c] = v;
      }
      tensors.push({
        tensor: n.input[0].replace(/_quantized(_\d+)?$/, ''),
        role: 'weight',
        ...stored,
        symmetric: zp.every((z) => z === 0),
        pow2: scale.every((s) => Number.isInteger(Math.log2(s))),
        observer: 'unknown',
        ...(axis !== undefined ? { axis } : {}),
        scale,
        zeroPoint: zp,
        min,
        max,
        uses: usesOf(n.output[0]),
      });
    }
  }
  return { schema: SIDECAR_SCHEMA, rule: 'unknown (rebuilt from the QDQ model)', calibrationBatches: 0, opset: { from: 0, to: 0 }, formatPasses: [], tensors, skipped: [] };
}

/** A sidecar JSON file, or a QDQ .onnx model (parameters rebuilt from its Q/DQ nodes). */
export function readQParams(path: string): Sidecar {
  if (path.endsWith('.json')) return parseQParamsJson(readUserFile(path).toString('utf8'), path);
  return sidecarFromModel(loadModel(path));
}

export function absmax(t: SidecarTensor, c = 0): number {
  return Math.max(Math.abs(t.min[c]), Math.abs(t.max[c]));
}
