/** Planner filters: op and node exclusion (exact, glob, /regex/) and per-tensor overrides, down to the opset and the
 * stored types their Q/DQ nodes need. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, type ModelProto } from 'onnx-buf';
import { makeNode } from '../src/ir/graph.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { buildRule, getRule, type RuleSpec } from '../src/quant/rules.ts';
import { matchName, planModel } from '../src/quant/plan.ts';
import { applyOverride, minOpsetFor } from '../src/quant/config.ts';
import { UserError } from '../src/errors.ts';
import { opsetVersion } from '../src/ir/graph.ts';
import { seededRandom } from '../src/math.ts';
import { quantize } from '../src/quantize.ts';
import { createSession } from '../src/runtime/session.ts';

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
    input: [{ name: 'x', type: { value: { case: 'tensorType', value: { elemType: DT.FLOAT } } } }],
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

test('overrides that change the width or symmetry get that width\'s full range; impossible ones are refused by name', () => {
  const int8 = rule.activation;
  assert.deepEqual([applyOverride(int8, { bits: 16 }, 'o').qmin, applyOverride(int8, { bits: 16 }, 'o').qmax], [-32768, 32767]);
  const u4 = applyOverride(int8, { bits: 4, symmetric: false }, 'o');
  assert.deepEqual([u4.qmin, u4.qmax], [0, 15]);
  // FP8 rule → int8 for one tensor: int8's range, not ±448.
  const i8 = applyOverride(getRule('onnxquant-fp8').activation, { format: 'int', observer: 'minmax' }, 'o');
  assert.throws(() => applyOverride(getRule('onnxquant-fp8').activation, { format: 'int' }, 'o'), /fp8-mse observer picks FP8 scales/);
  assert.deepEqual([i8.bits, i8.qmin, i8.qmax], [8, -128, 127]);
  // A range given with the width is kept (a narrow int16, e.g. for an accumulator-safe layer).
  const narrow = applyOverride(int8, { bits: 16, qmin: -1000, qmax: 1000 }, 'o');
  assert.deepEqual([narrow.qmin, narrow.qmax], [-1000, 1000]);
  assert.throws(() => applyOverride(int8, { bits: 20 }, "override for 'w*'"), (e: Error) => e instanceof UserError && /override for 'w\*': bits must be an integer from 2 to 16, got 20/.test(e.message));
  assert.throws(() => applyOverride(int8, { bits: 16, qmin: -40000, qmax: 32767 }, 'o'), /does not fit 16 bits/);
  assert.deepEqual([minOpsetFor(int8), minOpsetFor(rule.weight), minOpsetFor(u4), minOpsetFor(narrow), minOpsetFor(getRule('onnxquant-fp8').weight)], [10, 13, 21, 21, 19]);
});

test('16-bit overrides and 4-bit rules give models onnxruntime loads (opset 21), with the narrow codes stored and the wide range used', async () => {
  const r = seededRandom(5);
  const x = () => ({ x: { dims: [64, 1, 1, 1], data: Float32Array.from({ length: 64 }, () => r() * 2 - 1) } }); // Gemm needs 1×1 maps
  const calib = [x(), x(), x()];
  // Min/max activations and a calibration batch as test data: no clipping, so the error is the rounding alone.
  const test = calib[1];
  const minmax = buildRule({ name: 'int8-minmax', bits: 8, activationObserver: 'minmax' });
  const data = async function* () {
    yield* calib;
  };
  const floatOut = async () => {
    const s = await createSession(model, { mode: 'float' });
    const out = (await s.run(test)).y.data as Float32Array;
    await s.release();
    return out;
  };
  const ref = await floatOut();
  const errorOf = async (m: ModelProto) => {
    const s = await createSession(m, { mode: 'simulate' });
    const out = (await s.run(test)).y.data as Float32Array;
    await s.release();
    let e = 0;
    let p = 0;
    out.forEach((v, i) => ((e += (v - ref[i]) ** 2), (p += ref[i] ** 2)));
    return e / p;
  };
  const int8 = await quantize(model, data(), { rule: minmax });
  const int16 = await quantize(model, data(), { rule: minmax, filter: { overrides: { '*': { bits: 16 } } } });
  // The README's example rule.
  const int4 = await quantize(model, data(), { rule: buildRule({ name: 'int4-weights', bits: 4, symmetric: true, perChannel: true, activationObserver: 'kl' }) });
  assert.deepEqual([opsetVersion(int8.model), opsetVersion(int16.model), opsetVersion(int4.model)], [13, 21, 21]);
  const types = (m: ModelProto) => new Set(m.graph!.initializer.filter((t) => t.name.includes('zero_point')).map((t) => t.dataType));
  assert.deepEqual([...types(int16.model)], [DT.INT16]);
  assert.deepEqual([...types(int4.model)], [DT.INT4]);
  const [e8, e16, e4] = [await errorOf(int8.model), await errorOf(int16.model), await errorOf(int4.model)];
  // 8 more bits: ~2^-16 of the int8 power error; int8's range stored in 16 bits (the old behaviour) would give e8.
  assert.ok(e16 < e8 / 1000, `int16 error ${e16} against int8 ${e8}`);
  assert.ok(e4 > e8, `int4 error ${e4} against int8 ${e8}`);
});

test('a rule spec with a field the rule does not have, or a value of the wrong kind, is refused naming the field (it was ignored)', () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ name: 'r', activation: { bits: 9 } }, /'activation' is not a rule field \(fields: name, bits, symmetric/],
    [{ name: 'r', perchannel: false }, /'perchannel' is not a rule field/],
    [{ name: 'r', symmetric: 'no' }, /symmetric must be true or false, got "no"/],
    [{ name: 'r', percentile: 99.99 }, /percentile must be a number in \(0, 1\], got 99.99/],
    [{ name: 'r', matmulWeightAxis: 'input' }, /matmulWeightAxis must be 'ppq' or 'output'/],
    [{ name: 'r', ops: 'Conv' }, /ops must be a list of op types/],
  ];
  for (const [spec, message] of bad) assert.throws(() => buildRule(spec as unknown as RuleSpec, 'r.json'), message, JSON.stringify(spec));
  // The README's example builds, with what it says.
  const r = buildRule({ name: 'int4-weights', bits: 4, symmetric: true, perChannel: true, activationObserver: 'kl' });
  assert.deepEqual([r.weight.qmin, r.weight.qmax, r.weight.perChannel, r.activation.observer], [-8, 7, true, 'kl']);
});

test('an override that is not an object of config fields, or has a field of the wrong kind, is refused (it was ignored); a switch to FP8 gets the FP8 range', () => {
  const base = getRule('onnxquant-int8-perchannel').activation;
  const bad: [unknown, RegExp][] = [
    [17, /expected 'float' or a JSON object of fields \(format, bits, qmin, qmax, symmetric, perChannel, pow2, observer, percentile\), got 17/],
    [{ bitz: 16 }, /'bitz' is not a field/],
    [{ bits: '16' }, /bits must be an integer from 2 to 16, got "16"/],
    [{ symmetric: 'no' }, /symmetric must be true or false, got "no"/],
    [{ format: 'fp8' }, /format must be one of int, fp8e4m3, fp8e5m2, got "fp8"/],
    [{ observer: 'entropy' }, /observer must be one of minmax, percentile, kl, mse, fp8-mse/],
    [{ qmin: 5.5 }, /qmin must be an integer, got 5\.5/],
    [{ percentile: 99.99 }, /percentile must be a number in \(0, 1\]/],
  ];
  for (const [o, message] of bad) assert.throws(() => applyOverride(base, o as Partial<typeof base>, "override for 'x'"), message, JSON.stringify(o));
  // int8 → E4M3 without a range: ±448, not int8's −128…127 inside E4M3 (whose scale would then map the range to 127.5).
  assert.deepEqual(pick(applyOverride(base, { format: 'fp8e4m3' }, 'o')), { format: 'fp8e4m3', bits: 8, qmin: -448, qmax: 448 });
  assert.deepEqual(pick(applyOverride(base, { format: 'fp8e5m2' }, 'o')), { format: 'fp8e5m2', bits: 8, qmin: -57344, qmax: 57344 });
  assert.deepEqual(pick(applyOverride(base, { format: 'fp8e4m3', qmin: -240, qmax: 240 }, 'o')), { format: 'fp8e4m3', bits: 8, qmin: -240, qmax: 240 });
});

function pick(c: { format: string; bits: number; qmin: number; qmax: number }) {
  return { format: c.format, bits: c.bits, qmin: c.qmin, qmax: c.qmax };
}
