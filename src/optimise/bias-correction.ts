/**
 * Empirical bias correction (after Nagel et al. 2019 and AIMET's empirical variant): each layer's bias absorbs a
 * per-channel mean shift of its output measured on calibration data (the fitting batches, so the recipe judges the
 * correction on data it was not estimated from). Two estimates, both computed, the one with the lower output error on
 * the measuring batches kept (neither wins on every model):
 * - own shift, all layers at once: E[conv(x̂, ŵ)] − E[conv(x, w)], x the layer's input as the quantized network
 *   produces it, measured against a float twin of the layer in the simulation graph (same op and attributes), so
 *   padding, strides and dilations count. Upstream shifts are left to upstream layers, so corrections do not compound.
 * - total shift, in graph order: the mean of (quantized − float network) output, measured in the quantized network
 *   with every earlier correction applied (network steppers: about one quantized and one float pass), so each
 *   corrected layer's output mean equals the float network's. The float network is the recipe's reference
 *   (`ctx.reference`, rescaled like the state by equalization or outlier migration), not the state's model, which
 *   after weight rounding holds the rounded weights.
 * Measuring error from the plain rule's, with own / total shifts: en_number per-channel 6.92% → 5.43% / 1.74% (exact
 * match 21.67% → 44.25% with the total shifts), FP8 10.26% → 9.15% / 4.97%; mobilenetv2-7 per-channel 2.48% →
 * 1.94% / 13.54%, FP8 16.11% → 8.53% / 16.89% — matching every layer's mean there undoes errors that cancelled
 * downstream. Until the twenty-ninth session the pass had the own shift only, from input means (Ŵ·E[x̂] − W·E[x],
 * every kernel tap assumed to see every position: on thin maps such as en_number's 2- and 4-row maps under 5×5
 * kernels that overstated the shift).
 * Conv (any padding, stride, group), Gemm, and MatMul followed by an Add of a per-column constant (its bias, as
 * transformers export it). Where a Conv's or Gemm's output reaches only Sigmoid/Tanh (an LSTM's gates exported as
 * nodes), both estimates weigh each position by the gate's slope (ShiftSum below).
 */
import { clone } from '@bufbuild/protobuf';
import { AttributeProtoSchema, ModelProtoSchema, TensorProto_DataType as DT, type ModelProto, type NodeProto } from 'onnx-buf';
import { addFloatInitializer, constFloat, type ConstFloat } from '../ir/constants.ts';
import { GraphView, makeNode, opsetVersion } from '../ir/graph.ts';
import { makeTensor } from '../onnx/tensor-codec.ts';
import { forEachChannelRun } from '../quant/numerics.ts';
import { realiseQdq } from '../realise/qdq.ts';
import { createSession } from '../runtime/session.ts';
import { createStepper, spillNote } from '../runtime/stepper.ts';
import { saturatingGates, type GateRun } from './activation-slope.ts';
import { fittingBatches, floatOutputs, outputError, type OptimiseContext, type OptimisePass, type QuantState } from './context.ts';

interface Target {
  node: string;
  op: 'Conv' | 'Gemm' | 'MatMul';
  /** The layer's float input (what the QuantizeLinear reads), its fake-quantized input, and its output. */
  x: string;
  xHat: string;
  y: string;
  /** The state's weight (float). */
  w: ConstFloat;
  /** MatMul: the Add after it, by output name, and which of its inputs is the bias constant. */
  biasAdd?: { output: string; input: number };
  /** Where the output reaches only Sigmoid/Tanh (activation-slope.ts saturatingGates): the shift is then weighted. */
  gates?: GateRun[];
}

/** A MatMul's bias: the one node reading its output is an Add whose other input is a constant of N values (the
 * weight's columns), shaped [N] or [1, …, 1, N], so it adds one value per output channel on the last axis. */
function matMulBias(v: GraphView, n: NodeProto, outChannels: number): { output: string; input: number } | undefined {
  const readers = v.uses(n.output[0]);
  if (readers.length !== 1 || readers[0].opType !== 'Add' || v.graphOutputs.has(n.output[0])) return undefined;
  const add = readers[0];
  const input = add.input[0] === n.output[0] ? 1 : 0;
  const b = constFloat(v, add.input[input]);
  if (!b || b.data.length !== outChannels || b.dims.at(-1) !== outChannels) return undefined;
  return { output: add.output[0], input };
}

