/**
 * `--freeze`: a model input made a constant, and the Ifs it decides replaced by their branch. The frozen model must
 * compute exactly what the original computes with that input value (onnxruntime on both), for each branch, with
 * nested Ifs and with branch values whose names the main graph also uses (renamed). On Silero VAD (three exports
 * in ../shared/corpus, every Conv inside a sample-rate If) it is what makes the model quantizable from the CLI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cli } from './helpers/cli.ts';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import * as ort from 'onnxruntime-node';
import { AttributeProto_AttributeType as AT, GraphProtoSchema, ModelProtoSchema, NodeProtoSchema, TensorProto_DataType as DT, type GraphProto, type ModelProto, type NodeProto, type TensorProto } from 'onnx-buf';
import { freezeInputs, ifDecidingInputs } from '../src/ir/freeze-inputs.ts';
import { makeNode, tensorValueInfo, walkGraphs } from '../src/ir/graph.ts';
import { loadModel, serializeModel } from '../src/onnx/model-io.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { evaluateOutputs } from '../src/runtime/evaluate.ts';
import { SHARED } from './helpers/models.ts';
import { writeNpy } from '../bench/util.ts';

const tmp = mkdtempSync(join(tmpdir(), 'onnxquant-freeze-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

async function run(model: ModelProto, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const s = await ort.InferenceSession.create(serializeModel(model), { graphOptimizationLevel: 'disabled' });
  const out = await s.run(feeds);
  await s.release();
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
}

const ifs = (m: ModelProto) => [...walkGraphs(m.graph!)].flatMap((g) => g.node).filter((n) => n.opType === 'If').length;

/**
 * y = If(k == 1) { t = x·2; If(k > 0) { t + 1 } else { t − 1 } } else { t = x − 5 }, u = x + 100, and
 * v = If(Σx > 0) { t = 3x } else { t = −x }, which freezing k cannot decide. Bodies may each define 't' (onnxruntime
 * rejects only a body redefining an outer name), so the inlined branch's 't' must be renamed, or v's bodies would
 * redefine it. Frozen at k = 1, y = x·2 + 1; otherwise y = x − 5.
 */
function nestedIfModel(): ModelProto {
  const f = (name: string) => tensorValueInfo(name, DT.FLOAT, [3]);
  const branch = (name: string, node: NodeProto[], out: string, initializer: TensorProto[] = []): GraphProto =>
    create(GraphProtoSchema, { name, node, initializer, output: [f(out)] });
  const ifNode = (cond: string, out: string, name: string, thenB: GraphProto, elseB: GraphProto): NodeProto =>
    create(NodeProtoSchema, {
      opType: 'If',
      name,
      input: [cond],
      output: [out],
      attribute: [
        { name: 'then_branch', type: AT.GRAPH, g: thenB },
        { name: 'else_branch', type: AT.GRAPH, g: elseB },
      ],
    });
  const plusOne = branch('plus', [makeNode('Add', ['t', 'one'], ['r1'], 'add1')], 'r1', [makeTensor('one', DT.FLOAT, [1], [1])]);
  const minusOne = branch('minus', [makeNode('Sub', ['t', 'one2'], ['r2'], 'sub1')], 'r2', [makeTensor('one2', DT.FLOAT, [1], [1])]);
  const thenB = branch(
    'then',
    [makeNode('Mul', ['x', 'two'], ['t'], 'mul'), makeNode('Greater', ['k', 'zero'], ['gt'], 'gt'), ifNode('gt', 'inner_y', 'inner_if', plusOne, minusOne)],
    'inner_y',
    [makeTensor('two', DT.FLOAT, [1], [2])],
  );
  const elseB = branch('else', [makeNode('Sub', ['x', 'five'], ['t'], 'sub5')], 't', [makeTensor('five', DT.FLOAT, [1], [5])]);
  return create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [{ domain: '', version: 13n }],
    graph: {
      name: 'nested',
      node: [
        makeNode('Equal', ['k', 'one_i'], ['cond'], 'eq'),
        ifNode('cond', 'y', 'outer_if', thenB, elseB),
        makeNode('Add', ['x', 'hundred'], ['u'], 'main_u'),
        // An If that freezing cannot decide (it reads x), whose branches define 't' as well.
        makeNode('ReduceSum', ['x'], ['sx'], 'sum', { keepdims: 0 }),
        makeNode('Greater', ['sx', 'zero_f'], ['pos'], 'pos'),
        ifNode('pos', 'v', 'other_if', branch('p', [makeNode('Mul', ['x', 'three'], ['t'], 'mul3')], 't', [makeTensor('three', DT.FLOAT, [1], [3])]), branch('n', [makeNode('Neg', ['x'], ['t'], 'neg')], 't')),
      ],
      input: [f('x'), tensorValueInfo('k', DT.INT64, [])],
      output: [f('y'), f('u'), f('v')],
      initializer: [makeTensor('one_i', DT.INT64, [], [1]), makeTensor('zero', DT.INT64, [], [0]), makeTensor('hundred', DT.FLOAT, [1], [100]), makeTensor('zero_f', DT.FLOAT, [], [0])],
    },
  });
}

