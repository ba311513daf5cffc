/**
 * Gate scaling (pass `gate-scaling`): a squeeze-excite block ends in x·g — g one value per channel and sample, a
 * Sigmoid or HardSigmoid of a path from a global pooling — and the product is the quantized input of the next Conv.
 * Under a per-tensor activation grid a channel's rounding error depends on where its values fall on that grid:
 * E4M3's relative step halves from the bottom of a binade to its top, and an integer grid's step is the tensor's
 * whatever the channel's own range. A per-channel factor fᵢ on the gate (a Mul on the [N, C, 1, 1] gate: C values
 * per sample, nearly free, and float like every op but the quantized layers' inputs) undone in the Conv's input
 * channel (weights ÷ fᵢ) keeps the float function — the same tensors are quantized, under the same rule — and moves
 * channel i's values where the grid serves them best. en_number's first SE product under FP8: five of its eight
 * channels sit at a mean ≈ 2 with a standard deviation of 0.1–0.4, just above a binade boundary where E4M3's step is
 * 0.25, and most of that Conv's output error (50% plain) was their per-channel rounding bias.
 *
 * fᵢ = 2^(k/32) minimises, with the tensor's activation scale and the weight's scale(s) held at the plan's
 * parameters, the first-order error each side adds to the Conv's output through channel i:
 *   ‖wᵢ‖² · mean[(Q(fᵢ·x)/fᵢ − x)²] + mean[x²] · ‖Q_w(wᵢ/fᵢ)·fᵢ − wᵢ‖²
 * (x: channel i of the product on the fitting batches of the float network, at most SAMPLES values). k runs from −32
 * (a factor ½: one binade down, the same FP8 grid as 1 one binade over) up to where the channel would reach the
 * tensor's absolute maximum, which holds the tensor's scale right (and at most to a factor 2 for FP8, 64 for integers).
 *
 * The choice is layer-local, and the recipe judges it by the network output: on mobilenet_v3_small_cifar10 it lowers
 * most SE Convs' output error yet raises the logits' (rolled back under every rule), and choosing the factors jointly
 * on the Conv's output did no better there and worse on en_number (bench/README.md, thirty-fourth session).
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, type NodeProto } from 'onnx-buf';
import { batchSize } from '../calibrate/calibrate.ts';
import { addFloatInitializer, constFloat, type ConstFloat } from '../ir/constants.ts';
import { attrInt, GraphView, makeNode } from '../ir/graph.ts';
import type { TensorQuantConfig } from '../quant/config.ts';
import { fakeQuant } from '../quant/numerics.ts';
import { fittingBatches, floatOutputs, type OptimisePass, type QuantState } from './context.ts';
import { channelShape } from './equalization.ts';

/** A squeeze-excite product x·g read by one Conv. */
export interface GateSite {
  /** The product's node; `gateInput` is the index of g among its inputs. */
  mul: NodeProto;
  gateInput: number;
  conv: NodeProto;
  channels: number;
}

/** Values per channel the factor is chosen on (a deterministic stride through the fitting batches). */
const SAMPLES = 1024;
/** Candidate factors per binade. */
const STEPS = 32;
/**
 * A channel moves only if its predicted error falls by this fraction. The prediction uses the float network's values,
 * while deep layers see values far from those (en_number FP8: 130–190% cumulative error at the later SE products), so
 * small predicted gains are noise: with any gain accepted, 1128 of its 1152 channels moved and the output error on
 * calibration rose 10.26% → 11.74%; with 20%, 787 moved and it fell to 8.26% (50%: 62 moved, 8.29%).
 */
const MIN_GAIN = 0.2;
/** Nodes walked back from the gate to its global pooling. */
const WALK = 8;

const GATES = new Set(['Sigmoid', 'HardSigmoid']);
const POOLS = new Set(['GlobalAveragePool', 'GlobalMaxPool', 'ReduceMean', 'ReduceMax']);

/** Is `g` a gate computed from a global pooling, read by nothing but `mul`? */
function isChannelGate(view: GraphView, g: string, mul: NodeProto): boolean {
  const p = view.producer.get(g);
  if (!p || !GATES.has(p.opType) || view.uses(g).length !== 1 || view.uses(g)[0] !== mul || view.graphOutputs.has(g)) return false;
  let n: NodeProto | undefined = p;
  for (let i = 0; i < WALK && n; i++) {
    if (POOLS.has(n.opType)) return n.opType.startsWith('Global') || attrInt(n, 'keepdims', 1) === 1;
    n = view.producer.get(n.input[0]);
  }
  return false;
}

