/**
 * Percentile statistics computed by TopK inside onnxruntime equal the JS observer's selection exactly, on a graph
 * built here and on a real model, and against a sort on layouts built to break the row-maxima shortcut; the
 * statistics nodes are ordered so that onnxruntime runs them as soon as their tensor exists (peak memory, measured by
 * onnxruntime's profiler); and the streaming observers keep no per-batch state (memory does not grow).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clone } from '@bufbuild/protobuf';
import * as ort from 'onnxruntime-node';
import { serializeModel } from '../src/onnx/model-io.ts';
import { calibrateWeights } from '../src/calibrate/calibrate.ts';
import { realiseQdq } from '../src/realise/qdq.ts';
import { NPM_MODEL, npmModelWithInput, SHARED } from './helpers/models.ts';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, type ModelProto } from 'onnx-buf';
import { makeNode } from '../src/ir/graph.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { buildRule, getRule } from '../src/quant/rules.ts';
import type { QuantParams } from '../src/quant/config.ts';
import type { QuantRule } from '../src/quant/rules.ts';
import { planModel } from '../src/quant/plan.ts';
import { calibrate, type Feeds } from '../src/calibrate/calibrate.ts';
import { prepareModel } from '../src/quantize.ts';
import { valueRanges } from '../src/ir/value-range.ts';
import { seededRandom } from '../src/math.ts';
import { graphInputs } from '../src/runtime/inputs.ts';
import { appendPercentileStats, orderForEarlyRelease } from '../src/calibrate/in-graph-stats.ts';
import { nonNegativeTensors } from '../src/ir/value-range.ts';
import { createSession, defaultIntraOpThreads } from '../src/runtime/session.ts';

function tiny(): ModelProto {
  const r = seededRandom(11);
  return create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [{ domain: '', version: 13n }],
    graph: {
      name: 'g',
      node: [makeNode('Conv', ['x', 'w1'], ['a'], 'c1'), makeNode('Relu', ['a'], ['r'], 'relu'), makeNode('Conv', ['r', 'w2'], ['y'], 'c2')],
      input: [{ name: 'x', type: { value: { case: 'tensorType', value: { elemType: DT.FLOAT } } } }],
      output: [{ name: 'y' }],
      initializer: [
        makeTensor('w1', DT.FLOAT, [6, 3, 3, 3], Float32Array.from({ length: 162 }, () => r() - 0.5)),
        makeTensor('w2', DT.FLOAT, [4, 6, 1, 1], Float32Array.from({ length: 24 }, () => r() - 0.5)),
      ],
    },
  });
}

function data(dims: number[], n: number, seed: number): Feeds[] {
  const r = seededRandom(seed);
  const size = dims.reduce((a, b) => a * b, 1);
  // Heavy tails, so the 0.9999 quantiles are not the extremes.
  return Array.from({ length: n }, () => ({ x: { dims, data: Float32Array.from({ length: size }, () => (r() - 0.5) * (r() < 0.001 ? 50 : 2)) } }));
}

async function compare(model: ModelProto, feeds: Feeds[]) {
  for (const ruleName of ['onnxquant-int8-perchannel', 'onnxquant-int8-pot', 'onnxquant-fp8', 'minmax']) {
    // 'minmax': the per-channel rule with min/max activations (in-graph ReduceMin/ReduceMax vs the JS observer).
    const rule = ruleName === 'minmax' ? buildRule({ name: 'int8-perchannel-minmax', activationObserver: 'minmax' }) : getRule(ruleName);
    const prepared = prepareModel(model, rule).model;
    const plan = planModel(prepared, rule);
    const run = async (statsInGraph: boolean, skipBoundedLower?: boolean) =>
      (await calibrate(prepared, plan, (async function* () { yield* feeds; })(), { statsInGraph, skipBoundedLower })).params;
    const before = serializeModel(prepared);
    const [a, b, skipped] = [await run(true, false), await run(false), await run(true)];
    // The statistics graphs share the model's nodes and initializers (withGraphLists): the model itself, also when
    // statistics are taken on it directly (statsOn 'float'), must come out as it went in.
    await calibrate(prepared, plan, (async function* () { yield* feeds; })(), { statsOn: 'float' });
    assert.ok(Buffer.from(serializeModel(prepared)).equals(Buffer.from(before)), `${ruleName}: calibrate changed its input model`);
    assert.equal(a.size, b.size);
    const nonNegative = nonNegativeTensors(prepared.graph!);
    let skips = 0;
    for (const [k, p] of b) {
      const q = a.get(k)!;
      assert.deepEqual([...q.min, ...q.max, ...q.scale], [...p.min, ...p.max, ...p.scale], `${ruleName} ${k}`);
      // Skipping the lower statistic of a tensor ≥ 0 leaves every parameter as it was; only the recorded min is 0.
      const t = plan.tensors.find((x) => x.key === k)!;
      const s = skipped.get(k)!;
      assert.deepEqual([...s.max, ...s.scale, ...s.zeroPoint], [...p.max, ...p.scale, ...p.zeroPoint], `${ruleName} ${k} (lower statistic skipped)`);
      const lowerSkipped = t.role === 'activation' && nonNegative.has(t.tensor) && ruleName !== 'onnxquant-fp8';
      if (lowerSkipped) {
        skips++;
        assert.ok(p.min[0] >= 0, `${k}: a tensor called non-negative has min ${p.min[0]}`);
        assert.deepEqual([...s.min], [0]);
      } else assert.deepEqual([...s.min], [...p.min], `${ruleName} ${k}`);
    }
    if (ruleName !== 'onnxquant-fp8') assert.ok(skips > 0, `${ruleName}: no lower statistic was skipped`);
  }
}

test('in-graph TopK percentiles and ReduceMin/ReduceMax ranges equal the JS observers exactly (small graph, odd sizes, heavy tails)', async () => {
  await compare(tiny(), data([3, 3, 17, 13], 3, 5));
});

test('a per-tensor rule from a file keeps an opset-10 model at opset 10, and its in-graph percentiles (opset-13 index arithmetic, on a raised copy) equal the JS observer', async () => {
  const m10 = clone(ModelProtoSchema, tiny());
  m10.opsetImport[0].version = 10n;
  const rule = buildRule({ name: 'int8-per-tensor', perChannel: false });
  assert.equal(rule.minOpset, 10);
  const prepared = prepareModel(m10, rule).model;
  assert.equal(prepared.opsetImport.find((o) => o.domain === '')!.version, 10n);
  const plan = planModel(prepared, rule);
  const feeds = data([3, 3, 17, 13], 3, 7);
  const before = serializeModel(prepared);
  const run = async (statsInGraph: boolean) => (await calibrate(prepared, plan, (async function* () { yield* feeds; })(), { statsInGraph })).params;
  const [a, b] = [await run(true), await run(false)];
  assert.ok(Buffer.from(serializeModel(prepared)).equals(Buffer.from(before)), 'calibrate changed its input model');
  assert.ok(a.size > 0 && a.size === b.size, `${a.size} vs ${b.size} parameters`);
  for (const [k, p] of b) assert.deepEqual([...a.get(k)!.max, ...a.get(k)!.scale], [...p.max, ...p.scale], k);
});

/** PPQ's order statistics by sorting the whole tensor: the reference for the in-graph selection. */
function sortedPercentiles(x: Float32Array, p: number): [number, number] {
  const n = x.length;
  const v = Float64Array.from(x).sort();
  const kMin = Math.max(0, Math.floor(n * (1 - p))) + 1;
  const kMax = n - Math.min(Math.floor(n * p), n - 1);
  return [v[kMin - 1], v[n - kMax]];
}

