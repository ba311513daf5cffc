/** The dataset contract: re-iterable, lazily streamed samples with a known size. */
import type { FloatTensor } from '../../tensor.ts';

export interface Sample<L> {
  id: string;
  /** With a leading batch dim of 1, e.g. [1,3,32,32]. */
  input: FloatTensor;
  label: L;
}

export interface Dataset<L> {
  name: string;
  size: number;
  /** Each call starts a fresh pass, in the same deterministic order. */
  samples(): AsyncIterable<Sample<L>>;
}

export interface Batch<L> {
  ids: string[];
  /** Sample inputs stacked on dim 0. */
  input: FloatTensor;
  labels: L[];
}

/** Groups samples into batches (the last may be smaller), reading at most `limit` samples. */
export async function* batches<L>(ds: Dataset<L>, batchSize: number, limit = Infinity): AsyncIterable<Batch<L>> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batches(${ds.name}): batchSize must be a positive integer, got ${batchSize}`);
  let pending: Sample<L>[] = [];
  let seen = 0;
  if (limit <= 0) return;
  for await (const s of ds.samples()) {
    pending.push(s);
    seen++;
    if (pending.length === batchSize) {
      yield stack(ds.name, pending);
      pending = [];
    }
    if (seen >= limit) break;
  }
  if (pending.length > 0) yield stack(ds.name, pending);
}

function stack<L>(name: string, samples: Sample<L>[]): Batch<L> {
  const first = samples[0].input.dims;
  const inner = first.slice(1);
  let rows = 0;
  for (const s of samples) {
    const d = s.input.dims;
    if (d.length !== first.length || d.some((v, i) => i > 0 && v !== first[i])) {
      throw new Error(
        `batches(${name}): cannot stack sample ${s.id} of shape [${d.join(',')}] with ${samples[0].id} of shape [${first.join(',')}]; ` +
          'use batch size 1 or a fixed-size preprocess (crop / padTo)',
      );
    }
    rows += d[0];
  }
  const data = new Float32Array(samples.reduce((n, s) => n + s.input.data.length, 0));
  let off = 0;
  for (const s of samples) {
    data.set(s.input.data, off);
    off += s.input.data.length;
  }
  return { ids: samples.map((s) => s.id), input: { dims: [rows, ...inner], data }, labels: samples.map((s) => s.label) };
}

/** The first `n` samples of a dataset (stops reading the source early). */
export function take<L>(ds: Dataset<L>, n: number): Dataset<L> {
  const size = Math.max(0, Math.min(n, ds.size));
  return {
    name: `${ds.name}[:${size}]`,
    size,
    async *samples() {
      if (size === 0) return;
      let i = 0;
      for await (const s of ds.samples()) {
        yield s;
        if (++i >= size) return;
      }
    },
  };
}
