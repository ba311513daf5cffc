/**
 * Issue 6, item 4: onnxruntime-node's WebGPU execution provider (Dawn over Vulkan on Linux) against its CPU provider,
 * for float inference and for calibration (the statistics session), on the models named:
 *   node --import tsx bench/webgpu.ts [--reps 3] [--batches 8] [--rules onnxquant-int8-perchannel,onnxquant-fp8]
 *     model.onnx[=N,C,H,W] …
 * Inputs are seeded uniform [0, 1) batches (speed and agreement, not accuracy). Per model it reports: whether every
 * node runs on WebGPU (a session with the CPU fallback disabled loads or names what it lacks), session creation and
 * float time per pass over the batches on each provider, for the model as given and as formatted for quantize()
 * (median of --reps after one warm-up pass), how far the WebGPU outputs are from the CPU ones, and quantize() time and
 * scale agreement per calibration variant (provider; one statistics session for all input shapes, or one per shape).
 * Prints a table and writes bench-results/webgpu-<time>.json. Without a GPU it says the provider is unavailable.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import type { Feeds } from '../src/calibrate/calibrate.ts';
import { loadModel, serializeModel } from '../src/onnx/model-io.ts';
import { getRule } from '../src/quant/rules.ts';
import { prepareModel, quantize } from '../src/quantize.ts';
import { graphInputs, randomFeeds } from '../src/runtime/inputs.ts';
import { checkProvider, createSession, type ExecutionProvider } from '../src/runtime/session.ts';
import { machine, median } from './util.ts';

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: { reps: { type: 'string', default: '3' }, batches: { type: 'string', default: '8' }, rules: { type: 'string', default: 'onnxquant-int8-perchannel,onnxquant-fp8' }, out: { type: 'string', default: 'bench-results' } },
});
const reps = Math.max(1, Number(a.reps));
const nBatches = Math.max(1, Number(a.batches));
const rules = a.rules!.split(',').filter(Boolean).map(getRule);

interface Row {
  model: string;
  input: number[];
  allOnWebgpu: boolean | string;
  float: Record<ExecutionProvider, { createMs: number; passMs: number } | { error: string }>;
  /** The same on the formatted model quantize() calibrates (BatchNorm folded, Clip bounds as initializers…). */
  floatFormatted: Record<ExecutionProvider, { createMs: number; passMs: number } | { error: string }>;
  /** max |webgpu − cpu| over the outputs ÷ max |cpu|. */
  outputRelDiff?: number;
  /** quantize() per variant (provider, and one statistics session per input shape or one for all); scales against
   * the CPU provider's one-session run. */
  calibrate: { rule: string; variant: string; ms?: number; maxScaleRelDiff?: number; error?: string }[];
}

const msg = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 300);

async function floatPass(bytes: Uint8Array, provider: ExecutionProvider, batches: Feeds[]) {
  const t0 = performance.now();
  const s = await createSession(bytes, { mode: 'float', provider });
  const createMs = performance.now() - t0;
  const outputs: Float32Array[][] = [];
  for (const f of batches) outputs.push(Object.values(await s.run(f)).map((t) => t.data as Float32Array));
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    for (const f of batches) await s.run(f);
    times.push(performance.now() - t);
  }
  await s.release();
  return { createMs, passMs: median(times), outputs };
}

/** Does the model load on WebGPU with onnxruntime's CPU fallback switched off? true, or onnxruntime's reason. */
async function allOnWebgpu(bytes: Uint8Array): Promise<boolean | string> {
  try {
    const s = await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'], logSeverityLevel: 3, extra: { session: { disable_cpu_ep_fallback: '1' } } });
    await s.release();
    return true;
  } catch (e) {
    return msg(e);
  }
}

// One adapter check up front: without a GPU, Vulkan driver and libvulkan.so.1 every WebGPU session fails alike.
{
  try {
    checkProvider('webgpu');
  } catch (e) {
    console.error(`bench/webgpu.ts: ${msg(e)}`);
    process.exit(2);
  }
  const probe = positionals[0] && (await allOnWebgpu(serializeModel(loadModel(positionals[0].split('=')[0]))));
  if (typeof probe === 'string' && /adapter|Vulkan|Dawn/i.test(probe)) {
    console.error(`bench/webgpu.ts: the WebGPU provider is not available on this machine: ${probe}`);
    process.exit(2);
  }
}

/** The calibration variants, the first the reference for scale agreement. */
const VARIANTS = [
  { label: 'cpu, one session', provider: 'cpu', perShape: false },
  { label: 'cpu', provider: 'cpu', perShape: true },
  { label: 'webgpu, one session', provider: 'webgpu', perShape: false },
  { label: 'webgpu', provider: 'webgpu', perShape: true },
] as const;