test('in-graph percentiles equal a full sort where the k extremes crowd into few rows, tie, or rows have one element', async () => {
  const r = seededRandom(21);
  const cases: { name: string; dims: number[]; p: number; fill: (i: number, dims: number[]) => number }[] = [
    // 32000 values, k = 32: the 40 outliers (positive and negative) fill 5 whole rows of 8, so k exceeds the rows
    // they occupy and most top rows contribute several of the k values.
    { name: 'outliers packed in 5 rows', dims: [4, 1000, 8], p: 0.999, fill: (i) => (i < 40 ? 100 + (i % 7) : i >= 31960 ? -100 - (i % 5) : r() * 2 - 1) },
    // Every row has the same maximum 5 and minimum −5 (ties across rows at the selected row extreme), ReLU-like zeros.
    { name: 'tied row extremes', dims: [300, 10], p: 0.99, fill: (i) => (i % 10 === 0 ? 5 : i % 10 === 1 ? -5 : r() < 0.5 ? 0 : r()) },
    { name: 'rows of one element', dims: [500, 1], p: 0.99, fill: () => r() * 4 - 2 },
    { name: 'rank 1', dims: [37], p: 0.9, fill: () => Math.round(r() * 6) },
    { name: 'NCHW, k > rows', dims: [2, 3, 5, 7], p: 0.6, fill: () => r() - 0.5 },
    // The last two dims (3·4 = 12 ≤ the cap of 15 for p = 0.999) form the rows; k = 25 of 2000 rows, with the 30
    // outliers on each side packed into the first and last 3 rows.
    { name: 'last two dims merged into rows', dims: [40, 50, 3, 4], p: 0.999, fill: (i) => (i < 30 ? 100 + (i % 7) : i >= 23970 ? -100 - (i % 5) : r() * 2 - 1) },
    { name: 'last two dims just above the cap', dims: [30, 50, 4, 4], p: 0.999, fill: (i) => (i % 97 === 0 ? 50 - (i % 3) : r() - 0.5) },
  ];
  for (const opset of [13, 18]) {
    for (const c of cases) {
      const size = c.dims.reduce((a, b) => a * b, 1);
      const data = Float32Array.from({ length: size }, (_, i) => c.fill(i, c.dims));
      const model = create(ModelProtoSchema, {
        irVersion: 8n,
        opsetImport: [{ domain: '', version: BigInt(opset) }],
        graph: { name: 'g', node: [makeNode('Identity', ['x'], ['y'], 'id')], input: [{ name: 'x', type: { value: { case: 'tensorType', value: { elemType: DT.FLOAT } } } }], output: [{ name: 'y' }] },
      });
      const { model: stats, outputs } = appendPercentileStats(model, [{ tensor: 'y', percentile: c.p }]);
      const o = outputs.get('y')!;
      const s = await createSession(stats, { mode: 'float' });
      const out = await s.run({ x: { dims: c.dims, data } }, [o.lo!, o.hi]);
      await s.release();
      const lo = out[o.lo!].data as Float32Array;
      const hi = out[o.hi].data as Float32Array;
      assert.deepEqual([lo[lo.length - 1], hi[hi.length - 1]], sortedPercentiles(data, c.p), `${c.name}, opset ${opset}`);
    }
    // All cases in one graph, each tensor with its own percentile, row layout and sides (every third without the
    // lower statistic): no statistic may be taken from another tensor's nodes.
    const datas = cases.map((c) => Float32Array.from({ length: c.dims.reduce((a, b) => a * b, 1) }, (_, i) => c.fill(i, c.dims)));
    const model = create(ModelProtoSchema, {
      irVersion: 8n,
      opsetImport: [{ domain: '', version: BigInt(opset) }],
      graph: {
        name: 'g',
        node: cases.map((_, j) => makeNode('Identity', [`x${j}`], [`y${j}`], `id${j}`)),
        input: cases.map((_, j) => ({ name: `x${j}`, type: { value: { case: 'tensorType' as const, value: { elemType: DT.FLOAT } } } })),
        output: cases.map((_, j) => ({ name: `y${j}` })),
      },
    });
    const { model: stats, outputs } = appendPercentileStats(model, cases.map((c, j) => ({ tensor: `y${j}`, percentile: c.p, upperOnly: j % 3 === 2 })));
    // In the order calibration gives the nodes (each tensor's chain scheduled as soon as the tensor exists).
    orderForEarlyRelease(stats, model.graph!.node.length);
    const s = await createSession(stats, { mode: 'float' });
    const names = cases.flatMap((_, j) => { const o = outputs.get(`y${j}`)!; return o.lo ? [o.lo, o.hi] : [o.hi]; });
    const out = await s.run(Object.fromEntries(cases.map((c, j) => [`x${j}`, { dims: c.dims, data: datas[j] }])), names);
    await s.release();
    cases.forEach((c, j) => {
      const o = outputs.get(`y${j}`)!;
      const [lo, hi] = sortedPercentiles(datas[j], c.p);
      assert.equal((out[o.hi].data as Float32Array).at(-1), hi, `${c.name} (one graph), opset ${opset}`);
      if (j % 3 === 2) assert.equal(o.lo, undefined);
      else assert.equal((out[o.lo!].data as Float32Array).at(-1), lo, `${c.name} (one graph), opset ${opset}`);
    });
  }
});

