/** Per-channel statistics of activations on the float network, for the passes that rescale or shift channels. */
import type { ModelProto } from 'onnx-buf';
import type { Feeds } from '../calibrate/calibrate.ts';
import { createSession } from '../runtime/session.ts';

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

/** Calls `visit(x, c)` for every value of a tensor with its channel index. */
function eachByChannel(d: Float32Array, dims: readonly number[], axis: ChannelAxis, C: number, visit: (x: number, c: number) => void): void {
  const inner = axis === 'last' ? 1 : dims.slice(2).reduce((x, y) => x * y, 1);
  for (let i = 0, c = 0, k = 0; i < d.length; i++) {
    visit(d[i], c);
    if (++k === inner) {
      k = 0;
      if (++c === C) c = 0;
    }
  }
}

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
      eachByChannel(d, dims, t.axis, t.channels, (x, c) => {
        if (x < a.min[c]) a.min[c] = x;
        if (x > a.max[c]) a.max[c] = x;
        a.sum[c] += x;
      });
      a.n += d.length / t.channels;
    });
    if (opts.median) {
      await sweep((t, d, dims) => {
        const { min, max } = acc.get(t.name)!;
        const h = hist.get(t.name)!;
        eachByChannel(d, dims, t.axis, t.channels, (x, c) => {
          const w = max[c] - min[c];
          const bin = w > 0 ? Math.min(MEDIAN_BINS - 1, Math.floor(((x - min[c]) / w) * MEDIAN_BINS)) : 0;
          h[c * MEDIAN_BINS + bin]++;
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
