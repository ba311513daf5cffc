/**
 * Channel shifting (the shift half of Outlier Suppression+, Wei et al. 2023; DFQ's bias absorption, Nagel et al.
 * 2019, for linear producers): an activation X whose channels sit off zero — a linear bottleneck, a LayerNorm's β,
 * a residual stream — wastes the symmetric grid on the offset. Y = W·X + b = W·(X − c) + (b + W·c), so the
 * per-channel offset c moves out of the quantized tensor into the float biases: X's producer subtracts c (a
 * Conv/Gemm bias, a LayerNorm's β, the constant of an Add), every layer reading X adds W·c to its bias. The float
 * function is unchanged and no node is added; the same tensors are quantized, under the same rule.
 * - Readers: quantized Conv without padding (a padded border would read 0, not −c), Gemm, and MatMul followed by
 *   the Add of a per-column constant. A residual Add reading X gets c back from its other operand's producer
 *   (MobileNet's stream x + project(·): the next block's projection bias); where no reader can take c, X stays.
 * - c per channel, on the float network: the midpoint of X's range (the symmetric scale follows the largest |x|),
 *   the mean (FP8's rounding error grows with |x|), or the mean as far as the midpoints' absmax allows (`shiftOf`).
 * What the weights' rounding does with c is a gain too: the quantized layer computes Ŵ·(X − c) + W·c, so the weight
 * error meets X − c instead of X.
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, type ModelProto, type NodeProto } from 'onnx-buf';
import type { Feeds } from '../calibrate/calibrate.ts';
import { addFloatInitializer, constFloat } from '../ir/constants.ts';
import { attrFloat, attrInt, attrInts, attrString, GraphView } from '../ir/graph.ts';
import { channelStats, type ChannelAxis, type ChannelStats } from './channel-stats.ts';
import { fittingBatches, outputError, type OptimisePass } from './context.ts';

/** A per-channel additive constant: input `index` of `node` (absent: created), added as `scale`·value per channel. */
interface Slot {
  node: NodeProto;
  index: number;
  /** Gemm's C enters as β·C: a shift d of the output is d/β in C. */
  scale: number;
}

/** How a reader absorbs the shift: the bias slot its output gets W·c through, and W·c per output channel. */
interface Reader {
  slot: Slot;
  absorb: (c: Float64Array) => Float64Array;
}

export interface ShiftSite {
  x: string;
  axis: ChannelAxis;
  channels: number;
  /** Where −c goes. */
  source: Slot;
  readers: Reader[];
  /** Residual Adds reading X whose other operand takes +c back. */
  compensations: Slot[];
}

const constWeight = (view: GraphView, n: NodeProto) => (n.input[1] ? constFloat(view, n.input[1]) : undefined);

/** A constant that broadcasts per channel on `axis` of a tensor of rank `rank` (rank unknown for 'last'). */
function perChannelConst(dims: readonly number[], C: number, axis: ChannelAxis, rank: number | undefined): boolean {
  if (dims.reduce((a, b) => a * b, 1) !== C) return false;
  if (C === 1) return false;
  if (axis === 'last') return dims[dims.length - 1] === C;
  if (rank === undefined || dims.length < rank - 1) return false;
  return dims[dims.length - (rank - 1)] === C;
}

/** The slot that shifts `t` by a per-channel constant, or undefined. Through a residual Add, the operand shifted
 * must be read by that Add alone (its other readers would see the shift). */
