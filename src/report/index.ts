export { renderAnalysisTable, rankLayers, formatPercent, METRIC_LABEL } from './terminal.ts';
export type { AnalysisTableOptions, ErrorMetric } from './terminal.ts';
export { renderAnalysisHtml, escapeHtml } from './html.ts';