const rows: Row[] = [];
for (const arg of positionals) {
  const [file, shape] = arg.split('=');
  const model = loadModel(file);
  const inputs = graphInputs(model);
  const name = inputs[0].name;
  const dims = shape ? shape.split(',').map(Number) : (inputs[0].dims ?? []).map((d, i) => (typeof d === 'number' && d > 0 ? d : i === 0 ? 32 : NaN));
  if (dims.some((d) => !(d > 0))) throw new Error(`${file}: give the input shape (${name}: ${JSON.stringify(inputs[0].dims)}) as ${file}=N,C,H,W`);
  const batches: Feeds[] = Array.from({ length: nBatches }, (_, i) => randomFeeds(model, { shapes: { [name]: dims }, seed: 1 + i }) as Feeds);
  const bytes = serializeModel(model);
  const id = file.split('/').pop()!.replace(/\.onnx$/, '');
  const row: Row = { model: id, input: dims, allOnWebgpu: await allOnWebgpu(bytes), float: {} as Row['float'], floatFormatted: {} as Row['float'], calibrate: [] };
  const outs: Partial<Record<ExecutionProvider, Float32Array[][]>> = {};
  const formatted = serializeModel(prepareModel(model, rules[0] ?? getRule('onnxquant-int8-perchannel')).model);
  for (const p of ['cpu', 'webgpu'] as const) {
    try {
      const r = await floatPass(bytes, p, batches);
      row.float[p] = { createMs: r.createMs, passMs: r.passMs };
      outs[p] = r.outputs;
    } catch (e) {
      row.float[p] = { error: msg(e) };
    }
    try {
      const r = await floatPass(formatted, p, batches);
      row.floatFormatted[p] = { createMs: r.createMs, passMs: r.passMs };
    } catch (e) {
      row.floatFormatted[p] = { error: msg(e) };
    }
  }
  if (outs.cpu && outs.webgpu) {
    let diff = 0;
    let top = 0;
    outs.cpu.forEach((b, i) =>
      b.forEach((o, j) => {
        const w = outs.webgpu![i][j];
        for (let k = 0; k < o.length; k++) {
          diff = Math.max(diff, Math.abs(w[k] - o[k]));
          top = Math.max(top, Math.abs(o[k]));
        }
      }),
    );
    row.outputRelDiff = diff / top;
  }
  for (const rule of rules) {
    let reference: Map<string, Float32Array> | undefined;
    for (const v of VARIANTS) {
      const c: Row['calibrate'][number] = { rule: rule.name, variant: v.label };
      try {
        const times: number[] = [];
        let scales = new Map<string, Float32Array>();
        for (let r = 0; r < reps; r++) {
          async function* data() {
            yield* batches;
          }
          const t = performance.now();
          const q = await quantize(model, data(), { rule, provider: v.provider, sessionPerShape: v.perShape });
          times.push(performance.now() - t);
          scales = new Map([...q.params].map(([k, p]) => [k, p.scale]));
        }
        c.ms = median(times);
        reference ??= scales;
        let worst = 0;
        for (const [k, s] of reference) {
          const w = scales.get(k)!;
          for (let i = 0; i < s.length; i++) worst = Math.max(worst, Math.abs(w[i] - s[i]) / Math.abs(s[i]));
        }
        c.maxScaleRelDiff = worst;
      } catch (e) {
        c.error = msg(e);
      }
      row.calibrate.push(c);
    }
  }
  rows.push(row);
  console.log(JSON.stringify(row));
}

const f = (v: number | undefined) => (v === undefined ? '—' : v.toFixed(0));
console.log(`\nmachine: ${JSON.stringify(machine())}; ${nBatches} batches, median of ${reps}; ms per pass over the batches (session creation in brackets)`);
const fl = (v: Row['float'][ExecutionProvider]) => ('error' in v ? `failed: ${v.error}` : `${f(v.passMs)} (${f(v.createMs)})`);
console.log('| model | input | all nodes on WebGPU | float cpu | float webgpu | formatted float cpu | formatted float webgpu | webgpu output Δ (rel.) |');
console.log('|---|---|---|---:|---:|---:|---:|---:|');
for (const r of rows)
  console.log(`| ${r.model} | ${r.input.join('×')} | ${r.allOnWebgpu === true ? 'yes' : 'no'} | ${fl(r.float.cpu)} | ${fl(r.float.webgpu)} | ${fl(r.floatFormatted.cpu)} | ${fl(r.floatFormatted.webgpu)} | ${r.outputRelDiff?.toExponential(1) ?? '—'} |`);
console.log(`\n| model | rule | ${VARIANTS.map((v) => `quantize, ${v.label} (max scale Δ)`).join(' | ')} |`);
console.log(`|---|---|${VARIANTS.map(() => '---:|').join('')}`);
for (const r of rows)
  for (const rule of rules) {
    const cells = r.calibrate.filter((c) => c.rule === rule.name).map((c) => (c.error ? `failed: ${c.error}` : `${f(c.ms)} (${c.maxScaleRelDiff?.toExponential(1)})`));
    console.log(`| ${r.model} | ${rule.name} | ${cells.join(' | ')} |`);
  }
mkdirSync(a.out!, { recursive: true });
const path = join(a.out!, `webgpu-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(path, JSON.stringify({ machine: machine(), reps, batches: nBatches, rows }, null, 1));
console.log(`wrote ${path}`);
