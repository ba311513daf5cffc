/**
 * The benchmark runner: models × rules → cells. Per model: the float metric once, then per rule quantize
 * (calibration: `calibBatches` batches of `batch` samples), evaluate the QDQ model in simulate mode, and analyse
 * it against the formatted float model (AQE/MQE/OQE, report.json + report.html in `<out>/<model>/<rule>/`).
 *
 * Resumable: each finished cell is `<out>/<model>/<rule>/cell.json`; a rerun skips it unless `force`, or unless it
 * no longer answers the cell asked for (another model file, recipe definition, rule file or run option: cell-reuse.ts,
 * said in the log). The float
 * metric is kept in `<out>/<model>/float.json` (reused while the model hash and test count match; agreement tasks
 * always rerun float, since they need its predictions). `shard: {index, count}` (1-based) takes every count-th cell.
 * Missing files and skipped entries become rows with a reason, never errors; a failing cell is reported as an error
 * row (not saved, so a rerun retries it).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { arch, platform } from 'node:os';
import { join } from 'node:path';
import type { ModelProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { analyse } from '../analyse/analyse.ts';
import type { Feeds } from '../calibrate/calibrate.ts';
import { parseModel, saveModel, writeFileAtomic } from '../onnx/model-io.ts';
import { getRule, type QuantRule } from '../quant/rules.ts';
import type { KeepTest } from '../optimise/context.ts';
import { getRecipe } from '../optimise/recipes.ts';
import { computedNames } from '../ir/graph.ts';
import { splitRuleRecipe } from './rule-recipe.ts';
import { staleReason } from './cell-reuse.ts';

import { quantize } from '../quantize.ts';
import { renderAnalysisHtml } from '../report/html.ts';
import { createSession } from '../runtime/session.ts';
import { fixedFeedsByShape } from '../runtime/fixed-feeds.ts';
import { entryInputs } from './entry-feeds.ts';
import { type CachedSplit, cacheSplit, DEFAULT_CACHE_BYTES, missingPaths, modelPath, openSource, type ProvidedData, slice, spread } from './datasets.ts';
import type { RuleName, ZooEntry } from './registry.ts';
import type { ErrorSummary } from '../analyse/schema.ts';
import { CELL_SCHEMA, formatPaired, pairedScores, type CellSettings, type Provenance, type ZooRow } from './results.ts';
import { evaluate, type EvaluateResult, keepTestFor, makeEvaluator } from './tasks/index.ts';

export interface ZooOptions {
  /** QuantZoo root holding Model/ and Data/ (ignored by entries with absolute paths). */
  root: string;
  entries: readonly ZooEntry[];
  rules: readonly string[];
  /** Rules from rule files (or built in code), by name, beside the OnnxQuant rules: cells name them like any rule. */
  customRules?: ReadonlyMap<string, QuantRule>;
  out: string;
  shard?: { index: number; count: number };
  force?: boolean;
  /** Calibration batches (default 32, PPQ's calib_steps). */
  calibBatches?: number;
  /** Batch size (default 32); entries with maxBatch use at most that. */
  batch?: number;
  /** Score at most this many test samples, spread evenly over the split (every class of a sorted folder). */
  testLimit?: number;
  /** Samples used by the error analysis (default: the whole test split). */
  analyseSamples?: number;
  /** Calibration batches a recipe judges its passes on (default: optimise.ts splitCalibration's). */
  measureBatches?: number;
  /** How every recipe judges its passes (default: each model's task decides, tasks/index.ts keepTestFor). */
  keepTest?: KeepTest;
  /** In-memory budget for each cached split (default 1 GiB). */
  cacheBytes?: number;
  /** Also write the QDQ models beside the reports. */
  saveModels?: boolean;
  /** Progress lines (default: stderr). Pass a no-op to silence. */
  log?: (line: string, transient?: boolean) => void;
  /** Datasets for entries whose data source is `{ kind: 'provided', name }`. */
  provided?: ProvidedData;
  /** Seed recorded in provenance (data with randomness takes it from the registry entry). */
  seed?: number;
  /** Compute nothing: report the cells already in `out` and leave the others out (rows, tables). */
  reuseOnly?: boolean;
}

