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

// Positions of the test tensor [1, N]: position i is channel i (the last axis, as for a Gemm output).
const ZS = Array.from({ length: N }, (_, i) => -5.3 + (i * 10.6) / (N - 1));
// Per-channel bounds placed 0.3–1 away from channel i's z (so no point sits on a kink): by i mod 3, z inside
// (lo, hi), z below lo, z above hi.
const perChannel = (f: (z: number, i: number) => number) => Float32Array.from(ZS, f);
const LO = perChannel((z, i) => (i % 3 === 1 ? z + 0.3 : z - 1));
const HI = perChannel((z, i) => (i % 3 === 2 ? z - 0.3 : z + 1));
// For Relu → Min, the lower bound is 0: keep every z at least 0.3 from it by the choice of HI alone.
const HI_RELU = perChannel((z, i) => (i % 2 ? Math.max(z, 0) + 0.5 : Math.abs(z) > 0.3 ? z - 0.3 : 1));

// A gate scale per channel, kept away from the kinks at s·z = ±3: channel i's z times s stays ≥ 0.2 from ±3.
const GATE_SCALE = perChannel((z, i) => {
  const s = 0.2 + ((i * 7) % 29) / 10;
  return [3, -3].some((k) => Math.abs(s * z - k) < 0.2) ? s + 0.5 : s;
});

const CASES: { name: string; nodes: NodeProto[]; inits?: TensorProto[]; opset?: number; kinks: number[] }[] = [
  {
    name: 'Relu → Min (per-channel bounds, as equalization leaves a ReLU6)',
    nodes: [makeNode('Relu', ['z'], ['r'], 'a'), makeNode('Min', ['r', 'hi'], ['y'], 'b')],
    inits: [makeTensor('hi', DT.FLOAT, [N], HI_RELU)],
    kinks: [0],
  },
  {
    name: 'Max → Min (per-channel bounds, [1, N])',
    nodes: [makeNode('Max', ['lo', 'z'], ['r'], 'a'), makeNode('Min', ['r', 'hi'], ['y'], 'b')],
    inits: [makeTensor('lo', DT.FLOAT, [1, N], LO), makeTensor('hi', DT.FLOAT, [N], HI)],
    kinks: [],
  },
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
  // Equalization's gate scale (per channel, [N] on the last axis): z·g(s·z); s between 0.2 and 3.
  {
    name: 'hard swish with a per-channel gate scale: Mul(z, s) → HardSigmoid → Mul',
    nodes: [makeNode('Mul', ['z', 'gs'], ['zs'], 'gscale'), makeNode('HardSigmoid', ['zs'], ['s'], 's', { alpha: { float: 1 / 6 }, beta: { float: 0.5 } }), makeNode('Mul', ['z', 's'], ['y'], 'm')],
    inits: [makeTensor('gs', DT.FLOAT, [N], GATE_SCALE)],
    kinks: [],
  },
  {
    name: "Paddle's hard swish with a per-channel gate scale: Mul(z, s) → Add → Clip → Mul → Div",
    nodes: [makeNode('Mul', ['gs', 'z'], ['zs'], 'gscale'), makeNode('Add', ['zs', 'three'], ['a'], 'add'), makeNode('Clip', ['a', 'lo', 'hi'], ['cl'], 'clip'), makeNode('Mul', ['z', 'cl'], ['m'], 'mul'), makeNode('Div', ['m', 'six'], ['y'], 'div')],
    inits: [makeTensor('gs', DT.FLOAT, [1, N], GATE_SCALE), c('three', 3), c('lo', 0), c('hi', 6), c('six', 6)],
    kinks: [],
  },
  {
    name: 'SiLU with a per-channel gate scale',
    nodes: [makeNode('Mul', ['z', 'gs'], ['zs'], 'gscale'), makeNode('Sigmoid', ['zs'], ['s'], 's'), makeNode('Mul', ['z', 's'], ['y'], 'm')],
    inits: [makeTensor('gs', DT.FLOAT, [N], GATE_SCALE)],
    kinks: [],
  },
];

test('activation slopes equal central differences of the activation run in onnxruntime', async () => {
  const h = 1e-3;
  const zs = ZS;
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
      assert.ok(Math.abs(act.slope(z, i) - fd) < 5e-3, `${k.name} at z = ${z} (channel ${i}): slope ${act.slope(z, i)}, central difference ${fd}`);
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
  assert.deepEqual([relu?.slope(-1, 0), relu?.slope(0, 0), relu?.slope(2, 0)], [0, 0, 1]);
  // Bounds of shape [N] act on the last axis: per channel for a Gemm output, not for a Conv's [N, C, H, W] (two
  // dims after the channel), where only the Relu is read.
  const clipped = model([makeNode('Relu', ['z'], ['r'], 'a'), makeNode('Min', ['r', 'hi'], ['y'], 'b')], [makeTensor('hi', DT.FLOAT, [N], HI_RELU)]);
  assert.equal(activationSlope(new GraphView(clipped.graph!), 'z', 0)?.name, 'Relu → Min');
  assert.equal(activationSlope(new GraphView(clipped.graph!), 'z', 2)?.name, 'Relu');
});
