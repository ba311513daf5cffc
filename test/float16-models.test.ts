/**
 * Float16 models (formatter pass upcast-float16), converted the way exporters for the web do it (onnxconverter-common's
 * float16 conversion without keep_io_types: every float32 initializer, Constant, value and Cast becomes float16):
 * - every shared, corpus and npm model so converted formats to the float32 model with float16-rounded constants, bit
 *   for bit (one test per model; without ../shared only the npm model);
 * - resnet20_cifar10 so converted quantizes as the float32 network with float16 weights under every rule — the same
 *   plan, parameters to the bit, the same QDQ outputs — and `inspect`, `quantize` and the zoo report and score it.
 * Without the pass every layer of such a model stayed float. The resnet20 tests need ../shared (its CIFAR-10 images);
 * skipped with a message without it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, type ModelProto, type TensorProto, type TypeProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import type { Feeds } from '../src/calibrate/calibrate.ts';
import { walkGraphs } from '../src/ir/graph.ts';
import { float16ToFloat32, float32ToFloat16 } from '../src/onnx/float-formats.ts';
import { loadModel, serializeModel } from '../src/onnx/model-io.ts';
import { makeTensor, tensorDims, tensorToFloat32 } from '../src/onnx/tensor-codec.ts';
import { getRule, RULE_NAMES } from '../src/quant/rules.ts';
import { quantize } from '../src/quantize.ts';
import { createSession } from '../src/runtime/session.ts';
import { randomFeeds } from '../src/runtime/inputs.ts';
import { formatModel } from '../src/ir/format.ts';
import type { InspectSummary } from '../src/cli/inspect.ts';
import { cli } from './helpers/cli.ts';
import { assertSameOutputBits, cifarBatches, feedOptions, NPM_MODEL, onnxFiles, SHARED } from './helpers/models.ts';

const FILE = join(SHARED, 'quantzoo/Model/cifar10/resnet20_cifar10.onnx');
const skip = existsSync(FILE) ? false : `../shared is absent (${FILE}): the float16 model test needs a real network`;

const typeTo16 = (t: TypeProto | undefined) => {
  if (t?.value.case === 'tensorType' && t.value.value.elemType === DT.FLOAT) t.value.value.elemType = DT.FLOAT16;
};

/** onnxconverter-common's convert_float_to_float16 (keep_io_types=False), in miniature. */
function toFloat16(m: ModelProto): ModelProto {
  const out = clone(ModelProtoSchema, m);
  for (const g of walkGraphs(out.graph!)) {
    g.initializer = g.initializer.map((t) => (t.dataType === DT.FLOAT ? makeTensor(t.name, DT.FLOAT16, tensorDims(t), Uint16Array.from(tensorToFloat32(t), float32ToFloat16)) : t));
    for (const v of [...g.input, ...g.output, ...g.valueInfo]) typeTo16(v.type);
    for (const n of g.node)
      for (const a of n.attribute) {
        if (a.t?.dataType === DT.FLOAT) a.t = makeTensor(a.t.name, DT.FLOAT16, tensorDims(a.t), Uint16Array.from(tensorToFloat32(a.t), float32ToFloat16));
        if (n.opType === 'Cast' && a.name === 'to' && Number(a.i) === DT.FLOAT) a.i = BigInt(DT.FLOAT16);
      }
  }
  return out;
}

/** The float32 network with every float32 constant (initializers, Constant and ConstantOfShape values) rounded through
 * float16: what the float16 model's constants hold. */
function withFloat16Weights(m: ModelProto): ModelProto {
  const out = clone(ModelProtoSchema, m);
  const round = (t: TensorProto) => makeTensor(t.name, DT.FLOAT, tensorDims(t), tensorToFloat32(t).map((x) => float16ToFloat32(float32ToFloat16(x))));
  for (const g of walkGraphs(out.graph!)) {
    g.initializer = g.initializer.map((t) => (t.dataType === DT.FLOAT ? round(t) : t));
    for (const n of g.node) for (const a of n.attribute) if (a.t?.dataType === DT.FLOAT) a.t = round(a.t);
  }
  return out;
}

// Every real model at hand, in float16: its upcast computes the float32 model with float16 constants, bit for bit —
// LSTMs, Ifs, Loops, NHWC graphs, Constant-node weights included. One test per model, so a failure names it.
const everyModel = [...onnxFiles(join(SHARED, 'corpus')), ...onnxFiles(join(SHARED, 'quantzoo/Model')).filter((f) => !/int8/.test(f)), NPM_MODEL];
for (const file of everyModel)
  test(`${basename(file)} in float16 formats to the float32 model with float16 constants, bit for bit`, async () => {
    const m = loadModel(file);
    const opts = feedOptions(file);
    const feeds = { ...randomFeeds(m, { seed: 99, ...opts }), ...opts.extra };
    await assertSameOutputBits(formatModel(toFloat16(m)).model, formatModel(withFloat16Weights(m)).model, feeds);
  });

