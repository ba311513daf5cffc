/**
 * Zoo results: one row per (model, rule) cell, the legend marks, and the renderings (terminal, Markdown, JSON,
 * CSV, HTML index). Everything here is pure: rows in, text out.
 *
 * Legend (OnnxQuant's README says "❗: models whose performance drops by more than 1%; 💔: notable error values",
 * and applies it loosely; we fix the thresholds):
 *  - ❗ on the model: the quantized metric is more than DROP_LIMIT (1) unit below the float metric — 1 percentage
 *    point for accuracy / mAP / mIoU / agreement, 1 dB for PSNR.
 *  - 💔 on an error value: AQE > 10%, OQE > 10%, or MQE > 50% (power ratios; 10% ⇔ an SNR below 10 dB; the worst
 *    layer is naturally several times the mean, hence MQE's looser limit). A row is "poor" when AQE or OQE is.
 */
import type { ErrorSummary } from '../analyse/schema.ts';
import type { KeepTest, PassReport } from '../optimise/context.ts';
import type { PassSpec } from '../optimise/recipes.ts';
import type { QuantRule } from '../quant/rules.ts';
import Table from 'cli-table3';
import { pairedDifference } from '../math.ts';
import { escapeHtml } from '../report/html.ts';
import type { PublishedRow, TaskKind } from './registry.ts';
import { splitRuleRecipe } from './rule-recipe.ts';
import type { MetricInfo } from './tasks/types.ts';

export const CELL_SCHEMA = 'onnxquant.zoo-cell/1' as const;

export const DROP_LIMIT = 1;
export const POOR_LIMITS = { aqe: 0.1, mqe: 0.5, oqe: 0.1 } as const;

export interface Provenance {
  modelFile: string;
  modelSha256: string;
  rule: string;
  tool: { name: 'onnxquant'; version: string };
  date: string;
  node: string;
  onnxruntime: string;
  platform: string;
  data: {
    calibration: { source: string; samples: number; batches: number; batchSize: number };
    test: { source: string; samples: number; cachedInMemory: boolean };
    analysis: { samples: number; batchSize: number };
  };
  seed?: number;
  /** With a recipe: how it judged each pass's change (keepTestFor). */
  keepTest?: KeepTest;
  /** With keep test 'lower': the recipe returned its last confirmed state (optimise.ts chainConfirmation). Absent
   * from 'lower' cells computed before the guard existed, which kept every pass whose mean fell. */
  chainConfirmed?: true;
  /** The whole rule, for a rule that is not one of the OnnxQuant rules (a rule file). */
  ruleDefinition?: QuantRule;
  /** With a recipe: its passes as run. A recipe's definition can change between versions (`best` has), and a cell
   * computed under the old one is not a result of the new. */
  recipe?: PassSpec[];
  /** The run options that shape the cell (null: the whole split). A rerun with others recomputes it. */
  settings?: CellSettings;
}

export interface CellSettings {
  calibBatches: number;
  batch: number;
  testLimit: number | null;
  analyseSamples: number | null;
  /** Calibration batches a recipe judges its passes on (null: splitCalibration's default; always null without a
   * recipe, which has nothing to judge). Absent from cells written before it was recorded: read as null. */
  measureBatches?: number | null;
}

export interface ZooRow {
  schema: typeof CELL_SCHEMA;
  model: string;
  suite: string;
  task: TaskKind;
  rule: string;
  status: 'ok' | 'missing' | 'skipped' | 'error';
  reason?: string;
  metric?: MetricInfo;
  float?: number;
  quant?: number;
  errors?: ErrorSummary;
  timings?: { quantizeMs: number; evaluateMs: number; analyseMs: number; floatEvaluateMs: number };
  /** With a recipe: each pass's output error on calibration data before/after, whether it was kept, its time. */
  passes?: PassReport[];
  /** Relative to the output folder. */
  report?: string;
  provenance?: Provenance;
  published?: PublishedRow[];
  /**
   * Quantized minus float, sample by sample on the test split (metrics that are a mean over samples: top-1, exact
   * match, PSNR): the mean difference (= quant − float) and its standard error. Tells a gap from the test set's own
   * noise: a fraction of a point on a few thousand images is often within it.
   */
  paired?: { delta: number; se: number; samples: number };
}

// ---- marks ----------------------------------------------------------------------------------------------------

export function accuracyDropped(float: number | undefined, quant: number | undefined): boolean {
  if (float === undefined || quant === undefined || Number.isNaN(float)) return false;
  return Number.isNaN(quant) || float - quant > DROP_LIMIT;
}

