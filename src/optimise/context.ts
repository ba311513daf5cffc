/**
 * What every accuracy-recovery pass works on: the prepared float model, the plan and the parameters, plus a few
 * calibration batches held in memory to measure the error before and after (never test data). A pass is a
 * function `(state, ctx) → state'` that keeps its change only if the measured error goes down.
 */
import type { ModelProto } from 'onnx-buf';
import { batchSize, type Feeds } from '../calibrate/calibrate.ts';
import type { QuantParams } from '../quant/config.ts';
import type { QuantPlan } from '../quant/plan.ts';
import type { QuantRule } from '../quant/rules.ts';
import { realiseQdq } from '../realise/qdq.ts';
import { createSession, type ModelSession } from '../runtime/session.ts';
import type * as ort from 'onnxruntime-node';
import { perSamplePowerRatio } from '../analyse/error-measures.ts';
import { mean, pairedDifference } from '../math.ts';

export { mean };

export interface QuantState {
  model: ModelProto;
  plan: QuantPlan;
  params: Map<string, QuantParams>;
}

export interface OptimiseContext {
  rule: QuantRule;
  /** The prepared float model before any pass: the reference every error is measured against. */
  reference: ModelProto;
  /** Calibration batches kept in memory for measuring (a few batches: passes run the network many times). */
  batches: Feeds[];
  /** Calibration batches a pass may fit to (kept apart from `batches` when there are enough, so the error a pass
   * is judged by is not measured on the data it fitted). */
  fitBatches?: Feeds[];
  /** Calibration batches no fitting pass has used (see `splitCalibration`): what searches by network output run on. */
  freshBatches?: Feeds[];
  /** Output tensors whose error is minimised (default: graph outputs). */
  outputs: string[];
  /** How a pass's change is judged (keepDecision); default 'mean'. */
  keepTest?: KeepTest;
  /** Calibrates a plan as the recipe calibrated the plain rule (all its batches, its options): for a pass that
   * changes what is quantized, whose remaining activations then see another network. Set by runRecipe. */
  recalibrate?: (model: ModelProto, plan: QuantPlan) => Promise<Map<string, QuantParams>>;
  log: (line: string) => void;
}

/** The batches a pass fits to: `fitBatches` when the recipe has them, else the measuring batches. */
export function fittingBatches(ctx: OptimiseContext): Feeds[] {
  return ctx.fitBatches?.length ? ctx.fitBatches : ctx.batches;
}

/** The batches a network-output search runs on: `freshBatches` when the recipe has them, else the fitting ones. */
export function freshBatches(ctx: OptimiseContext): Feeds[] {
  return ctx.freshBatches?.length ? ctx.freshBatches : fittingBatches(ctx);
}

export interface PassReport {
  pass: string;
  before: number;
  after: number;
  kept: boolean;
  /** Standard error of the mean paired per-sample improvement (see `significantlyLower`). */
  se?: number;
  ms: number;
  /** The process's peak resident set (bytes) when the pass ended. It only grows, so the pass that raised it is
   * where a recipe's memory went (passes hold layer values; their sessions hold onnxruntime arenas). */
  peakRss?: number;
  detail?: string;
}

