/**
 * `npm run bench [-- --models a,b --reps 3 --quick --rule NAME --no-rss --rss-reps N --test-samples N --no-zoo]`
 *
 * Per model, with all data decoded/rendered into memory BEFORE any timing:
 *  (a) quantize wall time (prepare + calibrate + realise, session creation included) ÷ float inference over the
 *      same calibration batches (float session creation + runs)                                       goal ≤ 1.3
 *  (b) evaluation of the quantized model in 'simulate' mode ÷ evaluation of the float model ('float' mode), same
 *      in-memory test batches, session creation + runs + metric                                       goal ≤ 1.5
 *      (b′) the same ÷ the float model with optimisations off: what the Q/DQ nodes cost, apart from the kernels
 *      (NCHWc convolution, fusions) an exact simulation gives up — at level 'all' onnxruntime's outputs differ.
 *  (c) peak RSS (process.resourceUsage().maxRSS, child process each) calibrating 32 vs 256 batches  goal ≤ +10%
 *  (d) `node bin/onnxquant.js zoo` total wall time (once).
 * Each time is the median of --reps repetitions (float and quantized interleaved); ratios are of medians.
 * Writes bench-results/bench-<timestamp>.json (bench-results/ should be git-ignored).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import type { ModelProto } from 'onnx-buf';
import type { Feeds } from '../src/calibrate/calibrate.ts';
import { loadModel, writeFileAtomic } from '../src/onnx/model-io.ts';
import { getRule } from '../src/quant/rules.ts';
import { quantize } from '../src/quantize.ts';
import { createSession, type RunMode } from '../src/runtime/session.ts';
import { benchModels, ROOT, sharedAvailable, type BenchModel, type TestBatch } from './models.ts';
import { busyProcesses, machine, median, timed, writeNpy } from './util.ts';
import type { FloatTensor } from '../src/tensor.ts';

const { values: args } = parseArgs({
  options: {
    models: { type: 'string' },
    reps: { type: 'string', default: '3' },
    quick: { type: 'boolean', default: false },
    rule: { type: 'string', default: 'onnxquant-int8-perchannel' },
    'no-rss': { type: 'boolean', default: false },
    'rss-reps': { type: 'string' },
    'test-samples': { type: 'string' },
    'rss-only': { type: 'boolean', default: false },
    'no-zoo': { type: 'boolean', default: false },
    'zoo-timeout': { type: 'string', default: '900' },
    out: { type: 'string', default: join(ROOT, 'bench-results') },
  },
});
const reps = Math.max(1, Number(args.reps));
const quick = args.quick!;
const rule = getRule(args.rule!);

async function floatCalibPass(model: ModelProto, calib: Feeds[]): Promise<void> {
  const s = await createSession(model, { mode: 'float' });
  for (const f of calib) await s.run(f);
  await s.release();
}

async function evaluate<L>(m: BenchModel<L>, model: ModelProto, mode: RunMode, test: TestBatch<L>[]): Promise<number> {
  const s = await createSession(model, { mode });
  const sc = m.scorer();
  for (const b of test) {
    const out = await s.run(b.feeds);
    const t = out[s.outputNames[0]];
    sc.add({ dims: t.dims, data: t.data as Float32Array }, b.labels);
  }
  await s.release();
  return sc.value();
}

function rssChild(id: string, batches: number, batchSize: number, npyDir: string): { maxRssKiB: number; maxRssBeforeKiB: number; quantizeMs: number } | { error: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/rss-child.ts'), id, String(batches), String(batchSize), rule.name, npyDir], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line);
  } catch {
    const lines = (r.stderr || r.stdout).trim().split('\n');
    return { error: (lines.find((l) => /Error/.test(l)) ?? lines.at(-1) ?? `status ${r.status}`).slice(0, 300) };
  }
}

interface ModelResult {
  id: string;
  calib: { batches: number; batchSize: number };
  test: { samples: number; batchSize: number };
  floatCalibMs: number[];
  quantizeMs: number[];
  quantizeBreakdown: { prepareMs: number; calibrateMs: number; realiseMs: number }[];
  floatEvalMs: number[];
  /** The float model evaluated with optimisations off (simulate mode: nothing to fold in it). */
  floatUnoptEvalMs: number[];
  simEvalMs: number[];
  accuracy: { metric: string; float: number; quantized: number };
  rss?: { small: unknown; large: unknown; smallBatches: number; largeBatches: number; batchSize: number };
  ratios: { quantizeOverFloat: number; simEvalOverFloatEval: number; simEvalOverUnoptFloatEval: number; rssLargeOverSmall?: number };
}

