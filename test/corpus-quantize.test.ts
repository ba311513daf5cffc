/**
 * Every real model quantizes under every OnnxQuant rule and the QDQ result runs in onnxruntime, in simulate and in
 * deploy mode. Models: ../shared/corpus/*.onnx, ../shared/quantzoo/Model/**\/*.onnx (skipped with a message when
 * ../shared is absent) and the npm PP-OCRv4 recogniser (always). One test per (model × rule), so a failure names both.
 *
 * Calibration: 2 batches of seeded random feeds (`randomFeeds`, seeds 1 and 2) with per-model shapes/values for
 * dynamic inputs; evaluation: one fixed random input (seed 99). Random data is not representative, so the
 * simulate-vs-float relative error ‖q − f‖/‖f‖ is recorded, and only a NaN/Inf error fails.
 *
 * Checked per test: the plan quantizes ≥ 1 layer when the formatted model has a Conv/ConvTranspose/Gemm/MatMul with
 * a float32 constant weight at the top level (bodies of If/Loop are left float by design, and reported in
 * `plan.skipped`); simulate and deploy outputs are finite and shaped like the float model's.
 *
 * FP8 deploy: onnxruntime 1.30's CPU QDQ fusions (QLinearConv, QGemm, MatMulIntegerToFloat, Q/DQ propagation) and
 * its ClipQuantFusion rule do not check for float8 and turn FP8 Q/DQ models into invalid graphs at optimization
 * level 'extended'/'all' ("Type 'tensor(float8e4m3fn)' … of operator (QLinearConv) is invalid", "Unexpected data
 * type for QuantizeLinear input y_zero_point of 17"). `createSession(…, { mode: 'deploy' })` uses 'all', so until
 * it lowers the level for float8 models the FP8 deploy run here falls back to level 'basic' (marked † in the table),
 * and the todo test at the end lists the models whose deploy session fails.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import type { ModelProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import type { Feeds } from '../src/calibrate/calibrate.ts';
import { loadModel, serializeModel } from '../src/onnx/model-io.ts';
import { TensorProto_DataType as DT } from 'onnx-buf';
import { quantize } from '../src/quantize.ts';
import { getRule, RULE_NAMES } from '../src/quant/rules.ts';
import { createSession, type RunMode } from '../src/runtime/session.ts';
import { randomFeeds } from '../src/runtime/inputs.ts';
import { feedOptions as sharedFeedOptions, NPM_MODEL, onnxFiles, SHARED, type ModelFeeds as SharedFeeds } from './helpers/models.ts';

const CALIBRATION_BATCHES = 2;


interface ModelFeeds extends SharedFeeds {
  /** Static input shapes replaced by smaller ones (fully convolutional models), to keep CI time down. */
  resize?: Record<string, number[]>;
}

/** The shared feed options, with SRCNN's static 256×256 input shrunk (see below). */
function feedOptions(file: string): ModelFeeds {
  const f = basename(file);
  // SRCNN: 3 convs after a bicubic ×3/×4 inside the graph; at 256×256 the 64-channel activations (37 M values) make
  // the percentile observer take ~10 s per rule. The network is fully convolutional, so 64×64 tests the same graph.
  // Resize scales as an input: [1, 1, s, s] with s = 4, the training scale.
  if (f === 'srcnn_scale_input.onnx')
    return { resize: { input: [1, 3, 64, 64] }, extra: { factor: new ort.Tensor('float32', Float32Array.from([1, 1, 4, 4]), [4]) } };
  if (f === 'srcnn_x3_256.onnx') return { resize: { input: [1, 3, 64, 64] } };
  return sharedFeedOptions(file);
}

/** Replace a graph input's declared dims (used only for fully convolutional models, see `resize`). */
function setInputDims(model: ModelProto, name: string, dims: number[]): void {
  const v = model.graph!.input.find((x) => x.name === name);
  const tt = v?.type?.value.case === 'tensorType' ? v.type.value.value : undefined;
  assert.ok(tt?.shape && tt.shape.dim.length === dims.length, `cannot resize input '${name}'`);
  tt.shape.dim.forEach((d, i) => {
    d.value = { case: 'dimValue', value: BigInt(dims[i]) };
  });
}