function sourceSlot(view: GraphView, t: string, axis: ChannelAxis, C: number, rank: number | undefined, depth = 0): Slot | undefined {
  const p = view.producer.get(t);
  if (!p || p.output[0] !== t || p.output.filter(Boolean).length !== 1 || depth > 8) return undefined;
  const sizeOk = (name: string | undefined) => !name || constFloat(view, name)?.data.length === C;
  if (p.opType === 'Conv' && axis === 'second') {
    const w = constWeight(view, p);
    return w && w.dims[0] === C && sizeOk(p.input[2]) ? { node: p, index: 2, scale: 1 } : undefined;
  }
  if (p.opType === 'Gemm' && axis === 'last' && !attrInt(p, 'transA', 0)) {
    const w = constWeight(view, p);
    const n = w ? (attrInt(p, 'transB', 0) ? w.dims[0] : w.dims[1]) : undefined;
    const beta = attrFloat(p, 'beta', 1);
    return w && n === C && beta !== 0 && sizeOk(p.input[2]) ? { node: p, index: 2, scale: beta } : undefined;
  }
  if (p.opType === 'LayerNormalization' && axis === 'last' && attrInt(p, 'axis', -1) === -1) {
    return constFloat(view, p.input[1])?.data.length === C && sizeOk(p.input[2]) ? { node: p, index: 2, scale: 1 } : undefined;
  }
  if (p.opType === 'Add' && p.input[0] !== p.input[1]) {
    const k = [0, 1].find((i) => constFloat(view, p.input[i]));
    if (k !== undefined) {
      const v = constFloat(view, p.input[k])!;
      const other = constFloat(view, p.input[1 - k]);
      return !other && perChannelConst(v.dims, C, axis, rank) ? { node: p, index: k, scale: 1 } : undefined;
    }
    // A residual sum: shift it through an operand read by this Add alone.
    for (const i of [1, 0]) {
      const b = p.input[i];
      if (view.uses(b).length !== 1 || view.graphOutputs.has(b)) continue;
      const s = sourceSlot(view, b, axis, C, rank, depth + 1);
      if (s) return s;
    }
  }
  return undefined;
}

const noPadding = (n: NodeProto) => {
  const auto = attrString(n, 'auto_pad', 'NOTSET');
  if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') return false;
  return (attrInts(n, 'pads') ?? []).every((p) => p === 0);
};

/** A quantized layer reading X as its activation input, and how its bias takes W·c. */
function readerOf(view: GraphView, n: NodeProto, x: string): { reader: Reader; axis: ChannelAxis; channels: number; rank?: number } | undefined {
  const w = constWeight(view, n);
  if (!w || n.input[0] !== x || n.input[1] === x) return undefined;
  if (n.opType === 'Conv') {
    if (!noPadding(n) || (n.input[2] && constFloat(view, n.input[2])?.data.length !== w.dims[0])) return undefined;
    const g = attrInt(n, 'group', 1);
    const [O, Ig] = w.dims;
    const inner = w.dims.slice(2).reduce((a, b) => a * b, 1);
    const absorb = (c: Float64Array) => {
      const d = new Float64Array(O);
      for (let o = 0; o < O; o++) {
        const base = Math.floor(o / (O / g)) * Ig;
        let s = 0;
        for (let i = 0; i < Ig; i++) for (let k = 0; k < inner; k++) s += w.data[(o * Ig + i) * inner + k] * c[base + i];
        d[o] = s;
      }
      return d;
    };
    return { reader: { slot: { node: n, index: 2, scale: 1 }, absorb }, axis: 'second', channels: Ig * g, rank: w.dims.length };
  }
  if (w.dims.length !== 2) return undefined;
  if (n.opType === 'Gemm' && !attrInt(n, 'transA', 0)) {
    const transB = attrInt(n, 'transB', 0);
    const [K, N] = transB ? [w.dims[1], w.dims[0]] : w.dims;
    const alpha = attrFloat(n, 'alpha', 1);
    const beta = attrFloat(n, 'beta', 1);
    if (beta === 0 || (n.input[2] && constFloat(view, n.input[2])?.data.length !== N)) return undefined;
    const absorb = (c: Float64Array) => {
      const d = new Float64Array(N);
      for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) d[j] += alpha * c[k] * w.data[transB ? j * K + k : k * N + j];
      return d;
    };
    return { reader: { slot: { node: n, index: 2, scale: beta }, absorb }, axis: 'last', channels: K };
  }
  if (n.opType === 'MatMul') {
    const [K, N] = w.dims;
    const uses = view.uses(n.output[0]);
    const add = uses.length === 1 && !view.graphOutputs.has(n.output[0]) && uses[0].opType === 'Add' ? uses[0] : undefined;
    const k = add ? [0, 1].find((i) => add.input[i] !== n.output[0] && constFloat(view, add.input[i])) : undefined;
    if (!add || k === undefined || !perChannelConst(constFloat(view, add.input[k])!.dims, N, 'last', undefined)) return undefined;
    const absorb = (c: Float64Array) => {
      const d = new Float64Array(N);
      for (let i = 0; i < K; i++) for (let j = 0; j < N; j++) d[j] += c[i] * w.data[i * N + j];
      return d;
    };
    return { reader: { slot: { node: add, index: k, scale: 1 }, absorb }, axis: 'last', channels: K };
  }
  return undefined;
}

