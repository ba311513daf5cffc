/**
 * Where quantize's time goes: `node --import tsx bench/profile.ts <model-id> [batches] [batchSize] [rule]`
 * (add `--cpu-prof --cpu-prof-dir=bench-results/prof` before `--import` for a V8 profile; summarise it with
 * `node bench/prof-summary.mjs <file.cpuprofile>`).
 *
 * onnxruntime-node runs inference synchronously on the JS thread (backend.js: setImmediate → binding run), so the
 * time inside InferenceSession.run is onnxruntime's own (its intra-op pool included) and everything else is JS.
 * The calibration steps are replayed one by one with the library's own functions, then variants are timed that
 * show what a change would buy (no extra outputs, optimisation levels, thread counts).
 */
import * as ort from 'onnxruntime-node';
import { calibrateWeights } from '../src/calibrate/calibrate.ts';
import { makeObserver } from '../src/calibrate/observers.ts';
import { loadModel, serializeModel } from '../src/onnx/model-io.ts';
import { planModel } from '../src/quant/plan.ts';
import { getRule } from '../src/quant/rules.ts';
import { prepareModel, quantize } from '../src/quantize.ts';
import { realiseQdq } from '../src/realise/qdq.ts';
import { createSession, withExtraOutputs, type RunMode } from '../src/runtime/session.ts';
import { benchModels } from './models.ts';
import { median } from './util.ts';

const [id = 'en_number_rec', nStr = '32', bStr = '32', ruleName = 'onnxquant-int8-perchannel'] = process.argv.slice(2);
const m = benchModels().find((x) => x.id === id);
if (!m) throw new Error(`unknown model ${id}`);
const rule = getRule(ruleName);
const calib = await m.loadCalib(Number(nStr), Number(bStr));
const model = loadModel(m.file);

// Instrument onnxruntime: time inside run() and create().
const ortTime = { run: 0, create: 0, runs: 0 };
const proto = (ort.InferenceSession as unknown as { prototype: unknown }).prototype as { run: (...a: unknown[]) => Promise<unknown> };
const origRun = proto.run;
proto.run = async function (this: unknown, ...a: unknown[]) {
  const t = performance.now();
  try {
    return await origRun.apply(this, a);
  } finally {
    ortTime.run += performance.now() - t;
    ortTime.runs++;
  }
};
const S = ort.InferenceSession as unknown as { create: (...a: unknown[]) => Promise<unknown> };
const origCreate = S.create.bind(S);
S.create = async (...a: unknown[]) => {
  const t = performance.now();
  try {
    return await origCreate(...a);
  } finally {
    ortTime.create += performance.now() - t;
  }
};
const reset = () => Object.assign(ortTime, { run: 0, create: 0, runs: 0 });
const now = () => performance.now();
const rows: [string, number, string][] = [];
const row = (name: string, ms: number, note = '') => {
  rows.push([name, ms, note]);
  console.log(`${name.padEnd(58)} ${ms.toFixed(0).padStart(7)} ms  ${note}`);
};

async function pass(bytesOrModel: Parameters<typeof createSession>[0], mode: RunMode, fetch?: string[], threads?: number, level?: 'basic' | 'extended'): Promise<{ create: number; run: number }> {
  reset();
  if (level) {
    const bytes = bytesOrModel instanceof Uint8Array ? bytesOrModel : serializeModel(withExtraOutputs(bytesOrModel, fetch ?? []));
    const s = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: level, intraOpNumThreads: threads ?? 0, interOpNumThreads: 1, executionMode: 'sequential', logSeverityLevel: 3 });
    for (const f of calib) await s.run(Object.fromEntries(Object.entries(f).map(([k, v]) => [k, v instanceof ort.Tensor ? v : new ort.Tensor('float32', v.data, [...v.dims])])), (fetch ? [...s.outputNames.filter((o) => !fetch.includes(o)), ...fetch] : s.outputNames) as string[]);
    await s.release();
  } else {
    const s = await createSession(bytesOrModel, { mode, extraOutputs: fetch, intraOpThreads: threads });
    for (const f of calib) await s.run(f, fetch);
    await s.release();
  }
  return { create: ortTime.create, run: ortTime.run };
}

console.log(`profile ${id}: ${calib.length} batches × ${bStr}, rule ${rule.name}, intra-op threads default (0 = all cores)`);
await pass(model, 'float'); // warm-up