const sq = '../shared/quantzoo/Model/cifar10/squeezenet_cifar10.onnx';
test('in-graph percentiles and min/max ranges equal the JS observers on squeezenet_cifar10', { skip: existsSync(sq) ? false : '../shared absent: real-model check skipped' }, async () => {
  const m = loadModel(sq);
  const input = graphInputs(m)[0].name;
  const feeds = data([8, 32, 32, 3], 2, 9).map((f) => ({ [input]: { dims: f.x.dims, data: Float32Array.from(f.x.data as Float32Array, (v) => Math.abs(v)) } }));
  await compare(m, feeds);
});

/** onnxruntime's own count of the most bytes its allocator held in use during one run (profiler events). */
async function peakBytesInUse(model: ModelProto, feeds: Record<string, ort.Tensor>, fetch: string[]): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'oq-prof-'));
  try {
    const s = await ort.InferenceSession.create(serializeModel(model), { graphOptimizationLevel: 'all', executionMode: 'sequential', interOpNumThreads: 1, logSeverityLevel: 3, enableProfiling: true, profileFilePrefix: join(dir, 'p') });
    await s.run(feeds, fetch);
    await s.release(); // writes the profile
    const events = JSON.parse(readFileSync(join(dir, readdirSync(dir)[0]), 'utf8')) as { args?: { mem_in_use_peak?: string } }[];
    return Math.max(...events.map((e) => Number(e.args?.mem_in_use_peak ?? 0)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Peak bytes in use of the float model, of the statistics model with its nodes appended in tensor order, and of the
 * same model ordered by `orderForEarlyRelease`, on one random batch; and the statistics of the last two, which must
 * be identical.
 */
async function schedulePeaks(file: string, input: string, dims: number[]) {
  const rule = getRule('onnxquant-int8-perchannel');
  const prepared = prepareModel(loadModel(file), rule).model;
  const plan = planModel(prepared, rule);
  const params = calibrateWeights(prepared, plan);
  const base = realiseQdq(prepared, plan, params, { keys: new Set(params.keys()), foldWeights: true });
  const tensors = [...new Set(plan.tensors.filter((t) => t.role === 'activation').map((t) => t.tensor))];
  const { model: appended, outputs } = appendPercentileStats(base, tensors.map((tensor) => ({ tensor, percentile: 0.9999 })));
  const ordered = clone(ModelProtoSchema, appended);
  orderForEarlyRelease(ordered, base.graph!.node.length);
  const r = seededRandom(3);
  const feeds = { [input]: new ort.Tensor('float32', Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => r() * 2 - 1), dims) };
  const names = [...outputs.values()].flatMap((o) => [o.lo!, o.hi]);
  const run = async (m: ModelProto) => {
    const s = await createSession(m, { mode: 'float' });
    const out = await s.run(feeds, names);
    await s.release();
    return names.map((n) => (out[n].data as Float32Array).at(-1));
  };
  assert.deepEqual(await run(ordered), await run(appended), 'statistics changed with the node order');
  return { float: await peakBytesInUse(base, feeds, [base.graph!.output[0].name]), before: await peakBytesInUse(appended, feeds, names), after: await peakBytesInUse(ordered, feeds, names) };
}

test('statistics nodes are scheduled as soon as their tensor exists: peak memory as in the float model (PP-OCRv4 rec)', async () => {
  // Appended in tensor order, onnxruntime's reverse depth-first order ran the whole network first and kept all 59
  // tapped activations alive; reordered, the statistics model must need about what the float model needs.
  const { float, before, after } = await schedulePeaks(NPM_MODEL, 'x', [4, 3, 48, 320]);
  assert.ok(after <= 1.25 * float, `ordered statistics model peaks at ${after} bytes, the float model at ${float}`);
  assert.ok(before > 2 * after, `the unordered model (${before} bytes) was expected to need far more than the ordered one (${after})`);
});

const mnv2 = `${SHARED}quantzoo/Model/Imagenet/mobilenetv2-7.onnx`;
test('statistics scheduling holds where onnxruntime replaces the output node (mobilenetv2-7, whose output node is fused)', { skip: existsSync(mnv2) ? false : '../shared absent: real-model check skipped' }, async () => {
  // The fused output node gets the highest index and would be searched first without the guard consumers.
  const { float, before, after } = await schedulePeaks(mnv2, 'input', [4, 3, 224, 224]);
  assert.ok(before > 1.5 * after, `the unordered model (${before} bytes) was expected to need far more than the ordered one (${after}; float ${float})`);
});

/** A random batch for a PP-OCRv4 rec input: n text lines of width w, values in [−1, 1). */
function ocrBatch(input: string, n: number, w: number, r: () => number): Feeds {
  return { [input]: { dims: [n, 3, 48, w], data: Float32Array.from({ length: n * 3 * 48 * w }, () => r() * 2 - 1) } };
}

test('a statistics session per input shape (the default) gives the parameters of one session for all shapes (PP-OCRv4 rec, ragged batches)', async () => {
  const model = loadModel(NPM_MODEL);
  const input = graphInputs(model)[0].name;
  const r = seededRandom(11);
  const feeds = [ocrBatch(input, 2, 160, r), ocrBatch(input, 2, 96, r), ocrBatch(input, 1, 160, r)];
  for (const name of ['onnxquant-int8-perchannel', 'onnxquant-fp8']) {
    const rule = getRule(name);
    const prepared = prepareModel(model, rule).model;
    const plan = planModel(prepared, rule);
    const run = async (sessionPerShape: boolean, batches = feeds) => {
      async function* data() {
        yield* batches;
      }
      return (await calibrate(prepared, plan, data(), { sessionPerShape })).params;
    };
    const worstRelDiff = (a: Map<string, QuantParams>, b: Map<string, QuantParams>) =>
      Math.max(...[...a].flatMap(([k, p]) => [...p.scale].map((v, i) => Math.abs(b.get(k)!.scale[i] - v) / v)));
    const one = await run(false);
    assert.ok(one.size > 100);
    // With fixed shapes onnxruntime may pick other float kernels for a few nodes, so activations (and a handful of
    // scales: 10 of the per-channel rule's) move by a few float32 ulps; the statistics themselves are exact.
    assert.ok(worstRelDiff(one, await run(true)) < 1e-6, name);
    // …while leaving out the last (ragged, own-session) batch moves the scales far more: every batch was seen.
    if (name === 'onnxquant-int8-perchannel') assert.ok(worstRelDiff(one, await run(true, feeds.slice(0, 2))) > 1e-3);
  }
});

test('the WebGPU provider is refused for simulation, which must run the CPU kernels the deployment check compares against', async () => {
  await assert.rejects(createSession(loadModel(NPM_MODEL), { mode: 'simulate', provider: 'webgpu' }), /the webgpu provider runs float and calibration sessions only; 'simulate' sessions run on the CPU provider/);
});

test('ONNXQUANT_THREADS sets the default intra-op thread count; anything but an integer ≥ 0 is refused by name', () => {
  assert.equal(defaultIntraOpThreads({}), 0, 'unset: onnxruntime default');
  assert.equal(defaultIntraOpThreads({ ONNXQUANT_THREADS: '' }), 0, 'empty: onnxruntime default');
  assert.equal(defaultIntraOpThreads({ ONNXQUANT_THREADS: '1' }), 1, 'one thread');
  assert.equal(defaultIntraOpThreads({ ONNXQUANT_THREADS: ' 3 ' }), 3, 'surrounding blanks');
  for (const bad of ['-1', '1.5', 'two', '2x'])
    assert.throws(() => defaultIntraOpThreads({ ONNXQUANT_THREADS: bad }), new RegExp(`ONNXQUANT_THREADS must be an integer ≥ 0.*'${bad.replace('.', '\\.')}'`), `refuses '${bad}'`);
});

test('a per-shape statistics session keeps the dimensions the model fixes: a batch the model refuses is still refused', async () => {
  // PP-OCRv4 rec with its batch dimension fixed at 1 (the width stays symbolic).
  const model = npmModelWithInput([1, 3, 48, 'W']);
  const input = graphInputs(model)[0].name;
  const rule = getRule('onnxquant-int8-perchannel');
  const prepared = prepareModel(model, rule).model;
  const plan = planModel(prepared, rule);
  const r = seededRandom(5);
  const batch = (n: number) => ocrBatch(input, n, 64, r);
  const run = (feeds: Feeds[]) =>
    calibrate(prepared, plan, (async function* () {
      yield* feeds;
    })());
  assert.ok((await run([batch(1), batch(1)])).params.size > 100); // the width is filled in per shape
  await assert.rejects(run([batch(2)]), /invalid dimensions for input: x .*Got: 2 Expected: 1/); // writing 2 over the fixed 1 let it through
});

/** x → 1×1 Conv → Paddle's hard swish z·clip(z + 3, 0, 6)/6 (≥ −0.375 whatever z) → 1×1 Conv. */
function hardSwishNet(): ModelProto {
  const c = (name: string, dims: number[], v: number[]) => makeTensor(name, DT.FLOAT, dims, v);
  return create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [{ domain: '', version: 13n }],
    graph: {
      name: 'g',
      node: [
        makeNode('Conv', ['x', 'w1'], ['z'], 'c1'),
        makeNode('Add', ['z', 'three'], ['z3'], 'add'),
        makeNode('Clip', ['z3', 'zero', 'six'], ['g'], 'clip'),
        makeNode('Mul', ['z', 'g'], ['zg'], 'mul'),
        makeNode('Div', ['zg', 'six'], ['h'], 'div'),
        makeNode('Conv', ['h', 'w2'], ['y'], 'c2'),
      ],
      input: [{ name: 'x', type: { value: { case: 'tensorType', value: { elemType: DT.FLOAT } } } }],
      output: [{ name: 'y' }],
      initializer: [c('w1', [2, 1, 1, 1], [1, 0.5]), c('w2', [3, 2, 1, 1], [0.3, -0.2, 0.1, 0.7, -0.5, 0.4]), c('three', [], [3]), c('zero', [], [0]), c('six', [], [6])],
    },
  });
}

