/**
 * Outlier migration (SmoothQuant, Xiao et al. 2023): an activation X with a few large channels is hard to quantize
 * per tensor, while the weight W that reads it is quantized per output channel and barely notices a per-input-
 * channel scale. Y = X·W = (X·diag(s)⁻¹)·(diag(s)·W), with sⱼ = max|Xⱼ|^α / max|Wⱼ|^(1−α), moves the outliers
 * from the activation into the weight. The division by s is folded into whatever produced X, so the float function
 * is unchanged and no node is added (the same tensors are quantized, under the same rule):
 * - LayerNormalization with constant scale/bias (γ/s, β/s), or a decomposed one ending in Mul(γ) → Add(β);
 * - a Conv/Gemm/MatMul with a constant weight (its output channels, and bias, divided by s), possibly through
 *   ReLU/MaxPool, which commute with positive per-channel scales.
 * Every reader of X must be a linear layer with a constant weight (Conv with group 1 or depthwise reading channels
 * on axis 1; Gemm/MatMul reading them on the last axis), so all of them can absorb s. The ranges max|Xⱼ| are the
 * float network's on the calibration batches.
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, type ModelProto, type NodeProto } from 'onnx-buf';
import type { Feeds } from '../calibrate/calibrate.ts';
import { addFloatInitializer, constFloat } from '../ir/constants.ts';
import { attrInt, GraphView } from '../ir/graph.ts';
import { channelStats, type ChannelAxis } from './channel-stats.ts';
import type { OptimisePass } from './context.ts';

/** How the producer of X absorbs X/s: which constants to divide, per channel. */
type Absorb = { kind: 'affine'; gamma: string; beta?: string; node: NodeProto; betaNode?: NodeProto } | { kind: 'linear'; node: NodeProto };

interface Site {
  x: string;
  channelAxis: ChannelAxis;
  consumers: NodeProto[];
  absorb: Absorb;
}

const isLinear = (view: GraphView, n: NodeProto) =>
  (n.opType === 'Conv' || n.opType === 'MatMul' || (n.opType === 'Gemm' && !attrInt(n, 'transA', 0))) && !!constFloat(view, n.input[1]);

/** Channel count of X as consumer `n` reads it, and whether the consumer can scale its input channels. */
function consumerChannels(view: GraphView, n: NodeProto): number | undefined {
  const w = constFloat(view, n.input[1])!;
  if (n.opType === 'Conv') {
    const g = attrInt(n, 'group', 1);
    if (g === 1) return w.dims[1];
    return g === w.dims[0] && w.dims[1] === 1 ? g : undefined; // depthwise
  }
  if (w.dims.length !== 2) return undefined;
  if (n.opType === 'Gemm') return attrInt(n, 'transB', 0) ? w.dims[1] : w.dims[0];
  return w.dims[0];
}