// 0. end-to-end
{
  const fl = [];
  const qt = [];
  const qo = [];
  for (let i = 0; i < 3; i++) {
    let t = now();
    await pass(model, 'float');
    fl.push(now() - t);
    reset();
    t = now();
    await quantize(model, async function* () { yield* calib; }, { rule, steps: calib.length });
    qt.push(now() - t);
    qo.push(ortTime.run + ortTime.create);
  }
  row('float pass (create + runs), median of 3', median(fl));
  row('quantize total, median of 3', median(qt), `onnxruntime create+run inside: ${median(qo).toFixed(0)} ms; JS: ${(median(qt) - median(qo)).toFixed(0)} ms; ratio ${(median(qt) / median(fl)).toFixed(2)}`);
}

// 1. quantize step by step
let t = now();
const prepared = prepareModel(model, rule);
row('prepare (format + opset)', now() - t);
t = now();
const plan = planModel(prepared.model, rule);
row('plan', now() - t, `${plan.tensors.length} tensors, ${plan.layers.length} layers`);
t = now();
const params = calibrateWeights(prepared.model, plan);
row('weight observers', now() - t);
t = now();
const statsModel = realiseQdq(prepared.model, plan, params, { keys: new Set(params.keys()) });
row('realiseQdq (weights-only stats model)', now() - t);
const activations = plan.tensors.filter((x) => x.role === 'activation');
const graphInputs = new Set(prepared.model.graph!.input.map((v) => v.name));
const fetchNames = [...new Set(activations.map((x) => x.tensor).filter((n) => !graphInputs.has(n)))];
t = now();
const bytes = serializeModel(withExtraOutputs(statsModel, fetchNames));
row('clone + serialize stats model', now() - t, `${(bytes.length / 1e6).toFixed(1)} MB`);
reset();
t = now();
const sess = await createSession(statsModel, { mode: 'simulate', extraOutputs: fetchNames });
row('createSession (simulate, + extra outputs)', now() - t, `onnxruntime create ${ortTime.create.toFixed(0)} ms`);
const observers = new Map(activations.map((x) => [x.key, makeObserver(x.config, 'activation')]));
let runMs = 0;
let obsMs = 0;
let elems = 0;
const perTensor = new Map<string, number>();
for (const f of calib) {
  t = now();
  const r = await sess.run(f, fetchNames);
  runMs += now() - t;
  for (const a of activations) {
    const v = graphInputs.has(a.tensor) ? f[a.tensor] : r[a.tensor];
    const t1 = now();
    observers.get(a.key)!.observe(v.data as Float32Array, v.dims);
    const dt = now() - t1;
    perTensor.set(a.tensor, (perTensor.get(a.tensor) ?? 0) + dt);
    obsMs += dt;
    elems += v.data.length;
  }
}
await sess.release();
row(`runs with ${fetchNames.length} fetched activations`, runMs);
row(`activation observers (${activations[0]?.config.observer})`, obsMs, `${(elems / 1e6).toFixed(1)} M values, ${((obsMs * 1e6) / Math.max(1, elems)).toFixed(2)} ns/value`);
const top = [...perTensor].sort((a, b) => b[1] - a[1]).slice(0, 3);
console.log(`   heaviest observed tensors: ${top.map(([n, ms]) => `${n} ${ms.toFixed(0)} ms`).join(', ')}`);
t = now();
const obsParams = new Map([...observers].map(([k, o]) => [k, o.params()]));
for (const [k, p] of obsParams) params.set(k, p);
row('observer params()', now() - t);
t = now();
realiseQdq(prepared.model, plan, params);
row('realiseQdq (final)', now() - t);

// 2. variants: what each proposal would buy (runs only, same batches)
const v1 = await pass(statsModel, 'simulate');
row('variant: stats model, simulate, NO extra outputs', v1.run, `create ${v1.create.toFixed(0)}`);
const v2 = await pass(statsModel, 'simulate', fetchNames, undefined, 'basic');
row('variant: stats model + fetch, optimisation "basic"', v2.run, `create ${v2.create.toFixed(0)}`);
const v3 = await pass(prepared.model, 'simulate', fetchNames);
row('variant: float (formatted) model + fetch, simulate', v3.run, 'statsOn float, opt disabled');
const v4 = await pass(prepared.model, 'float');
row('variant: float (formatted) model, opt all, no fetch', v4.run);
const v5 = await pass(model, 'simulate');
row('variant: original model, opt disabled, no fetch', v5.run);
for (const th of [1, 2]) {
  const v = await pass(statsModel, 'simulate', fetchNames, th);
  row(`variant: stats model + fetch, intraOpThreads ${th}`, v.run);
  const f = await pass(model, 'float', undefined, th);
  row(`variant: float model, intraOpThreads ${th}`, f.run);
}
console.log(JSON.stringify({ id, batches: calib.length, batchSize: Number(bStr), rows }));
