/**
 * The two exact rewrites of simulation sessions. Constant weights are dequantized once (src/runtime/fold-dequantize.ts):
 * the outputs must be bit-identical to onnxruntime running every DequantizeLinear itself, for every rule's weight
 * format (int8 per channel, int8 power-of-two per tensor, FP8 E4M3 per channel) on the npm-shipped PP-OCRv4
 * recognizer. FP8 Q → DQ pairs become float32 arithmetic (src/runtime/emulate-fp8.ts): bit-identical to onnxruntime's
 * float8 kernels element by element over ties, sweeps and special values, and on PP-OCRv4 rec's outputs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { loadModel } from '../src/onnx/model-io.ts';
import { getRule } from '../src/quant/rules.ts';
import { quantize } from '../src/quantize.ts';
import { createSession } from '../src/runtime/session.ts';
import { randomFeeds } from '../src/runtime/inputs.ts';
import { foldConstantDequantize } from '../src/runtime/fold-dequantize.ts';
import { emulateFp8QuantDequant } from '../src/runtime/emulate-fp8.ts';
import { create } from '@bufbuild/protobuf';
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema, TensorProto_DataType as DT, type ModelProto } from 'onnx-buf';
import { makeNode, tensorValueInfo } from '../src/ir/graph.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { e4m3TiePoints, float32Neighbours, float32Sweep } from './helpers/float-points.ts';
import { NPM_MODEL } from './helpers/models.ts';

test('folding constant DequantizeLinear nodes leaves simulation bit-identical (int8 per-channel, power-of-two, FP8)', { skip: !existsSync(NPM_MODEL) && `${NPM_MODEL} missing (npm install)` }, async () => {
  const model = loadModel(NPM_MODEL);
  for (const rule of ['onnxquant-int8-perchannel', 'onnxquant-int8-pot', 'onnxquant-fp8']) {
    const feeds = randomFeeds(model, { seed: 3, shapes: { x: [2, 3, 48, 160] } });
    const { model: q } = await quantize(model, (async function* () { yield feeds; })(), { rule: getRule(rule) });
    const { folded } = foldConstantDequantize(q);
    assert.ok(folded > 30, `${rule}: ${folded} weight DequantizeLinear nodes folded`);
    const out: Float32Array[] = [];
    for (const fold of [false, true]) {
      const s = await createSession(q, { mode: 'simulate', foldConstantDequantize: fold });
      const r = await s.run(feeds);
      out.push(r[s.outputNames[0]].data as Float32Array);
      await s.release();
    }
    assert.equal(out[0].length, out[1].length);
    let diff = 0;
    for (let i = 0; i < out[0].length; i++) if (!Object.is(out[0][i], out[1][i])) diff++;
    assert.equal(diff, 0, `${rule}: ${diff} of ${out[0].length} outputs differ`);
  }
});

/** x[n] → QuantizeLinear(E4M3FN, scalar scale) → DequantizeLinear → y, the quantized value also an output if asked. */
function fp8Pair(n: number, scale: number, opts: { dqScale?: number; zeroPoint?: number } = {}): ModelProto {
  const inits = [makeTensor('s', DT.FLOAT, [], [scale]), makeTensor('z', DT.FLOAT8E4M3FN, [], [opts.zeroPoint ?? 0]), makeTensor('s2', DT.FLOAT, [], [opts.dqScale ?? scale])];
  return create(ModelProtoSchema, {
    irVersion: 10n,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 21n })],
    graph: create(GraphProtoSchema, {
      name: 'fp8',
      node: [makeNode('QuantizeLinear', ['x', 's', 'z'], ['q'], 'q'), makeNode('DequantizeLinear', ['q', 's2', 'z'], ['y'], 'dq')],
      initializer: inits,
      input: [tensorValueInfo('x', DT.FLOAT, [n])],
      output: [tensorValueInfo('y', DT.FLOAT, [n])],
    }),
  });
}