/** Activations read by quantized layers that can take a per-channel shift, exactly (see the file comment). */
export function findShiftSites(view: GraphView, quantized: ReadonlySet<string>): ShiftSite[] {
  const sites: ShiftSite[] = [];
  const seen = new Set<string>();
  for (const n of view.graph.node) {
    if (!quantized.has(n.name) || seen.has(n.input[0])) continue;
    const x = n.input[0];
    seen.add(x);
    if (!x || view.graphOutputs.has(x) || view.graphInputs.has(x) || view.isConstant(x)) continue;
    const readers: Reader[] = [];
    const adds: NodeProto[] = [];
    let axis: ChannelAxis | undefined;
    let channels: number | undefined;
    let rank: number | undefined;
    let ok = true;
    for (const u of view.uses(x)) {
      const r = quantized.has(u.name) ? readerOf(view, u, x) : undefined;
      if (r && (axis ?? r.axis) === r.axis && (channels ?? r.channels) === r.channels && (rank ?? r.rank) === r.rank) {
        [axis, channels, rank] = [r.axis, r.channels, r.rank];
        readers.push(r.reader);
      } else if (u.opType === 'Add' && !quantized.has(u.name) && u.input.length === 2 && u.input[0] !== u.input[1]) adds.push(u);
      else ok = false;
    }
    if (!ok || !readers.length || !axis || !channels) continue;
    const source = sourceSlot(view, x, axis, channels, rank);
    const compensations = adds.map((a) => {
      const other = a.input[a.input[0] === x ? 1 : 0];
      return view.uses(other).length === 1 && !view.graphOutputs.has(other) ? sourceSlot(view, other, axis!, channels!, rank) : undefined;
    });
    if (!source || compensations.some((s) => !s)) continue;
    sites.push({ x, axis, channels, source, readers, compensations: compensations as Slot[] });
  }
  return sites;
}

export type ShiftChoice = 'midpoint' | 'mean' | 'bounded-mean';

/**
 * The offset taken out of each channel. 'midpoint' centres every range, which gives the tensor its least absmax
 * A = maxⱼ (maxⱼ − minⱼ)/2; 'bounded-mean' moves each channel as close to its mean as that A allows — only the
 * widest channels are pinned to their midpoints, the others lose their mean, which the weights' rounding error
 * would otherwise meet (Ŵ − W)·c.
 */
export function shiftOf(st: ChannelStats, choice: ShiftChoice): Float64Array {
  const C = st.mean.length;
  if (choice === 'mean') return st.mean.map((m) => (Number.isFinite(m) ? m : 0));
  const mid = Float64Array.from({ length: C }, (_, j) => (Number.isFinite(st.min[j]) ? (st.min[j] + st.max[j]) / 2 : 0));
  if (choice === 'midpoint') return mid;
  let A = 0;
  for (let j = 0; j < C; j++) if (Number.isFinite(st.min[j])) A = Math.max(A, (st.max[j] - st.min[j]) / 2);
  return mid.map((m, j) => (Number.isFinite(st.min[j]) ? Math.min(st.min[j] + A, Math.max(st.max[j] - A, st.mean[j])) : 0));
}

