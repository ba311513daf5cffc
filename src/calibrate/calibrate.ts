/**
 * Calibration, PPQ's order: weights first (their observers see the whole initializer), then activation statistics
 * streamed batch by batch from a model whose weights are already fake-quantized (`statsOn: 'quantized-weights'`,
 * the default) or from the float model (`statsOn: 'float'`). Statistics are computed inside onnxruntime where an
 * exact graph exists for them (in-graph-stats.ts); otherwise only the planned activation tensors are fetched, and
 * each batch's tensors are dropped after their observers have seen them, so memory does not grow with batches.
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, type ModelProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { GraphView, opsetVersion, tensorValueInfo, withGraphLists } from '../ir/graph.ts';
import { upgradeOpset } from '../ir/opset-upgrade.ts';
import { tensorDims, tensorToFloat32 } from '../onnx/tensor-codec.ts';
import type { QuantParams } from '../quant/config.ts';
import type { QuantPlan } from '../quant/plan.ts';
import { realiseQdq } from '../realise/qdq.ts';
import { createSession, type ExecutionProvider, type ModelSession } from '../runtime/session.ts';
import { valueInfoSpec } from '../runtime/inputs.ts';
import type { FloatTensor } from '../tensor.ts';
import { Fp8MseObserver, makeObserver, MinMaxObserver, PercentileObserver, type Observer } from './observers.ts';
import { valueRanges } from '../ir/value-range.ts';
import { appendMinMaxStats, appendPercentileStats, appendSamples, orderForEarlyRelease, type OrderStatOutputs } from './in-graph-stats.ts';

/** Model inputs for one batch: float tensors, or onnxruntime tensors for other dtypes (e.g. an int64 sample rate). */
export type Feeds = Record<string, FloatTensor | ort.Tensor>;

/**
 * Calibration batches: an iterable read once, or a function that opens them anew on each call and yields the same
 * batches each time. Only the latter lets calibration skip the lower statistic of tensors bounded below by a
 * small negative number (see calibrate), as a rare case then needs a second pass.
 */
export type CalibrationData = AsyncIterable<Feeds> | (() => AsyncIterable<Feeds>);

/** The batches of calibration data, opened for one reading. */
export function readBatches(data: CalibrationData): AsyncIterable<Feeds> {
  return typeof data === 'function' ? data() : data;
}

/**
 * The relative margin by which a tensor's upper statistic must pass |b| before its lower statistic, known to be ≥ b
 * from the graph (ir/value-range.ts), is taken to be irrelevant: the float32 kernels may pass a nonzero real-number
 * bound by rounding in the last bits, far less than this.
 */
export const BOUND_MARGIN = 1e-3;

/** Samples in a batch: the leading dimension of its first input (1 for an empty or scalar feed). */
export function batchSize(feeds: Feeds | undefined): number {
  return Object.values(feeds ?? {})[0]?.dims[0] ?? 1;
}

export interface CalibrateOptions {
  statsOn?: 'quantized-weights' | 'float';
  /** Stop after this many batches. */
  steps?: number;
  onBatch?: (done: number) => void;
  intraOpThreads?: number;
  /** Execution provider of the statistics session (float model plus statistic nodes); default 'cpu'. */
  provider?: ExecutionProvider;
  /** A statistics session per distinct input shape (the first few), with that shape written into the graph (default
   * true; see calibrate). The same statistics up to float32 ulps of the network's own kernels (tested). */
  sessionPerShape?: boolean;
  /** Compute percentile and min/max statistics and FP8 samples inside onnxruntime (default) instead of fetching
   * whole tensors into JS (same results: tested). */
  statsInGraph?: boolean;
  /** Skip the lower statistic of tensors the graph bounds below (default true; the parameters are the same either
   * way): those ≥ 0 always, those ≥ −b under symmetric configurations when the data can be read again. */
  skipBoundedLower?: boolean;
}