export interface ZooRun {
  rows: ZooRow[];
  ran: number;
  skipped: number;
  /** Cells left out because they had no result and `reuseOnly` was set. */
  notComputed: number;
  wallMs: number;
}

const PACKAGE_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
})();

interface Cell {
  entry: ZooEntry;
  rule: string;
  index: number;
}

/**
 * PPQ's published rows for a cell: only on the plain rule's cell (a recipe cell is compared with them through the
 * plain one, see renderRecipeTables), the same whether the cell was computed now or read back from --out.
 */
function publishedFor(entry: ZooEntry, cellRule: string): Pick<ZooRow, 'published'> {
  const { rule, recipe } = splitRuleRecipe(cellRule);
  const rows = recipe === 'none' ? entry.published?.[rule as RuleName] : undefined;
  return rows ? { published: rows } : {};
}

/** The fields every row of a cell has, whatever became of it (run, reused, skipped, missing, failed). */
function baseRow(entry: ZooEntry, rule: string): ZooRow {
  return { schema: CELL_SCHEMA, model: entry.id, suite: entry.suite, task: entry.task.kind, rule, status: 'ok', ...publishedFor(entry, rule) };
}

export function cellDir(out: string, model: string, rule: string): string {
  return join(out, safeName(model), rule);
}

export function cellFile(out: string, model: string, rule: string): string {
  return join(cellDir(out, model, rule), 'cell.json');
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._@-]/g, '_');
}

/** Every cell of entries × rules, numbered; a shard keeps those whose number ≡ index−1 (mod count). */
export function planCells(entries: readonly ZooEntry[], rules: readonly string[], shard?: { index: number; count: number }): Cell[] {
  const cells: Cell[] = [];
  for (const entry of entries) for (const rule of rules) cells.push({ entry, rule, index: cells.length });
  if (!shard) return cells;
  if (!(shard.count >= 1 && shard.index >= 1 && shard.index <= shard.count)) throw new Error(`bad shard ${shard.index}/${shard.count}`);
  return cells.filter((c) => c.index % shard.count === shard.index - 1);
}

export function parseShard(s: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`--shard must be i/n (1-based), got '${s}'`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || index < 1 || index > count) throw new Error(`--shard ${s}: need 1 ≤ i ≤ n`);
  return { index, count };
}

/** float.json's format: 2 keeps the per-sample scores (paired comparisons); an older file is computed again. */
const FLOAT_CACHE_VERSION = 2;

/** A cached result; a missing or unreadable one (an edited or foreign file) is a cache miss, not a crash. */
function readCached<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

function readCell(file: string): ZooRow | undefined {
  const r = readCached<ZooRow>(file);
  return r?.schema === CELL_SCHEMA && r.status === 'ok' ? r : undefined;
}

function fmtDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

function defaultLog(): (line: string, transient?: boolean) => void {
  const tty = process.stderr.isTTY;
  let last = 0;
  return (line, transient) => {
    if (transient) {
      // A terminal gets a live line; logs and pipes a progress line every 15 s.
      const now = Date.now();
      if (now - last < (tty ? 200 : 15_000)) return;
      last = now;
      process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
    } else process.stderr.write(`${tty ? '\r\x1b[K' : ''}${line}\n`);
  };
}

/** The tensor names present in a model (node outputs, graph inputs/outputs). */
function valueNames(model: ModelProto): Set<string> {
  const g = model.graph!;
  return new Set([...g.node.flatMap((n) => n.output), ...g.input.map((v) => v.name), ...g.output.map((v) => v.name)]);
}