/** The process's peak resident set so far, in bytes (getrusage's maxrss is in KiB on Linux). */
export function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** Bytes as GiB with one decimal, as pass logs and reports give memory. */
export const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(1)} GiB`;

export interface OptimisePass {
  name: string;
  /** 'pre': changes the float model before calibration (e.g. equalization); 'post': works on calibrated params. */
  stage: 'pre' | 'post';
  /** Changes what is quantized (fallback, the role diagnostics): applied for what it does whatever the error, and
   * after it the plain rule is no alternative to restart from. Other passes are kept only when the error falls. */
  changesWhatIsQuantized?: boolean;
  run(state: QuantState, ctx: OptimiseContext): Promise<{ state: QuantState; detail?: string }>;
}

const floatCache = new WeakMap<ModelProto, WeakMap<Feeds[], Map<string, Float32Array[]>>>();

/** Float-network values of `names` on the context batches (cached per model and batch list). */
export async function floatOutputs(model: ModelProto, ctx: Pick<OptimiseContext, 'batches'>, names: readonly string[]): Promise<Map<string, Float32Array[]>> {
  let byBatches = floatCache.get(model);
  if (!byBatches) floatCache.set(model, (byBatches = new WeakMap()));
  let cache = byBatches.get(ctx.batches);
  if (!cache) byBatches.set(ctx.batches, (cache = new Map()));
  const missing = names.filter((n) => !cache!.has(n));
  if (missing.length) {
    const s = await createSession(model, { mode: 'float', extraOutputs: missing });
    const per = new Map<string, Float32Array[]>(missing.map((n) => [n, []]));
    for (const b of ctx.batches) {
      const r = await s.run(b, missing);
      for (const n of missing) per.get(n)!.push(r[n].data as Float32Array);
    }
    await s.release();
    for (const [k, v] of per) cache.set(k, v);
  }
  return new Map(names.map((n) => [n, cache!.get(n)!]));
}

/**
 * Per monitored output (in `ctx.outputs` order) and per calibration sample of the context batches, the PPQ power
 * ratio of the quantized network against the float network. Kept per sample so that a recipe can tell a real change
 * from noise (paired differences, see `significantlyLower`), and per output so that it can refuse a pass that trades
 * one output's error for another's (`keepDecision`).
 */
export async function sampleErrorsByOutput(state: QuantState, ctx: OptimiseContext): Promise<Float64Array[]> {
  const ref = await floatOutputs(ctx.reference, ctx, ctx.outputs);
  const q = realiseQdq(state.model, state.plan, state.params);
  const s: ModelSession = await createSession(q, { mode: 'simulate', extraOutputs: ctx.outputs });
  try {
    return await runErrorsByOutput(s, ctx.batches, ref, ctx.outputs);
  } finally {
    await s.release();
  }
}

/** Per monitored output and per sample of `batches`, the power ratio of `session`'s outputs against `ref` (the
 * float outputs on the same batches), with `extra` feeds added to every batch. */
async function runErrorsByOutput(session: ModelSession, batches: readonly Feeds[], ref: ReadonlyMap<string, Float32Array[]>, outputs: readonly string[], extra: Record<string, ort.Tensor | Feeds[string]> = {}): Promise<Float64Array[]> {
  return errorsByOutput((i) => session.run({ ...batches[i], ...extra }, outputs), batches, ref, outputs);
}

/** Per monitored output and per sample, the power ratio of the values `valuesOf(i)` holds for batch i against `ref`. */
async function errorsByOutput(valuesOf: (i: number) => Promise<Record<string, ort.Tensor>> | Record<string, ort.Tensor>, batches: readonly Feeds[], ref: ReadonlyMap<string, Float32Array[]>, outputs: readonly string[]): Promise<Float64Array[]> {
  const perOutput: number[][] = outputs.map(() => []);
  for (let i = 0; i < batches.length; i++) {
    const r = await valuesOf(i);
    const n = batchSize(batches[i]);
    outputs.forEach((o, j) => perOutput[j].push(...perSamplePowerRatio(r[o].data as Float32Array, ref.get(o)![i], n)));
  }
  return perOutput.map((v) => Float64Array.from(v));
}

/**
 * `outputError` of quantized output values already computed on the context batches (`valuesOf(i)`: batch i's
 * monitored outputs, e.g. from a stepper), so a pass that has them need not run the whole network again.
 */
export async function outputErrorOf(valuesOf: (i: number) => Record<string, ort.Tensor>, ctx: OptimiseContext): Promise<number> {
  const ref = await floatOutputs(ctx.reference, ctx, ctx.outputs);
  return mean(meanOverOutputs(await errorsByOutput(valuesOf, ctx.batches, ref, ctx.outputs)));
}

/** Per sample, the power ratio averaged over the monitored outputs. */
export function meanOverOutputs(byOutput: readonly Float64Array[]): Float64Array {
  const sum = new Float64Array(byOutput[0]?.length ?? 0);
  for (const e of byOutput) e.forEach((v, k) => (sum[k] += v / byOutput.length));
  return sum;
}

/** Per calibration sample, the power ratio averaged over the monitored outputs (see `sampleErrorsByOutput`). */
export async function sampleErrors(state: QuantState, ctx: OptimiseContext): Promise<Float64Array> {
  return meanOverOutputs(await sampleErrorsByOutput(state, ctx));
}

/** Mean PPQ power ratio over the monitored outputs and the samples of the context batches. */
export async function outputError(state: QuantState, ctx: OptimiseContext): Promise<number> {
  return mean(await sampleErrors(state, ctx));
}

/** Standard errors the mean improvement must exceed for a change to be kept (one-sided, ≈ 2.3% false keeps). */
export const KEEP_Z = 2;

/**
 * Is `after` lower than `before` beyond sampling noise? Paired per-sample differences d = before − after: the mean
 * must be positive and exceed KEEP_Z standard errors of the mean (with one sample: just positive). Returns the
 * decision and the standard error. Without this, a pass judged on a handful of samples (batch-1 models) was kept
 * for noise and raised the error on held-out data.
 */
export function significantlyLower(before: ArrayLike<number>, after: ArrayLike<number>, z = KEEP_Z): { lower: boolean; se: number } {
  const { mean: m, se } = pairedDifference(before, after);
  return { lower: m > 0 && m > z * se, se };
}

/**
 * How a recipe tells an improvement from noise. 'mean': the paired test above on the per-sample power ratios.
 * 'mean-or-log': also keep a change whose mean is lower and whose per-sample *log* ratios are significantly lower
 * (the same test on ln r). Per-sample ratios can be heavy-tailed — on super-resolution (16 measuring images, the
 * ratios 0.01%–0.9%) a few images carry the mean and its standard error, so a change that lowers most images' error
 * several-fold fails the mean test: srcnn ×4 per-channel range search, error 0.085% → 0.027% at 1.81 SE, lower on
 * 10 of 16 images, test PSNR 26.74 → 27.04 dB when kept. A mean of logs is also what PSNR averages. It accepts
 * what either test accepts, so its false keeps are up to twice the mean test's (≈ 4.6% one-sided); the zoo uses it
 * for tasks scored by PSNR, and the CLI on request.
 * 'lower': keep a change whose mean is lower at all (no standard errors asked; the per-output veto stays). Every pass
 * fits on batches the measuring ones are not, so the measuring mean is an unbiased estimate of the change's effect,
 * and the two-standard-error bar rolls back real gains that are small beside the per-sample spread: en_number
 * power-of-2 (128 measuring lines) after the shift, range search 1.527% → 1.415% (± 0.142%) and weight rounding →
 * 1.206% (± 0.189%) each rolled back under 'mean' (test exact match 44.10%); under 'lower' range search, weight
 * rounding and range search again kept, 1.527% → 1.126%, 45.06%. Its false keeps are any no-effect change's coin
 * toss, so a recipe under it returns its last state confirmed by the mean-or-log test against the state confirmed
 * before (optimise.ts chainConfirmation): small real gains add up, a tail of noise is undone; quantize and zoo use it
 * on request only.
 */
export type KeepTest = 'mean' | 'mean-or-log' | 'lower';

/** ln r, with r floored at 1e-12 so a sample the quantization leaves exact (r = 0) stays finite. */
const logRatios = (r: ArrayLike<number>): number[] => Array.from(r, (x) => Math.log(Math.max(x, 1e-12)));

/**
 * Does a recipe keep a change from `before` to `after` (per-output, per-sample errors)? Its error averaged over the
 * outputs must be significantly lower (`test`, above), and no single output's error significantly higher: a pass that
 * lowers one head's error by raising another's is a trade, not a recovery, and the model's OQE (the worst output) can
 * go up with it (mlsd_320_tiny per-channel: equalization took `offsets` 37.0% → 27.7% and `scores` 100.09% → 100.48%
 * on held-out feeds, both systematic). With one output the second test never fires. `worse` names the output that
 * vetoed the change; `onLogs` says the log test, not the mean test, accepted it.
 */
export function keepDecision(before: readonly Float64Array[], after: readonly Float64Array[], outputs: readonly string[], test: KeepTest = 'mean'): { kept: boolean; se: number; worse?: string; onLogs?: boolean } {
  const b = meanOverOutputs(before);
  const a = meanOverOutputs(after);
  const { lower, se } = significantlyLower(b, a, test === 'lower' ? 0 : KEEP_Z);
  const onLogs = !lower && test === 'mean-or-log' && mean(a) < mean(b) && significantlyLower(logRatios(b), logRatios(a)).lower;
  const kept = lower || onLogs;
  const how = onLogs ? { onLogs } : {};
  if (!kept || before.length < 2) return { kept, se, ...how };
  const j = before.findIndex((x, k) => significantlyLower(after[k], x).lower);
  return j < 0 ? { kept, se, ...how } : { kept: false, se, worse: outputs[j] };
}

/** First batches of `batches` holding at least `samples` samples (all of them when they hold fewer). */
export function firstSamples(batches: readonly Feeds[], samples: number): Feeds[] {
  const out: Feeds[] = [];
  let n = 0;
  for (const b of batches) {
    if (n >= samples) break;
    out.push(b);
    n += batchSize(b);
  }
  return out;
}

/**
 * A search session's error on a fixed set of batches, per sample: the power ratio averaged over the monitored
 * outputs, with `extra` feeds (the searched values, graph inputs of the session) added to every batch. Searches by
 * network output error (rounding-search, scale-search) run this once per trial.
 */
export async function searchErrors(session: ModelSession, batches: readonly Feeds[], ref: ReadonlyMap<string, Float32Array[]>, outputs: readonly string[], extra: Record<string, ort.Tensor | Feeds[string]>): Promise<Float64Array> {
  return searchErrorsOf((b) => session.run({ ...batches[b], ...extra }, outputs), batches, ref, outputs);
}

/** `searchErrors` of values computed some other way (`valuesOf(b)`: batch b's monitored outputs, e.g. from a
 * stepper's peek), so a search that runs only part of the network per trial scores it the same way. */
export async function searchErrorsOf(valuesOf: (b: number) => Promise<Record<string, ort.Tensor>> | Record<string, ort.Tensor>, batches: readonly Feeds[], ref: ReadonlyMap<string, Float32Array[]>, outputs: readonly string[]): Promise<Float64Array> {
  return meanOverOutputs(await errorsByOutput(valuesOf, batches, ref, outputs));
}

export function cloneParams(params: ReadonlyMap<string, QuantParams>): Map<string, QuantParams> {
  return new Map([...params].map(([k, p]) => [k, { ...p, scale: p.scale.slice(), zeroPoint: p.zeroPoint.slice(), min: p.min.slice(), max: p.max.slice() }]));
}
