/**
 * The zoo runner end to end on a tiny classifier built here (Gemm 4→3, synthetic data): cells, resumability
 * (a finished cell file is reused), sharding, missing files, the written outputs.
 */
import assert from 'node:assert/strict';
import { create } from '@bufbuild/protobuf';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ModelProtoSchema, TensorProto_DataType as DT, type ValueInfoProto } from 'onnx-buf';
import { writeZooOutputs } from '../src/cli/zoo.ts';
import { makeNode, tensorValueInfo } from '../src/ir/graph.ts';
import { saveModel } from '../src/onnx/model-io.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { buildRule, RULE_NAMES } from '../src/quant/rules.ts';
import { iteratorDataset } from '../src/zoo/data/iterator.ts';
import type { ZooEntry } from '../src/zoo/registry.ts';
import { crossRecipes } from '../src/zoo/rule-recipe.ts';
import { cellFile, parseShard, planCells, runZoo, type ZooOptions, type ZooRun } from '../src/zoo/runner.ts';
import type { ZooRow } from '../src/zoo/results.ts';

const vi = (name: string, dims: (number | string)[]): ValueInfoProto => tensorValueInfo(name, DT.FLOAT, dims);

const W = [1, -0.5, 0.25, 0.1, -0.3, 0.8, -0.2, 0.05, 0.4, 0.2, -0.9, 0.6]; // [3,4]
const B = [0.05, -0.02, 0.01];

function tinyModel() {
  return create(ModelProtoSchema, {
    irVersion: 8n,
    producerName: 'zoo-runner.test',
    opsetImport: [{ domain: '', version: 13n }],
    graph: {
      name: 'tiny',
      node: [makeNode('Gemm', ['x', 'w', 'b'], ['logits'], 'fc', { transB: 1 })],
      input: [vi('x', ['N', 4])],
      output: [vi('logits', ['N', 3])],
      initializer: [makeTensor('w', DT.FLOAT, [3, 4], Float32Array.from(W)), makeTensor('b', DT.FLOAT, [3], Float32Array.from(B))],
    },
  });
}

/** mulberry32 inputs; the label is the float model's own argmax, so float top-1 is 100%. */
function tinyData(name: string, size: number, seed: number) {
  return iteratorDataset(name, size, function* () {
    let a = seed >>> 0;
    const rnd = () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    for (let i = 0; i < size; i++) {
      const x = Float32Array.from({ length: 4 }, () => rnd() * 2 - 1);
      const y = [0, 1, 2].map((c) => B[c] + x.reduce((s, v, k) => s + v * W[c * 4 + k], 0));
      yield { id: String(i), input: { dims: [1, 4], data: x }, label: y.indexOf(Math.max(...y)) };
    }
  });
}

function entry(id: string, file = `${id}.onnx`): ZooEntry {
  return {
    id,
    suite: 'shared',
    file,
    input: { name: 'x', shape: [8, 4] },
    preprocess: {},
    data: { calibration: { kind: 'provided', name: 'calib' }, test: { kind: 'provided', name: 'test' } },
    task: { kind: 'classification', numClasses: 3 },
    published: { 'onnxquant-int8-perchannel': [{ source: 'made up', float: 100, quant: 99 }] },
  };
}

const root = mkdtempSync(join(tmpdir(), 'zoo-runner-'));
after(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, 'Model'));
saveModel(tinyModel(), join(root, 'Model', 'tiny.onnx'));
saveModel(tinyModel(), join(root, 'Model', 'tiny2.onnx'));
const entries = [entry('tiny'), entry('tiny2')];
const base = (out: string): ZooOptions => ({
  root,
  entries,
  rules: RULE_NAMES,
  out,
  calibBatches: 2,
  batch: 8,
  log: () => {},
  provided: { calib: tinyData('calib', 40, 1), test: tinyData('test', 50, 2) },
});

test('shards take every n-th cell', () => {
  assert.deepEqual(parseShard('2/3'), { index: 2, count: 3 });
  assert.throws(() => parseShard('0/3'), /1 ≤ i ≤ n/);
  assert.throws(() => parseShard('x'), /i\/n/);
  const cells = planCells(entries, RULE_NAMES, { index: 1, count: 2 });
  assert.deepEqual(cells.map((c) => `${c.entry.id}:${c.rule}`), ['tiny:onnxquant-int8-perchannel', 'tiny:onnxquant-fp8', 'tiny2:onnxquant-int8-pot']);
});