/** Every squeeze-excite product that is the input of exactly one Conv (group 1 or depthwise) with a constant weight. */
export function findGateSites(view: GraphView): GateSite[] {
  const sites: GateSite[] = [];
  for (const conv of view.graph.node) {
    if (conv.opType !== 'Conv') continue;
    const w = constFloat(view, conv.input[1]);
    const x = conv.input[0];
    const mul = view.producer.get(x);
    if (!w || w.dims.length < 3 || !mul || mul.opType !== 'Mul' || mul.input.length !== 2) continue;
    if (view.uses(x).length !== 1 || view.graphOutputs.has(x)) continue;
    const gateInput = mul.input.findIndex((g) => isChannelGate(view, g, mul));
    if (gateInput < 0 || mul.input[0] === mul.input[1]) continue;
    const group = attrInt(conv, 'group', 1);
    const channels = group === 1 ? w.dims[1] : group === w.dims[0] && w.dims[1] === 1 ? group : 0;
    if (channels > 0) sites.push({ mul, gateInput, conv, channels });
  }
  return sites;
}

/** Per input channel of a Conv weight, the indices of its values and the output channel of each. */
function inputColumns(w: ConstFloat, channels: number, depthwise: boolean): { at: number[][]; out: number[][] } {
  const inner = w.dims.slice(2).reduce((a, b) => a * b, 1);
  const at = Array.from({ length: channels }, (): number[] => []);
  const out = Array.from({ length: channels }, (): number[] => []);
  for (let i = 0; i < w.data.length; i++) {
    const o = Math.floor(i / (inner * w.dims[1]));
    const c = depthwise ? o : Math.floor(i / inner) % w.dims[1];
    at[c].push(i);
    out[c].push(o);
  }
  return { at, out };
}

/** Up to SAMPLES values of each channel of an [N, C, …] tensor over its batches, every k-th position. */
function channelSamples(values: readonly Float32Array[], sizes: readonly number[], channels: number): Float32Array[] {
  const total = values.reduce((a, v) => a + v.length, 0) / channels;
  const stride = Math.max(1, Math.floor(total / SAMPLES));
  return Array.from({ length: channels }, (_, c) => {
    const got: number[] = [];
    let k = 0;
    values.forEach((v, b) => {
      const inner = v.length / (sizes[b] * channels);
      for (let n = 0; n < sizes[b]; n++)
        for (let j = 0, base = (n * channels + c) * inner; j < inner; j++, k++) if (k % stride === 0 && got.length < SAMPLES) got.push(v[base + j]);
    });
    return Float32Array.from(got);
  });
}

/** The factor per channel: the least first-order output error, the scales held (see the file comment). */
export function gateFactors(x: readonly Float32Array[], w: ConstFloat, cols: { at: number[][]; out: number[][] }, act: { cfg: TensorQuantConfig; scale: number; zeroPoint: number; absMax: number }, weight: { cfg: TensorQuantConfig; scale: Float32Array }): Float64Array {
  return Float64Array.from(x, (xs, c) => {
    const at = cols.at[c];
    const wNorm = at.reduce((a, i) => a + w.data[i] ** 2, 0);
    const xPower = xs.reduce((a, v) => a + v * v, 0) / Math.max(1, xs.length);
    const xMax = xs.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    if (!(wNorm > 0 && xPower > 0)) return 1;
    const kMax = Math.min((act.cfg.format === 'int' ? 6 : 1) * STEPS, Math.floor(STEPS * Math.log2(act.absMax / xMax)));
    const errAt = (k: number) => {
      const f = 2 ** (k / STEPS);
      let ea = 0;
      for (const v of xs) ea += (fakeQuant(f * v, act.cfg, act.scale, act.zeroPoint) / f - v) ** 2;
      let ew = 0;
      at.forEach((i, j) => {
        const s = weight.scale[weight.scale.length === 1 ? 0 : cols.out[c][j]];
        ew += (fakeQuant(w.data[i] / f, weight.cfg, s, 0) * f - w.data[i]) ** 2;
      });
      return (wNorm * ea) / xs.length + xPower * ew;
    };
    // k = 0 first, so that a factor must be strictly better than leaving the channel where it is.
    const unmoved = errAt(0);
    let [best, bestErr] = [0, unmoved];
    for (let k = -STEPS; k <= kMax; k++) {
      const err = k === 0 ? Infinity : errAt(k);
      if (err < bestErr) [best, bestErr] = [k, err];
    }
    return bestErr < (1 - MIN_GAIN) * unmoved ? 2 ** (best / STEPS) : 1;
  });
}