function findSites(view: GraphView, quantized: ReadonlySet<string>): Site[] {
  const sites: Site[] = [];
  const seen = new Set<string>();
  for (const n of view.graph.node) {
    if (!isLinear(view, n) || !quantized.has(n.name) || seen.has(n.input[0])) continue;
    const x = n.input[0];
    seen.add(x);
    const consumers = view.uses(x);
    if (view.graphOutputs.has(x) || !consumers.every((c) => isLinear(view, c) && c.input[0] === x && c.input[1] !== x && quantized.has(c.name))) continue;
    const axes = new Set(consumers.map((c) => (c.opType === 'Conv' ? 'second' : 'last')));
    if (axes.size !== 1) continue;
    const channelAxis = [...axes][0] as Site['channelAxis'];
    const C = consumerChannels(view, consumers[0]);
    if (!C || !consumers.every((c) => consumerChannels(view, c) === C)) continue;
    // Walk up through ops that commute with positive per-channel scales.
    let src = view.producer.get(x);
    let ok = true;
    while (src && (src.opType === 'Relu' || src.opType === 'MaxPool')) {
      if (view.uses(src.input[0]).length !== 1 || view.graphOutputs.has(src.input[0]) || (src.output[1] ?? '') !== '') ok = false;
      src = view.producer.get(src.input[0]);
    }
    if (!ok || !src) continue;
    const single = (t: string) => view.uses(t).length === 1 && !view.graphOutputs.has(t);
    const quantizedInput = (p: NodeProto, t: string) => p.input[0] === t; // a layer feeding itself: never
    let absorb: Absorb | undefined;
    if (src.opType === 'LayerNormalization' && channelAxis === 'last' && attrInt(src, 'axis', -1) === -1 && src.output.filter(Boolean).length === 1) {
      const g = constFloat(view, src.input[1]);
      const b = src.input[2] ? constFloat(view, src.input[2]) : undefined;
      if (g?.data.length === C && (!src.input[2] || b?.data.length === C)) absorb = { kind: 'affine', gamma: src.input[1], beta: src.input[2] || undefined, node: src };
    } else if (src.opType === 'Add' && channelAxis === 'last') {
      // Decomposed LayerNorm tail: Mul(y, γ) → Add(·, β), γ and β per channel.
      const bi = constFloat(view, src.input[1]) ? 1 : constFloat(view, src.input[0]) ? 0 : -1;
      const mul = bi >= 0 ? view.producer.get(src.input[1 - bi]) : undefined;
      const gi = mul?.opType === 'Mul' ? (constFloat(view, mul.input[1]) ? 1 : constFloat(view, mul.input[0]) ? 0 : -1) : -1;
      if (mul && gi >= 0 && single(mul.output[0]) && constFloat(view, mul.input[gi])!.data.length === C && constFloat(view, src.input[bi])!.data.length === C)
        absorb = { kind: 'affine', gamma: mul.input[gi], beta: src.input[bi], node: mul, betaNode: src };
    } else if (isLinear(view, src) && (src.opType === 'Conv') === (channelAxis === 'second') && !quantizedInput(src, x)) {
      // Its output reaches only the consumers (directly, or through the single-use ReLU/MaxPool chain above).
      const w = constFloat(view, src.input[1])!;
      const outC = src.opType === 'Conv' ? w.dims[0] : src.opType === 'Gemm' && attrInt(src, 'transB', 0) ? w.dims[0] : w.dims[1];
      const bias = src.input[2] ? constFloat(view, src.input[2]) : undefined;
      if (outC === C && (!src.input[2] || bias?.data.length === C) && (src.opType !== 'Conv' || attrInt(src, 'group', 1) === 1 || attrInt(src, 'group', 1) === C))
        absorb = { kind: 'linear', node: src };
    }
    if (absorb) sites.push({ x, channelAxis, consumers, absorb });
  }
  return sites;
}

/** Per-channel max |x| of each site's activation over the batches, on the float network. */
async function channelRanges(model: ModelProto, sites: Site[], batches: Feeds[], channels: (s: Site) => number): Promise<Map<string, Float64Array>> {
  const stats = await channelStats(model, sites.map((s) => ({ name: s.x, axis: s.channelAxis, channels: channels(s) })), batches);
  return new Map([...stats].map(([x, st]) => [x, st.min.map((lo, c) => (Number.isFinite(lo) ? Math.max(-lo, st.max[c], 0) : 0))]));
}

/** Per-input-channel max |w| of a consumer, and a function mapping a weight element to its input channel. */
function inputChannelOf(n: NodeProto, dims: readonly number[]): (i: number) => number {
  if (n.opType === 'Conv') {
    const inner = dims.slice(2).reduce((a, b) => a * b, 1);
    return attrInt(n, 'group', 1) === 1 ? (i) => Math.floor(i / inner) % dims[1] : (i) => Math.floor(i / inner);
  }
  if (n.opType === 'Gemm' && attrInt(n, 'transB', 0)) return (i) => i % dims[1];
  return (i) => Math.floor(i / dims[1]);
}