export function poorValue(kind: 'aqe' | 'mqe' | 'oqe', v: number | undefined): boolean {
  return v !== undefined && (Number.isNaN(v) ? false : v > POOR_LIMITS[kind]);
}

export function poorErrors(e: Pick<ErrorSummary, 'aqe' | 'oqe'> | undefined): boolean {
  return !!e && (poorValue('aqe', e.aqe) || poorValue('oqe', e.oqe));
}

export interface Marks {
  drop: boolean;
  poor: boolean;
}

export function rowMarks(r: { float?: number; quant?: number; errors?: Pick<ErrorSummary, 'aqe' | 'oqe'> }): Marks {
  return { drop: accuracyDropped(r.float, r.quant), poor: poorErrors(r.errors) };
}

// ---- formatting -----------------------------------------------------------------------------------------------

export function formatMetric(v: number | undefined, unit: '%' | 'dB' | undefined): string {
  if (v === undefined || Number.isNaN(v)) return '—';
  return unit === 'dB' ? `${v.toFixed(2)} dB` : `${v.toFixed(2)}%`;
}

/** The paired comparison of a cell's per-sample test scores with the float model's (both in test-split order). */
export function pairedScores(float: readonly number[] | undefined, quant: readonly number[] | undefined): ZooRow['paired'] {
  if (!float || !quant || float.length !== quant.length || float.length === 0) return undefined;
  const { mean: delta, se, n } = pairedDifference(quant, float);
  return { delta, se, samples: n };
}

/** quant − float ± its standard error (paired over test samples), in the metric's unit; '—' without it. */
export function formatPaired(p: ZooRow['paired']): string {
  if (!p || Number.isNaN(p.delta)) return '—';
  const sign = (v: number) => (v < 0 ? `−${(-v).toFixed(2)}` : `+${v.toFixed(2)}`);
  return `${sign(p.delta)} ± ${p.se.toFixed(2)}`;
}

/** A power/norm ratio (fraction) as a percentage, 2 decimals like the OnnxQuant tables. */
export function formatRatio(v: number | undefined, mark?: 'aqe' | 'mqe' | 'oqe'): string {
  if (v === undefined) return '—';
  if (Number.isNaN(v)) return 'NaN';
  const p = v * 100;
  const s = Math.abs(p) >= 1e4 ? `${p.toExponential(2)}%` : `${p.toFixed(2)}%`;
  return mark && poorValue(mark, v) ? `${s}💔` : s;
}

function formatSeconds(ms: number | undefined): string {
  return ms === undefined ? '—' : `${(ms / 1000).toFixed(1)} s`;
}

function modelLabel(r: ZooRow): string {
  return `${r.status === 'ok' && rowMarks(r).drop ? '❗' : ''}${r.model}`;
}

function statusText(r: ZooRow): string {
  return r.status === 'ok' ? '' : `${r.status}${r.reason ? `: ${r.reason}` : ''}`;
}

const RULE_ORDER = ['onnxquant-int8-perchannel', 'onnxquant-int8-pot', 'onnxquant-fp8'];

/** Rules in the OnnxQuant order (per-channel, power-of-2, FP8), then any others alphabetically. */
function sortRules(rules: Iterable<string>): string[] {
  return [...new Set(rules)].sort((a, b) => {
    const ia = RULE_ORDER.indexOf(a);
    const ib = RULE_ORDER.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
  });
}

function byRule(rows: readonly ZooRow[]): Map<string, ZooRow[]> {
  return new Map(sortRules(rows.map((r) => r.rule)).map((rule) => [rule, rows.filter((r) => r.rule === rule)]));
}

export const LEGEND =
  `❗: the quantized metric is more than ${DROP_LIMIT} point (percentage point, or dB for PSNR) below float. ` +
  `💔: AQE > ${POOR_LIMITS.aqe * 100}%, MQE > ${POOR_LIMITS.mqe * 100}% or OQE > ${POOR_LIMITS.oqe * 100}% ` +
  '(PPQ power ratio Σ(A−B)²/ΣB², mean/max over quantized layers, max over monitored outputs). ' +
  '"norm" columns: ‖A−B‖/‖B‖. Δ ± SE: quant − float, the mean of the per-sample differences on the test split and its standard error ' +
  '(top-1, exact match, PSNR). ↳ rows: published results for the same model and rule (PPQ\'s, or a registry file\'s "published").';

