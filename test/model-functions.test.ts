/**
 * Models whose layers sit in model-local functions (formatter pass inline-functions), as torch.onnx's dynamo exporter
 * wrote them before it inlined by default: each module a FunctionProto, its weights passed in as inputs. A real
 * network wrapped that way (resnet20_cifar10: every Conv, with the Relu that alone reads it, in a function of its
 * own) runs as the original does, and quantizes as the original does under every rule — the same number of layers,
 * the same parameters to the bit, the same QDQ outputs. Without the pass it quantized nothing. Needs ../shared;
 * skipped with a message without it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { clone, create } from '@bufbuild/protobuf';
import { FunctionProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema, type ModelProto, type NodeProto } from 'onnx-buf';
import type { Feeds } from '../src/calibrate/calibrate.ts';
import { GraphView, makeNode } from '../src/ir/graph.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { getRule, RULE_NAMES } from '../src/quant/rules.ts';
import { quantize } from '../src/quantize.ts';
import { createSession } from '../src/runtime/session.ts';
import { cifarBatches, SHARED } from './helpers/models.ts';

const FILE = join(SHARED, 'quantzoo/Model/cifar10/resnet20_cifar10.onnx');
const skip = existsSync(FILE) ? false : `../shared is absent (${FILE}): the model-local function test needs a real network`;
const DOMAIN = 'pkg.torch.test';

/** Every Conv (and the Relu that alone reads it) becomes a call of a function of its own, weights as inputs. */
function wrapConvs(m: ModelProto): ModelProto {
  const out = clone(ModelProtoSchema, m);
  const g = out.graph!;
  const view = new GraphView(g);
  let k = 0;
  for (const conv of g.node.filter((n) => n.opType === 'Conv')) {
    const readers = view.uses(conv.output[0]);
    const relu = readers.length === 1 && readers[0].opType === 'Relu' && !view.graphOutputs.has(conv.output[0]) ? readers[0] : undefined;
    const last = relu ?? conv;
    const formals = conv.input.map((_, i) => ['x', 'weight', 'bias'][i]);
    const body: NodeProto[] = [makeNode('Conv', formals, [relu ? 'conv_out' : 'y'], 'conv')];
    body[0].attribute = conv.attribute;
    if (relu) body.push(makeNode('Relu', ['conv_out'], ['y'], 'relu'));
    const name = `torch_nn_modules_conv_Conv2d_${k++}`;
    out.functions.push(create(FunctionProtoSchema, { name, domain: DOMAIN, input: formals, output: ['y'], node: body, opsetImport: out.opsetImport.filter((o) => o.domain === '' || o.domain === 'ai.onnx') }));
    const call = makeNode(name, [...conv.input], [last.output[0]], `${name}_call`, {}, DOMAIN);
    g.node.splice(g.node.indexOf(conv), 1, call);
    if (relu) g.node.splice(g.node.indexOf(relu), 1);
  }
  out.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: DOMAIN, version: 1n }));
  return out;
}

test('a real network with its layers in model-local functions quantizes as the network itself, under every rule', { skip }, async () => {
  const plain = loadModel(FILE);
  const wrapped = wrapConvs(plain);
  assert.equal(wrapped.graph!.node.filter((n) => n.opType === 'Conv').length, 0, 'the fixture has no Conv in its graph');
  assert.ok(wrapped.functions.length > 10, 'one function per Conv');
  const input = plain.graph!.input[0].name;
  const batches: Feeds[] = (await cifarBatches('Calib', 5, 16)).slice(0, 3).map((b) => ({ [input]: b.input }));
  const data = () => (async function* () { yield* batches; })();
  const output = plain.graph!.output[0].name;
  const run = async (m: ModelProto, mode: 'float' | 'simulate') => {
    const s = await createSession(m, { mode });
    try {
      return [...((await s.run(batches[2]))[output].data as Float32Array)];
    } finally {
      await s.release();
    }
  };
  assert.deepEqual(await run(wrapped, 'float'), await run(plain, 'float'), 'the fixture computes what the network does (onnxruntime inlines it)');
  for (const name of RULE_NAMES) {
    const rule = getRule(name);
    const [a, b] = [await quantize(wrapped, data, { rule }), await quantize(plain, data, { rule })];
    assert.equal(a.plan.layers.length, b.plan.layers.length, `${name}: as many layers as the network`);
    assert.ok(b.plan.layers.length > 0, 'resnet20 has layers to quantize');
    assert.deepEqual([...a.params.keys()].sort(), [...b.params.keys()].sort(), `${name}: the same tensors quantized`);
    for (const [key, p] of b.params) assert.deepEqual(a.params.get(key), p, `${name}: ${key} parameters`);
    assert.deepEqual(await run(a.model, 'simulate'), await run(b.model, 'simulate'), `${name}: same QDQ outputs, bit for bit`);
  }
});