test('a real network in float16 quantizes as the float32 network with float16 weights, under every rule', { skip }, async () => {
  const fp32 = loadModel(FILE);
  const fp16 = toFloat16(fp32);
  const reference = withFloat16Weights(fp32);
  const input = fp32.graph!.input[0].name;
  const batches: Feeds[] = (await cifarBatches('Calib', 5, 16)).slice(0, 3).map((b) => ({ [input]: b.input }));
  assert.equal(batches.length, 3, 'three batches of CIFAR-10 images');
  const data = () => (async function* () { yield* batches; })();

  // The fixture is a valid float16 model: onnxruntime runs it on float16 data and returns float16.
  const output = fp32.graph!.output[0].name;
  const raw = await ort.InferenceSession.create(serializeModel(fp16), { logSeverityLevel: 3 });
  const x = batches[0][input].data as Float32Array;
  const y16 = (await raw.run({ [input]: new ort.Tensor('float16', Uint16Array.from(x, float32ToFloat16), [16, 3, 32, 32]) }))[output];
  await raw.release();
  assert.equal(y16.type, 'float16', 'the float16 model returns float16');
  // Run as shipped (the zoo's float column, deploy-check's float run): the project's sessions take the float32 data,
  // round it to float16 on the host, and hand the float16 outputs back as float32 — the same values.
  const shipped = await createSession(fp16);
  const y = (await shipped.run({ [input]: new ort.Tensor('float32', x, [16, 3, 32, 32]) }))[output];
  await shipped.release();
  assert.equal(y.type, 'float32');
  assert.deepEqual([...(y.data as Float32Array)], Array.from(y16.data as Uint16Array, float16ToFloat32), 'a session runs the float16 model itself on float32 data');

  for (const name of RULE_NAMES) {
    const rule = getRule(name);
    const [a, b] = [await quantize(fp16, data, { rule }), await quantize(reference, data, { rule })];
    assert.ok(a.plan.layers.length > 0, `${name}: the float16 model's layers are quantized`);
    assert.deepEqual(a.plan.layers.map((l) => l.node), b.plan.layers.map((l) => l.node), `${name}: same layers as the float32 network`);
    assert.deepEqual(a.plan.skipped, [], `${name}: nothing left float`);
    for (const [key, p] of b.params) assert.deepEqual(a.params.get(key), p, `${name}: ${key} parameters`);
    const feeds = batches[2];
    const [ra, rb] = [await createSession(a.model, { mode: 'simulate' }), await createSession(b.model, { mode: 'simulate' })];
    const out = fp32.graph!.output[0].name;
    const [ya, yb] = [(await ra.run(feeds))[out], (await rb.run(feeds))[out]];
    await ra.release();
    await rb.release();
    assert.equal(ya.type, 'float32', `${name}: the quantized model returns float32`);
    assert.deepEqual([...(ya.data as Float32Array)], [...(yb.data as Float32Array)], `${name}: same QDQ outputs, bit for bit`);
  }
});

test('the CLI on a float16 model: inspect reports it and counts its layers, quantize quantizes them and says what changed', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'onnxquant-fp16-'));
  try {
    const file = join(dir, 'resnet20_fp16.onnx');
    writeFileSync(file, serializeModel(toFloat16(loadModel(FILE))));
    const [a, b] = [await cli('inspect', file, '--json'), await cli('inspect', FILE, '--json')];
    assert.equal(a.code, 0, a.stderr);
    const [s16, s32] = [JSON.parse(a.stdout) as InspectSummary, JSON.parse(b.stdout) as InspectSummary];
    assert.deepEqual([s16.float16, s32.float16], [true, false]);
    assert.deepEqual(s16.quantizable, s32.quantizable, 'the same layers as the float32 network');
    assert.ok(s32.quantizable.count > 0, 'resnet20 has layers to quantize');
    const out = join(dir, 'q.onnx');
    const q = await cli('quantize', file, '--calib', join(SHARED, 'quantzoo/Data/Cifar10/Calib'), '--preprocess', 'cifar10-nchw', '--calib-steps', '1', '--output', out);
    assert.equal(q.code, 0, q.stderr);
    assert.match(q.stdout, new RegExp(`quantized ${s32.quantizable.count} layers`));
    assert.match(q.stderr, /computes in float16: quantized as its float32 graph .*takes and returns float32 \(input, logits\)/);
    assert.deepEqual(loadModel(out).graph!.input.map((v) => v.type?.value.case === 'tensorType' && v.type.value.value.elemType), [DT.FLOAT]);
    // The zoo scores it (a registry entry): the float column is the float16 model's own top-1 on the float32 data.
    const registry = join(dir, 'registry.json');
    const cifar = join(SHARED, 'quantzoo/Data/Cifar10');
    writeFileSync(registry, JSON.stringify({ models: [{ id: 'r20-fp16', file, input: { name: 'input' }, preprocess: 'cifar10-nchw', data: { calibration: { kind: 'image-folder', dir: join(cifar, 'Calib'), limit: 32 }, test: { kind: 'image-folder', dir: join(cifar, 'Test'), limitPerClass: 5 } }, task: { kind: 'classification', numClasses: 10 } }] }));
    const z = await cli('zoo', '--registry', registry, '--rules', 'onnxquant-int8-perchannel', '--out', join(dir, 'zoo'));
    assert.equal(z.code, 0, z.stderr);
    const cell = JSON.parse(readFileSync(join(dir, 'zoo/r20-fp16/onnxquant-int8-perchannel/cell.json'), 'utf8')) as { status: string; float: number; quant: number };
    assert.equal(cell.status, 'ok');
    const model16 = await createSession(loadModel(file));
    let hits = 0;
    let n = 0;
    for (const b of await cifarBatches('Test', 5, 10)) {
      const x = new ort.Tensor('float16', Uint16Array.from(b.input.data as Float32Array, float32ToFloat16), [...b.input.dims]);
      const y = [...((await model16.run({ input: x })).logits.data as Float32Array)];
      b.labels.forEach((label, i) => {
        const row = y.slice(i * 10, i * 10 + 10);
        hits += row.indexOf(Math.max(...row)) === label ? 1 : 0;
        n++;
      });
    }
    await model16.release();
    assert.equal(cell.float, (100 * hits) / n, `the zoo's float top-1 is the float16 model's (${hits}/${n})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
