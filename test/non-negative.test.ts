/**
 * ir/non-negative.ts: which tensors are ≥ 0 for every input. Checked on a graph built here against the set worked
 * out by hand, and on every real model: each tensor it names is fetched from onnxruntime on signed random inputs
 * and must hold no negative value (a wrong "≥ 0" would drop a real lower statistic in calibration).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { makeNode } from '../src/ir/graph.ts';
import { nonNegativeTensors } from '../src/ir/non-negative.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { getRule } from '../src/quant/rules.ts';
import { prepareModel } from '../src/quantize.ts';
import { randomFeeds } from '../src/runtime/inputs.ts';
import { createSession } from '../src/runtime/session.ts';
import { feedOptions, NPM_MODEL, onnxFiles, SHARED } from './helpers/models.ts';

test('non-negative tensors of a hand-built graph', () => {
  const f = (name: string, v: number[]) => makeTensor(name, DT.FLOAT, [v.length], v);
  const g = create(ModelProtoSchema, {
    graph: {
      node: [
        makeNode('Relu', ['x'], ['r'], 'relu'),
        makeNode('MaxPool', ['r'], ['mp', 'mpi'], 'mp', { kernel_shape: [2, 2] }),
        makeNode('Clip', ['x', 'zero', 'six'], ['c6'], 'relu6'),
        makeNode('Clip', ['x', 'm1', 'six'], ['cm1'], 'clip_neg'),
        makeNode('Concat', ['mp', 'c6'], ['cat'], 'cat', { axis: 1 }),
        makeNode('Concat', ['mp', 'cm1'], ['cat_mixed'], 'cat_mixed', { axis: 1 }),
        makeNode('Add', ['cat', 'pos'], ['add_pos'], 'add_pos'),
        makeNode('Add', ['cat', 'neg'], ['add_neg'], 'add_neg'),
        makeNode('Max', ['x', 'zero'], ['max0'], 'max0'),
        makeNode('Min', ['max0', 'pos'], ['min_pos'], 'min_pos'),
        makeNode('Resize', ['r', '', 'scales'], ['up'], 'up', { mode: 'linear' }),
        makeNode('Resize', ['r', '', 'scales'], ['upc'], 'upc', { mode: 'cubic' }),
        makeNode('Pad', ['r', 'pads', 'm1'], ['pad_neg'], 'pad_neg'),
        makeNode('Pad', ['r', 'pads'], ['pad_zero'], 'pad_zero'),
        makeNode('Conv', ['r', 'w'], ['conv'], 'conv'),
        makeNode('Sigmoid', ['conv'], ['sig'], 'sig'),
        makeNode('Mul', ['conv', 'sig'], ['silu'], 'silu'),
        makeNode('Reshape', ['sig', 'shape'], ['sig_flat'], 'flat'),
        makeNode('Split', ['cat'], ['s0', 's1'], 'split', { axis: 1 }),
      ],
      initializer: [f('zero', [0]), f('six', [6]), f('m1', [-1]), f('pos', [0.5, 2]), f('neg', [1, -0.1]), f('scales', [1, 1, 2, 2]), f('w', [0.3])],
    },
  }).graph!;
  const got = [...nonNegativeTensors(g)].sort();
  const want = ['r', 'mp', 'c6', 'cat', 'add_pos', 'max0', 'min_pos', 'up', 'pad_zero', 'sig', 'sig_flat', 's0', 's1'].sort();
  assert.deepEqual(got, want);
});

const models = [...onnxFiles(join(SHARED, 'corpus')), ...onnxFiles(join(SHARED, 'quantzoo/Model')), NPM_MODEL];
test('every tensor called non-negative holds no negative value on signed random inputs (real models)', { skip: existsSync(SHARED) ? false : '../shared absent: only hand-built graphs checked' }, async () => {
  let checked = 0;
  for (const file of models) {
    const model = prepareModel(loadModel(file), getRule('onnxquant-int8-perchannel')).model;
    const names = [...nonNegativeTensors(model.graph!)];
    if (!names.length) continue;
    const opts = feedOptions(file);
    // randomFeeds draws from [0, 1): spread it over [−4, 4) so negative inputs reach every branch.
    const feeds = Object.fromEntries(
      Object.entries({ ...randomFeeds(model, { ...opts, seed: 3 }), ...opts.extra }).map(([k, t]) => [
        k,
        t.type === 'float32' && !opts.extra?.[k] && !opts.values?.[k] ? new ort.Tensor('float32', Float32Array.from(t.data as Float32Array, (v) => (v - 0.5) * 8), t.dims) : t,
      ]),
    );
    const s = await createSession(model, { mode: 'float', extraOutputs: names });
    const out = await s.run(feeds, names);
    await s.release();
    for (const n of names) {
      if (out[n].type !== 'float32') continue;
      const d = out[n].data as Float32Array;
      let min = Infinity;
      for (let i = 0; i < d.length; i++) if (d[i] < min) min = d[i];
      assert.ok(!(min < 0), `${file}: '${n}' was called non-negative but holds ${min}`);
      checked++;
    }
  }
  assert.ok(checked > 100, `only ${checked} tensors checked`);
});