test('FP8 Q→DQ emulated in float32 gives the same bits as onnxruntime\'s float8 kernels: every tie and its neighbours, a sweep, ±0, subnormals, saturation, NaN', async () => {
  // Powers of two (folded into the constants) and another scale (divided by first).
  for (const scale of [1, Math.fround(0.0173), 2 ** -7, 64]) {
    // Every E4M3 value and tie (and beyond 448) scaled back to x, a float32 ulp either side; a sweep of bit patterns
    // over the whole positive range.
    const ties = [...e4m3TiePoints(), ...Array.from({ length: 40 }, (_, i) => 448 + 4 * i)];
    const xs = [0, -0, NaN, Infinity, -Infinity, 1e-45, -1e-45, 3e38, -3e38, ...ties.flatMap((m) => float32Neighbours(Math.fround(m * scale))), ...float32Sweep(0x7f800000, 65521)];
    const x = Float32Array.from([...xs, ...xs.map((v) => -v)]);
    const model = fp8Pair(x.length, scale);
    assert.equal(emulateFp8QuantDequant(model).rewritten, 1);
    const y: Float32Array[] = [];
    for (const emulateFp8 of [false, true]) {
      const s = await createSession(model, { mode: 'simulate', emulateFp8 });
      y.push((await s.run({ x: { data: x, dims: [x.length] } })).y.data as Float32Array);
      await s.release();
    }
    const bad: string[] = [];
    for (let i = 0; i < x.length; i++) if (!Object.is(y[0][i], y[1][i])) bad.push(`x=${x[i]}: kernels ${y[0][i]}, emulated ${y[1][i]}`);
    assert.deepEqual(bad.slice(0, 5), [], `scale ${scale}: ${bad.length} of ${x.length} differ`);
    assert.ok(x.length > 60_000);
  }
});

test('FP8 emulation rewrites only the pairs it reads exactly: not a fetched quantized value, another scale, a nonzero zero point', () => {
  assert.equal(emulateFp8QuantDequant(fp8Pair(4, 0.5), new Set(['q'])).rewritten, 0, 'q is fetched');
  assert.equal(emulateFp8QuantDequant(fp8Pair(4, 0.5, { dqScale: 0.25 })).rewritten, 0, 'DQ reads another scale');
  assert.equal(emulateFp8QuantDequant(fp8Pair(4, 0.5, { zeroPoint: 1 })).rewritten, 0, 'zero point 1');
  const { model, rewritten } = emulateFp8QuantDequant(fp8Pair(4, 0.5));
  assert.equal(rewritten, 1);
  assert.ok(!model.graph!.node.some((n) => n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear'));
  // A power-of-two scale folds into the constants (no Div, no final Mul); another scale divides first.
  assert.equal(model.graph!.node.length, 10);
  assert.ok(!model.graph!.node.some((n) => n.opType === 'Div'));
  assert.equal(emulateFp8QuantDequant(fp8Pair(4, Math.fround(0.3))).model.graph!.node.length, 12);
});

test('FP8 emulation leaves a quantized PP-OCRv4 rec\'s simulated outputs bit-identical', { skip: !existsSync(NPM_MODEL) && `${NPM_MODEL} missing (npm install)` }, async () => {
  const model = loadModel(NPM_MODEL);
  const feeds = randomFeeds(model, { seed: 5, shapes: { x: [2, 3, 48, 160] } });
  const { model: q } = await quantize(model, (async function* () { yield feeds; })(), { rule: getRule('onnxquant-fp8') });
  const { rewritten } = emulateFp8QuantDequant(q);
  assert.ok(rewritten > 30, `${rewritten} activation pairs rewritten`);
  const out: Float32Array[] = [];
  for (const emulateFp8 of [false, true]) {
    const s = await createSession(q, { mode: 'simulate', emulateFp8 });
    out.push((await s.run(feeds))[s.outputNames[0]].data as Float32Array);
    await s.release();
  }
  let diff = 0;
  for (let i = 0; i < out[0].length; i++) if (!Object.is(out[0][i], out[1][i])) diff++;
  assert.equal(diff, 0, `${diff} of ${out[0].length} outputs differ`);
});
