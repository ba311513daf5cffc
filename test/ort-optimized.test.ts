/**
 * Models saved by onnxruntime after its own optimisations (`optimizedModelFilePath`). At level 'extended' Conv →
 * activation and Gemm → activation pairs become com.microsoft FusedConv and FusedGemm, which formatting splits back
 * (unfuse-ort-fusions): checked against onnxruntime's kernels for each activation they fuse (FusedConv with and
 * without the summed input Z); every shared, corpus and npm model saved that way plans the layers the model itself
 * plans, or reports each one it cannot (one test per model; without ../shared only the npm model); and resnet20_cifar10
 * saved that way (needs ../shared) formats and quantizes exactly as the network itself. At level 'all' the Convs become
 * NCHWc contrib ops with blocked weights: the plan lists each as left float and why.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, OperatorSetIdProtoSchema, TensorProto_DataType as DT, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import type { Feeds } from '../src/calibrate/calibrate.ts';
import { formatModel } from '../src/ir/format.ts';
import { makeNode, tensorValueInfo } from '../src/ir/graph.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { planModel } from '../src/quant/plan.ts';
import { getRule, RULE_NAMES } from '../src/quant/rules.ts';
import { quantize } from '../src/quantize.ts';
import { seededRandom } from '../src/runtime/inputs.ts';
import { assertSameOutputBits, cifarBatches, NPM_MODEL, onnxFiles, SHARED } from './helpers/models.ts';

const FILE = join(SHARED, 'quantzoo/Model/cifar10/resnet20_cifar10.onnx');
const skip = existsSync(FILE) ? false : `../shared is absent (${FILE}): the onnxruntime-optimized network test needs a real network`;

/** A one-node model of an onnxruntime contrib op (opset 13 beside com.microsoft). */
function contribModel(node: NodeProto, input: ValueInfoProto[], output: ValueInfoProto[], initializer: TensorProto[]): ModelProto {
  return create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 13n }), create(OperatorSetIdProtoSchema, { domain: 'com.microsoft', version: 1n })],
    graph: { name: 'g', node: [node], input, output, initializer },
  });
}

test('unfuse-ort-fusions: each activation onnxruntime fuses into a Conv, with and without Z, computes what its FusedConv kernel does', async () => {
  const rnd = seededRandom(5);
  const randn = (n: number, s: number) => Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * s);
  const cases: [string, number[]][] = [['Relu', []], ['Tanh', []], ['Sigmoid', []], ['LeakyRelu', [0.1]], ['Clip', [-0.5, 0.75]], ['HardSigmoid', [0.3, 0.45]], ['', []]];
  const x = new ort.Tensor('float32', randn(2 * 3 * 6 * 6, 1), [2, 3, 6, 6]);
  const z = new ort.Tensor('float32', randn(2 * 4 * 6 * 6, 0.5), [2, 4, 6, 6]);
  for (const [activation, params] of cases)
    for (const withZ of [false, true]) {
      const fused = makeNode('FusedConv', ['x', 'w', 'b', ...(withZ ? ['z'] : [])], ['y'], 'fc', { pads: [1, 1, 1, 1], ...(activation ? { activation } : {}), ...(params.length ? { activation_params: { floats: params } } : {}) }, 'com.microsoft');
      const m = contribModel(fused, [tensorValueInfo('x', DT.FLOAT, [2, 3, 6, 6]), ...(withZ ? [tensorValueInfo('z', DT.FLOAT, [2, 4, 6, 6])] : [])], [tensorValueInfo('y', DT.FLOAT, [2, 4, 6, 6])], [makeTensor('w', DT.FLOAT, [4, 3, 3, 3], randn(108, 0.5)), makeTensor('b', DT.FLOAT, [4], randn(4, 0.3))]);
      const { model: out, applied } = formatModel(m);
      const what = `${activation || 'no activation'}${withZ ? ' + Z' : ''}`;
      assert.ok(applied.includes('unfuse-ort-fusions'), `${what}: split`);
      assert.deepEqual(out.graph!.node.filter((n) => n.domain !== ''), [], `${what}: no contrib op left`);
      const feeds = { x, ...(withZ ? { z } : {}) };
      await assertSameOutputBits(out, m, feeds); // the split computes onnxruntime's FusedConv bit for bit
    }
});

