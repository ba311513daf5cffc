/**
 * The planner for deployment targets (targets.ts): a QuantPlan like planModel's, but with the placement a runtime
 * needs for its integer kernels to fire —
 * - inputs (and, where `quantizeOutputs`, outputs) of Conv/ConvTranspose/Gemm/MatMul and of the target's extra ops
 *   (Add, Mul, Concat, pooling, Sigmoid …) carry Q/DQ; an output followed by Relu/Clip is quantized after the
 *   activation (onnxruntime's ReluQuantFusion/ClipQuantFusion then drop the activation);
 * - every consumer of a quantized tensor reads the DequantizeLinear (a producer whose output also feeds a float
 *   reader is not fused by onnxruntime), except consumers the filter leaves float;
 * - pass-through ops (MaxPool, Reshape, Transpose, Resize …) are quantized only when their input is, and share its
 *   scale; Concat inputs and output share one scale. Shared scales are `groups` of plan keys; `alignParams` merges
 *   the calibrated ranges of each group (min of mins, max of maxes) and recomputes one scale and zero point;
 * - Conv/Gemm biases can be stored int32 with scale s_x·s_w (`biases`, applied by `realiseTarget`).
 * Tensors are planned only when they are float32 (a small dtype propagation keeps int64 shape arithmetic —
 * Shape → Gather → Add — out of the plan).
 */
import { TensorProto_DataType as DT, type ModelProto, type NodeProto } from 'onnx-buf';
import { calibrate, type CalibrateOptions, type CalibrationData } from '../calibrate/calibrate.ts';
import { attr, attrInt, GraphView, makeNode, nodeLabel, nodeSubgraphs } from '../ir/graph.ts';
import { makeTensor, tensorDims, tensorToFloat32 } from '../onnx/tensor-codec.ts';
import { realiseQdq } from '../realise/qdq.ts';
import { buildSidecar, type Sidecar } from '../realise/sidecar.ts';
import { prepareModel } from '../quantize.ts';
import type { QuantParams } from './config.ts';
import { quantizeInt, scaleFromRange } from './numerics.ts';
import { matchName, type Filter, type PlannedTensor, type PlanUse, type QuantPlan } from './plan.ts';
import type { DeployTarget, ExtraOp } from './targets.ts';

export interface PlannedBias {
  node: string;
  /** Input slot of the bias (2 for Conv and Gemm). */
  input: number;
  tensor: string;
  /** Plan keys of the layer's activation input and weight. */
  activationKey: string;
  weightKey: string;
}

export interface TargetPlan extends QuantPlan {
  target: string;
  /** Plan keys that share one scale and zero point (each group has ≥ 2 keys). */
  groups: string[][];
  biases: PlannedBias[];
}

// ---- dtype propagation ------------------------------------------------------------------------------------------

const INT64_OUT = new Set(['Shape', 'Size', 'NonZero', 'ArgMax', 'ArgMin', 'NonMaxSuppression']);
const BOOL_OUT = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'Not', 'And', 'Or', 'Xor', 'IsNaN', 'IsInf']);

/** Element types of the graph's values, as far as value_info, initializers and simple rules tell. */
export function inferElemTypes(model: ModelProto): Map<string, number> {
  const g = model.graph!;
  const types = new Map<string, number>();
  for (const v of [...g.input, ...g.valueInfo, ...g.output])
    if (v.type?.value.case === 'tensorType' && v.type.value.value.elemType) types.set(v.name, v.type.value.value.elemType);
  for (const t of g.initializer) types.set(t.name, t.dataType);
  const known = (n: string | undefined) => (n ? types.get(n) : undefined);
  for (const n of g.node) {
    n.output.forEach((o, k) => {
      if (!o || types.has(o)) return;
      let t: number | undefined;
      if (INT64_OUT.has(n.opType) || (n.opType === 'TopK' && k === 1) || (n.opType === 'MaxPool' && k === 1)) t = DT.INT64;
      else if (BOOL_OUT.has(n.opType)) t = DT.BOOL;
      else if (n.opType === 'Cast') t = attrInt(n, 'to', 0) || undefined;
      else if (n.opType === 'CastLike') t = known(n.input[1]);
      else if (n.opType === 'Constant') t = attr(n, 'value')?.t?.dataType ?? (attr(n, 'value_float') || attr(n, 'value_floats') ? DT.FLOAT : DT.INT64);
      else if (n.opType === 'ConstantOfShape') t = attr(n, 'value')?.t?.dataType ?? DT.FLOAT;
      else if (n.opType === 'DequantizeLinear') t = DT.FLOAT;
      else if (n.opType === 'QuantizeLinear') t = known(n.input[2]) ?? DT.UINT8;
      else if (n.opType === 'Where') t = known(n.input[1]) ?? known(n.input[2]);
      else t = n.input.map(known).find((x) => x !== undefined);
      if (t !== undefined) types.set(o, t);
    });
  }
  return types;
}