test('a lower statistic the graph bounds below (hard swish ≥ −0.375) is skipped under symmetric rules when the data can be read again, with the parameters unchanged — and taken on a second reading where the upper statistic stays below the bound', async () => {
  const model = hardSwishNet();
  // Inputs spread over [from, to): over [−4, 4) the hard swish's upper 0.9999 quantile is far above 0.375; over
  // [−2, 0.2) it is ≈ 0.1 while values reach −0.375, so the lower statistic decides the scale.
  const batches = (from: number, to: number): Feeds[] => {
    const r = seededRandom(7);
    return Array.from({ length: 3 }, () => ({ x: { dims: [2, 1, 16, 16], data: Float32Array.from({ length: 512 }, () => from + (to - from) * r()) } }));
  };
  const custom: Record<string, QuantRule> = {
    minmax: buildRule({ name: 'int8-perchannel-minmax', activationObserver: 'minmax' }),
    // Asymmetric: the zero point takes the lower statistic whatever the upper one, so it is never skipped.
    asymmetric: buildRule({ name: 'uint8-asymmetric', symmetric: false }),
  };
  for (const ruleName of ['onnxquant-int8-perchannel', 'onnxquant-int8-pot', 'minmax', 'asymmetric']) {
    const rule = custom[ruleName] ?? getRule(ruleName);
    const prepared = prepareModel(model, rule).model;
    const plan = planModel(prepared, rule);
    const h = plan.tensors.find((t) => t.tensor === 'h' && t.role === 'activation')!;
    assert.ok(h, 'the hard swish output is planned');
    for (const [from, to, rereads] of [[-4, 4, 1], [-2, 0.2, 2]] as const) {
      const feeds = batches(from, to);
      let reads = 0;
      const again = () => {
        reads++;
        return (async function* () {
          yield* feeds;
        })();
      };
      const once = (async function* () {
        yield* feeds;
      })();
      const full = (await calibrate(prepared, plan, again, { skipBoundedLower: false })).params.get(h.key)!;
      reads = 0;
      const skipped = (await calibrate(prepared, plan, again)).params.get(h.key)!;
      const oneShot = (await calibrate(prepared, plan, once)).params.get(h.key)!;
      const tag = `${ruleName} inputs [${from}, ${to})`;
      assert.deepEqual([...skipped.scale, ...skipped.zeroPoint, ...skipped.max], [...full.scale, ...full.zeroPoint, ...full.max], tag);
      if (ruleName === 'asymmetric') {
        assert.equal(reads, 1, `${tag}: the data were read ${reads} times`);
        assert.deepEqual([...skipped.min], [...full.min], tag);
        continue;
      }
      assert.equal(reads, rereads, `${tag}: the data were read ${reads} times`);
      // Read once, the data give no second chance: the lower statistic is taken as before.
      assert.deepEqual([...oneShot.min, ...oneShot.scale], [...full.min, ...full.scale], `${tag}: one-shot data`);
      assert.ok(full.min[0] < 0 && full.min[0] >= -0.375 * 1.001, `${tag}: observed min ${full.min[0]}`);
      if (rereads === 1) {
        // The bound is recorded where the statistic was not taken; the scale comes from the upper statistic.
        assert.ok(Math.abs(skipped.min[0] + 0.375) < 1e-7, `${tag}: recorded min ${skipped.min[0]}`);
        assert.ok(full.max[0] > 0.375 * 1.001, `${tag}: max ${full.max[0]}`);
      } else {
        assert.deepEqual([...skipped.min], [...full.min], `${tag}: second reading`);
        assert.ok(-full.min[0] > full.max[0], `${tag}: the lower statistic ${full.min[0]} decides against ${full.max[0]}`);
      }
    }
  }
});