/** A published row's name in the terminal table: the registry's two PPQ sources in short, a user's source as given. */
function publishedLabel(source: string): string {
  if (source.startsWith('PPQ 0.6.6')) return 'PPQ 0.6.6 (shared)';
  if (source.startsWith('PPQ QuantZoo README')) return 'PPQ published';
  return source.length > 24 ? `${source.slice(0, 23)}…` : source;
}

// ---- Markdown -------------------------------------------------------------------------------------------------

/** One table per rule (OnnxQuant layout) with PPQ's published rows under ours; models not run are listed at the end. */
export function renderMarkdown(rows: readonly ZooRow[], opts: { title?: string } = {}): string {
  const out: string[] = [];
  if (opts.title) out.push(`## ${opts.title}`, '');
  // Models not run (missing files, skipped entries) are listed once at the end, not per rule.
  const notRun = rows.filter((r) => r.status === 'missing' || r.status === 'skipped');
  rows = rows.filter((r) => !notRun.includes(r));
  for (const [rule, rs] of byRule(rows)) {
    out.push(`### ${rule}`, '');
    out.push('| Model | Task (metric) | Float | Quant | Δ ± SE | AQE | MQE | OQE | AQE (norm) | MQE (norm) | OQE (norm) | Quantize | Evaluate | Note |');
    out.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
    for (const r of rs) {
      const u = r.metric?.unit;
      const e = r.errors;
      const link = r.report ? `[${modelLabel(r)}](${r.report})` : modelLabel(r);
      out.push(
        `| ${link} | ${r.task}${r.metric ? ` (${r.metric.name})` : ''} | ${formatMetric(r.float, u)} | ${formatMetric(r.quant, u)} | ${formatPaired(r.paired)} | ` +
          `${formatRatio(e?.aqe, 'aqe')} | ${formatRatio(e?.mqe, 'mqe')} | ${formatRatio(e?.oqe, 'oqe')} | ` +
          `${formatRatio(e?.aqeNorm)} | ${formatRatio(e?.mqeNorm)} | ${formatRatio(e?.oqeNorm)} | ` +
          `${formatSeconds(r.timings?.quantizeMs)} | ${formatSeconds(r.timings?.evaluateMs)} | ${statusText(r).replace(/\|/g, '\\|')} |`,
      );
      for (const p of r.published ?? []) {
        const pu = r.metric?.unit ?? (r.task === 'super-resolution' ? 'dB' : '%');
        out.push(
          `| ↳ ${accuracyDropped(p.float, p.quant) ? '❗' : ''}${p.source} | | ${formatMetric(p.float, pu)} | ${formatMetric(p.quant, pu)} | | ` +
            `${formatRatio(p.aqe, 'aqe')} | ${formatRatio(p.mqe, 'mqe')} | ${formatRatio(p.oqe, 'oqe')} | | | | | | |`,
        );
      }
    }
    out.push('');
  }
  if (notRun.length) {
    out.push('### Not run', '');
    const seen = new Set<string>();
    for (const r of notRun) {
      if (seen.has(r.model)) continue;
      seen.add(r.model);
      out.push(`- ${r.model} (${r.task}): ${r.status}${r.reason ? ` — ${r.reason}` : ''}`);
    }
    out.push('');
  }
  const recipes = renderRecipeTables(rows);
  if (recipes) out.push(recipes);
  out.push(`Legend: ${LEGEND}`, '');
  return out.join('\n');
}

// ---- rules × recipes ------------------------------------------------------------------------------------------

/**
 * The recipe comparison issue 8 asks for, one table per base rule: per model the float metric, the plain rule, each
 * recipe that was run (columns in the order the cells come), and PPQ's published quantized figure; each cell is
 * the quantized metric with the quantize time (recipe included), ❗ when it is more than DROP_LIMIT below float.
 * Under the table, for each cell with a recipe, the passes it kept. Empty when no cell carries a recipe.
 */
