/**
 * Task evaluation contract: an Evaluator turns a model's outputs on the test split into the task metric. The float
 * run may hand a `reference` (its own predictions) to the quantized runs, which is how unlabelled data is scored.
 */
import type * as ort from 'onnxruntime-node';
import type { Batch } from '../data/types.ts';
import type { ModelSession } from '../../runtime/session.ts';

export interface MetricInfo {
  /** e.g. 'top-1', 'exact match', 'PSNR', 'mAP', 'mIoU', 'agreement'. */
  name: string;
  unit: '%' | 'dB';
}

export interface TaskResult {
  value: number;
  details?: Record<string, number>;
  /**
   * Each test sample's score in the metric's unit, in test-split order, where the metric is their mean (top-1 and
   * exact match: 100 or 0): what a paired comparison of two models on the same samples needs.
   */
  perSample?: number[];
}

export interface Accumulator {
  add(outputs: Record<string, ort.Tensor>, batch: Batch<unknown>): void;
  finish(): TaskResult;
  /** Predictions the quantized runs are compared with (agreement metrics only). */
  reference?(): unknown;
}

export interface Evaluator {
  metric: MetricInfo;
  /** True when the metric compares with the float model's predictions instead of labels. */
  needsReference: boolean;
  start(reference?: unknown): Accumulator;
}

export interface EvaluateOptions {
  input: string;
  /** The model's other inputs for a batch whose data have these dimensions (zoo entries' `feeds`). */
  fixed?: (dataDims: readonly number[]) => Record<string, ort.Tensor>;
  batchSize: number;
  reference?: unknown;
  limit?: number;
  onBatch?: (done: number) => void;
}

export interface EvaluateResult extends TaskResult {
  samples: number;
  reference?: unknown;
}

/** Run a session over batches of the test split and score it. */
export async function evaluate(
  session: ModelSession,
  data: { batches(batchSize: number, limit?: number): AsyncIterable<Batch<unknown>> },
  evaluator: Evaluator,
  opts: EvaluateOptions,
): Promise<EvaluateResult> {
  const acc = evaluator.start(opts.reference);
  let samples = 0;
  for await (const b of data.batches(opts.batchSize, opts.limit)) {
    const out = await session.run({ [opts.input]: b.input, ...opts.fixed?.(b.input.dims) });
    acc.add(out, b);
    samples += b.ids.length;
    opts.onBatch?.(samples);
  }
  const r = acc.finish();
  return { ...r, samples, ...(acc.reference ? { reference: acc.reference() } : {}) };
}

/** The first graph output, or the named one. */
export function outputOf(outputs: Record<string, ort.Tensor>, name?: string): ort.Tensor {
  const t = name !== undefined ? outputs[name] : Object.values(outputs)[0];
  if (!t) throw new Error(`model output ${name ?? '#0'} missing (got ${Object.keys(outputs).join(', ')})`);
  return t;
}

export function floatData(t: ort.Tensor): Float32Array {
  if (t.data instanceof Float32Array) return t.data;
  return Float32Array.from(t.data as ArrayLike<number>, Number);
}