const info = machine();
console.log(`onnxquant bench — ${info.nproc} CPU(s) ${info.cpu}, node ${info.node}, onnxruntime-node ${info.ort}, load average ${info.loadavg.join(' ')}`);
const busy = busyProcesses();
if (busy) console.log(`busy processes at start (other jobs skew absolute times; ratios are measured within this run):\n${busy}`);
console.log(`rule ${rule.name}; ${reps} repetition(s) per figure, median reported; data are pre-loaded into memory before timing, so image decoding / text rendering are not counted on either side.\n`);

let models = benchModels();
if (args.models) {
  const want = args.models.split(',').map((s) => s.trim());
  const unknown = want.filter((w) => !models.some((m) => m.id === w));
  if (unknown.length) throw new Error(`unknown model(s) ${unknown.join(', ')}; known: ${models.map((m) => m.id).join(', ')}`);
  models = models.filter((m) => want.includes(m.id));
}
if (!sharedAvailable()) {
  const skipped = models.filter((m) => m.shared).map((m) => m.id);
  if (skipped.length) console.log(`../shared is absent: skipping shared models (${skipped.join(', ')})`);
  models = models.filter((m) => !m.shared);
}

const results: ModelResult[] = [];
for (const m of models) {
  const d = m.defaults;
  const calibBatches = quick ? Math.min(8, d.calibBatches) : d.calibBatches;
  const calibBatch = quick ? Math.min(16, d.calibBatch) : d.calibBatch;
  const testSamples = args['test-samples'] ? Number(args['test-samples']) : quick ? Math.min(d.testSamples, 256) : d.testSamples;
  process.stdout.write(`[${m.id}] loading ${calibBatches}×${calibBatch} calibration and ${testSamples} test samples into memory… `);
  const tl = performance.now();
  const model = loadModel(m.file);
  const calib = args['rss-only'] ? [] : await m.loadCalib(calibBatches, calibBatch);
  const test = args['rss-only'] ? [] : await m.loadTest(testSamples, d.testBatch);
  console.log(`${((performance.now() - tl) / 1000).toFixed(1)} s (not timed)`);
  if (!args['rss-only']) await floatCalibPass(model, calib.slice(0, 1)); // warm-up: first session creation / code paths

  const r: ModelResult = {
    id: m.id,
    calib: { batches: calibBatches, batchSize: calibBatch },
    test: { samples: test.reduce((n, b) => n + b.labels.length, 0), batchSize: d.testBatch },
    floatCalibMs: [],
    quantizeMs: [],
    quantizeBreakdown: [],
    floatEvalMs: [],
    floatUnoptEvalMs: [],
    simEvalMs: [],
    accuracy: { metric: m.scorer().name, float: NaN, quantized: NaN },
    ratios: { quantizeOverFloat: NaN, simEvalOverFloatEval: NaN, simEvalOverUnoptFloatEval: NaN },
  };
  let qmodel: ModelProto | undefined;
  for (let i = 0; i < (args['rss-only'] ? 0 : reps); i++) {
    r.floatCalibMs.push((await timed(() => floatCalibPass(model, calib))).ms);
    const q = await timed(async () => {
      async function* it(): AsyncIterable<Feeds> {
        yield* calib;
      }
      return quantize(model, it, { rule, steps: calibBatches });
    });
    r.quantizeMs.push(q.ms);
    r.quantizeBreakdown.push(q.value.timings);
    qmodel = q.value.model;
    process.stdout.write(`  rep ${i + 1}: float ${r.floatCalibMs.at(-1)!.toFixed(0)} ms, quantize ${q.ms.toFixed(0)} ms\n`);
  }
  for (let i = 0; i < (args['rss-only'] ? 0 : reps); i++) {
    const f = await timed(() => evaluate(m, model, 'float', test));
    const s = await timed(() => evaluate(m, qmodel!, 'simulate', test));
    const u = await timed(() => evaluate(m, model, 'simulate', test));
    r.floatEvalMs.push(f.ms);
    r.simEvalMs.push(s.ms);
    r.floatUnoptEvalMs.push(u.ms);
    r.accuracy.float = f.value;
    r.accuracy.quantized = s.value;
    process.stdout.write(`  eval rep ${i + 1}: float ${f.ms.toFixed(0)} ms, simulate ${s.ms.toFixed(0)} ms, float unoptimised ${u.ms.toFixed(0)} ms\n`);
  }
  r.ratios.quantizeOverFloat = median(r.quantizeMs) / median(r.floatCalibMs);
  r.ratios.simEvalOverFloatEval = median(r.simEvalMs) / median(r.floatEvalMs);
  r.ratios.simEvalOverUnoptFloatEval = median(r.simEvalMs) / median(r.floatUnoptEvalMs);
  if (!args['no-rss']) {
    const [small, large] = quick ? [8, 64] : [32, 256];
    const smalls: number[] = [];
    const larges: number[] = [];
    const raw: { small: unknown[]; large: unknown[] } = { small: [], large: [] };
    // The 32 distinct batches go to .npy files, so the child neither decodes images nor renders text: its peak
    // RSS is the calibration's, not the data loader's.
    const npyDir = join(args.out!, 'cache', `${m.id}-rss-b${d.rssBatch}`);
    mkdirSync(npyDir, { recursive: true });
    (await m.loadCalib(32, d.rssBatch)).forEach((f, i) => writeNpy(join(npyDir, `batch_${String(i).padStart(3, '0')}.npy`), f[m.inputName] as FloatTensor));
    const rssReps = args['rss-reps'] ? Math.max(1, Number(args['rss-reps'])) : quick ? 1 : reps;
    for (let i = 0; i < rssReps; i++) {
      const a = rssChild(m.id, small, d.rssBatch, npyDir);
      const b = rssChild(m.id, large, d.rssBatch, npyDir);
      raw.small.push(a);
      raw.large.push(b);
      if ('maxRssKiB' in a) smalls.push(a.maxRssKiB);
      if ('maxRssKiB' in b) larges.push(b.maxRssKiB);
      process.stdout.write(`  rss rep ${i + 1}: ${small} batches ${JSON.stringify(a)}\n           ${large} batches ${JSON.stringify(b)}\n`);
    }
    r.rss = { small: raw.small, large: raw.large, smallBatches: small, largeBatches: large, batchSize: d.rssBatch };
    if (smalls.length && larges.length) r.ratios.rssLargeOverSmall = median(larges) / median(smalls);
  }
  results.push(r);
}

