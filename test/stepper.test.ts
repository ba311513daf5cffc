/**
 * The network stepper (runtime/stepper.ts) against whole-network runs of onnxruntime: the values it returns are
 * bit-identical in simulate mode (optimizations off, every node computed alone), a walk over every layer runs each
 * node once instead of once per layer, quantized Q outputs (float8 here) never have to cross between pieces, and a
 * model that changes in nodes not yet run is followed (the contract weight rounding relies on).
 */
import { test } from 'node:test';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import assert from 'node:assert/strict';
import { clone, create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, ValueInfoProtoSchema, type ModelProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { constFloat } from '../src/ir/constants.ts';
import { GraphView, makeNode } from '../src/ir/graph.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { planModel } from '../src/quant/plan.ts';
import { getRule } from '../src/quant/rules.ts';
import { calibrate, type Feeds } from '../src/calibrate/calibrate.ts';
import { realiseQdq } from '../src/realise/qdq.ts';
import { prepareModel } from '../src/quantize.ts';
import { randomFeeds } from '../src/runtime/inputs.ts';
import { createSession } from '../src/runtime/session.ts';
import { createStepper } from '../src/runtime/stepper.ts';
import { createValueStore } from '../src/runtime/value-store.ts';
import { collectGarbage } from './helpers/collect-garbage.ts';
import { NPM_MODEL } from './helpers/models.ts';

const SHAPE = { shapes: { x: [2, 3, 48, 96] } };

async function fullRun(model: ModelProto, batches: Feeds[], names: string[]): Promise<Record<string, ort.Tensor>[]> {
  const s = await createSession(model, { mode: 'simulate', extraOutputs: names });
  const out = [];
  for (const b of batches) out.push(await s.run(b, names));
  await s.release();
  return out;
}

function assertSame(a: ort.Tensor, b: ort.Tensor, what: string): void {
  assert.deepEqual(a.dims, b.dims, what);
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) assert.fail(`${what}[${i}]: ${x[i]} vs ${y[i]}`);
}

/** The input of every Conv/MatMul/Gemm in graph order (the walk weight rounding and range search take). */
const layerInputs = (m: ModelProto) => [...new Set(m.graph!.node.filter((n) => ['Conv', 'MatMul', 'Gemm'].includes(n.opType)).map((n) => n.input[0]))].filter((x) => x !== 'x');

for (const [label, memoryBytes] of [['in memory', undefined], ['every value in files', 0]] as const)
  test(`stepper (${label}): a walk over every layer input of an FP8 QDQ PP-OCRv4 equals one whole run, running each node once`, async () => {
    const rule = getRule('onnxquant-fp8');
    const prepared = prepareModel(loadModel(NPM_MODEL), rule).model;
    const plan = planModel(prepared, rule);
    const batches = [1, 2].map((seed) => randomFeeds(prepared, { ...SHAPE, seed }));
    const { params } = await calibrate(prepared, plan, (async function* () { yield* batches; })());
    const qdq = realiseQdq(prepared, plan, params);
    assert.ok(qdq.graph!.initializer.some((t) => t.dataType === DT.FLOAT8E4M3FN), 'the QDQ model holds float8 tensors');
    const targets = layerInputs(qdq);
    assert.ok(targets.length > 40, `${targets.length} layer inputs`);
    const whole = await fullRun(qdq, batches, targets);
    const step = createStepper(batches, 'simulate', { memoryBytes });
    let widest = 0;
    let total = 0;
    for (const t of targets) {
      const got = await step.advance(qdq, [t]);
      assert.equal(got.length, batches.length);
      for (let b = 0; b < got.length; b++) assertSame(got.get(b)[t], whole[b][t], `${t} (batch ${b})`);
      widest = Math.max(widest, step.keptBytes());
      for (let b = 0; b < got.length; b++) total += (got.get(b)[t].data as Float32Array).byteLength;
    }
    // Each node that leads to a layer input runs once (a prefix network per layer would run ~targets/2 × as many).
    assert.ok(step.nodeRuns() <= qdq.graph!.node.length, `${step.nodeRuns()} node runs for ${qdq.graph!.node.length} nodes`);
    // It keeps the frontier, not every value it produced.
    assert.ok(widest < total / 4, `kept at most ${widest} bytes of ${total}`);
    // With no memory budget every kept value went through a file: at least the layer inputs themselves.
    if (memoryBytes === 0) assert.ok(step.spilledBytes() >= total, `${step.spilledBytes()} bytes spilled, ${total} handed out`);
    else assert.equal(step.spilledBytes(), 0);
    step.close();
  });