export async function runZoo(o: ZooOptions): Promise<ZooRun> {
  const t0 = performance.now();
  const log = o.log ?? defaultLog();
  const batchOpt = o.batch ?? 32;
  const calibBatches = o.calibBatches ?? 32;
  const cells = planCells(o.entries, o.rules, o.shard);
  const common = { calibBatches, batch: batchOpt, testLimit: o.testLimit ?? null, analyseSamples: o.analyseSamples ?? null };
  // The measuring batches shape only a recipe's cell: the plain rule's is the same whatever they are.
  const settingsFor = (cellRule: string): CellSettings => ({ ...common, measureBatches: splitRuleRecipe(cellRule).recipe === 'none' ? null : (o.measureBatches ?? null) });
  // One place decides the test a model's recipes are judged by, so the reuse check asks for what the run would use.
  const keepTestOf = (e: ZooEntry): KeepTest => o.keepTest ?? keepTestFor(e);
  // A finished cell is reused only while it answers this run's cell (cell-reuse.ts); the model is hashed once, and
  // only when some cell of it is on disk.
  const shas = new Map<ZooEntry, string>();
  const shaOf = (e: ZooEntry, bytes?: Uint8Array) =>
    shas.get(e) ?? shas.set(e, createHash('sha256').update(bytes ?? readFileSync(modelPath(o.root, e))).digest('hex')).get(e)!;
  type Finished = { cell: ZooRow } | { stale: string } | undefined;
  const judged = new Map<Cell, Finished>(); // the progress count and the run ask about the same cells
  const finished = (c: Cell): Finished => {
    if (judged.has(c)) return judged.get(c);
    const cell = readCell(cellFile(o.out, c.entry.id, c.rule));
    const { rule, recipe } = splitRuleRecipe(c.rule);
    const stale =
      cell &&
      staleReason(cell, { modelSha256: shaOf(c.entry), recipe: getRecipe(recipe), keepTest: keepTestOf(c.entry), ruleDefinition: o.customRules?.get(rule), settings: settingsFor(c.rule) });
    const f: Finished = !cell ? undefined : stale ? { stale } : { cell };
    judged.set(c, f);
    return f;
  };
  for (const r of o.rules) {
    // unknown rule or recipe names fail before any work
    const { rule, recipe } = splitRuleRecipe(r);
    if (!o.customRules?.has(rule)) getRule(rule);
    getRecipe(recipe);
  }
  const rows: ZooRow[] = [];
  let ran = 0;
  let skipped = 0;
  const runnable = new Map(o.entries.map((e) => [e, !e.skip && missingPaths(o.root, e).length === 0]));
  const reusable = (c: Cell) => {
    const f = finished(c);
    return !!f && 'cell' in f;
  };
  const todoTotal = o.reuseOnly ? 0 : cells.filter((c) => runnable.get(c.entry) && (o.force || !reusable(c))).length;
  let notComputed = 0;
  let todoDone = 0;
  const cellTimes: number[] = [];
  const eta = () => {
    if (!cellTimes.length) return '?';
    const mean = cellTimes.reduce((a, b) => a + b, 0) / cellTimes.length;
    return fmtDuration(mean * (todoTotal - todoDone));
  };

  const byModel = new Map<ZooEntry, Cell[]>();
  for (const c of cells) byModel.set(c.entry, [...(byModel.get(c.entry) ?? []), c]);

  for (const [entry, mcells] of byModel) {
    if (entry.skip) {
      for (const c of mcells) rows.push({ ...baseRow(entry, c.rule), status: 'skipped', reason: entry.skip });
      continue;
    }
    const missing = missingPaths(o.root, entry);
    if (missing.length) {
      for (const c of mcells) rows.push({ ...baseRow(entry, c.rule), status: 'missing', reason: `missing ${missing[0]}${missing.length > 1 ? ` (+${missing.length - 1})` : ''}` });
      continue;
    }
    const todo: Cell[] = [];
    for (const c of mcells) {
      const done = o.force ? undefined : finished(c);
      if (done && 'cell' in done) {
        rows.push({ ...done.cell, ...publishedFor(entry, c.rule) });
        skipped++;
        continue;
      }
      if (done) log(`${entry.id} · ${c.rule}: the cell in ${o.out} is not reused: ${done.stale}${o.reuseOnly ? ' (left out: --reuse-only)' : ''}`);
      todo.push(c);
    }
    if (o.reuseOnly) notComputed += todo.length;
    if (!todo.length || o.reuseOnly) continue;

    const tag = (rule: string, stage: string) => `[${todoDone + 1}/${todoTotal}] ${entry.id} · ${rule} · ${stage}`;
    let modelRows: ZooRow[];
    try {
      modelRows = await runModel(entry, todo, o, { batchOpt, calibBatches, settingsFor, keepTestOf, shaOf, log, tag, eta, onCellDone: (ms) => (cellTimes.push(ms), todoDone++) });
      ran += modelRows.filter((r) => r.status === 'ok').length;
    } catch (e) {
      const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
      log(`${entry.id}: failed: ${msg}`);
      modelRows = todo.map((c) => ({ ...baseRow(entry, c.rule), status: 'error' as const, reason: msg.slice(0, 300) }));
      todoDone += todo.length;
    }
    rows.push(...modelRows);
  }
  // Keep registry order, then rule order as given.
  const order = new Map(o.entries.map((e, i) => [e.id, i]));
  rows.sort((a, b) => order.get(a.model)! - order.get(b.model)! || o.rules.indexOf(a.rule) - o.rules.indexOf(b.rule));
  return { rows, ran, skipped, notComputed, wallMs: performance.now() - t0 };
}