function findTargets(state: QuantState, qdq: ModelProto): Target[] {
  const qv = new GraphView(qdq.graph!);
  const fv = new GraphView(state.model.graph!);
  const targets: Target[] = [];
  for (const l of state.plan.layers) {
    const n = qv.graph.node.find((x) => x.name === l.node);
    const fn = fv.graph.node.find((x) => x.name === l.node);
    if (!n || !fn || (n.opType !== 'Conv' && n.opType !== 'Gemm' && n.opType !== 'MatMul')) continue;
    const w = constFloat(fv, fn.input[1]);
    if (qv.producer.get(n.input[0])?.opType !== 'DequantizeLinear' || !w) continue;
    // A MatMul has no bias of its own: the constant of the Add after it takes the correction; without one the layer
    // is left alone.
    const biasAdd = n.opType === 'MatMul' ? matMulBias(fv, fn, w.dims.at(-1)!) : undefined;
    if (n.opType === 'MatMul' && !biasAdd) continue;
    // MatMul's output rank is not known here; its gates, were there any, are left unweighted.
    const transB = fn.attribute.find((a) => a.name === 'transB')?.i;
    const channels = n.opType === 'Gemm' && !transB ? w.dims[1] : w.dims[0];
    const gates = n.opType === 'MatMul' ? undefined : saturatingGates(fv, fn.output[0], channels, 1, n.opType === 'Conv' ? w.dims.length : 2);
    targets.push({ node: l.node, op: n.opType, x: fn.input[0], xHat: n.input[0], y: n.output[0], w, biasAdd, gates });
  }
  const position = new Map(qdq.graph!.node.map((n, i) => [n.name, i] as const));
  return targets.sort((a, b) => position.get(a.node)! - position.get(b.node)!);
}

/** Writes `shift` (one value per output channel) out of the layer's bias in the graph of `v`; false where the bias
 * has a shape the layer's channels do not map onto. */
function subtractFromBias(v: GraphView, t: Target, shift: Float64Array): boolean {
  const C = shift.length;
  if (t.biasAdd) {
    const add = v.producer.get(t.biasAdd.output)!;
    const b = constFloat(v, add.input[t.biasAdd.input])!;
    v.setInput(add, t.biasAdd.input, addFloatInitializer(v, `${t.node}_bias_corrected`, b.dims, Float32Array.from(b.data, (x, c) => x - shift[c])));
    return true;
  }
  const n = v.graph.node.find((x) => x.name === t.node)!;
  const bias = n.input[2] ? constFloat(v, n.input[2]) : undefined;
  if (n.input[2] && (!bias || (bias.data.length !== C && bias.data.length !== 1))) return false;
  // Gemm adds beta·C: the corrected bias is written with beta folded in and the attribute dropped.
  const beta = t.op === 'Gemm' ? (n.attribute.find((a) => a.name === 'beta')?.f ?? 1) : 1;
  const nb = Float32Array.from({ length: C }, (_, c) => (bias ? beta * bias.data[bias.data.length === 1 ? 0 : c] : 0) - shift[c]);
  while (n.input.length < 3) n.input.push('');
  v.setInput(n, 2, addFloatInitializer(v, `${t.node}_bias_corrected`, [C], nb));
  if (t.op === 'Gemm') n.attribute = n.attribute.filter((a) => a.name !== 'beta');
  return true;
}

/**
 * A layer's per-channel output shift, from errors e = quantized − float output added batch by batch: the mean of e,
 * or — where the output reaches only Sigmoid/Tanh (`gates`) — its mean weighted by w = σ'(z)², z the float network's
 * pre-activation: to first order the shift b that minimises Σ (σ'(z)·(e − b))², the error after the activation. An
 * LSTM's gates sit saturated much of the time, where a shift of their pre-activation changes nothing; the plain mean
 * counts those positions fully and moves the ones that matter (silero_vad_op18_ifless power-of-2: the input
 * projection's shifts were ±50–90). A channel with no weight (always saturated) is left alone.
 */
class ShiftSum {
  private sum: Float64Array;
  private weight: Float64Array;
  constructor(readonly channels: number) {
    this.sum = new Float64Array(channels);
    this.weight = new Float64Array(channels);
  }

  /** Adds e = a − r (r absent: e = a) over a tensor of `dims` with channels on `axis`, weighted by `w` when given. */
  add(dims: readonly number[], axis: number, a: Float32Array, r?: Float32Array, w?: Float32Array): void {
    const { sum, weight } = this;
    // Each element added to its channel's sum in index order, as a per-element loop would.
    forEachChannelRun(dims, axis, (start, end, c) => {
      for (let i = start; i < end; i++) {
        const wi = w ? w[i] : 1;
        sum[c] += wi * (r ? a[i] - r[i] : a[i]);
        weight[c] += wi;
      }
    });
  }

  /** Adds a batch's per-channel mean over `count` positions each (an unweighted in-graph reduction). */
  addMeans(means: Float32Array, count: number): void {
    for (let c = 0; c < means.length; c++) {
      this.sum[c] += means[c] * count;
      this.weight[c] += count;
    }
  }

  shift(): Float64Array {
    return this.sum.map((v, c) => (this.weight[c] > 0 ? v / this.weight[c] : 0));
  }
}