test('freezing decides nested Ifs, renames clashing branch values, and computes what the original does', async () => {
  const model = nestedIfModel();
  const x = new ort.Tensor('float32', Float32Array.from([1, -2, 3.5]), [3]);
  for (const k of [1, 0, 7]) {
    const { model: frozen, inlined } = await freezeInputs(model, [makeTensor('k', DT.INT64, [], [k])], evaluateOutputs);
    assert.deepEqual(frozen.graph!.input.map((v) => v.name), ['x'], 'k is no longer an input');
    assert.equal(ifs(frozen), 1, `k = ${k}: the two Ifs on k are decided, the one on x is kept`);
    assert.deepEqual(inlined, k === 1 ? ['outer_if: then', 'inner_if: then'] : ['outer_if: else']);
    const want = await run(model, { x, k: new ort.Tensor('int64', BigInt64Array.from([BigInt(k)]), []) });
    const got = await run(frozen, { x });
    assert.deepEqual([...got.y], [...want.y], `k = ${k}: y`);
    assert.deepEqual([...got.u], [...want.u], `k = ${k}: u`);
    assert.deepEqual([...got.v], [...want.v], `k = ${k}: v, from the If left in place (its 't' and the inlined one's differ)`);
    assert.deepEqual([...got.y], k === 1 ? [3, -3, 8] : [-4, -7, -1.5]);
  }
  // Which inputs decide which Ifs (what the CLI's --freeze hint names): outer_if by k, other_if by x; inner_if sits
  // in a body and is not a top-level If yet.
  assert.deepEqual(ifDecidingInputs(model), [['k'], ['x']]);
  // The input model is left as it was.
  assert.equal(model.graph!.input.length, 2);
  assert.equal(ifs(model), 3);
});

const VADS = ['silero_vad_v4_lstm', 'silero_vad_v5_if_lstm', 'silero_vad_op18_ifless'].map((m) => join(SHARED, 'corpus', `${m}.onnx`));
const skipVad = VADS.every(existsSync) ? false : `Silero VAD models not found in ../shared/corpus (${VADS[0]})`;
const audio = Float32Array.from({ length: 512 }, (_, i) => 0.3 * Math.sin(0.0005 * i * i) + 0.05 * Math.sin(i * 1.7));

test('Silero VAD frozen at 16 kHz and at 8 kHz computes what the original computes with that sample rate', { skip: skipVad }, async () => {
  for (const file of VADS) {
    const model = loadModel(file);
    for (const [sr, chunk] of [[16000, 512], [8000, 256]]) {
      const { model: frozen, inlined } = await freezeInputs(model, [makeTensor('sr', DT.INT64, [], [sr])], evaluateOutputs);
      assert.equal(inlined.length, 1, `${file} at ${sr}: the sample-rate If`);
      const state = Object.fromEntries(
        frozen.graph!.input.filter((v) => v.name !== 'input').map((v) => {
          const dims = v.name === 'state' ? [2, 1, 128] : [2, 1, 64];
          return [v.name, new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b)), dims)];
        }),
      );
      const feeds = { input: new ort.Tensor('float32', audio.slice(0, chunk), [1, chunk]), ...state };
      const want = await run(model, { ...feeds, sr: new ort.Tensor('int64', BigInt64Array.from([BigInt(sr)]), []) });
      const got = await run(frozen, feeds);
      for (const k of Object.keys(want)) assert.deepEqual([...got[k]], [...want[k]], `${file} at ${sr}: output ${k}`);
    }
  }
});


test('quantize --freeze sr=16000: the Convs of the 16 kHz branch are quantized; without it the model is refused, saying why', { skip: skipVad }, async () => {
  const file = VADS[2];
  const npy = join(tmp, 'audio.npy');
  writeNpy(npy, { dims: [1, 512], data: audio });
  const out = join(tmp, 'vad.onnx');
  const args = ['quantize', file, '--calib', npy, '--input', 'input', '--batch', '1', '-o', out];
  let r = await cli(...args, '--feed', 'state=0', '--feed', 'sr=16000', '--quiet');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no layer to quantize under onnxquant-int8-perchannel \(e\.g\. node_cond__1\/.*: inside a If body; the Ifs are decided by input 'sr': --freeze sr=<value> inlines the branch for that value\); nothing written/);
  r = await cli(...args, '--feed', 'state=0');
  assert.match(r.stderr, /need values: sr int64 \[\]; .* \(or --freeze a setting such as a sample rate into the model\)/);
  r = await cli(...args, '--feed', 'state=0', '--freeze', 'sr=16000');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /froze sr into the model \(no longer inputs\); If decided and inlined: node_cond__1: then/);
  assert.match(r.stdout, /quantized 8 layers/);
  const q = loadModel(out);
  assert.deepEqual(q.graph!.input.map((v) => v.name), ['input', 'state']);
  assert.equal(q.graph!.node.filter((n) => n.opType === 'QuantizeLinear').length > 0, true);
});
