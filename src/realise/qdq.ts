/**
 * Plan + parameters → QDQ model. Activations get QuantizeLinear → DequantizeLinear on the edge into each planned
 * consumer; weights are stored quantized (int8 or float8 codes, computed by the TypeScript reference so the stored
 * integers are exactly what QuantizeLinear would give) followed by DequantizeLinear (per-channel `axis` where
 * planned). Uses that the plan does not list keep reading the float tensor. The model must already be at the
 * rule's opset (see `prepareModel`).
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, type ModelProto } from 'onnx-buf';
import { e4m3fnCode, float32ToFloat8, float8ToFloat32 } from '../onnx/float-formats.ts';
import { makeTensor, tensorDims, tensorToFloat32 } from '../onnx/tensor-codec.ts';
import { GraphView, makeNode, topologicalSort } from '../ir/graph.ts';
import type { QuantParams, TensorQuantConfig } from '../quant/config.ts';
import { dequantizeInt, forEachChannelRun, fp8Kind, quantizeInt } from '../quant/numerics.ts';
import type { PlannedTensor, QuantPlan } from '../quant/plan.ts';

export interface RealiseOptions {
  /** Only these plan keys (default: all). Used for weight-only calibration models and isolated-error analysis. */
  keys?: ReadonlySet<string>;
  /**
   * Store quantized weights as their exact fake-quantized float32 values instead of integers + DequantizeLinear.
   * Numerically identical (the values are what DequantizeLinear outputs, bit for bit — see test/qdq-exact), and
   * cheaper to run with graph optimizations disabled; used for calibration-statistics models, never for the
   * artefact a user deploys.
   */
  foldWeights?: boolean;
}

/** The ONNX type of the quantized integers / codes for a config. */
export function quantizedDataType(cfg: TensorQuantConfig): number {
  if (cfg.format === 'fp8e4m3') return DT.FLOAT8E4M3FN;
  if (cfg.format === 'fp8e5m2') return DT.FLOAT8E5M2;
  const signed = cfg.qmin < 0;
  if (cfg.bits <= 4) return signed ? DT.INT4 : DT.UINT4;
  if (cfg.bits <= 8) return signed ? DT.INT8 : DT.UINT8;
  return signed ? DT.INT16 : DT.UINT16;
}

function paramTensors(view: GraphView, base: string, cfg: TensorQuantConfig, p: QuantParams): { scale: string; zp: string } {
  const perAxis = p.axis !== undefined;
  const dims = perAxis ? [p.scale.length] : [];
  const scale = view.freshName(`${base}_scale`);
  view.addInitializer(makeTensor(scale, DT.FLOAT, dims, p.scale));
  const zp = view.freshName(`${base}_zero_point`);
  // Float8 zero points are float8 zeros (code 0); integer ones carry the integer zero points.
  view.addInitializer(makeTensor(zp, quantizedDataType(cfg), dims, cfg.format === 'int' ? p.zeroPoint : new Uint8Array(p.scale.length)));
  return { scale, zp };
}

/** The typed array an integer config's codes are stored in (4-bit codes as bytes; makeTensor packs them). */
function intStorage(n: number, cfg: TensorQuantConfig): Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array {
  const signed = cfg.qmin < 0;
  if (cfg.bits <= 8) return signed ? new Int8Array(n) : new Uint8Array(n);
  if (cfg.bits <= 16) return signed ? new Int16Array(n) : new Uint16Array(n);
  return new Int32Array(n);
}

/**
 * Quantize weight values with the reference numerics, per channel when planned: integer values in the storage type
 * of quantizedDataType(cfg) (so makeTensor copies them without a per-element conversion), or float8 codes.
 */
export function quantizeWeightValues(values: Float32Array, dims: readonly number[], cfg: TensorQuantConfig, p: QuantParams): Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array {
  if (cfg.format !== 'int') {
    const kind = fp8Kind(cfg.format);
    const encode = kind === 'e4m3fn' ? e4m3fnCode : (x: number) => float32ToFloat8(x, kind, true, 'even');
    const out = new Uint8Array(values.length);
    forEachChannelRun(dims, p.axis, (start, end, c) => {
      const s = p.scale[c];
      for (let i = start; i < end; i++) out[i] = encode(Math.fround(values[i] / s));
    });
    return out;
  }
  const out = intStorage(values.length, cfg);
  const { qmin, qmax } = cfg;
  forEachChannelRun(dims, p.axis, (start, end, c) => {
    const s = p.scale[c];
    const z = p.zeroPoint[c];
    for (let i = start; i < end; i++) out[i] = quantizeInt(values[i], s, z, qmin, qmax);
  });
  return out;
}

