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
 * - With `insert` (the `channel-shift` recipe), where X's producer has no bias (a Relu, a hard swish, a squeeze-excite
 *   product) or its quantized readers pad (alike), X's producer writes X_unshifted for its other readers and a Sub
 *   of c per channel — after a Pad that takes over the readers' zero padding, so the border reads −c like every
 *   shifted value and W·c is exact there too — writes X for the quantized readers. A float op per site, like
 *   equalization's per-channel Max/Min and gate Muls; the quantized tensor is still the layer's input, E4M3 stays
 *   E4M3, power-of-two stays power-of-two. It matters most under FP8, whose step grows with |x|: en_number's first
 *   activations sit at 2.0–2.6 per channel on the plain background of text lines and vary by a few hundredths,
 *   where E4M3 steps by 0.25 — their variation is lost. Alone, FP8 exact match 4.24% → 45.84% on IC15 (float 47.62%).
 * - c per channel, on the float network: the midpoint of X's range (the symmetric scale follows the largest |x|),
 *   the mean (FP8's rounding error grows with |x|), the mean as far as the midpoints' absmax allows, or the median
 *   (the plateau a channel mostly sits on; `shiftOf`).
 * What the weights' rounding does with c is a gain too: the quantized layer computes Ŵ·(X − c) + W·c, so the weight
 * error meets X − c instead of X.
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, type ModelProto, type NodeProto } from 'onnx-buf';
import type { Feeds } from '../calibrate/calibrate.ts';
import { addFloatInitializer, addInt64Initializer, constFloat } from '../ir/constants.ts';
import { attrFloat, attrInt, attrInts, attrString, GraphView, makeNode, opsetVersion, removeAttr, renameReads } from '../ir/graph.ts';
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
  /** The quantized layer. */
  node: NodeProto;
  slot: Slot;
  absorb: (c: Float64Array) => Float64Array;
}

/** The Sub (after a Pad that takes over the readers' common zero padding, `pads` in Conv's layout) on X's way to
 * its quantized readers; X's other readers read it unshifted. */
interface Inserted {
  insert: { pads?: number[]; rank: number };
}