test('unfuse-ort-fusions: FusedGemm with each parameterless activation computes what its kernel does; with another it stays and is reported', async () => {
  const rnd = seededRandom(6);
  const randn = (n: number, s: number) => Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * s);
  const a = new ort.Tensor('float32', randn(4 * 6, 1), [4, 6]);
  for (const activation of ['Relu', 'Tanh', 'Sigmoid', 'LeakyRelu']) {
    const fused = makeNode('FusedGemm', ['a', 'b', 'c'], ['y'], 'fg', { alpha: { float: 0.7 }, beta: { float: 1.3 }, transB: 1, ...(activation ? { activation } : {}) }, 'com.microsoft');
    const m = contribModel(fused, [tensorValueInfo('a', DT.FLOAT, [4, 6])], [tensorValueInfo('y', DT.FLOAT, [4, 5])], [makeTensor('b', DT.FLOAT, [5, 6], randn(30, 0.5)), makeTensor('c', DT.FLOAT, [5], randn(5, 0.3))]);
    const out = formatModel(m).model;
    const what = activation || 'no activation';
    if (activation === 'LeakyRelu') {
      assert.equal(out.graph!.node[0].opType, 'FusedGemm', `${what}: stays`);
      assert.match(planModel(out, getRule('onnxquant-int8-perchannel')).skipped[0]?.reason ?? '', /^onnxruntime-optimized layer \(com\.microsoft::FusedGemm\)/, `${what}: reported`);
      continue;
    }
    assert.deepEqual(out.graph!.node.map((n) => n.opType), ['Gemm', ...(activation ? [activation] : [])], `${what}: split`);
    await assertSameOutputBits(out, m, { a }); // the split computes onnxruntime's FusedGemm bit for bit
  }
});

const everyModel = [...onnxFiles(join(SHARED, 'corpus')), ...onnxFiles(join(SHARED, 'quantzoo/Model')).filter((f) => !/int8/.test(f)), NPM_MODEL];
for (const file of everyModel)
  test(`${basename(file)} saved by onnxruntime at level extended plans the model's layers, or reports the ones it cannot`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'onnxquant-ort-ext-'));
    try {
      const saved = join(dir, basename(file));
      const s = await ort.InferenceSession.create(file, { graphOptimizationLevel: 'extended', optimizedModelFilePath: saved, logSeverityLevel: 3, intraOpNumThreads: 1 });
      await s.release();
      const rule = getRule('onnxquant-int8-perchannel');
      const [own, ext] = [planModel(formatModel(loadModel(file)).model, rule), planModel(formatModel(loadModel(saved)).model, rule)];
      const reported = ext.skipped.filter((x) => x.reason.startsWith('onnxruntime-optimized layer'));
      assert.equal(ext.layers.length + reported.length, own.layers.length, `${ext.layers.length} planned + ${reported.length} reported (${reported.map((r) => r.reason.match(/\((.*?)\)/)?.[1]).join(', ')}) against the model's ${own.layers.length}`);
      // onnxruntime fuses these models' Conv and Gemm layers with activations the split handles: none is left for the
      // report (PP-OCRv4 rec's one reported layer is a FusedMatMul).
      assert.deepEqual(reported.filter((r) => /::Fused(Conv|Gemm)\)/.test(r.reason)), [], 'every FusedConv and FusedGemm is split');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

test('a real network saved by onnxruntime at level extended formats and quantizes as the network itself; at level all its NCHWc Convs are listed as left float', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'onnxquant-ort-opt-'));
  try {
    const saved: Record<string, string> = {};
    for (const level of ['extended', 'all'] as const) {
      saved[level] = join(dir, `resnet20_${level}.onnx`);
      const s = await ort.InferenceSession.create(FILE, { graphOptimizationLevel: level, optimizedModelFilePath: saved[level], logSeverityLevel: 3 });
      await s.release();
    }
    const plain = loadModel(FILE);
    const extended = loadModel(saved.extended);
    assert.ok(extended.graph!.node.some((n) => n.opType === 'FusedConv'), 'the saved model has FusedConv nodes');
    const input = plain.graph!.input[0].name;
    const batches: Feeds[] = (await cifarBatches('Calib', 5, 16)).slice(0, 3).map((b) => ({ [input]: b.input }));
    const feeds = batches[2] as Record<string, ort.Tensor>;
    await assertSameOutputBits(formatModel(extended).model, formatModel(plain).model, feeds); // formatted, the saved model computes the network
    const data = () => (async function* () { yield* batches; })();
    for (const name of RULE_NAMES) {
      const rule = getRule(name);
      const [a, b] = [await quantize(extended, data, { rule }), await quantize(plain, data, { rule })];
      assert.equal(a.plan.layers.length, b.plan.layers.length, `${name}: as many layers as the network`);
      assert.deepEqual([...a.params.keys()].sort(), [...b.params.keys()].sort(), `${name}: the same tensors quantized`);
      for (const [key, p] of b.params) assert.deepEqual(a.params.get(key), p, `${name}: ${key} parameters`);
      await assertSameOutputBits(a.model, b.model, feeds); // the same QDQ outputs
    }
    const all = planModel(formatModel(loadModel(saved.all)).model, getRule('onnxquant-int8-perchannel'));
    const convs = plain.graph!.node.filter((n) => n.opType === 'Conv').length;
    assert.equal(all.skipped.filter((s) => /^onnxruntime-optimized layer \(com\.microsoft\.nchwc::Conv\)/.test(s.reason)).length, convs, 'every NCHWc Conv is listed as left float, with why');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