/** The gate pre-activations every gated target's weights read, in the float network (`ctx.reference`). */
function gateInputs(targets: readonly Target[]): string[] {
  return targets.flatMap((t) => t.gates?.map((g) => g.input) ?? []);
}

/**
 * σ'(z)² at each position of a gated target's output (`dims`, channels on `axis`) on one batch, from its gates'
 * float pre-activations (`z`, by tensor name, that batch's values); undefined where a piece does not line up with the
 * output (a broadcasting Add made it larger), which leaves the layer's mean unweighted.
 */
function gateWeights(gates: readonly GateRun[], dims: readonly number[], axis: number, z: (name: string) => Float32Array): Float32Array | undefined {
  const C = dims[axis];
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const w = new Float32Array(outer * C * inner);
  for (const g of gates) {
    const v = z(g.input);
    if (v.length !== outer * g.channels * inner) return undefined;
    for (let o = 0; o < outer; o++)
      for (let c = g.start; c < g.end; c++) {
        const from = (o * g.channels + c - g.start) * inner;
        const to = (o * C + c) * inner;
        for (let j = 0; j < inner; j++) w[to + j] = g.slope(v[from + j]) ** 2;
      }
  }
  return w;
}

/** Channels on axis 1 (Conv's [N, C, …], Gemm's [M, N]) or on the last axis (MatMul's […, N]). */
const channelAxis = (t: Target, rank: number) => (t.op === 'MatMul' ? rank - 1 : 1);

/** The own-shift estimate: every layer's float twin added to one simulation graph, the per-channel mean of
 * (quantized − twin) output reduced in the graph (ReduceMean + Shape: C values per layer leave onnxruntime). */
async function ownShifts(state: QuantState, ctx: OptimiseContext): Promise<{ targets: Target[]; shifts: Map<string, Float64Array> }> {
  const qdq = realiseQdq(state.model, state.plan, state.params);
  const targets = findTargets(state, qdq);
  if (!targets.length) return { targets, shifts: new Map() };
  const qv = new GraphView(qdq.graph!);
  const opset = opsetVersion(qdq);
  const reads = targets.map((t) => {
    const n = qv.graph.node.find((x) => x.name === t.node)!;
    const name = (k: string) => qv.freshName(`${t.node}__bc_${k}`);
    const [twin, diff, rows, mean, shape] = ['twin', 'diff', 'rows', 'mean', 'shape'].map(name);
    const wf = addFloatInitializer(qv, `${t.node}__bc_w`, t.w.dims, t.w.data);
    const nodes = [makeNode(t.op, [t.x, wf, ...n.input.slice(2)], [twin], twin), makeNode('Sub', [t.y, twin], [diff], diff)];
    nodes[0].attribute = n.attribute.map((a) => clone(AttributeProtoSchema, a));
    let reduced = diff;
    if (t.op === 'MatMul') {
      const rs = qv.freshName(`${t.node}__bc_rowshape`);
      qv.addInitializer(makeTensor(rs, DT.INT64, [2], [-1, t.w.dims.at(-1)!]));
      nodes.push(makeNode('Reshape', [diff, rs], [rows], rows));
      reduced = rows;
    }
    // Every axis but the channel axis (MatMul's outputs taken as rows of N above).
    const axes = t.op === 'Conv' ? [0, ...Array.from({ length: t.w.dims.length - 2 }, (_, i) => i + 2)] : [0];
    if (opset >= 18) {
      const a = qv.freshName(`${t.node}__bc_axes`);
      qv.addInitializer(makeTensor(a, DT.INT64, [axes.length], axes));
      nodes.push(makeNode('ReduceMean', [reduced, a], [mean], mean, { keepdims: 0 }));
    } else nodes.push(makeNode('ReduceMean', [reduced], [mean], mean, { axes, keepdims: 0 }));
    nodes.push(makeNode('Shape', [reduced], [shape], shape));
    for (const x of nodes) qv.addNode(x);
    return { target: t, mean, shape, diff };
  });
  // A gated layer's difference leaves onnxruntime whole, to be weighted here; the others' per-channel means only.
  const fetch = reads.flatMap((r) => (r.target.gates ? [r.diff] : [r.mean, r.shape]));
  const batches = fittingBatches(ctx);
  const z = await floatOutputs(ctx.reference, { batches }, gateInputs(targets));
  const s = await createSession(qdq, { mode: 'simulate', extraOutputs: fetch });
  const sums = new Map<string, ShiftSum>();
  try {
    for (let b = 0; b < batches.length; b++) {
      const r = await s.run(batches[b], fetch);
      for (const { target: t, mean, shape, diff } of reads) {
        if (t.gates) {
          const d = r[diff];
          const acc = sums.get(t.node) ?? new ShiftSum(d.dims[1]);
          sums.set(t.node, acc);
          acc.add(d.dims, 1, d.data as Float32Array, undefined, gateWeights(t.gates, d.dims, 1, (n) => z.get(n)![b]));
          continue;
        }
        const m = r[mean].data as Float32Array;
        // Each batch's mean weighted by the positions it was taken over (batches may differ in size or shape).
        const count = Array.from(r[shape].data as BigInt64Array, Number).reduce((a, d) => a * d, 1) / m.length;
        const acc = sums.get(t.node) ?? new ShiftSum(m.length);
        sums.set(t.node, acc);
        acc.addMeans(m, count);
      }
    }
  } finally {
    await s.release();
  }
  return { targets, shifts: new Map([...sums].map(([node, acc]) => [node, acc.shift()])) };
}

