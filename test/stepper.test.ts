/**
 * The network stepper (runtime/stepper.ts) against whole-network runs of onnxruntime: the values it returns are
 * bit-identical in simulate mode (optimizations off, every node computed alone), a walk over every layer runs each
 * node once instead of once per layer, quantized Q outputs (float8 here) never have to cross between pieces, and a
 * model that changes in nodes not yet run is followed (the contract weight rounding relies on).
 */
import { test } from 'node:test';
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

test('stepper: a walk over every layer input of an FP8 QDQ PP-OCRv4 equals one whole run, running each node once', async () => {
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
  const step = createStepper(batches, 'simulate');
  let widest = 0;
  let total = 0;
  for (const t of targets) {
    const got = await step.advance(qdq, [t]);
    got.forEach((r, b) => assertSame(r[t], whole[b][t], `${t} (batch ${b})`));
    widest = Math.max(widest, step.keptBytes());
    total += got.reduce((s, r) => s + (r[t].data as Float32Array).byteLength, 0);
  }
  // Each node that leads to a layer input runs once (a prefix network per layer would run ~targets/2 × as many).
  assert.ok(step.nodeRuns() <= qdq.graph!.node.length, `${step.nodeRuns()} node runs for ${qdq.graph!.node.length} nodes`);
  // It keeps the frontier, not every value it produced.
  assert.ok(widest < total / 4, `kept at most ${widest} bytes of ${total}`);
});

test('stepper: follows weights that change in nodes not yet run, and peek does not commit a node', async () => {
  const model = prepareModel(loadModel(NPM_MODEL), getRule('onnxquant-int8-perchannel')).model;
  const batches = [randomFeeds(model, { ...SHAPE, seed: 3 })];
  const work = clone(ModelProtoSchema, model);
  const view = new GraphView(work.graph!);
  const convs = work.graph!.node.filter((n) => n.opType === 'Conv').slice(0, 6);
  const step = createStepper(batches, 'simulate');
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
  assertSame(got[0][out], changed[0][out], out);
  assert.notDeepEqual(Array.from(changed[0][out].data as Float32Array).slice(0, 64), Array.from(original[0][out].data as Float32Array).slice(0, 64));
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
  const y1 = (await step.advance(model, ['y1']))[0].y1.data as Float32Array;
  const y2 = (await step.advance(model, ['y2']))[0].y2.data as Float32Array;
  // E4M3 of 3 and −12.7 (units of the scale 0.1): 3 and −13 (1.101₂ × 2³; 12.7 lies nearer 13 than 12), times
  // the float32 scale.
  const s = Math.fround(0.1);
  assert.deepEqual([...y1], [Math.fround(3 * s), 0]);
  assert.deepEqual([...y2], [-Math.fround(3 * s), Math.fround(13 * s)]);
  assert.equal(step.nodeRuns(), 5);
});