export function realiseQdq(model: ModelProto, plan: QuantPlan, params: ReadonlyMap<string, QuantParams>, opts: RealiseOptions = {}): ModelProto {
  const out = clone(ModelProtoSchema, model);
  const view = new GraphView(out.graph!);
  const nodesByName = new Map(view.graph.node.map((n) => [n.name, n]));
  for (const t of plan.tensors) {
    if (opts.keys && !opts.keys.has(t.key)) continue;
    const p = params.get(t.key);
    if (!p) throw new Error(`no quantization parameters for ${t.key}`);
    const dq = t.role === 'weight' ? insertWeight(view, t, p, opts.foldWeights ?? false) : insertActivation(view, t, p);
    for (const use of t.uses) {
      const n = nodesByName.get(use.node);
      if (!n) throw new Error(`plan names node '${use.node}', which is not in the model`);
      if (n.input[use.input] !== t.tensor) throw new Error(`node '${use.node}' input ${use.input} is '${n.input[use.input]}', plan expects '${t.tensor}'`);
      view.setInput(n, use.input, dq);
    }
  }
  view.pruneInitializers();
  topologicalSort(view.graph);
  return out;
}

/**
 * Is a per-channel weight quantized along an axis that is not its consumers' output-channel axis? PPQ's MatMul/Gemm
 * axis 0 ('ppq' rule setting) is the reduction axis K of a [K,N] weight. No integer kernel can apply a per-K scale
 * after the int32 accumulation, and onnxruntime's deploy fusion (MatMulIntegerToFloat / QGemm) reads the
 * per-channel scale and zero point as per-N: it fails at run time ("b zero point is not valid") when K ≠ N, and
 * silently computes with the wrong scales when K = N.
 */
function perChannelOnReductionAxis(view: GraphView, t: PlannedTensor, rank: number): boolean {
  if (t.axis === undefined) return false;
  return t.uses.some((u) => {
    if (u.op === 'MatMul') return t.axis !== rank - 1;
    if (u.op === 'Gemm') {
      const n = view.graph.node.find((x) => x.name === u.node);
      const transB = Number(n?.attribute.find((a) => a.name === 'transB')?.i ?? 0);
      return t.axis !== (transB ? 0 : 1);
    }
    return false;
  });
}

function insertWeight(view: GraphView, t: PlannedTensor, p: QuantParams, fold: boolean): string {
  const w = view.initializers.get(t.tensor)!;
  const dims = tensorDims(w);
  const q = quantizeWeightValues(tensorToFloat32(w), dims, t.config, p);
  if (fold || perChannelOnReductionAxis(view, t, dims.length)) {
    // Store the dequantized values (float32((q − z)·s), exactly what the DequantizeLinear would output) as a float
    // constant: the simulated numerics are unchanged, and onnxruntime cannot fuse the layer into an integer kernel
    // that misreads the axis. The weight is then not stored as int8 (the model is larger).
    const deq = new Float32Array(q.length);
    const int = t.config.format === 'int';
    const kind = int ? undefined : fp8Kind(t.config.format);
    const fp8Values = kind && Float32Array.from({ length: 256 }, (_, code) => float8ToFloat32(code, kind));
    forEachChannelRun(dims, p.axis, (start, end, c) => {
      const s = p.scale[c];
      const z = p.zeroPoint[c];
      if (!fp8Values) for (let i = start; i < end; i++) deq[i] = dequantizeInt(q[i], s, z);
      else for (let i = start; i < end; i++) deq[i] = Math.fround(fp8Values[q[i]] * s);
    });
    const name = view.freshName(`${t.tensor}_fakequant`);
    view.addInitializer(makeTensor(name, DT.FLOAT, dims, deq));
    return name;
  }
  const qName = view.freshName(`${t.tensor}_quantized`);
  view.addInitializer(makeTensor(qName, quantizedDataType(t.config), dims, q));
  const { scale, zp } = paramTensors(view, t.tensor, t.config, p);
  const out = view.freshName(`${t.tensor}_dequantized`);
  view.addNode(makeNode('DequantizeLinear', [qName, scale, zp], [out], `${out}_DequantizeLinear`, p.axis !== undefined ? { axis: p.axis } : {}));
  return out;
}

function insertActivation(view: GraphView, t: PlannedTensor, p: QuantParams): string {
  const { scale, zp } = paramTensors(view, t.tensor, t.config, p);
  const q = view.freshName(`${t.tensor}_quantized`);
  const out = view.freshName(`${t.tensor}_dequantized`);
  view.addNode(makeNode('QuantizeLinear', [t.tensor, scale, zp], [q], `${q}_QuantizeLinear`));
  view.addNode(makeNode('DequantizeLinear', [q, scale, zp], [out], `${out}_DequantizeLinear`));
  return out;
}