/** The total-shift estimate, layer by layer in graph order, each correction applied before the next layer is measured. */
async function shiftsInOrder(state: QuantState, ctx: OptimiseContext): Promise<{ targets: Target[]; shifts: Map<string, Float64Array>; spilled: string }> {
  const qdq = realiseQdq(state.model, state.plan, state.params);
  const targets = findTargets(state, qdq);
  const qv = new GraphView(qdq.graph!);
  const batches = fittingBatches(ctx);
  const z = await floatOutputs(ctx.reference, { batches }, gateInputs(targets));
  const qStep = createStepper(batches, 'simulate');
  const fStep = createStepper(batches, 'float');
  const shifts = new Map<string, Float64Array>();
  try {
    for (const t of targets) {
      // The layer's input as the corrected network so far produces it, then its output under the current bias
      // (peeked: the layer runs again, corrected, when the walk moves past it).
      await qStep.advance(qdq, [t.xHat]);
      const yq = await qStep.peek(qdq, [t.y]);
      const yf = await fStep.advance(ctx.reference, [t.y]);
      let acc: ShiftSum | undefined;
      for (let b = 0; b < batches.length; b++) {
        const q = yq.get(b)[t.y];
        const axis = channelAxis(t, q.dims.length);
        const w = t.gates && gateWeights(t.gates, q.dims, axis, (n) => z.get(n)![b]);
        (acc ??= new ShiftSum(q.dims[axis])).add(q.dims, axis, q.data as Float32Array, yf.get(b)[t.y].data as Float32Array, w);
      }
      const shift = acc!.shift();
      // In the QDQ model the walk runs (the layer has not run there yet).
      if (subtractFromBias(qv, t, shift)) shifts.set(t.node, shift);
    }
    return { targets, shifts, spilled: spillNote([qStep, fStep]) };
  } finally {
    qStep.close();
    fStep.close();
  }
}

function corrected(state: QuantState, targets: readonly Target[], shifts: ReadonlyMap<string, Float64Array>): { state: QuantState; layers: number } {
  const model = clone(ModelProtoSchema, state.model);
  const mv = new GraphView(model.graph!);
  let layers = 0;
  for (const t of targets) {
    const shift = shifts.get(t.node);
    if (shift && subtractFromBias(mv, t, shift)) layers++;
  }
  mv.pruneInitializers();
  return { state: { ...state, model }, layers };
}

/** The state with every layer's own shift corrected (the first estimate above), and how many layers it corrected. */
export async function correctOwnShifts(state: QuantState, ctx: OptimiseContext): Promise<{ state: QuantState; layers: number }> {
  const { targets, shifts } = await ownShifts(state, ctx);
  return corrected(state, targets, shifts);
}

/** The state with every layer's total shift corrected in graph order (the second estimate above). */
export async function correctInOrder(state: QuantState, ctx: OptimiseContext): Promise<{ state: QuantState; layers: number; spilled: string }> {
  const { targets, shifts, spilled } = await shiftsInOrder(state, ctx);
  return { ...corrected(state, targets, shifts), spilled };
}

export const biasCorrection: OptimisePass = {
  name: 'bias-correction',
  stage: 'post',
  async run(state, ctx) {
    const own = await correctOwnShifts(state, ctx);
    if (!own.layers) return { state, detail: 'no Conv, Gemm or MatMul-with-bias layers with quantized inputs' };
    const inOrder = await correctInOrder(state, ctx);
    const [eOwn, eTotal] = [await outputError(own.state, ctx), await outputError(inOrder.state, ctx)];
    const pct = (e: number) => `${(e * 100).toFixed(3)}%`;
    const keepTotal = eTotal < eOwn;
    return {
      state: keepTotal ? inOrder.state : own.state,
      detail: `${(keepTotal ? inOrder : own).layers} layers corrected, ${keepTotal ? 'total shifts in graph order' : 'own shifts'} (output error with own shifts ${pct(eOwn)}, with total shifts in order ${pct(eTotal)})${inOrder.spilled}`,
    };
  },
};