test('--recipes crosses the rules without a recipe of their own; none is the plain rule', () => {
  assert.deepEqual(crossRecipes(['a', 'b+best'], ['none', 'best', 'range-search']), ['a', 'a+best', 'a+range-search', 'b+best']);
  assert.deepEqual(crossRecipes(['a', 'a+best'], ['best']), ['a+best']);
  assert.deepEqual(crossRecipes(['a'], undefined), ['a']);
});

test('runs every cell, writes cell files and reports, and skips finished cells on a rerun', async () => {
  const out = join(root, 'out-full');
  const run = await runZoo(base(out));
  assert.equal(run.ran, 6);
  assert.equal(run.rows.length, 6);
  for (const r of run.rows) {
    assert.equal(r.status, 'ok', `${r.model} ${r.rule}: ${r.reason}`);
    assert.equal(r.float, 100);
    assert.ok(Number.isFinite(r.quant) && r.quant! >= 90, `${r.rule}: quant ${r.quant}`);
    // Float scores every sample 100 (its own argmax is the label), so each difference is 0 or −100: with k misses of
    // n, the mean is −100·k/n and its standard error 100·√(k(n−k)/(n−1)/n²) (the paired test on per-sample scores).
    const n = 50;
    const k = Math.round((n * (100 - r.quant!)) / 100);
    assert.equal(r.paired!.samples, n);
    assert.ok(Math.abs(r.paired!.delta - (-100 * k) / n) < 1e-9, `${r.rule}: Δ ${r.paired!.delta}`);
    assert.ok(Math.abs(r.paired!.se - 100 * Math.sqrt((k * (n - k)) / (n - 1) / n ** 2)) < 1e-9, `${r.rule}: se ${r.paired!.se}`);
    for (const v of Object.values(r.errors!)) assert.ok(Number.isFinite(v) && v >= 0);
    assert.ok(existsSync(cellFile(out, r.model, r.rule)));
    assert.ok(existsSync(join(out, r.report!)) && existsSync(join(out, r.model, r.rule, 'report.json')));
    const p = r.provenance!;
    assert.match(p.modelSha256, /^[0-9a-f]{64}$/);
    assert.deepEqual([p.data.calibration.samples, p.data.calibration.batches, p.data.test.samples, p.data.analysis.samples], [16, 2, 50, 50]);
    assert.equal(p.rule, r.rule);
    assert.ok(p.node.startsWith('v') && p.onnxruntime && p.tool.version && p.date);
  }
  assert.ok(run.rows.some((r) => r.paired!.se > 0), 'some cell misses a sample (FP8: 1 of 50), so the spread is tested too');
  assert.deepEqual(run.rows.find((r) => r.model === 'tiny' && r.rule === 'onnxquant-int8-perchannel')!.published, [{ source: 'made up', float: 100, quant: 99 }]);
  writeZooOutputs(out, run.rows, 'tiny zoo');
  for (const f of ['results.json', 'results.csv', 'results.md', 'index.html']) assert.ok(existsSync(join(out, f)), f);
  assert.equal(readFileSync(join(out, 'results.csv'), 'utf8').trimEnd().split('\n').length, 7);

  const again = await runZoo(base(out));
  assert.deepEqual([again.ran, again.skipped], [0, 6]);
  assert.deepEqual(again.rows.map((r) => r.quant), run.rows.map((r) => r.quant));

  rmSync(cellFile(out, 'tiny2', 'onnxquant-fp8'));
  // --reuse-only: the five cells on disk, the missing one left out and not computed.
  const reused = await runZoo({ ...base(out), reuseOnly: true });
  assert.deepEqual([reused.ran, reused.skipped, reused.notComputed, reused.rows.length], [0, 5, 1, 5]);
  assert.ok(!existsSync(cellFile(out, 'tiny2', 'onnxquant-fp8')));
  assert.ok(!reused.rows.some((r) => r.model === 'tiny2' && r.rule === 'onnxquant-fp8'));
  // A damaged float cache (an edited or foreign file) is recomputed, not a crash.
  writeFileSync(join(out, 'tiny2', 'float.json'), '{ "value": 10');
  const partial = await runZoo(base(out));
  assert.deepEqual([partial.ran, partial.skipped], [1, 5]);
  assert.equal(partial.rows.find((r) => r.model === 'tiny2' && r.rule === 'onnxquant-fp8')!.float, 100);
  const cached = () => JSON.parse(readFileSync(join(out, 'tiny2', 'float.json'), 'utf8')) as { value: number; perSample?: number[]; cache?: number };
  assert.equal(cached().value, 100);
  // The cache keeps the per-sample scores; one in the older format (without them) is computed again, so the next
  // cell still gets its paired comparison, and a current one is used as it is.
  assert.deepEqual([cached().cache, cached().perSample?.length], [2, 50]);
  const lines: string[] = [];
  const { cache: _c, perSample: _p, ...older } = cached();
  writeFileSync(join(out, 'tiny2', 'float.json'), JSON.stringify(older));
  rmSync(cellFile(out, 'tiny2', 'onnxquant-fp8'));
  const again2 = await runZoo({ ...base(out), log: (l) => lines.push(l) });
  assert.ok(again2.rows.find((r) => r.model === 'tiny2' && r.rule === 'onnxquant-fp8')!.paired, 'paired after an older cache');
  assert.ok(!lines.some((l) => l.startsWith('tiny2: float') && l.includes('(from ')), 'older cache not used');
  rmSync(cellFile(out, 'tiny2', 'onnxquant-fp8'));
  lines.length = 0;
  await runZoo({ ...base(out), log: (l) => lines.push(l) });
  assert.ok(lines.some((l) => l.startsWith('tiny2: float') && l.includes('(from ')), 'current cache used');
  const forced = await runZoo({ ...base(out), entries: [entries[0]], rules: ['onnxquant-int8-pot'], force: true });
  assert.deepEqual([forced.ran, forced.skipped], [1, 0]);
});

