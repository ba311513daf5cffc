/**
 * Deployment targets as data: a QuantRule (how activations and weights are quantized) plus placement rules (which
 * further op types run integer kernels on that runtime, whether quantized layers' outputs carry Q/DQ, which ops pass
 * their input's scale through). The target planner (plan-target.ts) reads only these fields.
 *
 * Sources for the placement rules:
 * - onnxruntime CPU: core/optimizer/qdq_transformer/selectors_actions/qdq_selector_action_transformer.cc (microsoft/
 *   onnxruntime): DQ→Conv→Q → QLinearConv, DQ→MatMul(→Q) → QLinearMatMul / MatMulIntegerToFloat, Gemm → QGemm,
 *   Add/Mul → QLinearAdd/QLinearMul, Concat → QLinearConcat, AveragePool/GlobalAveragePool/LeakyRelu/Sigmoid →
 *   QLinear*, and "drop" rules (DQ→op→Q removed when both carry the same scale) for MaxPool, Resize, Reshape,
 *   Transpose, Squeeze, Unsqueeze, Gather. Every input of a fused node must come from a DequantizeLinear, so a Conv/
 *   Gemm bias is stored int32 with scale s_x·s_w (`quantizeBias`). u8 activations × s8 weights is the combination
 *   the x86 kernels take (s8 activations are fused for Conv only where MLAS allows int8, e.g. ARM / VNNI).
 * - TensorRT explicit quantization: Q/DQ on the inputs of weighted layers and on both inputs of residual Adds;
 *   TensorRT propagates scales through pooling/concat itself; int8 symmetric only (no zero points).
 * - ncnn: int8 Convolution / ConvolutionDepthWise / InnerProduct (tools/quantize/ncnn2table.cpp), per-output-channel
 *   weight scales, one scale per layer input (bottom blob); symmetric.
 */
import { UserError } from '../errors.ts';
import { INT8_SYMMETRIC, type TensorQuantConfig } from './config.ts';
import type { QuantRule } from './rules.ts';

/** How a target treats one op type beyond the rule's own layers. */
export type ExtraOpKind =
  /** An integer kernel with its own output scale (QLinearAdd, QLinearConcat, QLinearGlobalAveragePool …). */
  | 'compute'
  /** Output keeps the input's scale (MaxPool, Reshape, Transpose, Resize nearest …); quantized only when its input is. */
  | 'passthrough'
  /** Concat: inputs and output share one scale. */
  | 'concat';

export interface ExtraOp {
  op: string;
  kind: ExtraOpKind;
  /** Which inputs are data (the others — shapes, axes, scales — stay as they are). Default: [0]. 'all' for Concat. */
  inputs?: number[] | 'all';
}

export interface DeployTarget extends QuantRule {
  target: string;
  /** Op types, beyond `ops`, with quantized inputs/outputs on this runtime. */
  extraOps: readonly ExtraOp[];
  /** Put Q/DQ on the outputs of quantized layers (onnxruntime fuses DQ→op→Q; TensorRT/ncnn need inputs only). */
  quantizeOutputs: boolean;
  /** Activations folded into the producer's output quantization (Relu, Clip): Q/DQ goes after them. */
  fusedActivations: readonly string[];
  /** Store Conv/Gemm biases as int32 with scale s_x·s_w behind a DequantizeLinear (onnxruntime's fusion needs it). */
  quantizeBias: boolean;
}

const UINT8_ASYM: Omit<TensorQuantConfig, 'perChannel' | 'pow2' | 'observer'> = { format: 'int', bits: 8, qmin: 0, qmax: 255, symmetric: false };
const BASE_OPS: QuantRule['ops'] = ['Conv', 'ConvTranspose', 'Gemm', 'MatMul'];

const PASS: ExtraOp[] = ['MaxPool', 'Reshape', 'Transpose', 'Flatten', 'Squeeze', 'Unsqueeze', 'Resize'].map((op) => ({ op, kind: 'passthrough' as const }));

const ORT_EXTRA: ExtraOp[] = [
  { op: 'Add', kind: 'compute', inputs: [0, 1] },
  { op: 'Mul', kind: 'compute', inputs: [0, 1] },
  { op: 'Concat', kind: 'concat', inputs: 'all' },
  { op: 'AveragePool', kind: 'compute' },
  { op: 'GlobalAveragePool', kind: 'compute' },
  { op: 'LeakyRelu', kind: 'compute' },
  { op: 'Sigmoid', kind: 'compute' },
  ...PASS,
];

/**
 * 7-bit weights stored as int8 (onnxruntime's `reduce_range`): on x86 without VNNI, MLAS multiplies u8 × s8 with
 * VPMADDUBSW, which adds adjacent products into int16 and saturates (255·127·2 > 32767). With |w| ≤ 64 the pair sum
 * stays below 2^15 and the deployed integer kernels equal the simulation; measured on this AVX2 machine: a small
 * net's logits differ by 0.037 (of 0.25) with [-127, 127] weights and by 3e-8 with [-64, 63].
 */
