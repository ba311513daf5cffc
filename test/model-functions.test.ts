/**
 * Models whose layers sit in model-local functions (formatter pass inline-functions), as torch.onnx's dynamo exporter
 * wrote them before it inlined by default: each module a FunctionProto, its weights passed in as inputs.
 * - Every shared, corpus and npm model with each top-level node (but those with subgraphs) wrapped in a function of its
 *   own, every attribute a reference to the call's: formatting leaves no function, plans the same tensors as the model
 *   itself and computes its outputs bit for bit (one test per model; without ../shared only the npm model).
 * - resnet20_cifar10 with every Conv (and the Relu that alone reads it) in a function of its own quantizes as the
 *   network itself under every rule — the same parameters to the bit, the same QDQ outputs. Needs ../shared; skipped
 *   with a message without it.
 * Without the pass such a model quantized nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { clone, create } from '@bufbuild/protobuf';
import { AttributeProtoSchema, FunctionProtoSchema, ModelProtoSchema, NodeProtoSchema, OperatorSetIdProtoSchema, type ModelProto, type NodeProto } from 'onnx-buf';
import type { Feeds } from '../src/calibrate/calibrate.ts';
import { formatModel } from '../src/ir/format.ts';
import { GraphView, makeNode, nodeSubgraphs } from '../src/ir/graph.ts';
import { planModel } from '../src/quant/plan.ts';
import { randomFeeds } from '../src/runtime/inputs.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { getRule, RULE_NAMES } from '../src/quant/rules.ts';
import { quantize } from '../src/quantize.ts';
import { createSession } from '../src/runtime/session.ts';
import { assertSameOutputBits, cifarBatches, feedOptions, NPM_MODEL, onnxFiles, SHARED } from './helpers/models.ts';

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

/** Every top-level node without subgraphs in a function of its own (a body can capture nothing), its attributes
 * references (`ref_attr_name`) to the call's, which carries them under other names. */
function wrapEveryNode(m: ModelProto): ModelProto {
  const out = clone(ModelProtoSchema, m);
  const g = out.graph!;
  const opsets = out.opsetImport.filter((o) => o.domain === '' || o.domain === 'ai.onnx');
  g.node = g.node.map((n, k) => {
    if ((n.domain && n.domain !== 'ai.onnx') || nodeSubgraphs(n).length) return n;
    const body = clone(NodeProtoSchema, n);
    body.name = 'body';
    body.input = n.input.map((x, i) => (x ? `in${i}` : ''));
    body.output = n.output.map((x, i) => (x ? `out${i}` : ''));
    body.attribute = n.attribute.map((a) => create(AttributeProtoSchema, { name: a.name, refAttrName: `a_${a.name}`, type: a.type }));
    const name = `fn_${k}`;
    out.functions.push(create(FunctionProtoSchema, { name, domain: DOMAIN, input: body.input.filter(Boolean), output: body.output.filter(Boolean), attribute: n.attribute.map((a) => `a_${a.name}`), node: [body], opsetImport: opsets }));
    const call = makeNode(name, n.input.filter(Boolean), n.output.filter(Boolean), `${n.name || n.opType}_call`, {}, DOMAIN);
    call.attribute = n.attribute.map((a) => create(AttributeProtoSchema, { ...clone(AttributeProtoSchema, a), name: `a_${a.name}` }));
    return call;
  });
  out.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: DOMAIN, version: 1n }));
  return out;
}

const everyModel = [...onnxFiles(join(SHARED, 'corpus')), ...onnxFiles(join(SHARED, 'quantzoo/Model')).filter((f) => !/int8/.test(f)), NPM_MODEL];
for (const file of everyModel)
  test(`${basename(file)} with every node in a function formats to the model itself`, async () => {
    const m = loadModel(file);
    const wrapped = wrapEveryNode(m);
    assert.ok(wrapped.functions.length > 0, 'the fixture has functions');
    const [a, b] = [formatModel(wrapped).model, formatModel(m).model];
    assert.equal(a.functions.length, 0, 'no function is left');
    const rule = getRule('onnxquant-int8-perchannel');
    assert.deepEqual(planModel(a, rule).tensors.map((t) => t.key), planModel(b, rule).tensors.map((t) => t.key), 'the same tensors planned');
    const opts = feedOptions(file);
    const feeds = { ...randomFeeds(m, { seed: 99, ...opts }), ...opts.extra };
    await assertSameOutputBits(a, b, feeds);
  });

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