export function renderRecipeTables(rows: readonly ZooRow[]): string {
  // Each cell split once into its base rule and recipe; the plain rule is recipe '' (its own column).
  const ok = rows
    .filter((r) => r.status === 'ok')
    .map((row) => {
      const { rule, recipe } = splitRuleRecipe(row.rule);
      return { row, base: rule, recipe: recipe === 'none' ? '' : recipe };
    });
  if (!ok.some((c) => c.recipe)) return '';
  const out: string[] = [];
  for (const base of sortRules(ok.map((c) => c.base))) {
    const cells = ok.filter((c) => c.base === base);
    const recipes = [...new Set(cells.map((c) => c.recipe).filter(Boolean))];
    const models = [...new Set(cells.map((c) => c.row.model))];
    out.push(`### ${base}: rules × recipes`, '');
    out.push(`| Model (metric) | Float | plain | ${recipes.join(' | ')} | PPQ published |`);
    out.push(`|---|---:|---:|${recipes.map(() => '---:|').join('')}---|`);
    const kept: string[] = [];
    for (const m of models) {
      const at = (recipe: string) => cells.find((c) => c.row.model === m && c.recipe === recipe)?.row;
      const any = cells.find((c) => c.row.model === m)!.row;
      const u = any.metric?.unit;
      const cell = (r: ZooRow | undefined) =>
        r ? `${accuracyDropped(r.float, r.quant) ? '❗' : ''}${formatMetric(r.quant, u)} (${formatSeconds(r.timings?.quantizeMs)})` : '—';
      // Published PPQ rows belong to the plain rule's cell.
      const published = (at('')?.published ?? []).map((p) => `${formatMetric(p.quant, u ?? (any.task === 'super-resolution' ? 'dB' : '%'))} (${p.source})`).join('; ') || '—';
      out.push(`| ${m}${any.metric ? ` (${any.metric.name})` : ''} | ${formatMetric(any.float, u)} | ${cell(at(''))} | ${recipes.map((c) => cell(at(c))).join(' | ')} | ${published.replace(/\|/g, '\\|')} |`);
      for (const c of recipes) {
        const r = at(c);
        if (!r?.passes?.length) continue;
        const names = r.passes.filter((p) => p.kept).map((p) => p.pass);
        const first = r.passes[0].before;
        const last = [...r.passes].reverse().find((p) => p.kept)?.after ?? first;
        kept.push(`- ${m} ${c}: output error on calibration ${formatRatio(first)} → ${formatRatio(last)}; kept: ${names.join(', ') || 'none'}`);
      }
    }
    out.push('', ...kept, '');
  }
  return out.join('\n');
}

// ---- terminal -------------------------------------------------------------------------------------------------

/** Terminal table: one row per cell; missing / skipped models collapse into one row (no published rows). */
export function renderTerminal(rows: readonly ZooRow[]): string {
  const t = new Table({
    head: ['Model', 'Rule', 'Metric', 'Float', 'Quant', 'Δ ± SE', 'AQE', 'MQE', 'OQE', 'Quantize', 'Eval', 'Note'],
    style: { head: [], border: [] },
  });
  const collapsed = new Set<string>();
  for (const r of rows) {
    if (r.status === 'missing' || r.status === 'skipped') {
      if (collapsed.has(r.model)) continue;
      collapsed.add(r.model);
      const rules = rows.filter((x) => x.model === r.model).map((x) => x.rule.replace(/^onnxquant-/, ''));
      t.push([r.model, rules.length > 1 ? `(${rules.length} rules)` : rules[0], r.task, '', '', '', '', '', '', '', '', statusText(r).slice(0, 60)]);
      continue;
    }
    const u = r.metric?.unit;
    const e = r.errors;
    t.push([
      modelLabel(r),
      r.rule.replace(/^onnxquant-/, ''),
      r.metric?.name ?? r.task,
      formatMetric(r.float, u),
      formatMetric(r.quant, u),
      formatPaired(r.paired),
      formatRatio(e?.aqe, 'aqe'),
      formatRatio(e?.mqe, 'mqe'),
      formatRatio(e?.oqe, 'oqe'),
      formatSeconds(r.timings?.quantizeMs),
      formatSeconds(r.timings?.evaluateMs),
      statusText(r).slice(0, 40),
    ]);
    for (const p of r.published ?? []) {
      const pu = u ?? (r.task === 'super-resolution' ? 'dB' : '%');
      t.push([`  ↳ ${publishedLabel(p.source)}`, '', '', formatMetric(p.float, pu), formatMetric(p.quant, pu), '', formatRatio(p.aqe, 'aqe'), formatRatio(p.mqe, 'mqe'), formatRatio(p.oqe, 'oqe'), '', '', '']);
    }
  }
  return `${t.toString()}\n${LEGEND}`;
}

// ---- JSON / CSV -----------------------------------------------------------------------------------------------

export function renderJson(rows: readonly ZooRow[]): string {
  return JSON.stringify(
    {
      schema: 'onnxquant.zoo/1',
      legend: { drop: `float − quant > ${DROP_LIMIT}`, poor: POOR_LIMITS },
      rows: rows.map((r) => ({ ...r, marks: rowMarks(r) })),
    },
    null,
    1,
  );
}