const SHAPED_SESSIONS = 2;

/**
 * The model with the symbolic and unknown dimensions of its graph inputs set to those of one batch's feeds. Fixed
 * dimensions stay as the model declares them, so a batch that does not fit is refused as by the generic session.
 */
function withInputShapes(model: ModelProto, feeds: Feeds): ModelProto {
  const m = withGraphLists(model);
  m.graph!.input = m.graph!.input.map((v) => {
    const f = feeds[v.name];
    const spec = valueInfoSpec(v);
    if (!f || (spec.dims && spec.dims.length !== f.dims.length)) return v;
    const dims = f.dims.map((d, i) => {
      const declared = spec.dims?.[i];
      return typeof declared === 'number' && declared > 0 ? declared : d;
    });
    return tensorValueInfo(v.name, spec.dataType, dims);
  });
  return m;
}

export function calibrateWeights(model: ModelProto, plan: QuantPlan): Map<string, QuantParams> {
  const view = new GraphView(model.graph!);
  const params = new Map<string, QuantParams>();
  for (const t of plan.tensors) {
    if (t.role !== 'weight') continue;
    const init = view.initializers.get(t.tensor);
    if (!init) throw new Error(`weight '${t.tensor}' is not an initializer`);
    const obs = makeObserver(t.config, 'weight', t.axis);
    obs.observe(tensorToFloat32(init), tensorDims(init));
    params.set(t.key, obs.params());
  }
  return params;
}

