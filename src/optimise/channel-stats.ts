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
}

/** Each tensor's per-channel statistics over the batches (a graph input is read from the feeds). */
export async function channelStats(model: ModelProto, tensors: readonly ChannelTensor[], batches: readonly Feeds[]): Promise<Map<string, ChannelStats>> {
  const graphInputs = new Set(model.graph!.input.map((v) => v.name));
  const fetch = tensors.map((t) => t.name).filter((x) => !graphInputs.has(x));
  const session = await createSession(model, { mode: 'float', extraOutputs: fetch });
  const acc = new Map(tensors.map((t) => [t.name, { min: new Float64Array(t.channels).fill(Infinity), max: new Float64Array(t.channels).fill(-Infinity), sum: new Float64Array(t.channels), n: 0 }]));
  try {
    for (const b of batches) {
      const r = await session.run(b, fetch);
      for (const t of tensors) {
        const v = graphInputs.has(t.name) ? b[t.name] : r[t.name];
        const d = v.data as Float32Array;
        const a = acc.get(t.name)!;
        const C = t.channels;
        const inner = t.axis === 'last' ? 1 : v.dims.slice(2).reduce((x, y) => x * y, 1);
        for (let i = 0, c = 0, k = 0; i < d.length; i++) {
          const x = d[i];
          if (x < a.min[c]) a.min[c] = x;
          if (x > a.max[c]) a.max[c] = x;
          a.sum[c] += x;
          if (++k === inner) {
            k = 0;
            if (++c === C) c = 0;
          }
        }
        a.n += d.length / C;
      }
    }
  } finally {
    await session.release();
  }
  return new Map([...acc].map(([k, a]) => [k, { min: a.min, max: a.max, mean: a.sum.map((s) => s / a.n) }]));
}