// ---- the planner --------------------------------------------------------------------------------------------------

class UnionFind {
  private readonly parent = new Map<string, string>();
  find(x: string): string {
    let p = this.parent.get(x) ?? x;
    if (p !== x) {
      p = this.find(p);
      this.parent.set(x, p);
    }
    return p;
  }
  union(a: string, b: string): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.parent.set(rb, ra);
  }
}

function weightAxis(n: NodeProto, rule: DeployTarget, rank: number): number {
  if (n.opType === 'ConvTranspose') return 1;
  if (n.opType === 'Conv') return 0;
  if (n.opType === 'Gemm') return rule.matmulWeightAxis === 'ppq' ? 0 : attrInt(n, 'transB', 0) ? 0 : 1;
  return rule.matmulWeightAxis === 'ppq' ? 0 : rank - 1;
}

const ALREADY_QUANTIZED = /^(QuantizeLinear|DequantizeLinear|QLinear\w+|ConvInteger|MatMulInteger\w*|QGemm|DynamicQuantize\w+)$/;

export function planTarget(model: ModelProto, target: DeployTarget, filter: Filter = {}): TargetPlan {
  const view = new GraphView(model.graph!);
  const types = inferElemTypes(model);
  const skipped: QuantPlan['skipped'] = [];
  const layers: QuantPlan['layers'] = [];
  const weights = new Map<string, PlannedTensor>();
  const marked = new Set<string>();
  const uf = new UnionFind();
  const biases: PlannedBias[] = [];
  const fused = new Set<NodeProto>();
  const baseOps = new Set<string>(target.ops);
  const extra = new Map<string, ExtraOp>(target.extraOps.map((e) => [e.op, e]));
  const excludedNodes = new Set<NodeProto>();
  const excluded = (name: string, op: string) =>
    (filter.excludeOps ?? []).includes(op) ||
    (filter.excludeNodes ?? []).some((p) => matchName(name, p)) ||
    (filter.includeNodes !== undefined && !filter.includeNodes.some((p) => matchName(name, p)));
  const isAct = (t: string | undefined): t is string => !!t && !view.isConstant(t) && types.get(t) === DT.FLOAT;

  view.graph.node.forEach((n, i) => {
    if (!n.name) n.name = nodeLabel(n, i);
    if (excluded(n.name, n.opType)) excludedNodes.add(n);
  });

  /** The tensor that carries a layer's quantized output: after a chain of fusable activations. */
  const fusedOutput = (o: string): string => {
    if (view.graphOutputs.has(o)) return o;
    const cons = view.uses(o);
    if (cons.length !== 1) return o;
    const c = cons[0];
    if (!target.fusedActivations.includes(c.opType) || c.input[0] !== o || excludedNodes.has(c) || !isAct(c.output[0])) return o;
    if (c.opType === 'Clip' && c.input.slice(1).some((x) => x && !view.isConstant(x))) return o;
    fused.add(c);
    return fusedOutput(c.output[0]);
  };
  const addWeight = (n: NodeProto, w: string, input: number): string => {
    const rank = view.initializers.get(w)!.dims.length;
    const axis = target.weight.perChannel && rank > 1 ? weightAxis(n, target, rank) : undefined;
    const key = `weight:${w}${axis !== undefined ? `@${axis}` : ''}`;
    const use: PlanUse = { node: n.name, op: n.opType, input };
    const t = weights.get(key);
    if (t) t.uses.push(use);
    else weights.set(key, { key, tensor: w, role: 'weight', config: target.weight, axis, uses: [use] });
    return key;
  };

  // Pass 1: the rule's layers and the target's compute/concat ops.
  const passthrough: NodeProto[] = [];
  const concats: NodeProto[] = [];
  for (const n of view.graph.node) {
    const name = n.name;
    for (const sg of nodeSubgraphs(n))
      for (const inner of sg.node) if (baseOps.has(inner.opType)) skipped.push({ node: `${name}/${nodeLabel(inner)}`, reason: `inside a ${n.opType} body` });
    if (n.domain && n.domain !== 'ai.onnx') continue;
    if (ALREADY_QUANTIZED.test(n.opType)) {
      skipped.push({ node: name, reason: `already quantized (${n.opType}); left as is` });
      continue;
    }
    const isBase = baseOps.has(n.opType);
    const ex = extra.get(n.opType);
    if (!isBase && !ex) continue;
    if (excludedNodes.has(n)) {
      skipped.push({ node: name, reason: 'excluded by filter' });
      continue;
    }
    if (isBase) {
      const x = n.input[0];
      const w = n.input[1];
      if (!isAct(x)) {
        skipped.push({ node: name, reason: view.isConstant(x) ? 'input 0 is a constant' : 'input 0 is not float32' });
        continue;
      }
      if (!w) continue;
      const wConst = view.isConstant(w);
      if (!wConst && (n.opType !== 'MatMul' || !isAct(w))) {
        skipped.push({ node: name, reason: 'weight is computed at run time (not a constant after formatting)' });
        continue;
      }
      if (wConst && view.initializers.get(w)!.dataType !== DT.FLOAT) {
        skipped.push({ node: name, reason: 'weight is not float32 (left float)' });
        continue;
      }
      marked.add(x);
      let weightKey: string | undefined;
      if (wConst) weightKey = addWeight(n, w, 1);
      else marked.add(w);
      const out = target.quantizeOutputs && isAct(n.output[0]) ? fusedOutput(n.output[0]) : n.output[0];
      if (target.quantizeOutputs && isAct(out)) marked.add(out);
      layers.push({ node: name, op: n.opType, output: out });
      const b = n.input[2];
      if (target.quantizeBias && weightKey && (n.opType === 'Conv' || n.opType === 'Gemm') && b && view.isConstant(b)) {
        const bt = view.initializers.get(b)!;
        const wDims = view.initializers.get(w)!.dims.map(Number);
        const cout = n.opType === 'Conv' ? wDims[0] : attrInt(n, 'transB', 0) ? wDims[0] : wDims[1];
        if (bt.dataType === DT.FLOAT && bt.dims.length === 1 && Number(bt.dims[0]) === cout)
          biases.push({ node: name, input: 2, tensor: b, activationKey: `activation:${x}`, weightKey });
      }
      continue;
    }
    // Extra ops.
    if (ex!.kind === 'passthrough') {
      passthrough.push(n);
      continue;
    }
    const slots = ex!.inputs === 'all' ? n.input.map((_, k) => k) : (ex!.inputs ?? [0]);
    const data = slots.map((k) => n.input[k]).filter((x) => x);
    if (data.length === 0 || !data.every(isAct)) {
      skipped.push({ node: name, reason: `${n.opType} has a constant or non-float input (left float)` });
      continue;
    }
    for (const x of data) marked.add(x);
    let out = n.output[0];
    if (isAct(out) && (target.quantizeOutputs || ex!.kind === 'concat')) {
      // A Concat's output shares its inputs' scale, so an activation after it cannot be folded in.
      if (ex!.kind !== 'concat') out = fusedOutput(out);
      marked.add(out);
    }
    if (ex!.kind === 'concat') {
      concats.push(n);
      for (const x of data) uf.union(data[0], x);
      if (isAct(out)) uf.union(data[0], out);
    }
    layers.push({ node: name, op: n.opType, output: out });
  }

  // Pass 2: pass-through ops, in graph order, so chains (Concat → MaxPool → Reshape) follow their input's scale.
  for (const n of passthrough) {
    const x = n.input[0];
    const y = n.output[0];
    if (!marked.has(x) || !isAct(y)) continue;
    if (n.opType === 'Resize') {
      const mode = attr(n, 'mode') ? new TextDecoder().decode(attr(n, 'mode')!.s) : 'nearest';
      if (mode === 'cubic') continue; // cubic overshoots the input range: not a pass-through
    }
    marked.add(y);
    uf.union(x, y);
  }

  // Every consumer of a planned activation reads its DequantizeLinear, except nodes the filter leaves float.
  const tensors: PlannedTensor[] = [];
  for (const t of marked) {
    const uses: PlanUse[] = [];
    for (const c of view.uses(t)) {
      if (excludedNodes.has(c) || fused.has(c)) continue;
      c.input.forEach((x, k) => {
        if (x === t) uses.push({ node: c.name, op: c.opType, input: k });
      });
    }
    if (uses.length === 0) continue;
    tensors.push({ key: `activation:${t}`, tensor: t, role: 'activation', config: target.activation, uses });
  }
  // Fused activations read the layer's float output (no Q/DQ in between), so they are not listed as uses above;
  // nothing to do for them here.
  const planned = new Set(tensors.map((t) => t.tensor));
  const byRoot = new Map<string, string[]>();
  for (const t of planned) {
    const r = uf.find(t);
    const list = byRoot.get(r);
    if (list) list.push(`activation:${t}`);
    else byRoot.set(r, [`activation:${t}`]);
  }
  const groups = [...byRoot.values()].filter((g) => g.length > 1);
  return {
    rule: target.name,
    target: target.name,
    tensors: [...tensors, ...weights.values()],
    layers,
    skipped,
    groups,
    biases: biases.filter((b) => planned.has(b.activationKey.slice('activation:'.length))),
  };
}

