/**
 * Renders a realistic report to test-output/report/ and checks it in headless Chromium: plots drawn, no errors,
 * nothing fetched, sorting works. Skips where Debian's chromium is not installed (CI installs it with apt).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { ANALYSIS_SCHEMA, type AnalysisReport, type ErrorMeasures, type Histogram, type LayerAnalysis } from '../src/analyse/schema.ts';
import { renderAnalysisHtml } from '../src/report/index.ts';

const CHROMIUM = '/usr/bin/chromium';
const OUT_DIR = resolve('test-output/report');
const LAYERS = 30;
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) to run the browser test`;

const em = (p: number): ErrorMeasures => ({ powerRatio: p, normRatio: Math.sqrt(p), snrDb: -10 * Math.log10(p), cosine: 1 - p / 2, maxAbs: Math.sqrt(p) * 3 });

/** Deterministic pseudo-random numbers so the screenshot is stable run to run. */
function rng(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function histogram(rand: () => number, i: number): Histogram {
  const bins = 256;
  const lo = -2 - i * 0.3;
  const hi = 4 + i * 0.5;
  const counts = Array.from({ length: bins }, (_, k) => {
    const x = lo + ((k + 0.5) * (hi - lo)) / bins;
    return Math.round(5000 * Math.exp(-Math.abs(x) * 1.6) * (0.8 + 0.4 * rand()));
  });
  return { lo, hi, counts, clipLo: lo * 0.6, clipHi: hi * (0.5 + 0.04 * (i % 8)) };
}

function buildReport(): AnalysisReport {
  const rand = rng(7);
  const ops = ['Conv', 'Relu', 'Add', 'MatMul', 'Gemm', 'GlobalAveragePool'];
  const layers: LayerAnalysis[] = Array.from({ length: LAYERS }, (_, i) => {
    const cum = 1e-4 * 1.3 ** i * (0.7 + 0.6 * rand()); // errors accumulate: spans decades → log axis
    return {
      name: i % 7 === 3 ? `block${i}/attn<q&k> "proj" 'x'` : `layer${i}.${ops[i % ops.length].toLowerCase()}`,
      op: ops[i % ops.length],
      output: `t${i}`,
      depth: i,
      cumulative: em(cum),
      isolated: { both: em(cum * (0.05 + 0.3 * rand())), weightOnly: em(cum * 0.02), activationOnly: em(cum * 0.1) },
      clipFraction: rand() < 0.2 ? 0 : 0.02 * rand() ** 2,
      weight: i % 3 === 1 ? undefined : { min: -1, max: 1.2, channelRangeSpread: 1 + 20 * rand(), outlierFraction: 1e-4 * rand() },
      histogram: histogram(rand, i),
    };
  });
  const cums = layers.map((l) => l.cumulative.powerRatio);
  return {
    schema: ANALYSIS_SCHEMA,
    tool: { name: 'onnxquant', version: '0.1.0' },
    floatModel: { path: '/models/resnet<18>&co.onnx', sha256: '3f'.repeat(32) },
    quantModel: { path: '/out/resnet18.int8.onnx', sha256: 'c0'.repeat(32) },
    rule: 'onnxquant/int8-per-channel',
    data: { samples: 256, batches: 8, source: 'imagenet-val[0:256]' },
    layers,
    outputs: [
      { name: 'logits', ...em(0.012) },
      { name: 'features<pool>', ...em(0.004) },
    ],
    summary: {
      aqe: cums.reduce((a, b) => a + b, 0) / cums.length,
      mqe: Math.max(...cums),
      oqe: 0.012,
      aqeNorm: Math.sqrt(cums.reduce((a, b) => a + b, 0) / cums.length),
      mqeNorm: Math.sqrt(Math.max(...cums)),
      oqeNorm: Math.sqrt(0.012),
    },
  };
}

test('HTML report renders in headless Chromium', { skip, timeout: 120_000 }, async () => {
  await mkdir(OUT_DIR, { recursive: true });
  const file = resolve(OUT_DIR, 'report.html');
  await writeFile(file, await renderAnalysisHtml(buildReport()));
  const url = pathToFileURL(file).href;

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console.${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(url, { waitUntil: 'load' });

    for (const id of ['plot-depth', 'plot-clip', 'plot-histograms']) {
      const fig = await page.$eval(`figure.plot#${id}`, (f) => {
        const svg = f.querySelector('svg');
        const box = svg?.getBoundingClientRect();
        return { svg: Boolean(svg), w: box?.width ?? 0, h: box?.height ?? 0, marks: svg?.querySelectorAll('path, line, rect').length ?? 0 };
      });
      assert.ok(fig.svg, `${id}: no <svg>`);
      assert.ok(fig.w > 100 && fig.h > 100, `${id}: svg is ${fig.w}×${fig.h}`);
      assert.ok(fig.marks > 30, `${id}: only ${fig.marks} marks`);
    }
    // One point per layer and series (cumulative + isolated), one clip bar per layer, two range rules per histogram.
    assert.equal(await page.locator('#plot-depth .mark-symbol.role-mark path').count(), 2 * LAYERS);
    assert.equal(await page.locator('#plot-depth .mark-line.role-mark path').count(), 2);
    assert.equal(await page.locator('#plot-clip .mark-rect.role-mark path').count(), LAYERS);
    assert.equal(await page.locator('#plot-histograms .mark-rule.role-mark line').count(), 12);
    assert.match((await page.locator('#plot-depth svg').textContent()) ?? '', /log scale/);

    // Special characters survive as text, not markup.
    const names = await page.locator('#layer-table td.name').allTextContents();
    assert.ok(names.includes(`block3/attn<q&k> "proj" 'x'`), 'escaped layer name not shown verbatim');
    assert.equal(await page.locator('#output-table tbody tr').count(), 2);

    // Sorting: network order by default; the first click on a numeric header sorts worst-first, the second flips it.
    const col = await page.$$eval('#layer-table thead th', (ths) => ths.findIndex((th) => th.textContent === 'cumulative'));
    const values = (): Promise<number[]> =>
      page.$$eval('#layer-table tbody tr', (rows, c) => rows.map((r) => Number((r.children[c] as HTMLElement).dataset.v)), col);
    const depths = (): Promise<string[]> => page.$$eval('#layer-table tbody tr', (rows) => rows.map((r) => r.children[0].textContent ?? ''));
    const before = await depths();
    assert.deepEqual(before, Array.from({ length: LAYERS }, (_, i) => String(i)));
    const header = page.locator('#layer-table thead th', { hasText: /^cumulative$/ }).locator('button');
    await header.click();
    const desc = await values();
    assert.notDeepEqual(await depths(), before);
    assert.deepEqual(desc, [...desc].sort((a, b) => b - a));
    assert.equal(await page.locator('#layer-table thead th', { hasText: /^cumulative$/ }).getAttribute('aria-sort'), 'descending');
    await header.click();
    const asc = await values();
    assert.deepEqual(asc, [...desc].reverse());

    await page.locator('#layer-table thead th', { hasText: /^#$/ }).locator('button').click(); // back to network order
    assert.deepEqual(await depths(), before);
    await page.screenshot({ path: resolve(OUT_DIR, 'report.png'), fullPage: true });

    assert.deepEqual(problems, []);
    assert.deepEqual(requests, [url], `unexpected requests: ${requests.join(', ')}`);
  } finally {
    await browser.close();
  }
});
