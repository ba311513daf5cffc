/** Small models built in code for the deploy/export tests (no ../shared needed). */
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from 'onnx-buf';
import { makeNode, tensorValueInfo } from '../src/ir/graph.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { seededRandom } from '../src/runtime/inputs.ts';
import type { Feeds } from '../src/calibrate/calibrate.ts';

export const vi = tensorValueInfo;

export function buildModel(nodes: NodeProto[], inputs: ValueInfoProto[], outputs: ValueInfoProto[], initializer: TensorProto[], opset = 13): ModelProto {
  return create(ModelProtoSchema, {
    irVersion: 8n,
    producerName: 'deploy.test',
    opsetImport: [{ domain: '', version: BigInt(opset) }],
    graph: { name: 'g', node: nodes, input: inputs, output: outputs, initializer },
  });
}

function randn(rand: () => number, n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
}

/**
 * x[N,3,16,16] → Conv(8) → Relu → {Conv 1×1 (4) → Relu, Conv 3×3 (4) → Relu} → Concat → MaxPool 2×2 → Conv(8) → Add
 * (residual with the MaxPool output re-projected by a 1×1 conv) → Relu → GlobalAveragePool → Flatten → Gemm(10).
 */
export function smallNet(seed = 7): ModelProto {
  const r = seededRandom(seed);
  const C = 8;
  const init = [
    makeTensor('w0', DT.FLOAT, [C, 3, 3, 3], randn(r, C * 27, 0.4)),
    makeTensor('b0', DT.FLOAT, [C], randn(r, C, 0.1)),
    makeTensor('wa', DT.FLOAT, [4, C, 1, 1], randn(r, 4 * C, 0.5)),
    makeTensor('ba', DT.FLOAT, [4], randn(r, 4, 0.1)),
    makeTensor('wb', DT.FLOAT, [4, C, 3, 3], randn(r, 4 * C * 9, 0.2)),
    makeTensor('bb', DT.FLOAT, [4], randn(r, 4, 0.1)),
    makeTensor('w2', DT.FLOAT, [C, C, 3, 3], randn(r, C * C * 9, 0.2)),
    makeTensor('b2', DT.FLOAT, [C], randn(r, C, 0.1)),
    makeTensor('w3', DT.FLOAT, [C, C, 1, 1], randn(r, C * C, 0.4)),
    makeTensor('b3', DT.FLOAT, [C], randn(r, C, 0.1)),
    makeTensor('wf', DT.FLOAT, [10, C], randn(r, 10 * C, 0.5)),
    makeTensor('bf', DT.FLOAT, [10], randn(r, 10, 0.1)),
  ];
  const nodes = [
    makeNode('Conv', ['x', 'w0', 'b0'], ['c0'], 'conv0', { pads: [1, 1, 1, 1] }),
    makeNode('Relu', ['c0'], ['r0'], 'relu0'),
    makeNode('Conv', ['r0', 'wa', 'ba'], ['ca'], 'conva'),
    makeNode('Relu', ['ca'], ['ra'], 'relua'),
    makeNode('Conv', ['r0', 'wb', 'bb'], ['cb'], 'convb', { pads: [1, 1, 1, 1] }),
    makeNode('Relu', ['cb'], ['rb'], 'relub'),
    makeNode('Concat', ['ra', 'rb'], ['cat'], 'concat', { axis: 1 }),
    makeNode('MaxPool', ['cat'], ['mp'], 'pool', { kernel_shape: [2, 2], strides: [2, 2] }),
    makeNode('Conv', ['mp', 'w2', 'b2'], ['c2'], 'conv2', { pads: [1, 1, 1, 1] }),
    makeNode('Conv', ['mp', 'w3', 'b3'], ['c3'], 'conv3'),
    makeNode('Add', ['c2', 'c3'], ['sum'], 'add'),
    makeNode('Relu', ['sum'], ['rs'], 'relu_sum'),
    makeNode('GlobalAveragePool', ['rs'], ['gap'], 'gap'),
    makeNode('Flatten', ['gap'], ['flat'], 'flatten'),
    makeNode('Gemm', ['flat', 'wf', 'bf'], ['logits'], 'fc', { transB: 1 }),
  ];
  return buildModel(nodes, [vi('x', DT.FLOAT, ['N', 3, 16, 16])], [vi('logits', DT.FLOAT, ['N', 10])], init);
}

export function randomBatches(count: number, batch: number, seed = 1, dims = [3, 16, 16]): Feeds[] {
  const r = seededRandom(seed);
  const n = dims.reduce((a, b) => a * b, 1);
  return Array.from({ length: count }, () => ({ x: { dims: [batch, ...dims], data: Float32Array.from({ length: batch * n }, () => r() * 2 - 0.5) } }));
}

export async function* iter<T>(xs: T[]): AsyncIterable<T> {
  for (const x of xs) yield x;
}

// The fixtures are shared with deploy-targets/export-formats (which import this file); check they run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
test('deploy fixtures: smallNet runs in onnxruntime', async () => {
  const { createSession } = await import('../src/runtime/session.ts');
  const s = await createSession(smallNet(), { mode: 'float', intraOpThreads: 1 });
  const out = await s.run(randomBatches(1, 2)[0]);
  await s.release();
  assert.deepEqual(out.logits.dims, [2, 10]);
});