const REDUCED_RANGE_WEIGHT: TensorQuantConfig = { format: 'int', bits: 8, qmin: -64, qmax: 63, symmetric: true, perChannel: true, pow2: false, observer: 'minmax' };

/** What every target shares: per-tensor percentile activations, per-output-channel weights, opset 13. */
const U8_ACTIVATION: TensorQuantConfig = { ...UINT8_ASYM, perChannel: false, pow2: false, observer: 'percentile', percentile: 0.9999 };
const I8_ACTIVATION: TensorQuantConfig = { ...INT8_SYMMETRIC, perChannel: false, pow2: false, observer: 'percentile', percentile: 0.9999 };
const I8_WEIGHT: TensorQuantConfig = { ...INT8_SYMMETRIC, perChannel: true, pow2: false, observer: 'minmax' };
const COMMON = { ops: BASE_OPS, matmulWeightAxis: 'output', minOpset: 13, fusedActivations: ['Relu', 'Clip'] } as const satisfies Partial<DeployTarget>;

export const TARGETS: Record<string, DeployTarget> = {
  'ort-cpu': {
    name: 'ort-cpu',
    target: 'onnxruntime CPU (x86/ARM), QDQ fused into QLinearConv/QLinearMatMul/QGemm/QLinearAdd …',
    description: 'uint8 asymmetric activations (percentile 0.9999), int8 symmetric per-output-channel weights in the reduced range [-64, 63]; Q/DQ on layer outputs, int32 biases',
    activation: U8_ACTIVATION,
    weight: REDUCED_RANGE_WEIGHT,
    ...COMMON,
    extraOps: ORT_EXTRA,
    quantizeOutputs: true,
    quantizeBias: true,
  },
  'ort-cpu-vnni': {
    name: 'ort-cpu-vnni',
    target: 'onnxruntime CPU on x86 with AVX-VNNI/AVX512-VNNI, or ARM64: full 8-bit weights',
    description: 'as ort-cpu with full-range int8 weights [-127, 127] (exact only where u8×s8 products do not saturate)',
    activation: U8_ACTIVATION,
    weight: I8_WEIGHT,
    ...COMMON,
    extraOps: ORT_EXTRA,
    quantizeOutputs: true,
    quantizeBias: true,
  },
  'ort-web': {
    name: 'ort-web',
    target: 'onnxruntime-web (WebAssembly CPU provider: the same QDQ fusions as ort-cpu, no VNNI)',
    description: 'uint8 asymmetric activations, int8 symmetric per-output-channel weights; as ort-cpu without Mul/Sigmoid/LeakyRelu',
    activation: U8_ACTIVATION,
    weight: I8_WEIGHT,
    ...COMMON,
    extraOps: [
      { op: 'Add', kind: 'compute', inputs: [0, 1] },
      { op: 'Concat', kind: 'concat', inputs: 'all' },
      { op: 'AveragePool', kind: 'compute' },
      { op: 'GlobalAveragePool', kind: 'compute' },
      ...PASS,
    ],
    quantizeOutputs: true,
    quantizeBias: true,
  },
  tensorrt: {
    name: 'tensorrt',
    target: 'TensorRT explicit quantization (Q/DQ on weighted-layer inputs and residual Add inputs)',
    description: 'int8 symmetric; activations per-tensor (percentile 0.9999), weights per-output-channel (minmax)',
    activation: I8_ACTIVATION,
    weight: I8_WEIGHT,
    ...COMMON,
    extraOps: [
      { op: 'Add', kind: 'compute', inputs: [0, 1] },
      { op: 'Concat', kind: 'concat', inputs: 'all' },
      { op: 'MaxPool', kind: 'passthrough' },
      { op: 'GlobalAveragePool', kind: 'compute' },
      { op: 'AveragePool', kind: 'compute' },
    ],
    quantizeOutputs: false,
    quantizeBias: false,
  },
  ncnn: {
    name: 'ncnn',
    target: 'ncnn int8 (Convolution, ConvolutionDepthWise, InnerProduct; per-output-channel weight scales)',
    description: 'int8 symmetric; activations per-tensor (percentile 0.9999), weights per-output-channel (minmax)',
    activation: I8_ACTIVATION,
    weight: I8_WEIGHT,
    ...COMMON,
    ops: ['Conv', 'Gemm', 'MatMul'],
    extraOps: [],
    quantizeOutputs: false,
    quantizeBias: false,
  },
};

export const TARGET_NAMES = Object.keys(TARGETS);

export function getTarget(name: string): DeployTarget {
  const t = TARGETS[name];
  if (!t) throw new UserError(`unknown target '${name}' (known: ${TARGET_NAMES.join(', ')})`);
  return t;
}

export function isTarget(rule: QuantRule): rule is DeployTarget {
  return 'extraOps' in rule && 'quantizeOutputs' in rule;
}