/** Output channel of a producer's weight element. */
function outputChannelOf(n: NodeProto, dims: readonly number[]): (i: number) => number {
  if (n.opType === 'Conv') {
    const inner = dims.slice(1).reduce((a, b) => a * b, 1);
    return (i) => Math.floor(i / inner);
  }
  if (n.opType === 'Gemm' && attrInt(n, 'transB', 0)) return (i) => Math.floor(i / dims[1]);
  return (i) => i % dims[1];
}

export async function migrateOutliers(input: ModelProto, quantizedLayers: ReadonlySet<string>, batches: Feeds[], alpha: number): Promise<{ model: ModelProto; sites: number }> {
  const model = clone(ModelProtoSchema, input);
  const view = new GraphView(model.graph!);
  const sites = findSites(view, quantizedLayers);
  if (!sites.length) return { model, sites: 0 };
  const ranges = await channelRanges(model, sites, batches, (s) => consumerChannels(view, s.consumers[0])!);
  for (const site of sites) {
    const xr = ranges.get(site.x)!;
    const C = xr.length;
    const wr = new Float64Array(C);
    for (const c of site.consumers) {
      const w = constFloat(view, c.input[1])!;
      const ch = inputChannelOf(c, w.dims);
      for (let i = 0; i < w.data.length; i++) wr[ch(i)] = Math.max(wr[ch(i)], Math.abs(w.data[i]));
    }
    const s = Float64Array.from(xr, (a, j) => (a > 0 && wr[j] > 0 ? Math.min(1e4, Math.max(1e-4, a ** alpha / wr[j] ** (1 - alpha))) : 1));
    for (const c of site.consumers) {
      const w = constFloat(view, c.input[1])!;
      const ch = inputChannelOf(c, w.dims);
      view.setInput(c, 1, addFloatInitializer(view, `${c.input[1]}_smooth`, w.dims, Float32Array.from(w.data, (v, i) => v * s[ch(i)])));
    }
    const a = site.absorb;
    if (a.kind === 'affine') {
      const g = constFloat(view, a.gamma)!;
      const gi = a.node.input.indexOf(a.gamma);
      view.setInput(a.node, gi, addFloatInitializer(view, `${a.gamma}_smooth`, g.dims, Float32Array.from(g.data, (v, j) => v / s[j])));
      if (a.beta) {
        const b = constFloat(view, a.beta)!;
        const bn = a.betaNode ?? a.node;
        view.setInput(bn, bn.input.indexOf(a.beta), addFloatInitializer(view, `${a.beta}_smooth`, b.dims, Float32Array.from(b.data, (v, j) => v / s[j])));
      }
    } else {
      const p = a.node;
      const w = constFloat(view, p.input[1])!;
      const oc = outputChannelOf(p, w.dims);
      view.setInput(p, 1, addFloatInitializer(view, `${p.input[1]}_smooth`, w.dims, Float32Array.from(w.data, (v, i) => v / s[oc(i)])));
      if (p.input[2]) {
        const b = constFloat(view, p.input[2])!;
        view.setInput(p, 2, addFloatInitializer(view, `${p.input[2]}_smooth`, b.dims, Float32Array.from(b.data, (v, j) => v / s[b.data.length === 1 ? 0 : j])));
      }
    }
  }
  view.pruneInitializers();
  return { model, sites: sites.length };
}

export function outlierMigration(alpha = 0.5): OptimisePass {
  return {
    name: 'outlier-migration',
    stage: 'pre',
    async run(state, ctx) {
      const layers = new Set(state.plan.layers.map((l) => l.node));
      const { model, sites } = await migrateOutliers(state.model, layers, [...ctx.batches, ...(ctx.fitBatches ?? [])], alpha);
      return { state: { ...state, model }, detail: `${sites} activations smoothed (α = ${alpha})` };
    },
  };
}
