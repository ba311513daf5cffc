/**
 * activationSlope against an independent reference: central differences of the activation as onnxruntime computes
 * it, for every recognised pattern (single ops, opset-6 and opset-13 Clip, SiLU, x·hardsigmoid(x), Paddle's
 * decomposed hard swish), and the shapes it must refuse.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, ValueInfoProtoSchema, type NodeProto, type TensorProto, type ValueInfoProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { GraphView, makeNode } from '../src/ir/graph.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { activationSlope } from '../src/optimise/activation-slope.ts';
import { createSession } from '../src/runtime/session.ts';

const N = 64;
const vi = (name: string): ValueInfoProto =>
  create(ValueInfoProtoSchema, {
    name,
    type: { value: { case: 'tensorType', value: { elemType: DT.FLOAT, shape: { dim: [{ value: { case: 'dimValue', value: 1n } }, { value: { case: 'dimValue', value: BigInt(N) } }] } } } },
  });
const c = (name: string, v: number): TensorProto => makeTensor(name, DT.FLOAT, [], Float32Array.of(v));

function model(nodes: NodeProto[], inits: TensorProto[], opset = 14, outputs = ['y']) {
  return create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [{ domain: '', version: BigInt(opset) }],
    graph: { name: 'act', node: nodes, input: [vi('z')], output: outputs.map(vi), initializer: inits },
  });
}

const CASES: { name: string; nodes: NodeProto[]; inits?: TensorProto[]; opset?: number; kinks: number[] }[] = [
  { name: 'Relu', nodes: [makeNode('Relu', ['z'], ['y'], 'a')], kinks: [0] },
  { name: 'LeakyRelu', nodes: [makeNode('LeakyRelu', ['z'], ['y'], 'a', { alpha: { float: 0.1 } })], kinks: [0] },
  { name: 'Clip (inputs)', nodes: [makeNode('Clip', ['z', 'lo', 'hi'], ['y'], 'a')], inits: [c('lo', 0), c('hi', 3.5)], kinks: [0, 3.5] },
  { name: 'Clip (opset 6 attributes)', nodes: [makeNode('Clip', ['z'], ['y'], 'a', { min: { float: -1 }, max: { float: 2 } })], opset: 6, kinks: [-1, 2] },
  { name: 'HardSigmoid', nodes: [makeNode('HardSigmoid', ['z'], ['y'], 'a', { alpha: { float: 0.2 }, beta: { float: 0.5 } })], kinks: [-2.5, 2.5] },
  { name: 'HardSwish', nodes: [makeNode('HardSwish', ['z'], ['y'], 'a')], kinks: [-3, 3] },
  { name: 'Sigmoid', nodes: [makeNode('Sigmoid', ['z'], ['y'], 'a')], kinks: [] },
  { name: 'Tanh', nodes: [makeNode('Tanh', ['z'], ['y'], 'a')], kinks: [] },
  { name: 'SiLU', nodes: [makeNode('Sigmoid', ['z'], ['s'], 's'), makeNode('Mul', ['z', 's'], ['y'], 'm')], kinks: [] },
  {
    name: 'z·hardsigmoid(z)',
    nodes: [makeNode('HardSigmoid', ['z'], ['s'], 's', { alpha: { float: 1 / 6 }, beta: { float: 0.5 } }), makeNode('Mul', ['s', 'z'], ['y'], 'm')],
    kinks: [-3, 3],
  },
  {
    name: "Paddle's hard swish: Add → Clip → Mul → Div",
    nodes: [makeNode('Add', ['z', 'three'], ['a'], 'add'), makeNode('Clip', ['a', 'lo', 'hi'], ['cl'], 'clip'), makeNode('Mul', ['z', 'cl'], ['m'], 'mul'), makeNode('Div', ['m', 'six'], ['y'], 'div')],
    inits: [c('three', 3), c('lo', 0), c('hi', 6), c('six', 6)],
    kinks: [-3, 3],
  },
  {
    name: 'hard swish with the factor on the gate: Add → Clip → Mul(1/6) → Mul',
    nodes: [makeNode('Add', ['three', 'z'], ['a'], 'add'), makeNode('Clip', ['a', 'lo', 'hi'], ['cl'], 'clip'), makeNode('Mul', ['cl', 'sixth'], ['g'], 'scale'), makeNode('Mul', ['g', 'z'], ['y'], 'mul')],
    inits: [c('three', 3), c('lo', 0), c('hi', 6), c('sixth', 1 / 6)],
    kinks: [-3, 3],
  },
];

test('activation slopes equal central differences of the activation run in onnxruntime', async () => {
  const h = 1e-3;
  const zs = Array.from({ length: N }, (_, i) => -5.3 + (i * 10.6) / (N - 1));
  for (const k of CASES) {
    const m = model(k.nodes, k.inits ?? [], k.opset);
    const act = activationSlope(new GraphView(m.graph!), 'z');
    assert.ok(act, `${k.name}: recognised`);
    const s = await createSession(m, { mode: 'float' });
    const at = async (d: number) => (await s.run({ z: new ort.Tensor('float32', Float32Array.from(zs, (z) => z + d), [1, N]) })).y.data as Float32Array;
    const [up, down] = [await at(h), await at(-h)];
    await s.release();
    let checked = 0;
    zs.forEach((z, i) => {
      if (k.kinks.some((q) => Math.abs(z - q) < 4 * h)) return;
      checked++;
      const fd = (up[i] - down[i]) / (2 * h);
      assert.ok(Math.abs(act.slope(z) - fd) < 5e-3, `${k.name} at z = ${z}: slope ${act.slope(z)}, central difference ${fd}`);
    });
    assert.ok(checked > N - 8, `${k.name}: ${checked} points checked`);
  }
});

test('activation slope: none for a graph output, a second reader, a non-constant bound or a non-activation', () => {
  const slope = (nodes: NodeProto[], inits: TensorProto[] = [], outputs = ['y']) => activationSlope(new GraphView(model(nodes, inits, 14, outputs).graph!), 'z');
  assert.equal(slope([makeNode('Relu', ['z'], ['y'], 'a')], [], ['y', 'z']), undefined, 'z is a graph output');
  assert.equal(slope([makeNode('Relu', ['z'], ['r'], 'a'), makeNode('Add', ['z', 'r'], ['y'], 'b')]), undefined, 'a residual reader');
  assert.equal(slope([makeNode('Add', ['z', 'z'], ['y'], 'a')]), undefined, 'not an activation');
  assert.equal(slope([makeNode('Add', ['z', 'z'], ['a'], 'add'), makeNode('Clip', ['a'], ['cl'], 'clip'), makeNode('Mul', ['z', 'cl'], ['y'], 'mul')]), undefined, 'gate offset not a constant');
  const relu = slope([makeNode('Relu', ['z'], ['y'], 'a')]);
  assert.deepEqual([relu?.slope(-1), relu?.slope(0), relu?.slope(2)], [0, 0, 1]);
});