test('PPQ published rows sit on the plain cell only, whether a cell is computed or read back', async () => {
  const out = join(root, 'out-published');
  const o = { ...base(out), entries: [entries[0]], rules: ['onnxquant-int8-perchannel', 'onnxquant-int8-perchannel+bias-correction'] };
  const pub = (rows: ZooRun['rows']) => rows.map((r) => [r.rule, r.published?.length ?? 0]);
  const expected = [['onnxquant-int8-perchannel', 1], ['onnxquant-int8-perchannel+bias-correction', 0]];
  const first = await runZoo(o);
  assert.equal(first.ran, 2);
  assert.deepEqual(pub(first.rows), expected);
  const again = await runZoo(o);
  assert.equal(again.skipped, 2);
  assert.deepEqual(pub(again.rows), expected);
});

test('two shards cover all cells once; a final unsharded run only collects', async () => {
  const out = join(root, 'out-shards');
  const s1 = await runZoo({ ...base(out), shard: { index: 1, count: 2 } });
  const s2 = await runZoo({ ...base(out), shard: { index: 2, count: 2 } });
  assert.deepEqual([s1.ran, s2.ran], [3, 3]);
  const keys = [...s1.rows, ...s2.rows].map((r) => `${r.model}:${r.rule}`).sort();
  assert.equal(new Set(keys).size, 6);
  const all = await runZoo(base(out));
  assert.deepEqual([all.ran, all.skipped, all.rows.length], [0, 6, 6]);
});

test('an entry whose file is absent is reported as missing, not an error', async () => {
  const run = await runZoo({ ...base(join(root, 'out-missing')), entries: [entry('ghost')], rules: ['onnxquant-int8-pot'] });
  assert.equal(run.rows.length, 1);
  assert.equal(run.rows[0].status, 'missing');
  assert.match(run.rows[0].reason!, /ghost\.onnx/);
  const skipped = await runZoo({ ...base(join(root, 'out-missing')), entries: [{ ...entry('tiny'), skip: 'no data' }], rules: ['onnxquant-int8-pot'] });
  assert.deepEqual([skipped.rows[0].status, skipped.rows[0].reason], ['skipped', 'no data']);
});

test('--test-limit spreads the kept samples over the whole split', async () => {
  const { spread } = await import('../src/zoo/datasets.ts');
  const ds = spread(tinyData('t', 10, 3), 4);
  const ids: string[] = [];
  for await (const s of ds.samples()) ids.push(s.id);
  assert.deepEqual([ds.size, ids], [4, ['0', '2', '5', '7']]);
  assert.equal(spread(tinyData('t', 3, 3), 10).size, 3);
});