interface RunCtx {
  batchOpt: number;
  calibBatches: number;
  settingsFor: (cellRule: string) => CellSettings;
  keepTestOf: (e: ZooEntry) => KeepTest;
  /** The model file's SHA-256 (once per model: the reuse check may have computed it). */
  shaOf: (e: ZooEntry, bytes: Uint8Array) => string;
  log: (line: string, transient?: boolean) => void;
  tag: (rule: string, stage: string) => string;
  eta: () => string;
  onCellDone: (ms: number) => void;
}

async function runModel(entry: ZooEntry, todo: Cell[], o: ZooOptions, ctx: RunCtx): Promise<ZooRow[]> {
  const { log, tag } = ctx;
  const file = modelPath(o.root, entry);
  const bytes = new Uint8Array(readFileSync(file));
  const sha256 = ctx.shaOf(entry, bytes);
  const evaluator = makeEvaluator(entry, o.root);
  const keepTest = ctx.keepTestOf(entry);
  const bs = Math.max(1, Math.min(ctx.batchOpt, entry.maxBatch ?? Infinity));
  const cacheBytes = o.cacheBytes ?? DEFAULT_CACHE_BYTES;
  const testDs = spread(openSource(o.root, entry, entry.data.test, o.provided), o.testLimit ?? Infinity);
  const calibAll = openSource(o.root, entry, entry.data.calibration, o.provided);
  const calibSamples = Math.min(calibAll.size, ctx.calibBatches * bs);
  // Sliced before caching so the three rules replay the very same calibration samples from memory.
  const calib: CachedSplit<unknown> = cacheSplit(slice(calibAll, 0, calibSamples), cacheBytes);
  const test: CachedSplit<unknown> = cacheSplit(testDs, cacheBytes);
  const calibSteps = Math.ceil(calibSamples / bs);
  const input = entry.input.name;
  const { data: dataSpec, fixed } = entryInputs(entry, parseModel(bytes, file), file);
  const fixedFor = fixedFeedsByShape(fixed, dataSpec);
  const seed = o.seed ?? (entry.data.test.kind === 'synthetic-text' ? entry.data.test.seed : undefined);
  const dir = join(o.out, safeName(entry.id));
  mkdirSync(dir, { recursive: true });

  // Float metric: once per model (cached on disk for labelled tasks).
  const floatFile = join(dir, 'float.json');
  let float: EvaluateResult & { ms: number };
  const prev = !o.force && !evaluator.needsReference ? readCached<EvaluateResult & { ms: number; sha256: string; test: string; cache?: number }>(floatFile) : undefined;
  if (prev && prev.sha256 === sha256 && prev.samples === test.size && prev.test === test.name && prev.cache === FLOAT_CACHE_VERSION) {
    float = prev;
    log(`${entry.id}: float ${evaluator.metric.name} ${float.value.toFixed(2)}${evaluator.metric.unit === '%' ? '%' : ' dB'} (from ${floatFile})`);
  } else {
    const t = performance.now();
    const s = await createSession(bytes, { mode: 'float' });
    const r = await evaluate(s, test, evaluator, {
      input,
      fixed: fixedFor,
      batchSize: bs,
      onBatch: (n) => log(`${tag('float', 'evaluate')} ${n}/${test.size} · ETA ${ctx.eta()}`, true),
    });
    await s.release();
    float = { ...r, ms: performance.now() - t };
    const { reference: _ref, ...persist } = float;
    writeFileAtomic(floatFile, JSON.stringify({ ...persist, sha256, test: test.name, cache: FLOAT_CACHE_VERSION }, null, 1));
    log(`${entry.id}: float ${evaluator.metric.name} ${float.value.toFixed(2)}${evaluator.metric.unit === '%' ? '%' : ' dB'} on ${r.samples} samples (${(float.ms / 1000).toFixed(1)} s${test.cached ? ', test split cached in memory' : ''})`);
  }

  const rows: ZooRow[] = [];
  for (const c of todo) {
    try {
      rows.push(await runCell(c));
    } catch (e) {
      const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
      log(`${entry.id} · ${c.rule}: failed: ${msg}`);
      rows.push({
        ...baseRow(entry, c.rule),
        status: 'error',
        reason: msg.slice(0, 300),
        metric: evaluator.metric,
        float: float.value,
      });
      ctx.onCellDone(0);
    }
  }
  return rows;

  async function runCell(c: Cell): Promise<ZooRow> {
    const tc = performance.now();
    const { rule: ruleName, recipe } = splitRuleRecipe(c.rule);
    const rule = o.customRules?.get(ruleName) ?? getRule(ruleName);
    // 1. Quantize.
    const tq = performance.now();
    const model = parseModel(bytes, file);
    const calibFeeds = async function* (): AsyncIterable<Feeds> {
      for await (const b of calib.batches(bs, calibSamples)) yield { [input]: b.input, ...fixedFor(b.input.dims) };
    };
    // A recipe is judged by the tensors the analysis monitors (those the model computes; the analysis names the rest).
    const computed = computedNames(model);
    const judged = entry.outputs?.filter((n) => computed.has(n));
    const q = await quantize(model, calibFeeds, {
      rule,
      steps: calibSteps,
      recipe: getRecipe(recipe),
      keepTest,
      ...(o.measureBatches !== undefined ? { measureBatches: o.measureBatches } : {}),
      ...(judged?.length ? { outputs: judged } : {}),
      onBatch: (n) => log(`${tag(c.rule, 'calibrate')} ${n}/${calibSteps} · ETA ${ctx.eta()}`, true),
      // A recipe's passes take minutes each on large models: say each one's result as it ends.
      log: (line) => log(`${entry.id} · ${c.rule}: ${line}`),
    });
    const quantizeMs = performance.now() - tq;
    const cdir = cellDir(o.out, entry.id, c.rule);
    mkdirSync(cdir, { recursive: true });
    if (o.saveModels) saveModel(q.model, join(cdir, 'model.qdq.onnx'));

    // 2. Evaluate the QDQ model (simulate mode: Q/DQ run as written).
    const te = performance.now();
    const qs = await createSession(q.model, { mode: 'simulate' });
    const r = await evaluate(qs, test, evaluator, {
      input,
      fixed: fixedFor,
      batchSize: bs,
      reference: float.reference,
      onBatch: (n) => log(`${tag(c.rule, 'evaluate')} ${n}/${test.size} · ETA ${ctx.eta()}`, true),
    });
    await qs.release();
    const evaluateMs = performance.now() - te;
    const paired = pairedScores(float.perSample, r.perSample);

    // 3. Error analysis against the formatted float model, on (part of) the test split.
    const ta = performance.now();
    const names = valueNames(q.floatModel);
    const monitored = entry.outputs?.filter((n) => names.has(n));
    if (entry.outputs && monitored?.length !== entry.outputs.length) {
      log(`${entry.id}: monitored output(s) ${entry.outputs.filter((n) => !names.has(n)).join(', ')} not in the model; OQE uses ${monitored?.length ? monitored.join(', ') : 'the graph outputs'}`);
    }
    const analyseSamples = Math.min(test.size, o.analyseSamples ?? Infinity);
    const perSample = entry.input.shape.slice(1).reduce((a, b) => a * b, 1);
    const abs = perSample > 100_000 ? Math.min(bs, 4) : bs;
    let analysed = 0;
    const report = await analyse(
      q.floatModel,
      q.model,
      async function* () {
        for await (const b of test.batches(abs, analyseSamples)) yield { [input]: b.input, ...fixedFor(b.input.dims) };
      },
      {
        ...(monitored?.length ? { outputs: monitored } : {}),
        isolated: 'none',
        rule: c.rule,
        toolVersion: PACKAGE_VERSION,
        floatPath: file,
        quantPath: o.saveModels ? join(cdir, 'model.qdq.onnx') : '<memory>',
        dataSource: test.name,
        onProgress: (stage, done, total) => log(`${tag(c.rule, `analyse ${stage}`)} ${done}/${total} · ETA ${ctx.eta()}`, true),
      },
      { plan: q.plan, params: q.params },
    );
    analysed = report.data.samples;
    report.floatModel.sha256 = sha256;
    writeFileAtomic(join(cdir, 'report.json'), JSON.stringify(report, null, 1));
    writeFileAtomic(join(cdir, 'report.html'), await renderAnalysisHtml(report));
    const analyseMs = performance.now() - ta;

    const errors: ErrorSummary = { ...report.summary };
    const provenance: Provenance = {
      modelFile: file,
      modelSha256: sha256,
      rule: c.rule,
      tool: { name: 'onnxquant', version: PACKAGE_VERSION },
      date: new Date().toISOString(),
      node: process.version,
      onnxruntime: ort.env.versions?.common ?? 'unknown',
      platform: `${platform()}-${arch()}`,
      data: {
        calibration: { source: calib.name, samples: calibSamples, batches: q.batches, batchSize: bs },
        test: { source: test.name, samples: r.samples, cachedInMemory: test.cached },
        analysis: { samples: analysed, batchSize: abs },
      },
      ...(seed !== undefined ? { seed } : {}),
      ...(recipe !== 'none' ? { keepTest, ...(keepTest === 'lower' ? { chainConfirmed: true as const } : {}), recipe: getRecipe(recipe) } : {}),
      // A rule from a file is recorded whole: its name alone would not reproduce the cell.
      ...(o.customRules?.has(ruleName) ? { ruleDefinition: rule } : {}),
      settings: ctx.settingsFor(c.rule),
    };
    const row: ZooRow = {
      schema: CELL_SCHEMA,
      model: entry.id,
      suite: entry.suite,
      task: entry.task.kind,
      rule: c.rule,
      status: 'ok',
      metric: evaluator.metric,
      float: float.value,
      quant: r.value,
      ...(paired ? { paired } : {}),
      errors,
      timings: { quantizeMs, evaluateMs, analyseMs, floatEvaluateMs: float.ms },
      ...(q.passes ? { passes: q.passes } : {}),
      report: `${safeName(entry.id)}/${c.rule}/report.html`,
      provenance,
    };
    writeFileAtomic(join(cdir, 'cell.json'), JSON.stringify(row, null, 1));
    const ms = performance.now() - tc;
    ctx.onCellDone(ms);
    log(
      `${entry.id} · ${c.rule}: ${evaluator.metric.name} ${float.value.toFixed(2)} → ${r.value.toFixed(2)}${paired ? ` (Δ ${formatPaired(paired)})` : ''}, AQE ${(errors.aqe * 100).toFixed(2)}% MQE ${(errors.mqe * 100).toFixed(2)}% OQE ${(errors.oqe * 100).toFixed(2)}% ` +
        `(quantize ${(quantizeMs / 1000).toFixed(1)} s, evaluate ${(evaluateMs / 1000).toFixed(1)} s, analyse ${(analyseMs / 1000).toFixed(1)} s)`,
    );
    return { ...row, ...publishedFor(entry, c.rule) };
  }
}
