/**
 * The error metrics on a graph small enough to compute by hand: y = Conv1×1(x, w = 1), with only the activation
 * quantized at scale 1 (so x̂ = roundHalfEven(x)). Two samples:
 *   sample 1: x = [0.4, 1.6] → x̂ = [0, 2];  noise 0.16 + 0.16 = 0.32, signal 0.16 + 2.56 = 2.72
 *   sample 2: x = [2.5, −3]  → x̂ = [2, −3] (2.5 rounds to even); noise 0.25, signal 6.25 + 9 = 15.25
 * power ratio (PPQ) = mean(0.32/(2.72+1e-7), 0.25/(15.25+1e-7)); norm ratio = √(0.57/17.97);
 * SNR = 10·log10(17.97/0.57); cosine = 17.2/√(17·17.97) (A·B = 3.2 + 5 + 9, ‖A‖² = 4 + 4 + 9); max |A−B| = 0.5.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, type ValueInfoProto } from 'onnx-buf';
import { makeNode, tensorValueInfo } from '../src/ir/graph.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { INT8_SYMMETRIC, type QuantParams } from '../src/quant/config.ts';
import type { QuantPlan } from '../src/quant/plan.ts';
import { realiseQdq } from '../src/realise/qdq.ts';
import { analyse } from '../src/analyse/analyse.ts';
import { ErrorAccumulator } from '../src/analyse/error-measures.ts';

const vi = (name: string, dims: number[]): ValueInfoProto => tensorValueInfo(name, DT.FLOAT, dims);

const floatModel = create(ModelProtoSchema, {
  irVersion: 8n,
  opsetImport: [{ domain: '', version: 13n }],
  graph: {
    name: 'one-conv',
    node: [makeNode('Conv', ['x', 'w'], ['y'], 'conv')],
    input: [vi('x', [2, 1, 1, 2])],
    output: [vi('y', [2, 1, 1, 2])],
    initializer: [makeTensor('w', DT.FLOAT, [1, 1, 1, 1], [1])],
  },
});
const activation = { ...INT8_SYMMETRIC, perChannel: false, pow2: false, observer: 'minmax' as const };
const plan: QuantPlan = {
  rule: 'hand',
  tensors: [{ key: 'activation:x', tensor: 'x', role: 'activation', config: activation, uses: [{ node: 'conv', op: 'Conv', input: 0 }] }],
  layers: [{ node: 'conv', op: 'Conv', output: 'y' }],
  skipped: [],
};
const params = new Map<string, QuantParams>([['activation:x', { scale: Float32Array.of(1), zeroPoint: Int32Array.of(0), min: Float32Array.of(-3), max: Float32Array.of(2.5) }]]);
const quantModel = realiseQdq(floatModel, plan, params);
const data = () =>
  (async function* () {
    yield { x: { dims: [2, 1, 1, 2], data: Float32Array.of(0.4, 1.6, 2.5, -3) } };
  })();

const f = Math.fround;
const B = [f(0.4), f(1.6), 2.5, -3];
const A = [0, 2, 2, -3];
const noise = [(A[0] - B[0]) ** 2 + (A[1] - B[1]) ** 2, (A[2] - B[2]) ** 2 + (A[3] - B[3]) ** 2];
const signal = [B[0] ** 2 + B[1] ** 2, B[2] ** 2 + B[3] ** 2];
const expected = {
  powerRatio: (noise[0] / (signal[0] + 1e-7) + noise[1] / (signal[1] + 1e-7)) / 2,
  normRatio: Math.sqrt((noise[0] + noise[1]) / (signal[0] + signal[1])),
  snrDb: 10 * Math.log10((signal[0] + signal[1]) / (noise[0] + noise[1])),
  cosine: (A[0] * B[0] + A[1] * B[1] + A[2] * B[2] + A[3] * B[3]) / Math.sqrt(17 * (signal[0] + signal[1])),
  maxAbs: 0.5,
};

function close(actual: number, want: number, what: string) {
  assert.ok(Math.abs(actual - want) <= 1e-6 * Math.max(1, Math.abs(want)), `${what}: ${actual} vs hand-computed ${want}`);
}

test('hand-computed values are what the comment says (0.32/2.72, 0.25/15.25 …)', () => {
  close(noise[0], 0.32, 'noise 1');
  close(signal[1], 15.25, 'signal 2');
  close(expected.powerRatio, (0.32 / 2.72 + 0.25 / 15.25) / 2, 'power ratio');
});

test('ErrorAccumulator equals the hand computation, also when fed sample by sample', () => {
  const a = new ErrorAccumulator();
  a.add(Float32Array.from(A), Float32Array.from(B), 2);
  const b = new ErrorAccumulator();
  b.add(Float32Array.from(A.slice(0, 2)), Float32Array.from(B.slice(0, 2)), 1);
  b.add(Float32Array.from(A.slice(2)), Float32Array.from(B.slice(2)), 1);
  for (const r of [a.result(), b.result()]) for (const [k, v] of Object.entries(expected)) close(r[k as keyof typeof expected], v, k);
});

for (const known of [true, false])
  test(`analyse: layer, output, AQE/MQE/OQE and clipping equal the hand computation (${known ? 'known plan' : 'plan recovered from the QDQ model'})`, async () => {
    const r = await analyse(floatModel, quantModel, data, { isolated: 'all' }, known ? { plan, params } : undefined);
    assert.equal(r.layers.length, 1);
    const [layer] = r.layers;
    for (const [k, v] of Object.entries(expected)) {
      close(layer.cumulative[k as keyof typeof expected], v, `cumulative ${k}`);
      close(r.outputs[0][k as keyof typeof expected], v, `output ${k}`);
      close(layer.isolated!.both[k as keyof typeof expected], v, `isolated ${k}`);
      close(layer.isolated!.activationOnly![k as keyof typeof expected], v, `activation-only ${k}`);
    }
    assert.equal(layer.isolated!.weightOnly, undefined, 'no weight is quantized');
    close(r.summary.aqe, expected.powerRatio, 'AQE');
    close(r.summary.mqe, expected.powerRatio, 'MQE');
    close(r.summary.oqe, expected.powerRatio, 'OQE');
    close(r.summary.aqeNorm, expected.normRatio, 'AQE (norm)');
    // int8 at scale 1 represents [−128, 127]: nothing is clipped; the histogram holds all four values.
    assert.equal(layer.clipFraction, 0);
    assert.equal(layer.histogram!.counts.reduce((a, b) => a + b, 0), 4);
    assert.deepEqual([layer.histogram!.clipLo, layer.histogram!.clipHi], [-128, 127]);
    assert.equal(r.data.samples, 2);
  });

test('analyse: each layer names the op that feeds its quantized activation input (graph input, Relu, Add; none when float)', async () => {
  // x → conv0 → Relu → conv1;  Add(conv0 out, conv1 out) → conv2;  conv3 reads x too but its input is left float.
  const w = (name: string) => makeTensor(name, DT.FLOAT, [1, 1, 1, 1], [1]);
  const model = create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [{ domain: '', version: 13n }],
    graph: {
      name: 'sources',
      node: [
        makeNode('Conv', ['x', 'w0'], ['c0'], 'conv0'),
        makeNode('Relu', ['c0'], ['r'], 'relu'),
        makeNode('Conv', ['r', 'w1'], ['c1'], 'conv1'),
        makeNode('Add', ['c0', 'c1'], ['s'], 'add'),
        makeNode('Conv', ['s', 'w2'], ['y'], 'conv2'),
        makeNode('Conv', ['x', 'w3'], ['z'], 'conv3'),
      ],
      input: [vi('x', [2, 1, 1, 2])],
      output: [vi('y', [2, 1, 1, 2]), vi('z', [2, 1, 1, 2])],
      initializer: [w('w0'), w('w1'), w('w2'), w('w3')],
    },
  });
  const act = (tensor: string, node: string) => ({ key: `activation:${tensor}:${node}`, tensor, role: 'activation' as const, config: activation, uses: [{ node, op: 'Conv', input: 0 }] });
  const srcPlan: QuantPlan = {
    rule: 'hand',
    tensors: [act('x', 'conv0'), act('r', 'conv1'), act('s', 'conv2')],
    layers: ['conv0', 'conv1', 'conv2', 'conv3'].map((node, i) => ({ node, op: 'Conv', output: ['c0', 'c1', 'y', 'z'][i] })),
    skipped: [],
  };
  const unit = { scale: Float32Array.of(1), zeroPoint: Int32Array.of(0), min: Float32Array.of(-3), max: Float32Array.of(3) };
  const srcParams = new Map<string, QuantParams>(srcPlan.tensors.map((t) => [t.key, unit]));
  const r = await analyse(model, realiseQdq(model, srcPlan, srcParams), data, {}, { plan: srcPlan, params: srcParams });
  assert.deepEqual(
    r.layers.map((l) => [l.name, l.inputFrom]),
    [['conv0', 'graph input'], ['conv1', 'Relu'], ['conv2', 'Add'], ['conv3', undefined]],
  );
});
