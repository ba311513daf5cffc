/** Outputs behind a step op (a peak mask, a threshold): found where quantization can flip them, not for settings or shapes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT } from 'onnx-buf';
import { GraphView, makeNode, tensorValueInfo } from '../src/ir/graph.ts';
import { floatGraphOutputs, maskedOutputHints, maskedOutputs } from '../src/ir/masked-outputs.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { SHARED } from './helpers/models.ts';

/** x → Conv → Sigmoid → h; scores = h · Cast(Equal(h, MaxPool(h))) (a peak mask); gated = Where(Equal(sr, 16000), h, 0)
 * (a setting); shaped = Reshape(h, Where(Equal(Shape(h), s), Shape(h), s)) (a shape computation); heat = h. */
function net() {
  const f = (name: string, dims: number[]) => tensorValueInfo(name, DT.FLOAT, dims);
  return create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [{ domain: '', version: 13n }],
    graph: {
      name: 'masked',
      node: [
        makeNode('Conv', ['x', 'w'], ['c'], 'conv'),
        makeNode('Sigmoid', ['c'], ['h'], 'sig'),
        makeNode('MaxPool', ['h'], ['mp'], 'pool', { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }),
        makeNode('Equal', ['h', 'mp'], ['peak'], 'peak'),
        makeNode('Cast', ['peak'], ['mask'], 'cast', { to: DT.FLOAT }),
        makeNode('Mul', ['h', 'mask'], ['scores'], 'mul'),
        makeNode('Equal', ['sr', 'sr16k'], ['is16k'], 'is16k'),
        makeNode('Where', ['is16k', 'h', 'zero'], ['gated'], 'where'),
        makeNode('Shape', ['h'], ['hs'], 'shape'),
        makeNode('Equal', ['hs', 's'], ['same'], 'same'),
        makeNode('Where', ['same', 'hs', 's'], ['target'], 'pick'),
        makeNode('Reshape', ['h', 'target'], ['shaped'], 'reshape'),
        makeNode('Identity', ['h'], ['heat'], 'heat'),
      ],
      input: [f('x', [1, 2, 4, 4]), tensorValueInfo('sr', DT.INT64, [])],
      output: [f('scores', [1, 2, 4, 4]), f('gated', [1, 2, 4, 4]), f('shaped', [1, 2, 4, 4]), f('heat', [1, 2, 4, 4]), tensorValueInfo('peak', DT.BOOL, [1, 2, 4, 4])],
      initializer: [
        makeTensor('w', DT.FLOAT, [2, 2, 1, 1], Float32Array.from([1, 0, 0, 1])),
        makeTensor('sr16k', DT.INT64, [], BigInt64Array.from([16000n])),
        makeTensor('zero', DT.FLOAT, [], Float32Array.from([0])),
        makeTensor('s', DT.INT64, [4], BigInt64Array.from([1n, 2n, 4n, 4n])),
      ],
    },
  });
}

test('maskedOutputs: the peak-masked output, with the values its mask reads; not a setting, a shape computation or a plain value; only float outputs', () => {
  const model = net();
  const view = new GraphView(model.graph!);
  assert.deepEqual(floatGraphOutputs(view), ['scores', 'gated', 'shaped', 'heat']);
  assert.deepEqual(maskedOutputs(view, floatGraphOutputs(view)), [{ output: 'scores', node: 'peak', op: 'Equal', inputs: ['h', 'mp'] }]);
  assert.deepEqual(maskedOutputHints(model), [
    "output 'scores' passes through Equal (peak): its error counts flipped comparisons, not how far the values moved; --outputs gated,shaped,heat,h,mp measures the values before it",
  ]);
});

test('maskedOutputs on the shared and corpus models: only mlsd_320_tiny\'s peak-masked scores', { skip: !existsSync(join(SHARED, 'corpus')) && 'needs ../shared/corpus' }, () => {
  const mlsd = loadModel(join(SHARED, 'corpus/mlsd_320_tiny.onnx'));
  const view = new GraphView(mlsd.graph!);
  const found = maskedOutputs(view, floatGraphOutputs(view));
  assert.deepEqual(found.map((m) => [m.output, m.op]), [['scores', 'Equal']]);
  assert.ok(found[0].inputs.includes('Transpose__305:0'), `the heat map is among the values to measure: ${found[0].inputs}`);
  for (const file of ['silero_vad_v5_if_lstm.onnx', 'yunet_120x160.onnx', 'ultraface_slim_320.onnx', 'blazeface_front_128_nhwc.onnx']) {
    const m = loadModel(join(SHARED, 'corpus', file));
    const v = new GraphView(m.graph!);
    assert.deepEqual(maskedOutputs(v, floatGraphOutputs(v)), [], `${file}: an If's setting or a shape computation is no mask`);
  }
});