test('stepper: follows weights that change in nodes not yet run, and peek does not commit a node', async () => {
  const model = prepareModel(loadModel(NPM_MODEL), getRule('onnxquant-int8-perchannel')).model;
  const batches = [randomFeeds(model, { ...SHAPE, seed: 3 })];
  const work = clone(ModelProtoSchema, model);
  const view = new GraphView(work.graph!);
  const convs = work.graph!.node.filter((n) => n.opType === 'Conv').slice(0, 6);
  // A budget of about one kept value: some values stay in memory, the rest go to files.
  const step = createStepper(batches, 'simulate', { memoryBytes: 256 * 1024 });
  for (const n of convs) {
    await step.advance(work, [n.input[0]]);
    // Its output under the current weight, then the weight changes (what weight rounding does to each layer).
    await step.peek(work, [n.output[0]]);
    const w = constFloat(view, n.input[1])!;
    const i = work.graph!.initializer.findIndex((t) => t.name === n.input[1]);
    work.graph!.initializer[i] = makeTensor(n.input[1], DT.FLOAT, w.dims, w.data.map((v, k) => (k % 3 === 0 ? -v : v * 1.5)));
  }
  const out = work.graph!.output[0].name;
  const got = await step.advance(work, [out]);
  const changed = await fullRun(work, batches, [out]);
  const original = await fullRun(model, batches, [out]);
  assertSame(got.get(0)[out], changed[0][out], out);
  assert.ok(step.spilledBytes() > 0, 'some values went to files');
  step.close();
  assert.notDeepEqual(Array.from(changed[0][out].data as Float32Array).slice(0, 64), Array.from(original[0][out].data as Float32Array).slice(0, 64));
});

test('stepper: peek on some batches runs the rest of the network from the walk under changed weights, as a whole run of the changed model does', async () => {
  // What weight rounding's network judge does after refitting a layer (FP8: the emulated Q/DQ pairs run in pieces).
  const rule = getRule('onnxquant-fp8');
  const prepared = prepareModel(loadModel(NPM_MODEL), rule).model;
  const plan = planModel(prepared, rule);
  const batches = [4, 5, 6].map((seed) => randomFeeds(prepared, { ...SHAPE, seed }));
  const { params } = await calibrate(prepared, plan, (async function* () { yield* batches; })());
  const work = clone(ModelProtoSchema, prepared);
  const view = new GraphView(work.graph!);
  const conv = work.graph!.node.filter((n) => n.opType === 'Conv')[10];
  const qdq0 = realiseQdq(work, plan, params);
  const qconv = qdq0.graph!.node.find((n) => n.name === conv.name)!;
  const step = createStepper(batches, 'simulate');
  await step.advance(qdq0, [qconv.input[0]]);
  const w = constFloat(view, conv.input[1])!;
  const i = work.graph!.initializer.findIndex((t) => t.name === conv.input[1]);
  work.graph!.initializer[i] = makeTensor(conv.input[1], DT.FLOAT, w.dims, w.data.map((v, k) => (k % 2 ? v * 0.5 : v)));
  const qdq1 = realiseQdq(work, plan, params);
  const out = qdq1.graph!.output[0].name;
  const got = await step.peek(qdq1, [out], [0, 2]);
  const changed = await fullRun(qdq1, batches, [out]);
  const original = await fullRun(qdq0, batches, [out]);
  for (const b of [0, 2]) assertSame(got.get(b)[out], changed[b][out], `${out} (batch ${b})`);
  assert.throws(() => got.get(1), /batch 1 was not among/);
  assert.notDeepEqual(Array.from(changed[0][out].data as Float32Array).slice(0, 64), Array.from(original[0][out].data as Float32Array).slice(0, 64));
  // The peek committed nothing: the walk goes on from where it was, on every batch, through the weights as they are.
  const next = await step.advance(qdq1, [out]);
  for (const b of [0, 1, 2]) assertSame(next.get(b)[out], changed[b][out], `${out} after the peek (batch ${b})`);
  step.close();
});

test('stepper: a QuantizeLinear read by two DequantizeLinear nodes runs with both (float8 values cannot be fed back)', async () => {
  const vi = (name: string) => create(ValueInfoProtoSchema, { name, type: { value: { case: 'tensorType', value: { elemType: DT.FLOAT } } } });
  const model = create(ModelProtoSchema, {
    irVersion: 9n,
    opsetImport: [{ domain: '', version: 19n }],
    graph: {
      name: 'shared_q',
      node: [
        makeNode('QuantizeLinear', ['x', 's', 'z'], ['q'], 'q'),
        makeNode('DequantizeLinear', ['q', 's', 'z'], ['d1'], 'dq1'),
        makeNode('Relu', ['d1'], ['y1'], 'relu'),
        makeNode('DequantizeLinear', ['q', 's', 'z'], ['d2'], 'dq2'),
        makeNode('Neg', ['d2'], ['y2'], 'neg'),
      ],
      initializer: [makeTensor('s', DT.FLOAT, [], Float32Array.of(0.1)), makeTensor('z', DT.FLOAT8E4M3FN, [], new Uint8Array(1))],
      input: [vi('x')],
      output: [vi('y1'), vi('y2')],
    },
  });
  const step = createStepper([{ x: new ort.Tensor('float32', Float32Array.of(0.3, -1.27), [2]) }], 'simulate');
  const y1 = (await step.advance(model, ['y1'])).get(0).y1.data as Float32Array;
  const y2 = (await step.advance(model, ['y2'])).get(0).y2.data as Float32Array;
  // E4M3 of 3 and −12.7 (units of the scale 0.1): 3 and −13 (1.101₂ × 2³; 12.7 lies nearer 13 than 12), times
  // the float32 scale.
  const s = Math.fround(0.1);
  assert.deepEqual([...y1], [Math.fround(3 * s), 0]);
  assert.deepEqual([...y2], [-Math.fround(3 * s), Math.fround(13 * s)]);
  assert.equal(step.nodeRuns(), 5);
});

