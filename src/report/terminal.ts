/**
 * Terminal rendering of an AnalysisReport: a worst-first per-layer table plus the AQE/MQE/OQE summary.
 * The formatting helpers and the ranking live here too so the HTML report shows the very same numbers.
 */
import Table from 'cli-table3';
import type { AnalysisReport, ErrorMeasures, LayerAnalysis } from '../analyse/schema.ts';

export type ErrorMetric = 'power' | 'norm';

export interface AnalysisTableOptions {
  /** Rows to show (default 20; 0 or Infinity = all). */
  top?: number;
  /** Which ratio fills the error columns and drives the ranking (default 'power', the PPQ/OnnxQuant one). */
  metric?: ErrorMetric;
  /** ANSI colours; defaults to stdout being a TTY and NO_COLOR unset, so piped output stays plain. */
  color?: boolean;
}

export const METRIC_LABEL: Record<ErrorMetric, string> = {
  power: 'PPQ power ratio Σ(A−B)²/ΣB²',
  norm: 'norm ratio ‖A−B‖/‖B‖',
};

export function ratio(m: ErrorMeasures, metric: ErrorMetric): number {
  return metric === 'power' ? m.powerRatio : m.normRatio;
}

/**
 * Worst layers first. Isolated error is the better culprit signal (cumulative error also carries everything
 * upstream), so when the report measured it, it ranks first; layers without it follow, ranked by cumulative.
 */
export function rankLayers(layers: readonly LayerAnalysis[], metric: ErrorMetric = 'power'): LayerAnalysis[] {
  const key = (l: LayerAnalysis): [number, number] => [
    l.isolated ? finiteOr(ratio(l.isolated.both, metric), Infinity) : -Infinity,
    finiteOr(ratio(l.cumulative, metric), Infinity),
  ];
  return layers
    .map((l) => ({ l, k: key(l) }))
    .sort((a, b) => b.k[0] - a.k[0] || b.k[1] - a.k[1] || a.l.depth - b.l.depth)
    .map((e) => e.l);
}

/** NaN means a broken measurement: rank it as the worst rather than letting it vanish in the sort. */
function finiteOr(v: number, nanValue: number): number {
  return Number.isNaN(v) ? nanValue : v;
}

/** A fraction as a percentage with 3 significant digits; tiny values in exponent form so they never read as 0. */
export function formatPercent(fraction: number | undefined): string {
  if (fraction === undefined) return '—';
  if (Number.isNaN(fraction)) return 'NaN';
  if (!Number.isFinite(fraction)) return fraction > 0 ? '∞' : '-∞';
  const p = fraction * 100;
  if (p === 0) return '0%';
  const a = Math.abs(p);
  if (a >= 100) return `${p.toFixed(0)}%`;
  if (a < 1e-3) return `${p.toExponential(2)}%`;
  return `${trimPrecision(p, 3)}%`;
}

export function formatDb(db: number | undefined): string {
  if (db === undefined) return '—';
  if (Number.isNaN(db)) return 'NaN';
  if (!Number.isFinite(db)) return db > 0 ? '∞' : '-∞';
  return db.toFixed(1);
}

/** Four decimals: good quantization sits at 0.99xx, where the last digits are the signal. */
export function formatCosine(c: number | undefined): string {
  if (c === undefined) return '—';
  return Number.isFinite(c) ? c.toFixed(4) : String(c);
}

export function formatNumber(v: number | undefined): string {
  if (v === undefined) return '—';
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(2) : trimPrecision(v, 4);
}

/** toPrecision without switching to exponent form (callers already bound the magnitude). */
function trimPrecision(v: number, digits: number): string {
  // Round first so 0.0099999 (→ 0.0100) picks its decimals from the rounded magnitude.
  const rounded = Number(v.toPrecision(digits));
  const decimals = Math.max(0, digits - 1 - Math.floor(Math.log10(Math.abs(rounded))));
  return rounded.toFixed(decimals);
}

/** Middle ellipsis keeps both the block prefix and the op suffix of long generated names readable. */
export function truncateMiddle(s: string, max: number): string {
  if (s.length <= max) return s;
  const head = Math.ceil((max - 1) / 2);
  return `${s.slice(0, head)}…${s.slice(s.length - (max - 1 - head))}`;
}

