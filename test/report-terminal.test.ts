import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ANALYSIS_SCHEMA, type AnalysisReport, type ErrorMeasures, type LayerAnalysis } from '../src/analyse/schema.ts';
import { formatPercent, rankLayers, renderAnalysisHtml, renderAnalysisTable } from '../src/report/index.ts';
import { isolatedBySource, sourceLine } from '../src/report/terminal.ts';

const em = (powerRatio: number, extra: Partial<ErrorMeasures> = {}): ErrorMeasures => ({
  powerRatio,
  normRatio: Math.sqrt(powerRatio),
  snrDb: -10 * Math.log10(powerRatio),
  cosine: 1 - powerRatio / 2,
  maxAbs: 0.5,
  ...extra,
});

function layer(depth: number, name: string, op: string, cum: number, extra: Partial<LayerAnalysis> = {}): LayerAnalysis {
  return { name, op, output: `${name}_out`, depth, cumulative: em(cum), ...extra };
}

function report(layers: LayerAnalysis[]): AnalysisReport {
  return {
    schema: ANALYSIS_SCHEMA,
    tool: { name: 'onnxquant', version: '0.1.0' },
    floatModel: { path: 'models/net.onnx', sha256: 'a'.repeat(64) },
    quantModel: { path: 'out/net.q<8>.onnx', sha256: 'b'.repeat(64) },
    rule: 'onnxquant-int8 & "sym"',
    data: { samples: 64, batches: 4, source: 'imagenet-val' },
    layers,
    outputs: [{ name: 'logits', ...em(0.02) }],
    summary: { aqe: 0.0123, mqe: 0.1, oqe: 0.02, aqeNorm: 0.111, mqeNorm: 0.316, oqeNorm: 0.141 },
  };
}

const small = (): LayerAnalysis[] => [
  layer(0, 'stem.conv', 'Conv', 0.001, { clipFraction: 0.015, inputFrom: 'graph input' }),
  layer(1, 'block<1>.relu & "x"', 'Relu', 0.1, { clipFraction: 0 }),
  layer(2, 'head.gemm', 'Gemm', 0.01),
];

/** Layer names in table order (first column of the body rows). */
function rowNames(table: string): string[] {
  return table
    .split('\n')
    .filter((l) => l.startsWith('│'))
    .slice(1)
    .map((l) => l.split('│')[1].trim());
}

test('formatPercent: 3 significant digits, exponent for tiny values, dash when absent', () => {
  assert.equal(formatPercent(0.1234), '12.3%');
  assert.equal(formatPercent(0.001234), '0.123%');
  assert.equal(formatPercent(0.05), '5.00%');
  assert.equal(formatPercent(1.5), '150%');
  assert.equal(formatPercent(1e-7), '1.00e-5%');
  assert.equal(formatPercent(0.0000999999), '0.0100%');
  assert.equal(formatPercent(0.99999), '100%');
  assert.equal(formatPercent(0), '0%');
  assert.equal(formatPercent(undefined), '—');
  assert.equal(formatPercent(Number.NaN), 'NaN');
});

