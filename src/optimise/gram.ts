/**
 * Gram matrices A·Bᵀ by onnxruntime's MatMul (MLAS sgemm, its thread pool): the weight-rounding pass needs
 * X̂ᵀX̂ and X̂ᵀX over thousands of sampled positions for fan-ins in the hundreds, tens of GFLOP per model that a
 * TypeScript loop would spend most of the pass on. float32 products summed by sgemm are accurate to ~1e-6
 * relative here, far below the 1% damping the pass adds to H.
 */
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, ValueInfoProtoSchema } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { makeNode } from '../ir/graph.ts';
import { createSession, type ModelSession } from '../runtime/session.ts';

function gramModel() {
  const vi = (name: string, dims: string[]) =>
    create(ValueInfoProtoSchema, {
      name,
      type: { value: { case: 'tensorType', value: { elemType: DT.FLOAT, shape: { dim: dims.map((d) => ({ value: { case: 'dimParam' as const, value: d } })) } } } },
    });
  return create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [{ domain: '', version: 13n }],
    graph: {
      name: 'gram',
      node: [makeNode('Transpose', ['b'], ['bt'], 'transpose', { perm: [1, 0] }), makeNode('MatMul', ['a', 'bt'], ['c'], 'matmul')],
      input: [vi('a', ['m', 'n']), vi('b', ['p', 'n'])],
      output: [vi('c', ['m', 'p'])],
    },
  });
}

export interface Gram {
  /** A [m, n] · Bᵀ ([p, n]) as a row-major float32 [m, p]. */
  multiply(a: Float32Array, m: number, b: Float32Array, p: number, n: number): Promise<Float32Array>;
  release(): Promise<void>;
}

export async function createGram(): Promise<Gram> {
  const s: ModelSession = await createSession(gramModel(), { mode: 'float' });
  return {
    async multiply(a, m, b, p, n) {
      const r = await s.run({ a: new ort.Tensor('float32', a, [m, n]), b: new ort.Tensor('float32', b, [p, n]) });
      return r.c.data as Float32Array;
    },
    release: () => s.release(),
  };
}