test('a rule from a file is a cell like any rule: named by its "name", recorded whole in the provenance, and it quantizes', async () => {
  const out = join(root, 'out-custom');
  const int4 = buildRule({ name: 'int4-weights', bits: 4, activationObserver: 'minmax' });
  const run = await runZoo({ ...base(out), entries: [entries[0]], rules: ['int4-weights', 'onnxquant-int8-perchannel'], customRules: new Map([['int4-weights', int4]]) });
  assert.equal(run.ran, 2);
  const cell = JSON.parse(readFileSync(cellFile(out, 'tiny', 'int4-weights'), 'utf8'));
  assert.equal(cell.status, 'ok', cell.reason);
  assert.deepEqual(cell.provenance.ruleDefinition, JSON.parse(JSON.stringify(int4)));
  assert.equal(JSON.parse(readFileSync(cellFile(out, 'tiny', 'onnxquant-int8-perchannel'), 'utf8')).provenance.ruleDefinition, undefined);
  // 4 bits err more than 8 on the same data.
  const [c4, c8] = run.rows;
  assert.ok(c4.errors!.oqe > c8.errors!.oqe, `${c4.errors!.oqe} vs ${c8.errors!.oqe}`);
  await assert.rejects(runZoo({ ...base(out), entries: [entries[0]], rules: ['int4-weights'] }), /unknown rule/);
  // The same name defined otherwise since (a rule file edited): its cell is computed again; the OnnxQuant one is not.
  const lines: string[] = [];
  const int3 = buildRule({ name: 'int4-weights', bits: 3, activationObserver: 'minmax' });
  const edited = await runZoo({ ...base(out), entries: [entries[0]], rules: ['int4-weights', 'onnxquant-int8-perchannel'], customRules: new Map([['int4-weights', int3]]), log: (l) => lines.push(l) });
  assert.deepEqual([edited.ran, edited.skipped], [1, 1]);
  assert.ok(lines.some((l) => l === `tiny · int4-weights: the cell in ${out} is not reused: its rule was defined differently then`), lines.join('\n'));
});

