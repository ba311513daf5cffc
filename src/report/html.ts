/**
 * Self-contained HTML rendering of an AnalysisReport. Plots are rendered to SVG at build time (vega-lite → vega,
 * no canvas), the only script is a dependency-free table sorter, and a CSP forbids any fetch, so the page works
 * offline and from an archived CI artefact.
 */
import * as vega from 'vega';
import { compile, type Config, type TopLevelSpec } from 'vega-lite';
import type { AnalysisReport, ErrorMeasures, LayerAnalysis } from '../analyse/schema.ts';
import {
  METRIC_LABEL,
  formatCosine,
  formatDb,
  formatNumber,
  formatPercent,
  isolatedBySource,
  rankLayers,
  sourceLine,
} from './terminal.ts';

const FONT = 'system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif';
const COLORS = { cumulative: '#4c78a8', isolated: '#f58518', clip: '#e45756', kept: '#72b7b2', rule: '#333' };
const PLOT_WIDTH = 1060;
/** Worst layers whose activation histograms are drawn. */
const HISTOGRAMS = 6;
/** Histograms are re-binned to at most this many bars: finer bins only add SVG weight at this size. */
const MAX_BARS = 120;

const VEGA_CONFIG: Config = {
  font: FONT,
  background: 'white',
  view: { stroke: null },
  axis: { labelColor: '#444', titleColor: '#222', gridColor: '#e8e8e8', domainColor: '#999', tickColor: '#999', titleFontWeight: 600, minExtent: 44 },
  legend: { orient: 'top', labelColor: '#333', titleColor: '#222' },
  title: { fontSize: 12, fontWeight: 600, color: '#222', anchor: 'start', subtitleColor: '#666', subtitleFontSize: 11 },
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export async function renderAnalysisHtml(r: AnalysisReport): Promise<string> {
  const ranked = rankLayers(r.layers);
  const title = `onnxquant analysis — ${baseName(r.quantModel.path)}`;
  const body = [
    header(r),
    summary(r),
    await depthFigure(r),
    await clipFigure(r),
    await histogramFigure(ranked),
    layerTable(r),
    outputTable(r),
  ].join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="generator" content="${escapeHtml(`${r.tool.name} ${r.tool.version}`)}">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style></head>
<body><main>
${body}
</main>
<script>${SORT_SCRIPT}</script>
</body></html>
`;
}

function baseName(p: string): string {
  return p.split(/[\\/]/).pop() || p;
}

function header(r: AnalysisReport): string {
  const model = (m: { path: string; sha256: string }): string =>
    `<code>${escapeHtml(m.path)}</code> <span class="hash" title="sha256 ${escapeHtml(m.sha256)}">${escapeHtml(m.sha256.slice(0, 12))}</span>`;
  const d = r.data;
  const rows: [string, string][] = [
    ['Float model', model(r.floatModel)],
    ['Quantized model', model(r.quantModel)],
    ['Rule', r.rule ? `<code>${escapeHtml(r.rule)}</code>` : '<span class="muted">not recorded</span>'],
    ['Data', `${d.samples} samples in ${d.batches} batches from <code>${escapeHtml(d.source)}</code>`],
  ];
  return `<header>
<h1>Quantization analysis <span class="muted">${escapeHtml(baseName(r.quantModel.path))}</span></h1>
<p class="tool">${escapeHtml(`${r.tool.name} ${r.tool.version}`)} · <code>${escapeHtml(r.schema)}</code> · ${r.layers.length} layers · ${r.outputs.length} outputs</p>
<dl class="meta">${rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl>
</header>`;
}

function summary(r: AnalysisReport): string {
  const s = r.summary;
  const card = (name: string, power: number, norm: number, what: string): string =>
    `<div class="card" id="metric-${name.toLowerCase()}"><div class="name">${name}</div>` +
    `<div class="value" data-v="${power}">${formatPercent(power)}</div>` +
    `<div class="norm">norm ratio <b>${formatPercent(norm)}</b></div><div class="what">${what}</div></div>`;
  return `<section id="summary"><h2>Summary</h2>
<div class="cards">
${card('AQE', s.aqe, s.aqeNorm, 'mean over layers of the cumulative error')}
${card('MQE', s.mqe, s.mqeNorm, 'max over layers of the cumulative error')}
${card('OQE', s.oqe, s.oqeNorm, 'max over the monitored graph outputs')}
</div>
<dl class="defs">
<dt>${escapeHtml(METRIC_LABEL.power)}</dt><dd>The headline figures above. PPQ's graphwise error, per sample then averaged; the published OnnxQuant AQE/MQE use it. A = quantized-network tensor, B = float-network tensor.</dd>
<dt>${escapeHtml(METRIC_LABEL.norm)}</dt><dd>The OnnxQuant README's relative error over the whole test set (≈ √power ratio).</dd>
<dt>cumulative / isolated</dt><dd>Cumulative: a layer's output with the whole network quantized (errors accumulate). Isolated: error at the graph outputs with only that layer quantized.</dd>
<dt>SNR dB, cosine, clip</dt><dd>10·log10(ΣB²/Σ(A−B)²); (A·B)/(‖A‖‖B‖); fraction of the layer's activation input outside the quantization range.</dd>
</dl>
</section>`;
}

/** Vega-lite → vega → SVG string; hover titles are added because a static SVG has no vega tooltip handler. */
async function toSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec, { config: VEGA_CONFIG }).spec), { renderer: 'none' });
  try {
    const svg = await view.toSVG();
    // Vega has already XML-escaped aria-label, so it can be reused verbatim as <title> text.
    return svg.replace(
      /<path aria-label="([^"]*)" role="graphics-symbol"([^>]*?)\/>/g,
      '<path aria-label="$1" role="graphics-symbol"$2><title>$1</title></path>',
    );
  } finally {
    view.finalize();
  }
}

function figure(id: string, heading: string, content: string, caption: string): string {
  return `<section><h2>${heading}</h2><figure class="plot" id="${id}">${content}<figcaption>${caption}</figcaption></figure></section>`;
}

function empty(text: string): string {
  return `<p class="empty">${escapeHtml(text)}</p>`;
}

/** Shared by the depth and clip plots so their x axes line up. */
const depthDomain = (r: AnalysisReport): [number, number] => [-0.5, r.layers.reduce((m, l) => Math.max(m, l.depth), 0) + 0.5];

async function depthFigure(r: AnalysisReport): Promise<string> {
  type Point = { depth: number; series: string; error: number; label: string };
  const points: Point[] = [];
  const add = (l: LayerAnalysis, series: string, m: ErrorMeasures): void => {
    points.push({ depth: l.depth, series, error: m.powerRatio * 100, label: `#${l.depth} ${l.name} (${l.op}) — ${series} ${formatPercent(m.powerRatio)}` });
  };
  for (const l of r.layers) {
    add(l, 'cumulative', l.cumulative);
    if (l.isolated) add(l, 'isolated', l.isolated.both);
  }
  const finite = points.filter((p) => Number.isFinite(p.error));
  if (finite.length === 0) return figure('plot-depth', 'Error along network depth', empty('No layer errors in this report.'), '');
  const positive = finite.filter((p) => p.error > 0).map((p) => p.error);
  // Errors grow by orders of magnitude through a network; on a linear axis the early layers flatten to zero.
  const lo = Math.min(...positive);
  const hi = Math.max(...positive);
  const log = positive.length > 1 && hi / lo >= 100;
  const shown = log ? finite.filter((p) => p.error > 0) : finite;
  const dropped = finite.length - shown.length;
  const series = [...new Set(shown.map((p) => p.series))];
  const svg = await toSvg({
    width: PLOT_WIDTH,
    height: 280,
    data: { values: shown },
    encoding: {
      x: { field: 'depth', type: 'quantitative', title: 'layer depth (topological order)', scale: { domain: depthDomain(r), nice: false }, axis: { tickMinStep: 1, format: 'd' } },
      y: {
        field: 'error',
        type: 'quantitative',
        title: `error (%, ${log ? 'log scale' : 'linear'})`,
        scale: { type: log ? 'log' : 'linear' },
        // Vega's default log ticks grid every 1–9 multiple, which turns into a dense mesh over many decades.
        axis: log ? { values: decades(lo, hi), format: '~g' } : {},
      },
      color: { field: 'series', type: 'nominal', title: null, scale: { domain: series, range: series.map((s) => COLORS[s as 'cumulative' | 'isolated']) } },
    },
    layer: [
      { mark: { type: 'line', strokeWidth: 1.5, opacity: 0.8 } },
      { mark: { type: 'point', filled: true, size: 28, opacity: 1 }, encoding: { description: { field: 'label' } } },
    ],
  });
  const caption =
    `${METRIC_LABEL.power} per layer, in percent: cumulative (whole network quantized)` +
    (series.includes('isolated') ? ' and isolated (only that layer quantized, measured at the outputs)' : '; isolated error was not measured') +
    (dropped ? `. ${dropped} zero-error points are not drawn on the log axis` : '') + '.';
  return figure('plot-depth', 'Error along network depth', svg, escapeHtml(caption));
}

/** Powers of ten covering [lo, hi], with 2 and 5 multiples when only a few decades are spanned. */
function decades(lo: number, hi: number): number[] {
  const a = Math.floor(Math.log10(lo));
  const b = Math.ceil(Math.log10(hi));
  const mults = b - a <= 3 ? [1, 2, 5] : [1];
  const out: number[] = [];
  for (let e = a; e <= b; e++) for (const m of mults) out.push(m * 10 ** e);
  return out.filter((v) => v >= lo / 10 && v <= hi * 10).map((v) => Number(v.toPrecision(3)));
}

/** 0 and every power of ten up to the largest count: symlog's own ticks come out uneven and oddly labelled. */
function symlogTicks(counts: number[]): number[] {
  const max = Math.max(1, ...counts);
  const out = [0];
  for (let v = 1; v <= max; v *= 10) out.push(v);
  return out;
}

async function clipFigure(r: AnalysisReport): Promise<string> {
  const bars = r.layers
    .filter((l) => l.clipFraction !== undefined && Number.isFinite(l.clipFraction))
    .map((l) => ({ x0: l.depth - 0.4, x1: l.depth + 0.4, clip: (l.clipFraction ?? 0) * 100, label: `#${l.depth} ${l.name} (${l.op}) — clipped ${formatPercent(l.clipFraction)}` }));
  if (bars.length === 0) return figure('plot-clip', 'Clipping per layer', empty('No clipping data in this report.'), '');
  const svg = await toSvg({
    width: PLOT_WIDTH,
    height: 180,
    data: { values: bars },
    mark: { type: 'bar', color: COLORS.clip },
    encoding: {
      x: { field: 'x0', type: 'quantitative', title: 'layer depth (topological order)', scale: { domain: depthDomain(r), nice: false }, axis: { tickMinStep: 1, format: 'd' } },
      x2: { field: 'x1' },
      y: { field: 'clip', type: 'quantitative', title: 'clipped (%)' },
      y2: { datum: 0 },
      description: { field: 'label' },
    },
  });
  return figure('plot-clip', 'Clipping per layer', svg, 'Fraction of each layer’s activation-input values outside the range its quantization scale represents.');
}

type ConcatPanel = Extract<TopLevelSpec, { concat: unknown }>['concat'][number];

interface Bin { x0: number; x1: number; count: number; clipped: string }

/** Merge adjacent bins down to MAX_BARS; a bin counts as clipped when it lies wholly outside [clipLo, clipHi]. */
function bins(h: NonNullable<LayerAnalysis['histogram']>): Bin[] {
  const n = h.counts.length;
  const step = Math.max(1, Math.ceil(n / MAX_BARS));
  const width = (h.hi - h.lo) / n;
  const out: Bin[] = [];
  for (let i = 0; i < n; i += step) {
    const j = Math.min(n, i + step);
    let count = 0;
    for (let k = i; k < j; k++) count += h.counts[k];
    const x0 = h.lo + i * width;
    const x1 = h.lo + j * width;
    out.push({ x0, x1, count, clipped: x1 <= h.clipLo || x0 >= h.clipHi ? 'clipped' : 'kept' });
  }
  return out;
}

async function histogramFigure(ranked: LayerAnalysis[]): Promise<string> {
  const worst = ranked.filter((l) => l.histogram && l.histogram.counts.length > 0).slice(0, HISTOGRAMS);
  const heading = 'Activation histograms of the worst layers';
  if (worst.length === 0) return figure('plot-histograms', heading, empty('No activation histograms in this report.'), '');
  const panels = worst.map((l, i): ConcatPanel => {
    const h = l.histogram!;
    // Show the chosen range even when it extends beyond the observed data.
    const domain = [Math.min(h.lo, h.clipLo), Math.max(h.hi, h.clipHi)];
    const pad = (domain[1] - domain[0]) * 0.02 || 1;
    return {
      width: 290,
      height: 140,
      title: { text: `${i + 1}. ${l.name.length > 40 ? `${l.name.slice(0, 39)}…` : l.name}`, subtitle: `${l.op} · range [${formatNumber(h.clipLo)}, ${formatNumber(h.clipHi)}] · clipped ${formatPercent(l.clipFraction)}` },
      layer: [
        {
          data: { values: bins(h) },
          mark: { type: 'bar', binSpacing: 0 },
          // Bars are pre-binned and disjoint: no stacking, and the symlog axis starts at zero counts.
          encoding: {
            x: { field: 'x0', type: 'quantitative', title: 'activation value', scale: { domain: [domain[0] - pad, domain[1] + pad], nice: false, zero: false } },
            x2: { field: 'x1' },
            y: { field: 'count', type: 'quantitative', title: 'count (symlog)', stack: null, scale: { type: 'symlog', domainMin: 0, nice: false }, axis: { values: symlogTicks(h.counts), labelExpr: "format(datum.value, '~s')" } },
            y2: { datum: 0 },
            color: { field: 'clipped', type: 'nominal', title: null, scale: { domain: ['kept', 'clipped'], range: [COLORS.kept, COLORS.clip] } },
          },
        },
        {
          data: { values: [{ v: h.clipLo, side: 'clipLo' }, { v: h.clipHi, side: 'clipHi' }] },
          mark: { type: 'rule', color: COLORS.rule, strokeDash: [4, 3], strokeWidth: 1.5 },
          encoding: { x: { field: 'v', type: 'quantitative' } },
        },
      ],
    };
  });
  const svg = await toSvg({ columns: 3, concat: panels, resolve: { scale: { color: 'shared' } }, spacing: 28 });
  return figure(
    'plot-histograms',
    heading,
    svg,
    'Activation-input histograms over the test data (symlog counts) for the worst layers, ranked as in the terminal table. Dashed rules mark the chosen quantization range [clipLo, clipHi]; red bins lie outside it and are clipped.',
  );
}

type Cell = { text: string; v: number | string | undefined; cls?: string; heat?: number };

type Column = { name: string; num: boolean; title?: string; order?: boolean };

/** `order` marks the column the rows are emitted in (ascending); it also sorts ascending first, unlike measures. */
function table(id: string, cols: Column[], rows: Cell[][]): string {
  const head = cols
    .map((c) => `<th data-type="${c.num ? 'num' : 'text'}"${c.order ? ' data-first="asc"' : ''} aria-sort="${c.order ? 'ascending' : 'none'}"` +
      `${c.title ? ` title="${escapeHtml(c.title)}"` : ''}><button type="button">${escapeHtml(c.name)}</button></th>`)
    .join('');
  const body = rows
    .map((cells) => `<tr>${cells.map((c) => {
      const v = c.v === undefined || (typeof c.v === 'number' && Number.isNaN(c.v)) ? '' : String(c.v);
      const style = c.heat !== undefined ? ` style="--heat:${c.heat.toFixed(3)}"` : '';
      return `<td data-v="${escapeHtml(v)}"${c.cls ? ` class="${c.cls}"` : ''}${style}>${escapeHtml(c.text)}</td>`;
    }).join('')}</tr>`)
    .join('\n');
  return `<div class="scroll"><table class="sortable" id="${id}"><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table></div>`;
}

/** Position of v between the smallest and largest positive value on a log axis, for the cell heat tint. */
function heatScale(values: number[]): (v: number | undefined) => number | undefined {
  const pos = values.filter((v) => v > 0 && Number.isFinite(v));
  if (pos.length === 0) return () => undefined;
  const lo = Math.log(Math.min(...pos));
  const span = Math.log(Math.max(...pos)) - lo || 1;
  return (v) => (v === undefined || !(v > 0) ? undefined : Math.min(1, Math.max(0, (Math.log(v) - lo) / span)));
}

function layerTable(r: AnalysisReport): string {
  const hasIso = r.layers.some((l) => l.isolated);
  const hasW = r.layers.some((l) => l.weight);
  const cum = heatScale(r.layers.map((l) => l.cumulative.powerRatio));
  const iso = heatScale(r.layers.map((l) => l.isolated?.both.powerRatio ?? 0));
  const pct = (v: number | undefined, heat?: (v: number | undefined) => number | undefined): Cell => ({ text: formatPercent(v), v, cls: 'n', heat: heat?.(v) });
  const num = (text: string, v: number | undefined): Cell => ({ text, v, cls: 'n' });
  const cols: Column[] = [
    { name: '#', num: true, title: 'depth in topological order', order: true },
    { name: 'layer', num: false },
    { name: 'op', num: false },
    { name: 'input from', num: false, title: 'op producing the quantized activation input' },
    { name: 'cumulative', num: true, title: METRIC_LABEL.power },
    { name: 'cum. norm', num: true, title: METRIC_LABEL.norm },
    ...(hasIso ? [{ name: 'isolated', num: true, title: METRIC_LABEL.power }, { name: 'w. only', num: true, title: 'isolated, weights quantized only' }, { name: 'a. only', num: true, title: 'isolated, activations quantized only' }] : []),
    { name: 'SNR dB', num: true },
    { name: 'cosine', num: true },
    { name: 'max |A−B|', num: true },
    { name: 'clip', num: true },
    ...(hasW ? [{ name: 'spread', num: true, title: 'max/min per-channel weight absmax' }, { name: 'outliers', num: true, title: 'weights beyond 6σ' }] : []),
  ];
  const rows = r.layers.map((l): Cell[] => [
    num(String(l.depth), l.depth),
    { text: l.name, v: l.name, cls: 'name' },
    { text: l.op, v: l.op },
    { text: l.inputFrom ?? '—', v: l.inputFrom ?? '' },
    pct(l.cumulative.powerRatio, cum),
    pct(l.cumulative.normRatio),
    ...(hasIso ? [pct(l.isolated?.both.powerRatio, iso), pct(l.isolated?.weightOnly?.powerRatio), pct(l.isolated?.activationOnly?.powerRatio)] : []),
    num(formatDb(l.cumulative.snrDb), l.cumulative.snrDb),
    num(formatCosine(l.cumulative.cosine), l.cumulative.cosine),
    num(formatNumber(l.cumulative.maxAbs), l.cumulative.maxAbs),
    pct(l.clipFraction),
    ...(hasW ? [num(formatNumber(l.weight?.channelRangeSpread), l.weight?.channelRangeSpread), pct(l.weight?.outlierFraction)] : []),
  ]);
  const sources = sourceLine(isolatedBySource(r.layers));
  return `<section id="layers"><h2>Layers</h2>${sources ? `<p>${escapeHtml(sources)}</p>` : ''}<p class="hint">Click a column header to sort; numeric columns sort worst-first on the first click.</p>${table('layer-table', cols, rows)}</section>`;
}

function outputTable(r: AnalysisReport): string {
  if (r.outputs.length === 0) return `<section id="outputs"><h2>Outputs</h2>${empty('No graph outputs were monitored.')}</section>`;
  const cols = [
    { name: 'output', num: false },
    { name: 'power ratio', num: true, title: METRIC_LABEL.power },
    { name: 'norm ratio', num: true, title: METRIC_LABEL.norm },
    { name: 'SNR dB', num: true },
    { name: 'cosine', num: true },
    { name: 'max |A−B|', num: true },
  ];
  const rows = r.outputs.map((o): Cell[] => [
    { text: o.name, v: o.name, cls: 'name' },
    { text: formatPercent(o.powerRatio), v: o.powerRatio, cls: 'n' },
    { text: formatPercent(o.normRatio), v: o.normRatio, cls: 'n' },
    { text: formatDb(o.snrDb), v: o.snrDb, cls: 'n' },
    { text: formatCosine(o.cosine), v: o.cosine, cls: 'n' },
    { text: formatNumber(o.maxAbs), v: o.maxAbs, cls: 'n' },
  ]);
  return `<section id="outputs"><h2>Outputs</h2>${table('output-table', cols, rows)}</section>`;
}

/** Sorts on data-v; empty cells (not measured) always sink to the bottom whatever the direction. */
const SORT_SCRIPT = `
for (const t of document.querySelectorAll('table.sortable')) {
  const ths = Array.from(t.tHead.rows[0].cells);
  ths.forEach((th, i) => th.querySelector('button').addEventListener('click', () => {
    const num = th.dataset.type === 'num';
    const cur = th.getAttribute('aria-sort');
    const asc = cur === 'none' ? (th.dataset.first ?? (num ? 'desc' : 'asc')) === 'asc' : cur === 'descending';
    for (const o of ths) o.setAttribute('aria-sort', 'none');
    th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
    const dir = asc ? 1 : -1;
    const body = t.tBodies[0];
    const key = (row) => row.cells[i].dataset.v;
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === '' || y === '') return (x === '') - (y === '');
      return (num ? Number(x) - Number(y) : x.localeCompare(y)) * dir;
    });
    body.append(...rows);
  }));
}`;

const CSS = `
:root { --fg: #1d1f23; --muted: #6a7079; --line: #e3e6ea; --bg: #f6f7f9; --accent: #4c78a8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.45 ${FONT}; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; font-weight: 650; }
h1 .muted { font-weight: 400; }
h2 { font-size: 16px; margin: 32px 0 10px; font-weight: 650; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-all; }
.muted, .tool, .hint, figcaption, .empty { color: var(--muted); }
.tool { margin: 0 0 14px; font-size: 13px; }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; padding: 14px 16px; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
.meta dt { color: var(--muted); } .meta dd { margin: 0; }
.hash { font: 11.5px ui-monospace, monospace; color: var(--muted); background: var(--bg); padding: 1px 5px; border-radius: 4px; }
.cards { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
.card .name { font-weight: 650; color: var(--muted); letter-spacing: .04em; font-size: 12px; }
.card .value { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .norm { font-size: 13px; } .card .what { color: var(--muted); font-size: 12px; margin-top: 4px; }
.defs { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; font-size: 12.5px; margin: 14px 0 0; }
.defs dt { font-weight: 600; } .defs dd { margin: 0; color: #3c4047; }
figure.plot { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px; }
figure.plot svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 12.5px; margin-top: 6px; }
.scroll { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; max-height: 640px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; font-variant-numeric: tabular-nums; }
th { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #cfd4da; text-align: left; padding: 0; white-space: nowrap; }
th button { all: unset; cursor: pointer; display: block; padding: 7px 7px; font-weight: 600; }
th[data-type=num] button { text-align: right; }
th button:focus-visible { outline: 2px solid var(--accent); }
th[aria-sort=ascending] button::after { content: ' ▲'; font-size: 9px; color: var(--accent); }
th[aria-sort=descending] button::after { content: ' ▼'; font-size: 9px; color: var(--accent); }
td { padding: 5px 7px; border-bottom: 1px solid #f0f1f3; white-space: nowrap; }
td.n { text-align: right; }
td.name { max-width: 240px; overflow: hidden; text-overflow: ellipsis; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 11.5px; }
td[style] { background: rgba(228, 87, 86, calc(var(--heat) * 0.32)); }
tbody tr:hover td { background-color: #eef3f9; }
.hint { font-size: 12.5px; margin: -4px 0 8px; }
.empty { font-style: italic; margin: 8px 4px; }
@media (max-width: 720px) { .cards { grid-template-columns: 1fr; } }
`;
