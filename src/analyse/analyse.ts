/**
 * Error analysis of a quantized model against its float model on test data (DESIGN.md §3):
 * - cumulative: each quantized layer's output in the quantized network vs the float network (errors accumulate);
 * - isolated: the graph outputs when only one layer is quantized (both inputs, weight only, activation only);
 * - clipping: fraction of each activation input outside its quantization range, with histograms;
 * - weights: range, spread of per-channel ranges, outliers.
 * Memory is bounded: layer outputs are fetched `groupSize` layers at a time and dropped after each batch.
 */
import { createHash } from 'node:crypto';
import type { ModelProto } from 'onnx-buf';
import type * as ort from 'onnxruntime-node';
import { GraphView } from '../ir/graph.ts';
import { tensorDims, tensorToFloat32 } from '../onnx/tensor-codec.ts';
import type { QuantParams } from '../quant/config.ts';
import type { QuantPlan } from '../quant/plan.ts';
import { realiseQdq } from '../realise/qdq.ts';
import { createSession, type ModelSession } from '../runtime/session.ts';
import { batchSize, type Feeds } from '../calibrate/calibrate.ts';
import { ErrorAccumulator } from './error-measures.ts';
import { recoverPlan } from './recover-plan.ts';
import { ANALYSIS_SCHEMA, GRAPH_INPUT, type AnalysisReport, type ErrorMeasures, type Histogram, type LayerAnalysis, type WeightStats } from './schema.ts';

export interface AnalyseOptions {
  /** Output tensors monitored for OQE (default: graph outputs). */
  outputs?: string[];
  /** Isolated error per layer: none, both inputs, or also weight-only and activation-only. */
  isolated?: 'none' | 'both' | 'all';
  /** Batches used for isolated error (it costs one pass per layer and variant). */
  isolatedBatches?: number;
  groupSize?: number;
  histogramBins?: number;
  toolVersion?: string;
  floatPath?: string;
  quantPath?: string;
  rule?: string;
  dataSource?: string;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export type BatchSource = () => AsyncIterable<Feeds>;

function sha256(model: ModelProto | Uint8Array): string {
  return createHash('sha256').update(model instanceof Uint8Array ? model : JSON.stringify(model.graph?.node.length ?? 0)).digest('hex');
}

async function errorPass(
  floatSession: ModelSession,
  quantSession: ModelSession,
  pairs: { floatName: string; quantName: string }[],
  data: BatchSource,
  maxBatches = Infinity,
  extra?: { quantFetch: readonly string[]; onQuant: (feeds: Feeds, result: Record<string, ort.Tensor>) => void },
): Promise<{ measures: ErrorMeasures[]; samples: number; batches: number }> {
  const acc = pairs.map(() => new ErrorAccumulator());
  const floatNames = pairs.map((p) => p.floatName);
  const quantNames = pairs.map((p) => p.quantName);
  // Extra tensors fetched from the same quant run (clipping statistics), so they cost no pass of their own.
  const quantFetch = extra ? [...new Set([...quantNames, ...extra.quantFetch])] : quantNames;
  let samples = 0;
  let batches = 0;
  for await (const feeds of data()) {
    if (batches >= maxBatches) break;
    // onnxruntime-node runs synchronously on this thread: the two runs are sequential either way.
    const f = await floatSession.run(feeds, floatNames);
    const q = quantFetch.length ? await quantSession.run(feeds, quantFetch) : {};
    const n = batchSize(feeds);
    pairs.forEach((p, i) => acc[i].add(q[p.quantName].data as Float32Array, f[p.floatName].data as Float32Array, n));
    extra?.onQuant(feeds, q);
    samples += n;
    batches++;
  }
  return { measures: acc.map((a) => a.result()), samples, batches };
}

function weightStats(values: Float32Array, dims: number[], axis: number | undefined): WeightStats {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
  }
  const mean = sum / values.length;
  let sq = 0;
  for (const v of values) sq += (v - mean) ** 2;
  const sd = Math.sqrt(sq / values.length);
  let outliers = 0;
  for (const v of values) if (Math.abs(v - mean) > 6 * sd) outliers++;
  const ax = axis ?? 0;
  const C = dims.length > 1 ? dims[ax] : 1;
  const inner = dims.slice(ax + 1).reduce((a, b) => a * b, 1);
  const absmax = new Float64Array(C);
  for (let i = 0; i < values.length; i++) {
    const c = C === 1 ? 0 : Math.floor(i / inner) % C;
    absmax[c] = Math.max(absmax[c], Math.abs(values[i]));
  }
  const nz = [...absmax].filter((a) => a > 0);
  const spread = nz.length ? Math.max(...nz) / Math.min(...nz) : 1;
  return { min, max, channelRangeSpread: spread, outlierFraction: outliers / values.length };
}

