/**
 * The analysis report: the stable, documented JSON that `onnxquant analyse` writes (report.json) and that the
 * terminal table and the HTML report render. Bump `schema` on any breaking change.
 *
 * Error definitions (see DESIGN.md §3), A = quantized-network tensor, B = float-network tensor, same test batch:
 * - powerRatio: PPQ's graphwise error, Σ(A−B)² / ΣB² per sample, averaged over samples. The published OnnxQuant
 *   AQE/MQE use this one; tables default to it.
 * - normRatio: the OnnxQuant README's relative error ‖A−B‖_F / ‖B‖_F over the whole test set.
 * - snrDb: 10·log10(ΣB² / Σ(A−B)²) over the whole test set.
 * - cosine: (A·B) / (‖A‖‖B‖) over the whole test set.
 * - maxAbs: max |A−B|.
 * All ratios are fractions (0.5 = 50%).
 */
export const ANALYSIS_SCHEMA = 'onnxquant.analysis/1' as const;

/** `LayerAnalysis.inputFrom` of a layer whose activation input is a model input. */
export const GRAPH_INPUT = 'graph input';

export interface ErrorMeasures {
  powerRatio: number;
  normRatio: number;
  snrDb: number;
  cosine: number;
  maxAbs: number;
}

export interface Histogram {
  /** Bin edges span [lo, hi] in `counts.length` equal bins. */
  lo: number;
  hi: number;
  counts: number[];
  /** The representable range the quantization scale gives; values outside are clipped. */
  clipLo: number;
  clipHi: number;
}

export interface WeightStats {
  min: number;
  max: number;
  /** max over channels of absmax ÷ min over channels of absmax (1 for per-tensor-friendly weights). */
  channelRangeSpread: number;
  /** Fraction of weights beyond 6 standard deviations from the mean. */
  outlierFraction: number;
}

export interface LayerAnalysis {
  /** Node name (or a generated `op_index` name when the node has none). */
  name: string;
  op: string;
  /** The layer's output tensor that is compared. */
  output: string;
  /** Position in topological order among the analysed layers, 0-based. */
  depth: number;
  /** Error of this layer's output with the whole network quantized (errors accumulate). */
  cumulative: ErrorMeasures;
  /** Error at the graph outputs when only this layer is quantized; absent when not measured. */
  isolated?: { both: ErrorMeasures; weightOnly?: ErrorMeasures; activationOnly?: ErrorMeasures };
  /**
   * Op type of the node that produces the layer's quantized activation input in the float network ('graph input' for
   * a model input); absent when that input is not quantized. What kind of producer it is decides which levers apply:
   * a linear one (Conv, Add) can absorb a per-channel scale or shift, a Relu or Clip cannot pass a shift.
   */
  inputFrom?: string;
  /** Fraction of the layer's activation-input values outside the quantization range. */
  clipFraction?: number;
  weight?: WeightStats;
  /** Histogram of the activation input over the test data, with the chosen range marked. */
  histogram?: Histogram;
}

export interface OutputAnalysis extends ErrorMeasures {
  name: string;
}

export interface AnalysisReport {
  schema: typeof ANALYSIS_SCHEMA;
  tool: { name: 'onnxquant'; version: string };
  floatModel: { path: string; sha256: string };
  quantModel: { path: string; sha256: string };
  rule?: string;
  data: { samples: number; batches: number; source: string };
  layers: LayerAnalysis[];
  outputs: OutputAnalysis[];
  /** AQE = mean, MQE = max over layers' cumulative error; OQE = max over monitored outputs. */
  summary: ErrorSummary;
}

/** AQE/MQE/OQE as power ratios, and the same as norm ratios. */
export interface ErrorSummary {
  aqe: number;
  mqe: number;
  oqe: number;
  aqeNorm: number;
  mqeNorm: number;
  oqeNorm: number;
}