/** `only`: shift just these activations (of the sites found). */
export async function shiftChannels(input: ModelProto, quantizedLayers: ReadonlySet<string>, batches: Feeds[], choice: ShiftChoice, only?: ReadonlySet<string>): Promise<{ model: ModelProto; sites: number }> {
  const model = clone(ModelProtoSchema, input);
  const view = new GraphView(model.graph!);
  const sites = findShiftSites(view, quantizedLayers).filter((s) => !only || only.has(s.x));
  if (!sites.length) return { model, sites: 0 };
  const stats = await channelStats(model, sites.map((s) => ({ name: s.x, axis: s.axis, channels: s.channels })), batches);
  // Sites share slots (a projection's bias is one block's source and the previous block's compensation): sum first.
  const deltas = new Map<NodeProto, Map<number, { slot: Slot; d: Float64Array }>>();
  const add = (slot: Slot, d: Float64Array) => {
    let byIndex = deltas.get(slot.node);
    if (!byIndex) deltas.set(slot.node, (byIndex = new Map()));
    const e = byIndex.get(slot.index);
    if (e) e.d.forEach((_, i) => (e.d[i] += d[i] / slot.scale));
    else byIndex.set(slot.index, { slot, d: d.map((v) => v / slot.scale) });
  };
  for (const s of sites) {
    const st = stats.get(s.x)!;
    const c = shiftOf(st, choice);
    add(s.source, c.map((v) => -v));
    for (const comp of s.compensations) add(comp, c);
    for (const r of s.readers) add(r.slot, r.absorb(c));
  }
  for (const [node, byIndex] of deltas) {
    for (const { slot, d } of byIndex.values()) {
      const name = node.input[slot.index];
      const old = name ? constFloat(view, name) : undefined;
      const dims = old?.dims ?? [d.length];
      const data = Float32Array.from(d, (v, i) => (old ? old.data[i] : 0) + v);
      while (node.input.length < slot.index) node.input.push('');
      const fresh = addFloatInitializer(view, name ? `${name}_shift` : `${node.name || node.output[0]}_bias_shift`, dims, data);
      if (node.input.length === slot.index) node.input.push(fresh);
      view.setInput(node, slot.index, fresh);
    }
  }
  view.pruneInitializers();
  return { model, sites: sites.length };
}

/**
 * The pass. With no `choice`, each offset rule is tried and the one with the lowest network output error on the
 * fitting batches (recalibrated as the recipe calibrates) goes on to be judged: none wins everywhere. On en_number
 * (IC15, 16 batches of 32) alone: per-channel 7.12% → midpoint 7.07%, bounded mean 6.14%; power-of-2 9.11% →
 * midpoint 8.52%, bounded mean 9.35%; FP8 10.29% → mean 11.00%, midpoint 13.60% (rolled back).
 */
export function channelShift(choice?: ShiftChoice): OptimisePass {
  return {
    name: 'channel-shift',
    stage: 'pre',
    async run(state, ctx) {
      const layers = new Set(state.plan.layers.map((l) => l.node));
      const fit = fittingBatches(ctx);
      const choices: ShiftChoice[] = choice ? [choice] : ['midpoint', 'bounded-mean', 'mean'];
      let best: { model: ModelProto; how: ShiftChoice; error: number } | undefined;
      const tried: string[] = [];
      for (const how of choices) {
        const { model, sites } = await shiftChannels(state.model, layers, fit, how);
        if (!sites) return { state, detail: 'no activation to shift' };
        if (choices.length === 1 || !ctx.recalibrate) return { state: { ...state, model }, detail: `${sites} activations shifted (${how})` };
        const error = await outputError({ model, plan: state.plan, params: await ctx.recalibrate(model, state.plan) }, { ...ctx, batches: fit });
        tried.push(`${how} ${(error * 100).toFixed(3)}%`);
        if (!best || error < best.error) best = { model, how, error };
      }
      return { state: { ...state, model: best!.model }, detail: `${best!.how} (fitting error: ${tried.join(', ')})` };
    },
  };
}