export async function calibrate(
  model: ModelProto,
  plan: QuantPlan,
  data: CalibrationData,
  opts: CalibrateOptions = {},
): Promise<{ params: Map<string, QuantParams>; batches: number }> {
  const replay = typeof data === 'function' ? data : undefined;
  const batches = readBatches(data);
  const params = calibrateWeights(model, plan);
  const activations = plan.tensors.filter((t) => t.role === 'activation');
  if (activations.length === 0) return { params, batches: 0 };
  let base = opts.statsOn === 'float' ? model : realiseQdq(model, plan, params, { keys: new Set(params.keys()), foldWeights: true });
  // Percentile and per-tensor min/max observers get their statistics, FP8 observers their samples, from nodes
  // added inside onnxruntime; only the other observers (histograms: KL, MSE) need whole tensors fetched into JS.
  const observers = new Map<string, Observer>(activations.map((t) => [t.key, makeObserver(t.config, 'activation')]));
  const inGraph = opts.statsInGraph ?? true;
  const percentile = inGraph ? activations.filter((t) => observers.get(t.key) instanceof PercentileObserver) : [];
  const minmax = inGraph ? activations.filter((t) => observers.get(t.key) instanceof MinMaxObserver) : [];
  // Lower statistics the graph makes irrelevant (ir/value-range.ts). A tensor ≥ 0 by construction (after a Relu,
  // a ReLU6…): its lower statistic would enter the scale only as min(lo, 0) = 0 (scaleFromRange), so skipping it is
  // exact for the parameters; its recorded min is then 0. A tensor ≥ −b with b > 0 (hard swish −0.375, SiLU
  // −0.278…) under symmetric configurations: the scale takes max(|lo|, hi), so lo is irrelevant once the upper
  // statistic reaches b — almost always — and its recorded min is then −b. Where it does not, those tensors'
  // statistics are taken again in full on a second reading of the data, hence only when the data can be read again.
  // Each skip saves a reduction pass over the tensor: quantize ÷ float pass on en_number 1.31 → 1.22 (bench/README).
  const ranges = opts.skipBoundedLower === false ? new Map<string, { lo: number }>() : valueRanges(model.graph!);
  const asymmetric = new Set(activations.filter((t) => !t.config.symmetric).map((t) => t.tensor));
  const bounds = new Map<string, number>();
  for (const { tensor } of [...percentile, ...minmax]) {
    const lo = ranges.get(tensor)?.lo ?? -Infinity;
    if (lo >= 0) bounds.set(tensor, 0);
    else if (lo > -Infinity && replay && !asymmetric.has(tensor)) bounds.set(tensor, lo);
  }
  const statTensor = (tensor: string) => ({ tensor, upperOnly: bounds.has(tensor) });
  const pctTensors = [...new Map(percentile.map((t) => [t.tensor, { ...statTensor(t.tensor), percentile: t.config.percentile ?? 0.9999 }])).values()];
  // The percentile graph's index arithmetic needs opset 13 (Split sizes as an input, Max over int64): a model below
  // it — a per-tensor rule from a file asks only for opset 10 — is raised for the statistics session alone.
  if (pctTensors.length && opsetVersion(base) < 13) {
    base = clone(ModelProtoSchema, base);
    upgradeOpset(base, 13);
  }
  const withPct = pctTensors.length ? appendPercentileStats(base, pctTensors) : { model: base, outputs: new Map<string, OrderStatOutputs>() };
  const mmTensors = [...new Set(minmax.map((t) => t.tensor))].map(statTensor);
  const withMm = mmTensors.length ? appendMinMaxStats(withPct.model, mmTensors) : { model: withPct.model, outputs: new Map<string, OrderStatOutputs>() };
  // FP8 observers get their per-batch samples gathered in the graph (indices from uniforms fed per batch).
  const graphInputs = new Set(model.graph!.input.map((v) => v.name));
  const sampled = inGraph ? activations.filter((t) => observers.get(t.key) instanceof Fp8MseObserver && !graphInputs.has(t.tensor)) : [];
  const fp8Observers = sampled.map((t) => observers.get(t.key) as Fp8MseObserver);
  const withSamples = sampled.length ? appendSamples(withMm.model, sampled.map((t, i) => ({ tensor: t.tensor, count: fp8Observers[i].uniforms().length }))) : { model: withMm.model, outputs: [] };
  const statsModel = withSamples.model;
  // Statistics run as soon as their tensor exists, so activations are not all kept alive to the network's end.
  if (statsModel !== base) orderForEarlyRelease(statsModel, base.graph!.node.length);
  const stats = withPct.outputs;
  const mmStats = withMm.outputs;
  const whole = activations.filter((t) => !percentile.includes(t) && !minmax.includes(t) && !sampled.includes(t));
  const fetchNames = [...new Set(whole.map((t) => t.tensor).filter((n) => !graphInputs.has(n)))];
  const statNames = [...[...stats.values(), ...mmStats.values()].flatMap((o) => (o.lo ? [o.lo, o.hi] : [o.hi])), ...withSamples.outputs.flatMap((o) => [o.sample, o.head, o.size])];
  // The statistics' index arithmetic (Shape → Gather → ReduceProd → Cast…, ~13 scalar nodes per tensor) runs on
  // every batch unless the graph's input shapes are fixed, when onnxruntime folds it to constants. So each of the
  // first SHAPED_SESSIONS distinct input shapes gets a session with that shape written into the graph (a ragged last
  // batch is the usual second); further shapes share one session with the model's own input shapes. Measured on
  // quantize, 8 batches (int8 per-channel; FP8 unchanged within noise): 2-core VM squeezenet_cifar10 69 → 45 ms,
  // resnet20_cifar10 258 → 235, en_number 1489 → 1411, PP-OCRv4 rec 3779 → 3640; on WebGPU (H200) 7–23% faster,
  // where onnxruntime places that arithmetic on the CPU provider, a copy between devices per node (bench/README.md).
  const perShape = opts.sessionPerShape ?? true;
  const sessions = new Map<string, ModelSession>();
  const open = (m: ModelProto) => createSession(m, { mode: 'float', extraOutputs: fetchNames, intraOpThreads: opts.intraOpThreads, provider: opts.provider });
  const generic = async (): Promise<ModelSession> => {
    let g = sessions.get('');
    if (!g) sessions.set('', (g = await open(statsModel)));
    return g;
  };
  let shaped = 0;
  const sessionFor = async (feeds: Feeds): Promise<ModelSession> => {
    const shape = JSON.stringify(Object.entries(feeds).map(([k, v]) => [k, v.dims]));
    const known = sessions.get(shape);
    if (known) return known;
    if (!perShape || shaped >= SHAPED_SESSIONS) return generic();
    shaped++;
    // A model whose fixed-shape graph onnxruntime rejects (a shape inferred to conflict) keeps the generic session.
    const s = await open(withInputShapes(statsModel, feeds)).catch(generic);
    sessions.set(shape, s);
    return s;
  };
  let done = 0;
  try {
    for await (const feeds of batches) {
      if (opts.steps !== undefined && done >= opts.steps) break;
      const session = await sessionFor(feeds);
      const runFeeds: Feeds = { ...feeds };
      fp8Observers.forEach((obs, i) => {
        const u = obs.uniforms();
        runFeeds[withSamples.outputs[i].uniforms] = new ort.Tensor('float64', u, [u.length]);
      });
      const result = fetchNames.length + statNames.length ? await session.run(runFeeds, [...fetchNames, ...statNames]) : {};
      fp8Observers.forEach((obs, i) => {
        const o = withSamples.outputs[i];
        const n = Number((result[o.size].data as BigInt64Array)[0]);
        if (obs.samples(n)) obs.observeSample(result[o.sample].data as Float32Array);
        else obs.observe(result[o.head].data as Float32Array);
      });
      for (const t of percentile) {
        const o = stats.get(t.tensor)!;
        const lo = o.lo ? (result[o.lo].data as Float32Array).at(-1)! : bounds.get(t.tensor)!;
        const hi = (result[o.hi].data as Float32Array).at(-1)!;
        (observers.get(t.key) as PercentileObserver).observeOrderStatistics(lo, hi);
      }
      for (const t of minmax) {
        const o = mmStats.get(t.tensor)!;
        (observers.get(t.key) as MinMaxObserver).observeRange(o.lo ? (result[o.lo].data as Float32Array)[0] : bounds.get(t.tensor)!, (result[o.hi].data as Float32Array)[0]);
      }
      for (const t of whole) {
        const v = graphInputs.has(t.tensor) ? feeds[t.tensor] : result[t.tensor];
        if (!v) throw new Error(`activation '${t.tensor}' was not produced`);
        if (!(v.data instanceof Float32Array)) throw new Error(`activation '${t.tensor}' is not float32`);
        observers.get(t.key)!.observe(v.data, v.dims);
      }
      done++;
      opts.onBatch?.(done);
    }
  } finally {
    for (const s of new Set(sessions.values())) await s.release();
  }
  if (done === 0) throw new Error('calibration data produced no batches');
  for (const [key, obs] of observers) params.set(key, obs.params());
  // A skipped lower bound −b < 0 is irrelevant only where the upper statistic reached b (with BOUND_MARGIN); the
  // tensors where it did not get their statistics again in full from a second reading of the data (`replay` is set
  // whenever a bound below 0 was used), with the same weights.
  const redo = new Set(
    [...percentile, ...minmax].filter((t) => {
      const b = bounds.get(t.tensor) ?? 0;
      return b < 0 && !(params.get(t.key)!.max[0] >= -b * (1 + BOUND_MARGIN));
    }).map((t) => t.tensor),
  );
  if (redo.size) {
    const again = plan.tensors.filter((t) => t.role !== 'activation' || redo.has(t.tensor));
    const full = await calibrate(model, { ...plan, tensors: again }, replay!(), { ...opts, onBatch: undefined });
    for (const t of again) if (t.role === 'activation') params.set(t.key, full.params.get(t.key)!);
  }
  return { params, batches: done };
}