function csvField(v: unknown): string {
  if (v === undefined || v === null) return '';
  const s = typeof v === 'number' ? (Number.isNaN(v) ? 'NaN' : String(v)) : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export const CSV_COLUMNS = [
  'model', 'suite', 'task', 'rule', 'status', 'metric', 'unit', 'float', 'quant', 'aqe', 'mqe', 'oqe', 'aqe_norm', 'mqe_norm', 'oqe_norm',
  'drop_mark', 'poor_mark', 'quantize_s', 'evaluate_s', 'analyse_s', 'test_samples', 'calib_samples', 'analysis_samples', 'model_sha256',
  'ppq_float', 'ppq_quant', 'ppq_aqe', 'ppq_mqe', 'ppq_oqe', 'reason', 'delta', 'delta_se',
] as const;

export function renderCsv(rows: readonly ZooRow[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of rows) {
    const m = rowMarks(r);
    const p = r.published?.[0];
    const e = r.errors;
    const s = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);
    const v = [
      r.model, r.suite, r.task, r.rule, r.status, r.metric?.name, r.metric?.unit, r.float, r.quant, e?.aqe, e?.mqe, e?.oqe, e?.aqeNorm, e?.mqeNorm, e?.oqeNorm,
      r.status === 'ok' ? (m.drop ? 1 : 0) : undefined, r.status === 'ok' ? (m.poor ? 1 : 0) : undefined,
      s(r.timings?.quantizeMs), s(r.timings?.evaluateMs), s(r.timings?.analyseMs),
      r.provenance?.data.test.samples, r.provenance?.data.calibration.samples, r.provenance?.data.analysis.samples, r.provenance?.modelSha256,
      p?.float, p?.quant, p?.aqe, p?.mqe, p?.oqe, r.reason, r.paired?.delta, r.paired?.se,
    ];
    lines.push(v.map(csvField).join(','));
  }
  return `${lines.join('\n')}\n`;
}

// ---- HTML index -----------------------------------------------------------------------------------------------

export function renderHtmlIndex(rows: readonly ZooRow[], meta: { title: string; generated: string }): string {
  const body: string[] = [];
  for (const [rule, rs] of byRule(rows)) {
    body.push(`<h2>${escapeHtml(rule)}</h2><table><thead><tr><th>Model</th><th>Task</th><th>Float</th><th>Quant</th><th>Δ ± SE</th><th>AQE</th><th>MQE</th><th>OQE</th><th>Quantize</th><th>Evaluate</th><th>Note</th></tr></thead><tbody>`);
    for (const r of rs) {
      const u = r.metric?.unit;
      const e = r.errors;
      const name = escapeHtml(modelLabel(r));
      body.push(
        `<tr><td>${r.report ? `<a href="${escapeHtml(r.report)}">${name}</a>` : name}</td><td>${escapeHtml(r.task)}${r.metric ? ` (${escapeHtml(r.metric.name)})` : ''}</td>` +
          `<td>${formatMetric(r.float, u)}</td><td>${formatMetric(r.quant, u)}</td><td>${formatPaired(r.paired)}</td><td>${formatRatio(e?.aqe, 'aqe')}</td><td>${formatRatio(e?.mqe, 'mqe')}</td><td>${formatRatio(e?.oqe, 'oqe')}</td>` +
          `<td>${formatSeconds(r.timings?.quantizeMs)}</td><td>${formatSeconds(r.timings?.evaluateMs)}</td><td>${escapeHtml(statusText(r))}</td></tr>`,
      );
      for (const p of r.published ?? []) {
        const pu = u ?? (r.task === 'super-resolution' ? 'dB' : '%');
        body.push(
          `<tr class="pub"><td>↳ ${escapeHtml(p.source)}</td><td></td><td>${formatMetric(p.float, pu)}</td><td>${formatMetric(p.quant, pu)}</td><td></td>` +
            `<td>${formatRatio(p.aqe, 'aqe')}</td><td>${formatRatio(p.mqe, 'mqe')}</td><td>${formatRatio(p.oqe, 'oqe')}</td><td></td><td></td><td></td></tr>`,
        );
      }
    }
    body.push('</tbody></table>');
  }
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(meta.title)}</title><style>
body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child,td:nth-child(2),td:last-child{text-align:left}tr.pub{color:#666;font-size:90%}</style></head><body>
<h1>${escapeHtml(meta.title)}</h1><p>Generated ${escapeHtml(meta.generated)}. Each model name links to its analysis report (per-layer errors).</p>
${body.join('\n')}
<p>${escapeHtml(LEGEND)}</p></body></html>
`;
}