/** Representable float range of a per-tensor activation config. */
function clipRange(plan: QuantPlan['tensors'][number], p: QuantParams): [number, number] {
  const s = p.scale[0];
  if (plan.config.format !== 'int') return [-plan.config.qmax * s, plan.config.qmax * s];
  return [(plan.config.qmin - p.zeroPoint[0]) * s, (plan.config.qmax - p.zeroPoint[0]) * s];
}

export async function analyse(
  floatModel: ModelProto,
  quantModel: ModelProto,
  data: BatchSource,
  opts: AnalyseOptions = {},
  known?: { plan: QuantPlan; params: ReadonlyMap<string, QuantParams> },
): Promise<AnalysisReport> {
  const { plan, params } = known ?? recoverPlan(floatModel, quantModel);
  const fview = new GraphView(floatModel.graph!);
  const outputs = opts.outputs ?? floatModel.graph!.output.map((o) => o.name);
  const groupSize = opts.groupSize ?? 64;
  const progress = opts.onProgress ?? (() => {});

  // Clipping and histograms of each layer's activation input (the float value entering Q, in the quant network):
  // gathered from the quant runs of the first cumulative group instead of a pass of their own.
  const bins = opts.histogramBins ?? 64;
  const actOf = new Map<string, { t: QuantPlan['tensors'][number]; p: QuantParams }>();
  const weightOf = new Map<string, { t: QuantPlan['tensors'][number]; p: QuantParams }>();
  for (const t of plan.tensors)
    for (const u of t.uses) {
      const p = params.get(t.key)!;
      if (t.role === 'activation' && u.input === 0 && !actOf.has(u.node)) actOf.set(u.node, { t, p });
      if (t.role === 'weight') weightOf.set(u.node, { t, p });
    }
  const graphInputs = new Set(floatModel.graph!.input.map((v) => v.name));
  const firstAct = new Map<string, { t: QuantPlan['tensors'][number]; p: QuantParams }>();
  for (const a of actOf.values()) if (!firstAct.has(a.t.tensor)) firstAct.set(a.t.tensor, a);
  const clipNames = [...firstAct.keys()];
  const clip = new Map<string, { out: number; total: number; hist: Histogram }>();
  for (const name of clipNames) {
    const a = firstAct.get(name)!;
    const [lo, hi] = clipRange(a.t, a.p);
    clip.set(name, { out: 0, total: 0, hist: { lo: lo * 1.5, hi: hi * 1.5, counts: new Array<number>(bins).fill(0), clipLo: lo, clipHi: hi } });
  }
  const clipFetch = clipNames.filter((n) => !graphInputs.has(n));
  const observeClip = (feeds: Feeds, r: Record<string, ort.Tensor>) => {
    for (const name of clipNames) {
      const v = (graphInputs.has(name) ? feeds[name].data : r[name].data) as Float32Array;
      const c = clip.get(name)!;
      const { lo, hi, counts, clipLo, clipHi } = c.hist;
      const k = bins / (hi - lo);
      let out = 0;
      for (let i = 0; i < v.length; i++) {
        const x = v[i];
        if (x < clipLo || x > clipHi) out++;
        counts[Math.max(0, Math.min(bins - 1, Math.floor((x - lo) * k)))]++;
      }
      c.out += out;
      c.total += v.length;
    }
  };
  let clipDone = clipNames.length === 0;

  // 1. Cumulative error per layer, then the monitored outputs, in groups.
  const targets = [...plan.layers.map((l) => l.output), ...outputs];
  const measures: ErrorMeasures[] = [];
  let samples = 0;
  let batches = 0;
  for (let g = 0; g < targets.length; g += groupSize) {
    const names = targets.slice(g, g + groupSize);
    const withClip = !clipDone;
    const fs = await createSession(floatModel, { mode: 'float', extraOutputs: names });
    const qs = await createSession(quantModel, { mode: 'simulate', extraOutputs: withClip ? [...new Set([...names, ...clipFetch])] : names });
    const r = await errorPass(
      fs,
      qs,
      names.map((n) => ({ floatName: n, quantName: n })),
      data,
      Infinity,
      withClip ? { quantFetch: clipFetch, onQuant: observeClip } : undefined,
    );
    clipDone = true;
    measures.push(...r.measures);
    samples = r.samples;
    batches = r.batches;
    await fs.release();
    await qs.release();
    progress('cumulative', Math.min(g + groupSize, targets.length), targets.length);
  }

  // 2. Clipping, when there was no cumulative pass to gather it from.
  if (!clipDone) {
    const qs = await createSession(quantModel, { mode: 'simulate', extraOutputs: clipFetch });
    for await (const feeds of data()) observeClip(feeds, clipFetch.length ? await qs.run(feeds, clipFetch) : {});
    await qs.release();
  }

  // 3. Isolated error: one layer quantized at a time, measured at the monitored outputs.
  const isolated = new Map<string, NonNullable<LayerAnalysis['isolated']>>();
  const mode = opts.isolated ?? 'none';
  if (mode !== 'none') {
    // The float network's outputs do not change from layer to layer: compute them once for the batches used.
    const isoBatches = opts.isolatedBatches ?? 4;
    const fs = await createSession(floatModel, { mode: 'float', extraOutputs: outputs });
    const floatRefs: Record<string, ort.Tensor>[] = [];
    for await (const feeds of data()) {
      if (floatRefs.length >= isoBatches) break;
      floatRefs.push(await fs.run(feeds, outputs));
    }
    await fs.release();
    const replayFloat = (): ModelSession => {
      let i = 0;
      return { inputNames: fs.inputNames, outputNames: fs.outputNames, run: async () => floatRefs[i++], release: async () => {} };
    };
    const variants: ('both' | 'weightOnly' | 'activationOnly')[] = mode === 'all' ? ['both', 'weightOnly', 'activationOnly'] : ['both'];
    let done = 0;
    for (const layer of plan.layers) {
      const keysFor = (v: string) =>
        new Set(
          plan.tensors
            .filter((t) => t.uses.some((u) => u.node === layer.node) && (v === 'both' || (v === 'weightOnly') === (t.role === 'weight')))
            .map((t) => t.key),
        );
      const entry: Partial<Record<string, ErrorMeasures>> = {};
      for (const v of variants) {
        const keys = keysFor(v);
        if (keys.size === 0) continue;
        const single = { ...plan, tensors: plan.tensors.map((t) => (keys.has(t.key) ? { ...t, uses: t.uses.filter((u) => u.node === layer.node) } : t)) };
        const model = realiseQdq(floatModel, single, params, { keys });
        const qs = await createSession(model, { mode: 'simulate', extraOutputs: outputs });
        const r = await errorPass(replayFloat(), qs, outputs.map((o) => ({ floatName: o, quantName: o })), data, isoBatches);
        await qs.release();
        entry[v] = worst(r.measures);
      }
      if (entry.both) isolated.set(layer.node, { both: entry.both, weightOnly: entry.weightOnly, activationOnly: entry.activationOnly });
      progress('isolated', ++done, plan.layers.length);
    }
  }

  const layers: LayerAnalysis[] = plan.layers.map((l, i) => {
    const a = actOf.get(l.node);
    const c = a ? clip.get(a.t.tensor) : undefined;
    const w = weightOf.get(l.node);
    const winit = w ? fview.initializers.get(w.t.tensor) : undefined;
    const from = a ? (fview.producer.get(a.t.tensor)?.opType ?? (graphInputs.has(a.t.tensor) ? GRAPH_INPUT : undefined)) : undefined;
    return {
      name: l.node,
      op: l.op,
      output: l.output,
      depth: i,
      cumulative: measures[i],
      ...(from ? { inputFrom: from } : {}),
      ...(isolated.has(l.node) ? { isolated: isolated.get(l.node) } : {}),
      ...(c ? { clipFraction: c.out / Math.max(1, c.total), histogram: c.hist } : {}),
      ...(winit ? { weight: weightStats(tensorToFloat32(winit), tensorDims(winit), w!.p.axis) } : {}),
    };
  });
  const outs = outputs.map((name, i) => ({ name, ...measures[plan.layers.length + i] }));
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  const maxOf = (xs: number[]) => (xs.length ? Math.max(...xs) : NaN);
  return {
    schema: ANALYSIS_SCHEMA,
    tool: { name: 'onnxquant', version: opts.toolVersion ?? '0.1.0' },
    floatModel: { path: opts.floatPath ?? '<memory>', sha256: '' },
    quantModel: { path: opts.quantPath ?? '<memory>', sha256: '' },
    ...(opts.rule ? { rule: opts.rule } : {}),
    data: { samples, batches, source: opts.dataSource ?? '<iterator>' },
    layers,
    outputs: outs,
    summary: {
      aqe: mean(layers.map((l) => l.cumulative.powerRatio)),
      mqe: maxOf(layers.map((l) => l.cumulative.powerRatio)),
      oqe: maxOf(outs.map((o) => o.powerRatio)),
      aqeNorm: mean(layers.map((l) => l.cumulative.normRatio)),
      mqeNorm: maxOf(layers.map((l) => l.cumulative.normRatio)),
      oqeNorm: maxOf(outs.map((o) => o.normRatio)),
    },
  };
}

function worst(ms: ErrorMeasures[]): ErrorMeasures {
  return ms.reduce((a, b) => (b.powerRatio > a.powerRatio ? b : a));
}

export function modelSha256(bytes: Uint8Array): string {
  return sha256(bytes);
}