/** The model with each site's gate multiplied by its factors and its Conv's input channels divided by them. */
export function scaleGates(state: QuantState, sites: readonly GateSite[], factors: readonly Float64Array[]): QuantState['model'] {
  const model = clone(ModelProtoSchema, state.model);
  const view = new GraphView(model.graph!);
  // The clone's nodes, found by position (NodeProto objects are not shared between clones).
  const nodeAt = (n: NodeProto) => view.graph.node[state.model.graph!.node.indexOf(n)];
  const moved = sites.map((s) => ({ mul: nodeAt(s.mul), conv: nodeAt(s.conv), gateInput: s.gateInput, channels: s.channels }));
  moved.forEach((s, i) => {
    const f = factors[i];
    const w = constFloat(view, s.conv.input[1])!;
    const depthwise = attrInt(s.conv, 'group', 1) !== 1;
    const cols = inputColumns(w, s.channels, depthwise);
    const scaled = Float32Array.from(w.data);
    cols.at.forEach((at, c) => at.forEach((k) => (scaled[k] = w.data[k] / f[c])));
    view.setInput(s.conv, 1, addFloatInitializer(view, `${s.conv.input[1]}_gate`, w.dims, scaled));
    const g = s.mul.input[s.gateInput];
    const factor = addFloatInitializer(view, `${g}_scale`, channelShape(s.channels, w.dims.length), Float32Array.from(f));
    const out = view.freshName(`${g}_scaled`);
    view.addNode(makeNode('Mul', [g, factor], [out], out), view.graph.node.indexOf(s.mul));
    view.setInput(s.mul, s.gateInput, out);
  });
  view.pruneInitializers();
  return model;
}

export const gateScaling: OptimisePass = {
  name: 'gate-scaling',
  stage: 'pre',
  async run(state, ctx) {
    const view = new GraphView(state.model.graph!);
    const planned = (role: 'activation' | 'weight', tensor: string) => {
      const t = state.plan.tensors.find((x) => x.role === role && x.tensor === tensor);
      const p = t && state.params.get(t.key);
      return t && p ? { t, p } : undefined;
    };
    const sites = findGateSites(view).filter((s) => planned('activation', s.conv.input[0]) && planned('weight', s.conv.input[1]));
    if (!sites.length) return { state, detail: 'no quantized squeeze-excite product' };
    const batches = fittingBatches(ctx);
    const values = await floatOutputs(state.model, { batches }, sites.map((s) => s.conv.input[0]));
    const sizes = batches.map(batchSize);
    const factors = sites.map((s) => {
      const { t, p } = planned('activation', s.conv.input[0])!;
      const weight = planned('weight', s.conv.input[1])!;
      const w = constFloat(view, s.conv.input[1])!;
      const depthwise = attrInt(s.conv, 'group', 1) !== 1;
      const v = values.get(s.conv.input[0])!;
      const absMax = v.reduce((m, b) => b.reduce((a, x) => Math.max(a, Math.abs(x)), m), 0);
      const act = { cfg: t.config, scale: p.scale[0], zeroPoint: p.zeroPoint[0], absMax };
      return gateFactors(channelSamples(v, sizes, s.channels), w, inputColumns(w, s.channels, depthwise), act, { cfg: weight.t.config, scale: weight.p.scale });
    });
    const moved = factors.reduce((a, f) => a + f.filter((v) => v !== 1).length, 0);
    const total = factors.reduce((a, f) => a + f.length, 0);
    if (!moved) return { state, detail: `${sites.length} squeeze-excite product(s): every channel best where it is` };
    return { state: { ...state, model: scaleGates(state, sites, factors) }, detail: `${sites.length} squeeze-excite product(s), ${moved} of ${total} channels rescaled through their gates` };
  },
};
