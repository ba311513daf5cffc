/** Per-channel statistics of activations on the float network, for the passes that rescale or shift channels. */
import type { ModelProto } from 'onnx-buf';
import type { Feeds } from '../calibrate/calibrate.ts';
import { createSession } from '../runtime/session.ts';
import { forEachChannelRun } from '../quant/numerics.ts';

/** Where a tensor's channels are: axis 1 (NCHW, what Conv reads) or the last axis (what Gemm/MatMul read). */
export type ChannelAxis = 'second' | 'last';

export interface ChannelTensor {
  name: string;
  axis: ChannelAxis;
  channels: number;
}

/** Per channel: the least and largest value (±Infinity for a channel never seen) and the mean (NaN then). */
export interface ChannelStats {
  min: Float64Array;
  max: Float64Array;
  mean: Float64Array;
  /** With `{ median: true }`: the median, to 1/MEDIAN_BINS of the channel's range (NaN for a channel never seen). */
  median?: Float64Array;
}

/** Histogram bins per channel for the median: bounded memory (C × 1024 counts per tensor) whatever the data. */
export const MEDIAN_BINS = 1024;

/** The tensor's channel axis in `dims`. */
const axisIn = (axis: ChannelAxis, dims: readonly number[]): number => (axis === 'last' ? dims.length - 1 : 1);

/**
 * Each tensor's per-channel statistics over the batches (a graph input is read from the feeds). The median takes a
 * second pass: a per-channel histogram over the first pass's [min, max], interpolated linearly inside the bin where
 * the count crosses half.
 */
export async function channelStats(model: ModelProto, tensors: readonly ChannelTensor[], batches: readonly Feeds[], opts: { median?: boolean } = {}): Promise<Map<string, ChannelStats>> {
  const graphInputs = new Set(model.graph!.input.map((v) => v.name));
  const fetch = tensors.map((t) => t.name).filter((x) => !graphInputs.has(x));
  const session = await createSession(model, { mode: 'float', extraOutputs: fetch });
  const acc = new Map(tensors.map((t) => [t.name, { min: new Float64Array(t.channels).fill(Infinity), max: new Float64Array(t.channels).fill(-Infinity), sum: new Float64Array(t.channels), n: 0 }]));
  const hist = new Map(opts.median ? tensors.map((t) => [t.name, new Float64Array(t.channels * MEDIAN_BINS)]) : []);
  const sweep = async (visit: (t: ChannelTensor, d: Float32Array, dims: readonly number[]) => void) => {
    for (const b of batches) {
      // Only graph inputs asked for: the feeds are the values (onnxruntime refuses an empty fetch list).
      const r = fetch.length ? await session.run(b, fetch) : {};
      for (const t of tensors) {
        const v = graphInputs.has(t.name) ? b[t.name] : r[t.name];
        visit(t, v.data as Float32Array, v.dims);
      }
    }
  };
  try {
    await sweep((t, d, dims) => {
      const a = acc.get(t.name)!;
      forEachChannelRun(dims, axisIn(t.axis, dims), (start, end, c) => {
        let lo = a.min[c];
        let hi = a.max[c];
        let sum = a.sum[c];
        for (let i = start; i < end; i++) {
          const x = d[i];
          if (x < lo) lo = x;
          if (x > hi) hi = x;
          sum += x;
        }
        a.min[c] = lo;
        a.max[c] = hi;
        a.sum[c] = sum;
      });
      a.n += d.length / t.channels;
    });
    if (opts.median) {
      await sweep((t, d, dims) => {
        const { min, max } = acc.get(t.name)!;
        const h = hist.get(t.name)!;
        forEachChannelRun(dims, axisIn(t.axis, dims), (start, end, c) => {
          const lo = min[c];
          const w = max[c] - lo;
          const base = c * MEDIAN_BINS;
          for (let i = start; i < end; i++) h[base + (w > 0 ? Math.min(MEDIAN_BINS - 1, Math.floor(((d[i] - lo) / w) * MEDIAN_BINS)) : 0)]++;
        });
      });
    }
  } finally {
    await session.release();
  }
  return new Map(
    [...acc].map(([k, a]) => {
      const st: ChannelStats = { min: a.min, max: a.max, mean: a.sum.map((s) => s / a.n) };
      const h = hist.get(k);
      if (h) st.median = a.min.map((lo, c) => histogramMedian(h.subarray(c * MEDIAN_BINS, (c + 1) * MEDIAN_BINS), lo, a.max[c]));
      return [k, st];
    }),
  );
}

/** The value below which half the counts lie, linear inside its bin; NaN for an empty histogram. */
export function histogramMedian(counts: ArrayLike<number>, lo: number, hi: number): number {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i];
  if (!total) return NaN;
  if (!(hi > lo)) return lo;
  const half = total / 2;
  const width = (hi - lo) / counts.length;
  for (let i = 0, below = 0; i < counts.length; i++) {
    if (below + counts[i] >= half) return lo + width * (i + (half - below) / counts[i]);
    below += counts[i];
  }
  return hi;
}