test('bounded lower statistics skipped on PP-OCRv4 rec (hard swish throughout) leave every parameter but the recorded min as taken in full', async () => {
  const model = loadModel(NPM_MODEL);
  const input = graphInputs(model)[0].name;
  const r = seededRandom(5);
  const feeds = [ocrBatch(input, 2, 160, r), ocrBatch(input, 2, 160, r)];
  const data = () =>
    (async function* () {
      yield* feeds;
    })();
  for (const name of ['onnxquant-int8-perchannel', 'onnxquant-int8-pot']) {
    const rule = getRule(name);
    const prepared = prepareModel(model, rule).model;
    const plan = planModel(prepared, rule);
    const full = (await calibrate(prepared, plan, data, { skipBoundedLower: false })).params;
    const skipped = (await calibrate(prepared, plan, data)).params;
    const ranges = valueRanges(prepared.graph!);
    let bounded = 0;
    for (const t of plan.tensors) {
      const [p, q] = [full.get(t.key)!, skipped.get(t.key)!];
      assert.deepEqual([...q.scale, ...q.zeroPoint, ...q.max], [...p.scale, ...p.zeroPoint, ...p.max], `${name} ${t.key}`);
      const lo = ranges.get(t.tensor)?.lo ?? -Infinity;
      if (t.role === 'activation' && lo < 0 && lo > -Infinity) {
        bounded++;
        assert.ok(p.min[0] >= lo * (1 + 1e-3), `${name} ${t.key}: observed min ${p.min[0]} below the bound ${lo}`);
      }
    }
    assert.ok(bounded > 20, `${name}: only ${bounded} activations bounded below`);
  }
});