test('value store: holds values in memory up to its budget, the rest in files read back bit-exactly, and removes its folder', () => {
  const store = createValueStore(16);
  const f32 = new ort.Tensor('float32', Float32Array.of(1.5, -0, Number.NaN, 3.4028234663852886e38), [2, 2]);
  const f16 = new ort.Tensor('float16', Uint16Array.of(0x3c00, 0x7c00, 0x8001), [3]);
  const i64 = new ort.Tensor('int64', BigInt64Array.of(-(2n ** 63n), 42n), [2]);
  const bool = new ort.Tensor('bool', Uint8Array.of(1, 0, 1), [1, 3]);
  const a = store.put(f32); // 16 bytes: fills the budget
  const b = store.put(f16);
  const c = store.put(i64);
  const d = store.put(bool);
  assert.ok('tensor' in a && !('tensor' in b) && !('tensor' in c) && !('tensor' in d));
  assert.equal(store.memoryBytes(), 16);
  assert.equal(store.spilledBytes(), 6 + 16 + 3);
  assert.equal(store.load(a), f32, 'a value in memory is the tensor itself');
  for (const [h, t] of [[b, f16], [c, i64], [d, bool]] as const) {
    const back = store.load(h);
    assert.equal(back.type, t.type);
    assert.deepEqual(back.dims, t.dims);
    assert.deepEqual(Array.from(back.data as ArrayLike<number | bigint>), Array.from(t.data as ArrayLike<number | bigint>));
  }
  const file = 'file' in b ? b.file : '';
  store.free(b);
  assert.ok(!existsSync(file), 'a freed value leaves no file');
  store.free(a);
  assert.equal(store.memoryBytes(), 0);
  const dir = dirname(file);
  assert.ok(existsSync(dir));
  store.close();
  assert.ok(!existsSync(dir), 'close removes the folder');
});

test('value store: a spilled value is read into a buffer of its size and type when one is given, else into fresh memory', () => {
  const store = createValueStore(0);
  const h = store.put(new ort.Tensor('float32', Float32Array.of(1, 2, 3), [3]));
  const buffer = new Float32Array(3);
  const t = store.load(h, buffer);
  assert.equal(t.data, buffer);
  assert.deepEqual([...buffer], [1, 2, 3]);
  assert.notEqual(store.load(h, new Float32Array(4)).data, buffer, 'a buffer of another size is not used');
  assert.notEqual((store.load(h, new Int32Array(3)).data as Float32Array).constructor, Int32Array, 'nor one of another type');
  store.close();
});

test('stepper: values handed out are released at the next advance, even while the caller still holds them', async () => {
  const model = prepareModel(loadModel(NPM_MODEL), getRule('onnxquant-int8-perchannel')).model;
  const batches = [randomFeeds(model, { ...SHAPE, seed: 4 })];
  // a: a conv's input read by that conv alone; b: the input of the conv after it, computed through it.
  const view = new GraphView(model.graph!);
  const convs = model.graph!.node.filter((n) => n.opType === 'Conv');
  const i = convs.findIndex((n, k) => k > 0 && view.uses(n.input[0]).length === 1 && view.producer.get(convs[k + 1]?.input[0])?.input.includes(n.output[0]));
  assert.ok(i > 0, 'a conv feeding the next one directly');
  const [a, b] = [convs[i].input[0], convs[i + 1].input[0]];
  const step = createStepper(batches, 'simulate');
  const first = await step.advance(model, [a]);
  const peeked = await step.peek(model, [b]);
  // Weak references to the buffers, taken in a job of their own (a WeakRef keeps its target through the job that made it).
  const refs = await (async () => [first, peeked].map((v, i) => new WeakRef((v.get(0)[[a, b][i]].data as Float32Array).buffer)))();
  await new Promise((r) => setImmediate(r));
  await step.advance(model, [b]);
  await new Promise((r) => setImmediate(r));
  collectGarbage();
  // `first` and `peeked` are still reachable here; what they handed out is not.
  assert.deepEqual(refs.map((r) => r.deref() === undefined), [true, true], 'freed values are collected');
  assert.throws(() => first.get(0), /values read after the next advance/);
  assert.throws(() => peeked.get(0), /values read after the next advance/);
  const last = await step.advance(model, [b]);
  step.close();
  assert.throws(() => last.get(0), /values read after the next advance or close/);
});