/** One scale per group: the union of the members' calibrated ranges, scale and zero point recomputed. */
export function alignParams(plan: TargetPlan, params: Map<string, QuantParams>): void {
  const configs = new Map(plan.tensors.map((t) => [t.key, t.config]));
  for (const group of plan.groups) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const k of group) {
      const p = params.get(k);
      if (!p) throw new Error(`no quantization parameters for ${k}`);
      lo = Math.min(lo, p.min[0]);
      hi = Math.max(hi, p.max[0]);
    }
    const cfg = configs.get(group[0])!;
    const { scale, zeroPoint } = scaleFromRange(lo, hi, cfg);
    for (const k of group)
      params.set(k, { scale: Float32Array.of(scale), zeroPoint: Int32Array.of(zeroPoint), min: Float32Array.of(lo), max: Float32Array.of(hi) });
  }
}

/** Bias scales s_x·s_w (float32), per output channel when the weight is per-channel. */
export function biasScale(plan: TargetPlan, b: PlannedBias, params: ReadonlyMap<string, QuantParams>): Float32Array {
  const sx = params.get(b.activationKey)!.scale[0];
  const sw = params.get(b.weightKey)!.scale;
  return Float32Array.from(sw, (s) => Math.fround(sx * s));
}

/** realiseQdq, then int32 biases behind DequantizeLinear (zero point 0, axis 0). */
export function realiseTarget(model: ModelProto, plan: TargetPlan, params: ReadonlyMap<string, QuantParams>): ModelProto {
  const out = realiseQdq(model, plan, params);
  if (plan.biases.length === 0) return out;
  const view = new GraphView(out.graph!);
  const nodes = new Map(view.graph.node.map((n) => [n.name, n]));
  const src = new GraphView(model.graph!);
  for (const b of plan.biases) {
    const n = nodes.get(b.node)!;
    const init = src.initializers.get(b.tensor)!;
    const values = tensorToFloat32(init);
    const dims = tensorDims(init);
    let s = biasScale(plan, b, params);
    if (s.length === 1 && values.length > 1) s = new Float32Array(values.length).fill(s[0]);
    const q = Int32Array.from(values, (v, c) => quantizeInt(v, s[c], 0, -(2 ** 31), 2 ** 31 - 1));
    const qName = view.freshName(`${b.tensor}_quantized`);
    view.addInitializer(makeTensor(qName, DT.INT32, dims, q));
    const sName = view.freshName(`${b.tensor}_scale`);
    view.addInitializer(makeTensor(sName, DT.FLOAT, [s.length], s));
    const zName = view.freshName(`${b.tensor}_zero_point`);
    view.addInitializer(makeTensor(zName, DT.INT32, [s.length], new Int32Array(s.length)));
    const dq = view.freshName(`${b.tensor}_dequantized`);
    const idx = view.graph.node.indexOf(n);
    view.addNode(makeNode('DequantizeLinear', [qName, sName, zName], [dq], `${dq}_DequantizeLinear`, { axis: 0 }), idx);
    view.setInput(n, b.input, dq);
  }
  view.pruneInitializers();
  return out;
}

export interface TargetQuantizeOptions extends CalibrateOptions {
  target: DeployTarget;
  filter?: Filter;
}

export interface TargetQuantizeResult {
  model: ModelProto;
  floatModel: ModelProto;
  plan: TargetPlan;
  params: Map<string, QuantParams>;
  sidecar: Sidecar;
  batches: number;
}

/** quantize() for a deployment target: prepare → planTarget → calibrate → alignParams → realiseTarget. */
export async function quantizeForTarget(model: ModelProto, data: CalibrationData, opts: TargetQuantizeOptions): Promise<TargetQuantizeResult> {
  const prepared = prepareModel(model, opts.target);
  const plan = planTarget(prepared.model, opts.target, opts.filter);
  const { params, batches } = await calibrate(prepared.model, plan, data, opts);
  alignParams(plan, params);
  const qdq = realiseTarget(prepared.model, plan, params);
  return {
    model: qdq,
    floatModel: prepared.model,
    plan,
    params,
    sidecar: buildSidecar(plan, params, { batches, opsetFrom: prepared.opsetFrom, opsetTo: prepared.opsetTo, formatPasses: prepared.formatPasses }),
    batches,
  };
}