test('table: worst cumulative error first, numbers formatted, no colour when asked', () => {
  const out = renderAnalysisTable(report(small()), { color: false });
  assert.deepEqual(rowNames(out), ['block<1>.relu & "x"', 'head.gemm', 'stem.conv']);
  assert.doesNotMatch(out, /\x1b\[/);
  const relu = out.split('\n').find((l) => l.includes('block<1>'))!;
  const cells = relu.split('│').slice(1, -1).map((c) => c.trim());
  assert.deepEqual(cells, ['block<1>.relu & "x"', 'Relu', '—', '10.0%', '—', '10.0', '0.9500', '0%']);
  const stem = out.split('\n').find((l) => l.includes('stem.conv'))!;
  assert.match(stem, /graph input.*0\.100%.*30\.0.*0\.9995.*1\.50%/);
  assert.match(out, /ranked by cumulative PPQ power ratio/);
  for (const h of ['layer', 'op', 'input from', 'cumulative at layer (%)', 'isolated at outputs (%)', 'SNR dB', 'cosine', 'clip %']) assert.ok(out.includes(h), h);
});

test('table: summary lines carry both ratio definitions', () => {
  const out = renderAnalysisTable(report(small()), { color: false });
  assert.match(out, /AQE 1\.23% {2}MQE 10\.0% {2}OQE 2\.00% {2}\(PPQ power ratio Σ\(A−B\)²\/ΣB²\)/);
  assert.match(out, /AQE 11\.1% {2}MQE 31\.6% {2}OQE 14\.1% {2}\(norm ratio ‖A−B‖\/‖B‖\)/);
});

test('table: isolated error ranks first when present; top and norm metric honoured; colour on demand', () => {
  const ls = small();
  ls[0].isolated = { both: em(0.05) };
  ls[2].isolated = { both: em(0.002) };
  assert.deepEqual(rankLayers(ls).map((l) => l.depth), [0, 2, 1]);
  const out = renderAnalysisTable(report(ls), { color: false, top: 2, metric: 'norm' });
  assert.deepEqual(rowNames(out), ['stem.conv', 'head.gemm']);
  assert.match(out, /worst 2 of 3 layers, ranked by isolated norm ratio/);
  const stem = out.split('\n').find((l) => l.includes('stem.conv'))!;
  assert.match(stem, /3\.16%.*22\.4%/); // √0.001 cumulative, √0.05 isolated
  assert.match(renderAnalysisTable(report(ls), { color: true }), /\x1b\[/);
});

test('table: long names are shortened in the middle', () => {
  const out = renderAnalysisTable(report([layer(0, `encoder.${'x'.repeat(80)}.matmul`, 'MatMul', 0.01)]), { color: false });
  const name = rowNames(out)[0];
  assert.equal(name.length, 48);
  assert.ok(name.startsWith('encoder.') && name.endsWith('.matmul') && name.includes('…'));
});

test('html: report strings are escaped everywhere', async () => {
  const html = await renderAnalysisHtml(report(small()));
  assert.ok(!html.includes('block<1>'), 'raw layer name leaked');
  assert.ok(!html.includes('q<8>'), 'raw model path leaked');
  assert.ok(!html.includes('& "sym"'), 'raw rule leaked');
  assert.ok(html.includes('block&#60;1&#62;.relu &#38; &#34;x&#34;'));
  assert.ok(html.includes('out/net.q&#60;8&#62;.onnx'));
  assert.equal(html.match(/<script\b/g)?.length, 1);
  assert.doesNotMatch(html, /\b(src|href)\s*=/, 'nothing may be fetched');
});

test('html: graceful without isolated errors or histograms', async () => {
  const html = await renderAnalysisHtml(report(small()));
  assert.match(html, /<figure class="plot" id="plot-depth"><svg/);
  assert.match(html, /<figure class="plot" id="plot-clip"><svg/);
  assert.match(html, /isolated error was not measured/);
  assert.match(html, /id="plot-histograms"><p class="empty">No activation histograms in this report\.<\/p>/);
  const depth = html.slice(html.indexOf('id="plot-depth"'), html.indexOf('id="plot-clip"'));
  assert.equal(depth.match(/aria-roledescription="point"/g)?.length, 3);
  assert.doesNotMatch(html, /id="layer-table"[^]*<th[^>]*><button type="button">isolated</);
});

test('isolatedBySource sums the isolated error per feeding op, largest first, and leaves out layers without either', () => {
  const at = (name: string, inputFrom: string | undefined, iso: number | undefined): LayerAnalysis => ({
    ...layer(0, name, 'Conv', 0.5, iso === undefined ? {} : { isolated: { both: em(iso) } }),
    ...(inputFrom === undefined ? {} : { inputFrom }),
  });
  const shares = isolatedBySource([at('a', 'Relu', 0.01), at('b', 'Add', 0.004), at('c', 'Relu', 0.02), at('d', undefined, 0.9), at('e', 'Add', undefined), at('f', 'Add', 0.002)]);
  assert.deepEqual(shares.map((s) => s.source), ['Relu', 'Add']);
  assert.deepEqual(shares.map((s) => s.layers), [2, 2]);
  assert.ok(Math.abs(shares[0].isolated - 0.03) < 1e-15 && Math.abs(shares[1].isolated - 0.006) < 1e-15);
  assert.equal(sourceLine(shares), 'isolated error by the op feeding the layer (sum over its layers): Relu 3.00% (2) · Add 0.600% (2)');
  assert.equal(sourceLine([]), undefined);
});
