/** Values computed by onnxruntime from a model without inputs (an If's condition once its inputs are frozen). */
import type { ModelProto } from 'onnx-buf';
import { createSession } from './session.ts';

export async function evaluateOutputs(model: ModelProto, outputs: readonly string[]): Promise<Record<string, ArrayLike<number | bigint | boolean>>> {
  const s = await createSession(model, { mode: 'float' });
  try {
    const r = await s.run({}, outputs);
    return Object.fromEntries(outputs.map((o) => [o, r[o].data as ArrayLike<number | bigint | boolean>]));
  } finally {
    await s.release();
  }
}