function feedsFor(model: ModelProto, opts: ModelFeeds, seed: number): Record<string, ort.Tensor> {
  return { ...randomFeeds(model, { ...opts, seed }), ...opts.extra };
}

const LAYER_OPS = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);

/** Does the (formatted) top-level graph hold a layer the rules quantize, with a float32 constant weight? */
function hasQuantizableLayer(model: ModelProto): boolean {
  const g = model.graph!;
  const inputs = new Set(g.input.map((v) => v.name));
  const f32 = new Set(g.initializer.filter((t) => t.dataType === DT.FLOAT && !inputs.has(t.name)).map((t) => t.name));
  return g.node.some((n) => (!n.domain || n.domain === 'ai.onnx') && LAYER_OPS.has(n.opType) && f32.has(n.input[1]) && !f32.has(n.input[0]));
}

async function runModel(model: ModelProto, mode: RunMode, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const s = await createSession(model, { mode });
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

/** onnxruntime directly at level 'basic': the FP8 deploy fallback (see the header). */
async function runBasic(model: ModelProto, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(serializeModel(model), { graphOptimizationLevel: 'basic', logSeverityLevel: 3 });
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

const isFloat = (t: ort.Tensor) => t.type === 'float32' || t.type === 'float16' || t.type === 'float64';

function numbers(t: ort.Tensor): ArrayLike<number> {
  return t.data as ArrayLike<number>;
}

/** Same output names and dims as the reference; float outputs finite. */
function checkOutputs(ref: Record<string, ort.Tensor>, got: Record<string, ort.Tensor>, what: string): void {
  for (const [name, r] of Object.entries(ref)) {
    const g = got[name];
    assert.ok(g, `${what}: output '${name}' missing`);
    assert.deepEqual([...g.dims], [...r.dims], `${what}: output '${name}' dims`);
    assert.equal(g.type, r.type, `${what}: output '${name}' type`);
    if (!isFloat(g)) continue;
    const d = numbers(g);
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) assert.fail(`${what}: output '${name}'[${i}] = ${d[i]}`);
  }
}

/** ‖q − f‖/‖f‖ over all float outputs together (0 when the reference is all zeros and q equals it). */
function relativeError(ref: Record<string, ort.Tensor>, got: Record<string, ort.Tensor>): number {
  let num = 0;
  let den = 0;
  for (const [name, r] of Object.entries(ref)) {
    if (!isFloat(r)) continue;
    const a = numbers(r);
    const b = numbers(got[name]);
    for (let i = 0; i < a.length; i++) {
      num += (b[i] - a[i]) ** 2;
      den += a[i] ** 2;
    }
  }
  return den === 0 ? (num === 0 ? 0 : Infinity) : Math.sqrt(num / den);
}

function maxAbsDiff(a: Record<string, ort.Tensor>, b: Record<string, ort.Tensor>): number {
  let m = 0;
  for (const [name, t] of Object.entries(a)) {
    if (!isFloat(t)) continue;
    const x = numbers(t);
    const y = numbers(b[name]);
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  }
  return m;
}

interface Row {
  model: string;
  rule: string;
  status: string;
  layers: number;
  skipped: number;
  relError: number;
  simVsDeploy: number;
  deploy: string;
  ms: number;
}
const rows: Row[] = [];
const fp8DeployFailures: string[] = [];

/** Float reference outputs per model, computed once for all rules. */
const floatCache = new Map<string, Promise<{ model: ModelProto; opts: ModelFeeds; fixed: Record<string, ort.Tensor>; ref: Record<string, ort.Tensor> }>>();

function floatReference(file: string) {
  let p = floatCache.get(file);
  if (!p) {
    p = (async () => {
      const model = loadModel(file);
      const opts = feedOptions(file);
      for (const [name, dims] of Object.entries(opts.resize ?? {})) setInputDims(model, name, dims);
      const fixed = feedsFor(model, opts, 99);
      return { model, opts, fixed, ref: await runModel(model, 'float', fixed) };
    })();
    floatCache.set(file, p);
  }
  return p;
}

async function checkModelRule(file: string, label: string, ruleName: string): Promise<void> {
  const row: Row = { model: label, rule: ruleName, status: 'FAILED', layers: 0, skipped: 0, relError: NaN, simVsDeploy: NaN, deploy: '-', ms: 0 };
  rows.push(row);
  const t0 = performance.now();
  const { model, opts, fixed, ref } = await floatReference(file);
  async function* calibration(): AsyncGenerator<Feeds> {
    // randomFeeds gives ort.Tensors (int64 `sr` for silero included); calibrate() types its feeds as FloatTensor
    // records but passes them to onnxruntime as they are and only observes float32 graph inputs.
    for (let seed = 1; seed <= CALIBRATION_BATCHES; seed++) yield feedsFor(model, opts, seed) as unknown as Feeds;
  }
  const q = await quantize(model, calibration(), { rule: getRule(ruleName), steps: CALIBRATION_BATCHES });
  row.layers = q.plan.layers.length;
  row.skipped = q.plan.skipped.length;
  // calibrate() reads no batch when the plan has no activation to observe (e.g. every layer inside an If body).
  assert.equal(q.batches, q.plan.tensors.some((t) => t.role === 'activation') ? CALIBRATION_BATCHES : 0);
  if (hasQuantizableLayer(q.floatModel))
    assert.ok(q.plan.layers.length > 0, `model has Conv/Gemm/MatMul layers at top level but the plan quantizes none (skipped: ${JSON.stringify(q.plan.skipped.slice(0, 5))})`);

  const sim = await runModel(q.model, 'simulate', fixed);
  checkOutputs(ref, sim, 'simulate');
  let dep: Record<string, ort.Tensor>;
  try {
    dep = await runModel(q.model, 'deploy', fixed);
    row.deploy = 'ok';
  } catch (e) {
    if (getRule(ruleName).activation.format === 'int') throw e;
    fp8DeployFailures.push(`${label}: ${e instanceof Error ? e.message.slice(0, 160) : String(e)}`);
    dep = await runBasic(q.model, fixed);
    row.deploy = 'basic†';
  }
  checkOutputs(ref, dep, 'deploy');

  row.relError = relativeError(ref, sim);
  assert.ok(Number.isFinite(row.relError), `simulate-vs-float relative error is ${row.relError}`);
  row.simVsDeploy = maxAbsDiff(sim, dep);
  assert.ok(Number.isFinite(row.simVsDeploy), `simulate-vs-deploy max |diff| is ${row.simVsDeploy}`);
  row.ms = performance.now() - t0;
  row.status = 'ok';
}

const sharedModels = [...onnxFiles(join(SHARED, 'corpus')), ...onnxFiles(join(SHARED, 'quantzoo/Model'))];
const noShared = existsSync(SHARED) ? false : '../shared absent (a fresh clone has none): only the npm PP-OCRv4 model is quantized';

test('../shared models are present', { skip: noShared }, () => assert.ok(sharedModels.length > 0, 'no .onnx files under ../shared'));

const models: [file: string, label: string][] = [
  ...sharedModels.map((f): [string, string] => [f, relative(SHARED, f)]),
  [NPM_MODEL, 'npm:ch_PP-OCRv4_rec_infer.onnx'],
];
for (const [file, label] of models)
  for (const rule of RULE_NAMES) test(`quantize ${label} × ${rule}`, () => checkModelRule(file, label, rule));

test('FP8 models run in createSession deploy mode (session.ts deploys float8 Q/DQ models at level basic)', () => {
  assert.equal(fp8DeployFailures.length, 0, `${fp8DeployFailures.length} FP8 models fail in deploy mode, e.g.\n${fp8DeployFailures.slice(0, 3).join('\n')}`);
});

// A report, not a test (it asserts nothing): printed after the file's tests so a run shows the status per model.
after(() => {
  const fmt = (x: number) => (Number.isNaN(x) ? '-' : x.toExponential(2));
  const lines = [
    'model | rule | status | layers | skipped | rel.err (sim vs float) | max|sim−deploy| | deploy | time',
    ...rows.map((r) =>
      [r.model, r.rule, r.status, r.layers, r.skipped, fmt(r.relError), fmt(r.simVsDeploy), r.deploy, `${(r.ms / 1000).toFixed(1)} s`].join(' | '),
    ),
  ];
  if (fp8DeployFailures.length) lines.push(`† createSession deploy failed for FP8 (${fp8DeployFailures.length} models), ran at level 'basic': e.g. ${fp8DeployFailures[0]}`);
  console.log(lines.join('\n'));
});
