/** Zoo table rendering from hand-built cells: Markdown, CSV, JSON, terminal, HTML, with the documented marks. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  accuracyDropped, CELL_SCHEMA, CSV_COLUMNS, DROP_LIMIT, pairedScores, POOR_LIMITS, poorErrors, renderCsv, renderHtmlIndex, renderJson, renderMarkdown, renderTerminal, rowMarks, type ZooRow,
} from '../src/zoo/results.ts';

const errors = (aqe: number, mqe: number, oqe: number) => ({ aqe, mqe, oqe, aqeNorm: Math.sqrt(aqe), mqeNorm: Math.sqrt(mqe), oqeNorm: Math.sqrt(oqe) });
const row = (over: Partial<ZooRow>): ZooRow => ({
  schema: CELL_SCHEMA,
  model: 'm',
  suite: 'shared',
  task: 'classification',
  rule: 'onnxquant-int8-perchannel',
  status: 'ok',
  metric: { name: 'top-1', unit: '%' },
  timings: { quantizeMs: 1500, evaluateMs: 2500, analyseMs: 100, floatEvaluateMs: 2000 },
  ...over,
});

const good = row({ model: 'good', float: 80, quant: 79.5, errors: errors(0.02, 0.3, 0.05), paired: { delta: -0.5, se: 0.2149, samples: 1000 } });
const dropped = row({ model: 'dropped', float: 80, quant: 78.9, errors: errors(0.02, 0.1, 0.05) });
const poor = row({ model: 'poor', rule: 'onnxquant-int8-pot', float: 80, quant: 80, errors: errors(0.12, 0.6, 0.02) });
const sr = row({
  model: 'sr', task: 'super-resolution', metric: { name: 'PSNR', unit: 'dB' }, float: 27.76, quant: 26.7, errors: errors(0.01, 0.02, 0.2),
  published: [{ source: 'PPQ QuantZoo README', float: 27.76, quant: 27.18, aqe: 0.0489, mqe: 0.298, oqe: 0.0013 }],
});
const missing = row({ model: 'gone', status: 'missing', reason: 'missing /x/Model/gone.onnx', metric: undefined, timings: undefined });
const rows = [good, dropped, poor, sr, missing];

test('marks follow the documented thresholds', () => {
  assert.equal(DROP_LIMIT, 1);
  assert.deepEqual(POOR_LIMITS, { aqe: 0.1, mqe: 0.5, oqe: 0.1 });
  assert.deepEqual(rowMarks(good), { drop: false, poor: false });
  assert.deepEqual(rowMarks(dropped), { drop: true, poor: false }); // 1.1 points
  assert.deepEqual(rowMarks(poor), { drop: false, poor: true }); // AQE 12%
  assert.deepEqual(rowMarks(sr), { drop: true, poor: true }); // 1.06 dB, OQE 20%
  assert.equal(accuracyDropped(80, 79), false); // exactly 1 point is not "more than"
  assert.equal(accuracyDropped(80, NaN), true);
  assert.equal(poorErrors({ aqe: 0.1, oqe: 0.1 }), false);
});

test('Markdown: one table per rule, ❗ on the model, 💔 on each poor value, published rows, links', () => {
  const md = renderMarkdown(rows, { title: 'T' });
  assert.match(md, /^## T/);
  assert.ok(md.indexOf('### onnxquant-int8-perchannel') < md.indexOf('### onnxquant-int8-pot'));
  const line = (name: string) => md.split('\n').find((l) => l.startsWith(`| ${name}`) || l.startsWith(`| ❗${name}`))!;
  assert.match(line('good'), /^\| good \| classification \(top-1\) \| 80\.00% \| 79\.50% \| −0\.50 ± 0\.21 \| 2\.00% \| 30\.00% \| 5\.00% \|/);
  assert.match(line('dropped'), /^\| ❗dropped \| classification \(top-1\) \| 80\.00% \| 78\.90% \| — \|/);
  assert.match(line('poor'), /\| 12\.00%💔 \| 60\.00%💔 \| 2\.00% \|/);
  assert.match(line('sr'), /^\| ❗sr \| super-resolution \(PSNR\) \| 27\.76 dB \| 26\.70 dB \|.*\| 20\.00%💔 \|/);
  assert.match(md, /\| ↳ PPQ QuantZoo README \| \| 27\.76 dB \| 27\.18 dB \| \| 4\.89% \| 29\.80% \| 0\.13% \|/);
  assert.match(md, /### Not run\n\n- gone \(classification\): missing — missing \/x\/Model\/gone\.onnx/);
  assert.match(md, /Legend: ❗: the quantized metric is more than 1 point/);
  const linked = renderMarkdown([{ ...good, report: 'good/onnxquant-int8-perchannel/report.html' }]);
  assert.match(linked, /\| \[good\]\(good\/onnxquant-int8-perchannel\/report\.html\) \|/);
});

test('CSV: header and one line per row, marks as 0/1, published columns', () => {
  const csv = renderCsv(rows).trimEnd().split('\n');
  assert.equal(csv[0], CSV_COLUMNS.join(','));
  assert.equal(csv.length, rows.length + 1);
  const col = (line: string, name: (typeof CSV_COLUMNS)[number]) => line.split(',')[CSV_COLUMNS.indexOf(name)];
  assert.equal(col(csv[1], 'model'), 'good');
  assert.equal(col(csv[1], 'aqe'), '0.02');
  assert.equal(col(csv[2], 'drop_mark'), '1');
  assert.equal(col(csv[3], 'poor_mark'), '1');
  assert.equal(col(csv[4], 'ppq_quant'), '27.18');
  assert.equal(col(csv[4], 'quantize_s'), '1.5');
  assert.equal(col(csv[5], 'status'), 'missing');
  assert.equal(col(csv[5], 'drop_mark'), '');
  assert.deepEqual([col(csv[1], 'delta'), col(csv[1], 'delta_se'), col(csv[2], 'delta')], ['-0.5', '0.2149', '']);
});

test('pairedScores: quant − float per sample, its mean and standard error (hand-computed)', () => {
  // d = [0, +100, −100, −100]: mean −25; Σ(d − mean)² = 625 + 15625 + 5625 + 5625 = 27500; se = √(27500 / 3 / 4) = 47.87.
  const p = pairedScores([100, 0, 100, 100], [100, 100, 0, 0])!;
  assert.equal(p.delta, -25);
  assert.ok(Math.abs(p.se - Math.sqrt(27500 / 12)) < 1e-12, String(p.se));
  assert.equal(p.samples, 4);
  // Identical scores: no difference and no spread; mismatched or missing scores: no comparison.
  assert.deepEqual(pairedScores([100, 0], [100, 0]), { delta: 0, se: 0, samples: 2 });
  assert.equal(pairedScores([100, 0], [100]), undefined);
  assert.equal(pairedScores(undefined, [100]), undefined);
});

test('JSON: rows with their marks; terminal and HTML render every row', () => {
  const j = JSON.parse(renderJson(rows)) as { schema: string; rows: (ZooRow & { marks: { drop: boolean; poor: boolean } })[] };
  assert.equal(j.schema, 'onnxquant.zoo/1');
  assert.deepEqual(j.rows.map((r) => [r.model, r.marks.drop, r.marks.poor]), [['good', false, false], ['dropped', true, false], ['poor', false, true], ['sr', true, true], ['gone', false, false]]);
  const term = renderTerminal(rows);
  for (const name of ['good', '❗dropped', 'poor', '❗sr', 'gone', 'PPQ published']) assert.ok(term.includes(name), name);
  const html = renderHtmlIndex([{ ...good, report: 'good/r/report.html' }, missing], { title: 'Zoo <1>', generated: 'now' });
  assert.match(html, /<a href="good\/r\/report\.html">good<\/a>/);
  assert.ok(!html.includes("Zoo <1>"), "title escaped");
});

test('Markdown: rules × recipes, one table per base rule, a column per recipe, the passes each recipe kept', () => {
  const pass = (name: string, before: number, after: number, kept: boolean) => ({ pass: name, before, after, kept, se: 0, ms: 1 });
  const cells = [
    row({ model: 'a', float: 80, quant: 70, timings: { quantizeMs: 2000, evaluateMs: 1, analyseMs: 1, floatEvaluateMs: 1 }, published: [{ source: 'PPQ', float: 80, quant: 60 }] }),
    row({ model: 'a', rule: 'onnxquant-int8-perchannel+best', float: 80, quant: 79.5, timings: { quantizeMs: 60000, evaluateMs: 1, analyseMs: 1, floatEvaluateMs: 1 }, passes: [pass('equalization', 0.1, 0.2, false), pass('weight-rounding', 0.1, 0.02, true)] }),
    row({ model: 'b', rule: 'onnxquant-int8-perchannel+range-search', float: 50, quant: 48.5 }),
    row({ model: 'b', float: 50, quant: 48 }),
    row({ model: 'a', rule: 'onnxquant-fp8+best', float: 80, quant: 75 }),
  ];
  const md = renderMarkdown(cells);
  const pc = md.slice(md.indexOf('### onnxquant-int8-perchannel: rules × recipes'), md.indexOf('### onnxquant-fp8: rules × recipes'));
  assert.match(pc, /\| Model \(metric\) \| Float \| plain \| best \| range-search \| PPQ published \|/);
  assert.match(pc, /\| a \(top-1\) \| 80\.00% \| ❗70\.00% \(2\.0 s\) \| 79\.50% \(60\.0 s\) \| — \| 60\.00% \(PPQ\) \|/);
  assert.match(pc, /\| b \(top-1\) \| 50\.00% \| ❗48\.00% \(1\.5 s\) \| — \| ❗48\.50% \(1\.5 s\) \| — \|/);
  assert.match(pc, /- a best: output error on calibration 10\.00% → 2\.00%; kept: weight-rounding/);
  // The FP8 table has no plain cell for 'a': a dash, not a number.
  assert.match(md, /### onnxquant-fp8: rules × recipes[\s\S]*\| a \(top-1\) \| 80\.00% \| — \| ❗75\.00% \(1\.5 s\) \| — \|/);
  // Plain-only sweeps get no recipe section.
  assert.doesNotMatch(renderMarkdown(rows), /rules × recipes/);
});