test('a finished cell is reused only while it answers the cell asked for: the model file, the recipe\'s passes and keep test, the run options', async () => {
  const out = join(root, 'out-stale');
  const file = join(root, 'Model', 'tiny3.onnx');
  saveModel(tinyModel(), file);
  const lines: string[] = [];
  const said = (re: RegExp) => assert.ok(lines.some((l) => re.test(l)), `a line matching ${re} in:\n${lines.join('\n')}`);
  const o: ZooOptions = { ...base(out), entries: [entry('tiny3')], rules: ['onnxquant-int8-pot', 'onnxquant-int8-pot+bias-correction'], log: (l) => lines.push(l) };
  const counts = async (opts: ZooOptions) => {
    lines.length = 0;
    const r = await runZoo(opts);
    return [r.ran, r.skipped];
  };
  const recipeCell = cellFile(out, 'tiny3', 'onnxquant-int8-pot+bias-correction');
  const edit = (f: (c: ZooRow) => void) => {
    const c = JSON.parse(readFileSync(recipeCell, 'utf8')) as ZooRow;
    f(c);
    writeFileSync(recipeCell, JSON.stringify(c));
  };
  assert.deepEqual(await counts(o), [2, 0]);
  const recorded = (JSON.parse(readFileSync(recipeCell, 'utf8')) as ZooRow).provenance!;
  assert.deepEqual([recorded.recipe, recorded.settings], [[{ pass: 'bias-correction' }], { calibBatches: 2, batch: 8, testLimit: null, analyseSamples: null, measureBatches: null }]);
  assert.deepEqual(await counts(o), [0, 2]);
  // The measuring batches shape the recipe's cell only: the plain rule's is reused.
  assert.deepEqual(await counts({ ...o, measureBatches: 1 }), [1, 1]);
  said(/^tiny3 · onnxquant-int8-pot\+bias-correction: the cell in .* is not reused: it was run with --measure-batches \(none\) \(now 1\)$/);
  const measured = (JSON.parse(readFileSync(recipeCell, 'utf8')) as ZooRow).provenance!.settings!;
  assert.equal(measured.measureBatches, 1, 'the recipe cell records its measuring batches');
  assert.deepEqual(await counts(o), [1, 1]);
  // A cell written before the field was recorded was run with the default: reused.
  edit((c) => delete c.provenance!.settings!.measureBatches);
  assert.deepEqual(await counts(o), [0, 2]);
  // The recipe judged by another keep test than the task's (classification: 'mean'): that cell only, both ways.
  assert.equal((JSON.parse(readFileSync(recipeCell, 'utf8')) as ZooRow).provenance!.keepTest, 'mean');
  assert.deepEqual(await counts({ ...o, keepTest: 'mean-or-log' }), [1, 1]);
  said(/^tiny3 · onnxquant-int8-pot\+bias-correction: the cell in .* is not reused: its recipe's passes were judged by the 'mean' keep test then \(now 'mean-or-log'\)$/);
  assert.equal((JSON.parse(readFileSync(recipeCell, 'utf8')) as ZooRow).provenance!.keepTest, 'mean-or-log', 'the cell records the test it was judged by');
  assert.deepEqual(await counts(o), [1, 1]);
  said(/not reused: its recipe's passes were judged by the 'mean-or-log' keep test then \(now 'mean'\)$/);
  // A recipe cell from before the keep test was recorded was judged by the mean test, the only one then.
  edit((c) => delete c.provenance!.keepTest);
  assert.deepEqual(await counts(o), [0, 2]);
  assert.deepEqual(await counts({ ...o, keepTest: 'mean-or-log' }), [1, 1]);
  assert.deepEqual(await counts(o), [1, 1]);
  // 'lower' changed meaning when its recipes began to confirm their chain: a 'lower' cell that does not record the
  // confirmation kept every pass whose mean fell, and is computed again; one that records it is reused.
  assert.deepEqual(await counts({ ...o, keepTest: 'lower' }), [1, 1]);
  assert.equal((JSON.parse(readFileSync(recipeCell, 'utf8')) as ZooRow).provenance!.chainConfirmed, true, "a 'lower' cell records the confirmation");
  assert.deepEqual(await counts({ ...o, keepTest: 'lower' }), [0, 2]);
  edit((c) => delete c.provenance!.chainConfirmed);
  assert.deepEqual(await counts({ ...o, keepTest: 'lower' }), [1, 1]);
  said(/not reused: its recipe's passes were judged by the 'lower' keep test before recipes under it confirmed their chain$/);
  assert.deepEqual(await counts(o), [1, 1]);
  assert.equal((JSON.parse(readFileSync(recipeCell, 'utf8')) as ZooRow).provenance!.chainConfirmed, undefined, "only a 'lower' cell records it");
  // Another run option: both cells computed again, and the log says why.
  assert.deepEqual(await counts({ ...o, analyseSamples: 20 }), [2, 0]);
  said(/^tiny3 · onnxquant-int8-pot: the cell in .* is not reused: it was run with --analyse-samples \(none\) \(now 20\)$/);
  assert.deepEqual(await counts(o), [2, 0]);
  // A recipe whose definition has changed since the cell was computed (as `best` did): that cell only.
  edit((c) => (c.provenance!.recipe = [{ pass: 'range-search' }]));
  assert.deepEqual(await counts(o), [1, 1]);
  said(/onnxquant-int8-pot\+bias-correction: .* not reused: its recipe had other passes then$/);
  // A cell from before the chain was recorded is judged by the names of the passes it reports.
  edit((c) => delete c.provenance!.recipe);
  assert.deepEqual(await counts(o), [0, 2]);
  edit((c) => {
    delete c.provenance!.recipe;
    c.passes![0].pass = 'equalization';
  });
  assert.deepEqual(await counts(o), [1, 1]);
  // --reuse-only computes nothing: a cell that does not answer is left out, and the log says why.
  edit((c) => (c.provenance!.recipe = []));
  const only = await runZoo({ ...o, reuseOnly: true });
  assert.deepEqual([only.ran, only.skipped, only.notComputed], [0, 1, 1]);
  said(/not reused: its recipe had other passes then \(left out: --reuse-only\)$/);
  // Another model file under the same name: every cell computed again.
  const changed = tinyModel();
  changed.graph!.initializer[1] = makeTensor('b', DT.FLOAT, [3], Float32Array.from([0.06, -0.02, 0.01]));
  saveModel(changed, file);
  assert.deepEqual(await counts(o), [2, 0]);
  said(/^tiny3 · onnxquant-int8-pot: .* not reused: the model file has changed since$/);
});