export interface ShiftSite {
  x: string;
  axis: ChannelAxis;
  channels: number;
  /** Where −c goes: a bias of X's producer, or a Sub node inserted in front of the quantized readers alone (`insert`:
   * X's producer has no bias — a Relu, a gated activation, a squeeze-excite product — or a reader pads). */
  source: Slot | Inserted;
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

/** A Conv's explicit padding ([] when none), or undefined for auto_pad SAME_* (its amounts follow the input shape). */
const convPads = (n: NodeProto): number[] | undefined => {
  const auto = attrString(n, 'auto_pad', 'NOTSET');
  if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') return undefined;
  const pads = attrInts(n, 'pads') ?? [];
  return pads.every((p) => p === 0) ? [] : pads;
};

/** A quantized layer reading X as its activation input, and how its bias takes W·c. */
interface ReaderMatch {
  reader: Reader;
  axis: ChannelAxis;
  channels: number;
  rank?: number;
  /** A Conv's explicit padding, [] for none (a padded border reads 0, not −c: only an inserted Pad makes it exact). */
  pads: number[];
}

function readerOf(view: GraphView, n: NodeProto, x: string): ReaderMatch | undefined {
  const w = constWeight(view, n);
  if (!w || n.input[0] !== x || n.input[1] === x) return undefined;
  if (n.opType === 'Conv') {
    const pads = convPads(n);
    if (!pads || (n.input[2] && constFloat(view, n.input[2])?.data.length !== w.dims[0])) return undefined;
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
    return { reader: { node: n, slot: { node: n, index: 2, scale: 1 }, absorb }, axis: 'second', channels: Ig * g, rank: w.dims.length, pads };
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
    return { reader: { node: n, slot: { node: n, index: 2, scale: beta }, absorb }, axis: 'last', channels: K, pads: [] };
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
    return { reader: { node: n, slot: { node: add, index: k, scale: 1 }, absorb }, axis: 'last', channels: K, pads: [] };
  }
  return undefined;
}

/**
 * Activations read by quantized layers that can take a per-channel shift, exactly (see the file comment). With
 * `insert`, an activation whose producer has no bias to take −c, or whose readers pad, gets an inserted Sub instead
 * (after a Pad when the readers pad alike): every quantized layer reading it must absorb W·c; its other readers keep
 * the unshifted tensor.
 */
export function findShiftSites(view: GraphView, quantized: ReadonlySet<string>, opts: { insert?: boolean } = {}): ShiftSite[] {
  const sites: ShiftSite[] = [];
  const seen = new Set<string>();
  for (const n of view.graph.node) {
    if (!quantized.has(n.name) || seen.has(n.input[0])) continue;
    const x = n.input[0];
    seen.add(x);
    if (!x || view.graphOutputs.has(x) || view.graphInputs.has(x) || view.isConstant(x)) continue;
    const readers: ReaderMatch[] = [];
    const adds: NodeProto[] = [];
    let others = 0;
    let alike = true;
    for (const u of view.uses(x)) {
      const r = quantized.has(u.name) ? readerOf(view, u, x) : undefined;
      if (r) {
        const first = readers[0] ?? r;
        alike &&= first.axis === r.axis && first.channels === r.channels && first.rank === r.rank && first.pads.join() === r.pads.join();
        readers.push(r);
      } else if (quantized.has(u.name)) alike = false;
      else if (u.opType === 'Add' && u.input.length === 2 && u.input[0] !== u.input[1]) adds.push(u);
      else others++;
    }
    if (!readers.length || !alike) continue;
    const { axis, channels, rank, pads } = readers[0];
    const shifted = { x, axis, channels, readers: readers.map((r) => r.reader) };
    if (!others && !pads.length) {
      const source = sourceSlot(view, x, axis, channels, rank);
      const compensations = adds.map((a) => {
        const other = a.input[a.input[0] === x ? 1 : 0];
        return view.uses(other).length === 1 && !view.graphOutputs.has(other) ? sourceSlot(view, other, axis, channels, rank) : undefined;
      });
      if (source && compensations.every((c) => c)) {
        sites.push({ ...shifted, source, compensations: compensations as Slot[] });
        continue;
      }
    }
    // A Sub needs X's channels where the readers see them: axis 1 of a known rank, or the last axis.
    if (opts.insert && (axis === 'last' || rank !== undefined)) {
      sites.push({ ...shifted, source: { insert: { rank: rank ?? 0, ...(pads.length ? { pads } : {}) } }, compensations: [] });
    }
  }
  return sites;
}

/**
 * X's producer writes `X_unshifted`, which every reader but the quantized ones reads; those read X again from
 * [Pad →] Sub(·, c), the Pad taking over their zero padding (its border then reads −c, like every shifted value, and
 * their W·c bias term is exact everywhere).
 */
function insertShift(view: GraphView, site: ShiftSite & { source: Inserted }, c: Float64Array, opset: number): void {
  const { x, axis, channels } = site;
  const { pads, rank } = site.source.insert;
  const producer = view.producer.get(x)!;
  const readerNodes = site.readers.map((r) => r.node);
  const pre = view.freshName(`${x}_unshifted`);
  producer.output[producer.output.indexOf(x)] = pre;
  // A declared shape belongs to the unshifted tensor: X itself is padded now.
  for (const v of view.graph.valueInfo) if (v.name === x) v.name = pre;
  renameReads(view.graph, new Map([[x, pre]]));
  for (const r of readerNodes) r.input[0] = x;
  view.reindex();
  let at = view.graph.node.indexOf(producer) + 1;
  let into = pre;
  if (pads) {
    const k = pads.length / 2;
    const full = [0, 0, ...pads.slice(0, k), 0, 0, ...pads.slice(k)];
    const padded = view.freshName(`${x}_padded`);
    const node =
      opset >= 11
        ? makeNode('Pad', [pre, addInt64Initializer(view, `${x}_pads`, full)], [padded], padded)
        : makeNode('Pad', [pre], [padded], padded, { pads: full, mode: 'constant' });
    view.addNode(node, at++);
    for (const r of readerNodes) removeAttr(r, 'pads');
    into = padded;
  }
  const dims = axis === 'last' ? [channels] : [channels, ...Array<number>(rank - 2).fill(1)];
  const cName = addFloatInitializer(view, `${x}_shift`, dims, Float32Array.from(c));
  view.addNode(makeNode('Sub', [into, cName], [x], `${x}_shift`), at);
}

export type ShiftChoice = 'midpoint' | 'mean' | 'bounded-mean' | 'median';

/**
 * The offset taken out of each channel. 'midpoint' centres every range, which gives the tensor its least absmax
 * A = maxⱼ (maxⱼ − minⱼ)/2; 'bounded-mean' moves each channel as close to its mean as that A allows — only the
 * widest channels are pinned to their midpoints, the others lose their mean, which the weights' rounding error
 * would otherwise meet (Ŵ − W)·c. 'median' puts a channel's most common values — the plain background of a text
 * line, where a channel is one plateau varying by hundredths — next to zero, where E4M3's step is finest; the
 * stroke pixels pull the mean off that plateau.
 */
export function shiftOf(st: ChannelStats, choice: ShiftChoice): Float64Array {
  const C = st.mean.length;
  if (choice === 'mean') return st.mean.map((m) => (Number.isFinite(m) ? m : 0));
  if (choice === 'median') {
    if (!st.median) throw new Error('the median offset needs channelStats(…, { median: true })');
    return st.median.map((m) => (Number.isFinite(m) ? m : 0));
  }
  const mid = Float64Array.from({ length: C }, (_, j) => (Number.isFinite(st.min[j]) ? (st.min[j] + st.max[j]) / 2 : 0));
  if (choice === 'midpoint') return mid;
  let A = 0;
  for (let j = 0; j < C; j++) if (Number.isFinite(st.min[j])) A = Math.max(A, (st.max[j] - st.min[j]) / 2);
  return mid.map((m, j) => (Number.isFinite(st.min[j]) ? Math.min(st.min[j] + A, Math.max(st.max[j] - A, st.mean[j])) : 0));
}

export interface ShiftOptions {
  /** Shift just these activations (of the sites found). */
  only?: ReadonlySet<string>;
  /** Also where a Sub must be inserted (`findShiftSites`). */
  insert?: boolean;
  /** The sites' per-channel statistics on `input`, already taken (the pass tries several offsets on one model). */
  stats?: ReadonlyMap<string, ChannelStats>;
}

export async function shiftChannels(input: ModelProto, quantizedLayers: ReadonlySet<string>, batches: Feeds[], choice: ShiftChoice, opts: ShiftOptions = {}): Promise<{ model: ModelProto; sites: number; inserted: number }> {
  const model = clone(ModelProtoSchema, input);
  const view = new GraphView(model.graph!);
  const sites = findShiftSites(view, quantizedLayers, opts).filter((s) => !opts.only || opts.only.has(s.x));
  if (!sites.length) return { model, sites: 0, inserted: 0 };
  const stats = opts.stats && sites.every((s) => opts.stats!.has(s.x)) ? opts.stats : await channelStats(model, sites.map((s) => ({ name: s.x, axis: s.axis, channels: s.channels })), batches, { median: choice === 'median' });
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
    if ('insert' in s.source) insertShift(view, { ...s, source: s.source }, c, opsetVersion(model));
    else add(s.source, c.map((v) => -v));
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
  return { model, sites: sites.length, inserted: sites.filter((s) => 'insert' in s.source).length };
}

/**
 * The pass. With no `choice`, each offset rule is tried and the one with the lowest network output error on the
 * fitting batches (recalibrated as the recipe calibrates) goes on to be judged: none wins everywhere. With `insert`,
 * each is tried with and without the inserted Subs (bias sites only), as a whole: on en_number power-of-2 after
 * equalization, with the midpoint, mean or bounded mean, the bias sites alone lower the fitting error (mean 5.52% →
 * 4.50%) and all sites raise it (6.33%); the median through all sites gives 1.58%. On en_number (IC15, 16 batches
 * of 32), biases only: per-channel 7.12% → midpoint 7.07%, bounded mean 6.14%; power-of-2 9.11% → midpoint 8.52%,
 * bounded mean 9.35%; FP8 10.29% → mean 11.00%, midpoint 13.60% (rolled back). With inserted Subs (the zoo's 32
 * batches), the lowest fitting error and the measuring error it went on to: FP8 mean 1.238%, median 1.203% →
 * 10.26% → 1.20%; per-channel mean 2.032%, median 1.458% → 6.92% → 1.52% (exact match 42.80% with the mean, 45.06%
 * with the median); power-of-2 mean 10.310%, median 7.060% → 10.91% → 7.39% (kept; with the mean rolled back).
 */
export function channelShift(choice?: ShiftChoice, opts: { insert?: boolean } = {}): OptimisePass {
  return {
    name: 'channel-shift',
    stage: 'pre',
    async run(state, ctx) {
      const layers = new Set(state.plan.layers.map((l) => l.node));
      const fit = fittingBatches(ctx);
      const choices: ShiftChoice[] = choice ? [choice] : ['midpoint', 'bounded-mean', 'mean', 'median'];
      const variants = choices.flatMap((how) => (opts.insert ? [{ how, insert: true }, { how, insert: false }] : [{ how, insert: false }]));
      let best: { model: ModelProto; label: string; error: number; count: string } | undefined;
      const tried: string[] = [];
      // An offset whose sites all took a bias with Subs allowed gives the same model without: not measured twice.
      const noneInserted = new Set<ShiftChoice>();
      // Every variant's sites are among those found with Subs allowed: their statistics are taken once.
      const all = findShiftSites(new GraphView(state.model.graph!), layers, { insert: opts.insert });
      const stats = all.length ? await channelStats(state.model, all.map((t) => ({ name: t.x, axis: t.axis, channels: t.channels })), fit, { median: choices.includes('median') }) : undefined;
      for (const { how, insert } of variants) {
        if (!insert && opts.insert && noneInserted.has(how)) continue;
        const { model, sites, inserted } = await shiftChannels(state.model, layers, fit, how, { insert, stats });
        if (insert && !inserted) noneInserted.add(how);
        if (!sites) {
          if (insert) return { state, detail: 'no activation to shift' };
          continue; // no bias site: the variants with Subs stand alone
        }
        const count = `${sites} activations shifted${inserted ? ` (${inserted} through an inserted Sub)` : ''}`;
        const label = `${how}${insert || !opts.insert ? '' : ' (biases only)'}`;
        if (variants.length === 1 || !ctx.recalibrate) return { state: { ...state, model }, detail: `${count} (${how})` };
        const error = await outputError({ model, plan: state.plan, params: await ctx.recalibrate(model, state.plan) }, { ...ctx, batches: fit });
        tried.push(`${label} ${(error * 100).toFixed(3)}%`);
        if (!best || error < best.error) best = { model, label, error, count };
      }
      if (!best) return { state, detail: 'no activation to shift' };
      return { state: { ...state, model: best.model }, detail: `${best.count}, ${best.label}${opts.insert ? '' : ', biases only'} (fitting error: ${tried.join(', ')})` };
    },
  };
}