/** Isolated error summed over the layers whose activation input comes from one kind of op. */
export interface SourceShare {
  source: string;
  layers: number;
  /** Σ of the layers' isolated errors (the metric's ratio): a ranking aid, not the error of quantizing them together. */
  isolated: number;
}

/**
 * Where the error enters, by the op producing each layer's quantized activation input, largest first — which levers
 * can help depends on it (a shift or scale can be folded through a linear producer, not through a Relu). Layers
 * without a measured isolated error or a quantized activation input are left out; empty when none has both.
 */
export function isolatedBySource(layers: readonly LayerAnalysis[], metric: ErrorMetric = 'power'): SourceShare[] {
  const by = new Map<string, SourceShare>();
  for (const l of layers) {
    if (!l.isolated || l.inputFrom === undefined) continue;
    const s = by.get(l.inputFrom) ?? { source: l.inputFrom, layers: 0, isolated: 0 };
    s.layers++;
    s.isolated += ratio(l.isolated.both, metric);
    by.set(l.inputFrom, s);
  }
  return [...by.values()].sort((a, b) => b.isolated - a.isolated || a.source.localeCompare(b.source));
}

export function sourceLine(shares: readonly SourceShare[]): string | undefined {
  if (shares.length === 0) return undefined;
  return `isolated error by the op feeding the layer (sum over its layers): ${shares.map((s) => `${s.source} ${formatPercent(s.isolated)} (${s.layers})`).join(' · ')}`;
}

export function summaryLines(r: AnalysisReport): string[] {
  const s = r.summary;
  const line = (aqe: number, mqe: number, oqe: number, label: string): string =>
    `AQE ${formatPercent(aqe)}  MQE ${formatPercent(mqe)}  OQE ${formatPercent(oqe)}  (${label})`;
  return [line(s.aqe, s.mqe, s.oqe, METRIC_LABEL.power), line(s.aqeNorm, s.mqeNorm, s.oqeNorm, METRIC_LABEL.norm)];
}

export function renderAnalysisTable(r: AnalysisReport, opts: AnalysisTableOptions = {}): string {
  const metric = opts.metric ?? 'power';
  const color = opts.color ?? (Boolean(process.stdout.isTTY) && !process.env.NO_COLOR);
  const top = opts.top === undefined ? 20 : opts.top <= 0 ? Infinity : opts.top;
  const ranked = rankLayers(r.layers, metric);
  const shown = ranked.slice(0, Math.min(top, ranked.length));

  // Our own escapes, not cli-table3's styles: its colour library decides by itself (it turns colours off under CI
  // without a TTY), and `color` must mean what the caller asked for. Empty style arrays switch its escapes off.
  const head = ['layer', 'op', 'input from', 'cumulative at layer (%)', 'isolated at outputs (%)', 'SNR dB', 'cosine', 'clip %'];
  const table = new Table({
    head: color ? head.map((h) => `\x1b[1m\x1b[36m${h}\x1b[0m`) : head,
    colAligns: ['left', 'left', 'left', 'right', 'right', 'right', 'right', 'right'],
    style: { compact: true, head: [], border: [] },
  });
  for (const l of shown) {
    table.push([
      truncateMiddle(l.name, 48),
      l.op,
      l.inputFrom ?? '—',
      formatPercent(ratio(l.cumulative, metric)),
      formatPercent(l.isolated ? ratio(l.isolated.both, metric) : undefined),
      formatDb(l.cumulative.snrDb),
      formatCosine(l.cumulative.cosine),
      formatPercent(l.clipFraction),
    ]);
  }

  const rankedBy = r.layers.some((l) => l.isolated) ? 'isolated' : 'cumulative';
  const title =
    `Per-layer quantization error: worst ${shown.length} of ${r.layers.length} layers, ` +
    `ranked by ${rankedBy} ${METRIC_LABEL[metric]}`;
  // The two errors are measured in different places, so they are not comparable: say so under the table.
  const legend =
    'cumulative: the layer output in the quantized network vs float (SNR and cosine too); ' +
    'isolated: the graph outputs with only this layer quantized';
  const sources = sourceLine(isolatedBySource(r.layers, metric));
  return [title, table.toString(), legend, ...(sources ? [sources] : []), ...summaryLines(r)].join('\n') + '\n';
}
