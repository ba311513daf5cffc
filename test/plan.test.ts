/** Planner filters: op and node exclusion (exact, glob, /regex/) and per-tensor overrides. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT } from 'onnx-buf';
import { makeNode } from '../src/ir/graph.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { getRule } from '../src/quant/rules.ts';
import { matchName, planModel } from '../src/quant/plan.ts';

const model = create(ModelProtoSchema, {
  irVersion: 8n,
  opsetImport: [{ domain: '', version: 13n }],
  graph: {
    name: 'g',
    node: [
      makeNode('Conv', ['x', 'w1'], ['a'], 'backbone/conv1'),
      makeNode('Conv', ['a', 'w2'], ['b'], 'backbone/conv2'),
      makeNode('Flatten', ['b'], ['f'], 'flatten'),
      makeNode('Gemm', ['f', 'w3'], ['y'], 'head/fc', { transB: 1 }),
    ],
    input: [{ name: 'x' }],
    output: [{ name: 'y' }],
    initializer: [makeTensor('w1', DT.FLOAT, [2, 1, 1, 1], [1, 2]), makeTensor('w2', DT.FLOAT, [2, 2, 1, 1], [1, 2, 3, 4]), makeTensor('w3', DT.FLOAT, [3, 2], [1, 2, 3, 4, 5, 6])],
  },
});
const rule = getRule('onnxquant-int8-perchannel');

test('matchName: exact, glob and /regex/', () => {
  assert.ok(matchName('backbone/conv1', 'backbone/conv1'));
  assert.ok(!matchName('backbone/conv1', 'backbone/conv'));
  assert.ok(matchName('backbone/conv1', 'backbone/*'));
  assert.ok(matchName('backbone/conv1', 'backbone/conv?'));
  assert.ok(!matchName('head/fc', 'backbone/*'));
  assert.ok(matchName('head/fc', '/^head/'));
});

test('the plain plan: 3 layers, activation + weight each, per-channel weight axes', () => {
  const p = planModel(model, rule);
  assert.deepEqual(p.layers.map((l) => l.node), ['backbone/conv1', 'backbone/conv2', 'head/fc']);
  assert.deepEqual(p.tensors.map((t) => t.key).sort(), ['activation:a', 'activation:f', 'activation:x', 'weight:w1@0', 'weight:w2@0', 'weight:w3@0']);
});

test('excludeOps / excludeNodes leave layers float and say so', () => {
  const p = planModel(model, rule, { excludeOps: ['Gemm'], excludeNodes: ['*/conv1'] });
  assert.deepEqual(p.layers.map((l) => l.node), ['backbone/conv2']);
  assert.deepEqual(p.skipped.map((s) => s.node).sort(), ['backbone/conv1', 'head/fc']);
});

test("overrides: 'float' drops a tensor at every consumer; an object replaces config fields", () => {
  const p = planModel(model, rule, { overrides: { a: 'float', 'w*': { bits: 16, qmin: -32768, qmax: 32767, perChannel: false } } });
  assert.ok(!p.tensors.some((t) => t.tensor === 'a'));
  const w = p.tensors.filter((t) => t.role === 'weight');
  assert.equal(w.length, 3);
  for (const t of w) {
    assert.equal(t.config.bits, 16);
    assert.equal(t.config.qmax, 32767);
    assert.equal(t.axis, undefined, 'perChannel: false removes the axis');
  }
  assert.equal(p.tensors.find((t) => t.tensor === 'x')!.config.bits, 8, 'other tensors keep the rule');
});

test('excludeRegions: the nodes between boundary tensors stay float', () => {
  // a → conv2 → b → flatten → f → fc → y: the region from a to f holds conv2 and flatten.
  const p = planModel(model, rule, { excludeRegions: [{ from: ['a'], to: ['f'] }] });
  assert.deepEqual(p.layers.map((l) => l.node), ['backbone/conv1', 'head/fc']);
  assert.deepEqual(p.skipped.map((s) => s.node), ['backbone/conv2']);
});