// (d) the mini-zoo, once.
let zoo: { ok: boolean; ms: number; status: number | null; tail: string } | { skipped: string } = { skipped: '--no-zoo' };
if (!args['no-zoo']) {
  const zooOut = join('/tmp', `onnxquant-bench-zoo-${process.pid}`);
  console.log(`\n[zoo] node bin/onnxquant.js zoo --out ${zooOut} (once, timeout ${args['zoo-timeout']} s)…`);
  const t = performance.now();
  const z = spawnSync(process.execPath, [join(ROOT, 'bin/onnxquant.js'), 'zoo', '--out', zooOut], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: Number(args['zoo-timeout']) * 1000,
    maxBuffer: 1 << 26,
  });
  const ms = performance.now() - t;
  const tail = `${z.stdout ?? ''}\n${z.stderr ?? ''}`.trim().split('\n').slice(-8).join('\n');
  zoo = { ok: z.status === 0, ms, status: z.status, tail };
  console.log(z.status === 0 ? `[zoo] ok in ${(ms / 1000).toFixed(1)} s` : `[zoo] FAILED (status ${z.status}${z.error ? `, ${z.error.message}` : ''}) after ${(ms / 1000).toFixed(1)} s:\n${tail}`);
}

const fmt = (ms: number) => (ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);
const mark = (v: number | undefined, goal: number) => (v === undefined || Number.isNaN(v) ? '—' : `${v.toFixed(2)} ${v <= goal ? '✓' : '✗'}`);
const table = new Table({
  head: ['model', 'calib', 'float calib', 'quantize', '(a) q/float ≤1.3', 'test', 'float eval', 'sim eval', '(b) sim/float ≤1.5', "(b′) sim/float-unopt", 'acc float→quant', '(c) RSS 32→256 ≤1.10'],
  style: { head: [], border: [] },
});
for (const r of results) {
  type RssRow = { maxRssKiB?: number; sampledRssPeakKiB?: number };
  const med = (rows: unknown, k: keyof RssRow) => median((rows as RssRow[]).map((x) => x[k]).filter((v): v is number => typeof v === 'number')) / 1024;
  const rs =
    r.rss && r.ratios.rssLargeOverSmall !== undefined
      ? `${med(r.rss.small, 'maxRssKiB').toFixed(0)}→${med(r.rss.large, 'maxRssKiB').toFixed(0)} MiB ${mark(r.ratios.rssLargeOverSmall, 1.1)}` +
        (Number.isNaN(med(r.rss.small, 'sampledRssPeakKiB')) ? '' : ` (sampled ${med(r.rss.small, 'sampledRssPeakKiB').toFixed(0)}→${med(r.rss.large, 'sampledRssPeakKiB').toFixed(0)})`)
      : r.rss
        ? 'error'
        : 'skipped';
  table.push([
    r.id,
    `${r.calib.batches}×${r.calib.batchSize}`,
    fmt(median(r.floatCalibMs)),
    fmt(median(r.quantizeMs)),
    mark(r.ratios.quantizeOverFloat, 1.3),
    String(r.test.samples),
    fmt(median(r.floatEvalMs)),
    fmt(median(r.simEvalMs)),
    mark(r.ratios.simEvalOverFloatEval, 1.5),
    r.ratios.simEvalOverUnoptFloatEval.toFixed(2),
    `${(100 * r.accuracy.float).toFixed(1)}→${(100 * r.accuracy.quantized).toFixed(1)}% ${r.accuracy.metric}`,
    rs,
  ]);
}
console.log(`\n${table.toString()}`);
if (results.some((r) => r.rss)) console.log(`(c) counts: ${quick ? '8 vs 64 (--quick)' : '32 vs 256'} batches, cycled over 32 distinct in-memory batches; batch size per model: ${results.map((r) => `${r.id} ${r.rss?.batchSize}`).join(', ')}`);
if ('ok' in zoo) console.log(`(d) zoo (embedded PP-OCRv4 mini zoo, default settings, run once): ${zoo.ok ? `ok, ${fmt(zoo.ms)}` : `FAILED (status ${zoo.status}) after ${fmt(zoo.ms)}`}`);
else console.log(`(d) zoo: skipped (${zoo.skipped})`);
const endInfo = machine();
console.log(`load average at end: ${endInfo.loadavg.join(' ')}`);

mkdirSync(args.out!, { recursive: true });
const file = join(args.out!, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileAtomic(file, JSON.stringify({ machine: info, loadAtEnd: endInfo.loadavg, busyAtStart: busy, rule: rule.name, reps, quick, dataPreloaded: true, results, zoo }, null, 2));
// The hint only where the default folder would show up in `git status`.
const ignored = existsSync(join(ROOT, '.gitignore')) && /^\/?bench-results\/?$/m.test(readFileSync(join(ROOT, '.gitignore'), 'utf8'));
console.log(`wrote ${file}${ignored ? '' : ' (add bench-results/ to .gitignore: results are not for committing)'}`);
