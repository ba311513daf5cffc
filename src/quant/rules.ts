/**
 * Rule sets as data. A rule says how activations and weights of the quantized layer types are quantized; the
 * planner decides which tensors that touches. The three OnnxQuant rules follow PPQ's semantics (DESIGN.md §2).
 */
import { UserError } from '../errors.ts';
import { flagOrPercentileProblem, INT8_SYMMETRIC, intRange, minOpsetFor, type ObserverKind, type TensorQuantConfig } from './config.ts';

export type QuantizedOp = 'Conv' | 'ConvTranspose' | 'Gemm' | 'MatMul' | 'LayerNormalization';

export interface QuantRule {
  name: string;
  description: string;
  activation: TensorQuantConfig;
  weight: TensorQuantConfig;
  /** Layer types whose inputs are quantized. */
  ops: readonly QuantizedOp[];
  /**
   * Per-channel axis of MatMul/Gemm weights: 'ppq' uses axis 0 as PPQ does (for MatMul [K,N] that is per input
   * row), 'output' uses the output-channel axis (MatMul: last; Gemm: 0 with transB, else 1).
   */
  matmulWeightAxis: 'ppq' | 'output';
  /** Minimum ai.onnx opset the realised model needs (QDQ 10, per-channel 13, FP8 19, int16 and int4 21: `minOpsetFor`). */
  minOpset: number;
}

const OPS: readonly QuantizedOp[] = ['Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'LayerNormalization'];

export const ONNXQUANT_RULES: Record<string, QuantRule> = {
  'onnxquant-int8-perchannel': {
    name: 'onnxquant-int8-perchannel',
    description: 'INT8, symmetric; activations per-tensor (percentile 0.9999), weights per-channel (minmax)',
    activation: { ...INT8_SYMMETRIC, perChannel: false, pow2: false, observer: 'percentile', percentile: 0.9999 },
    weight: { ...INT8_SYMMETRIC, perChannel: true, pow2: false, observer: 'minmax' },
    ops: OPS,
    matmulWeightAxis: 'ppq',
    minOpset: 13,
  },
  'onnxquant-int8-pot': {
    name: 'onnxquant-int8-pot',
    description: 'INT8, symmetric, per-tensor, power-of-two scales; activations percentile 0.9999, weights minmax',
    activation: { ...INT8_SYMMETRIC, perChannel: false, pow2: true, observer: 'percentile', percentile: 0.9999 },
    weight: { ...INT8_SYMMETRIC, perChannel: false, pow2: true, observer: 'minmax' },
    ops: OPS,
    matmulWeightAxis: 'ppq',
    minOpset: 13,
  },
  'onnxquant-fp8': {
    name: 'onnxquant-fp8',
    description: 'Graphcore FP8 E4M3 (±448), per-tensor; scale from {2^-7,2^-5,2^-3,1,4,16,64} by least FP8 MSE',
    activation: { format: 'fp8e4m3', bits: 8, qmin: -448, qmax: 448, symmetric: true, perChannel: false, pow2: true, observer: 'fp8-mse' },
    weight: { format: 'fp8e4m3', bits: 8, qmin: -448, qmax: 448, symmetric: true, perChannel: false, pow2: true, observer: 'fp8-mse' },
    ops: OPS,
    matmulWeightAxis: 'ppq',
    minOpset: 19,
  },
};

export const RULE_NAMES = Object.keys(ONNXQUANT_RULES);

/** A user rule (JSON file): integer formats of 2–16 bits, or FP8; checked field by field. */
export interface RuleSpec {
  name: string;
  bits?: number;
  symmetric?: boolean;
  perChannel?: boolean;
  pow2?: boolean;
  activationObserver?: ObserverKind;
  weightObserver?: ObserverKind;
  percentile?: number;
  ops?: QuantizedOp[];
  matmulWeightAxis?: 'ppq' | 'output';
}

const RULE_FIELDS: readonly (keyof RuleSpec)[] = ['name', 'bits', 'symmetric', 'perChannel', 'pow2', 'activationObserver', 'weightObserver', 'percentile', 'ops', 'matmulWeightAxis'];

export function buildRule(spec: RuleSpec, source = 'rule'): QuantRule {
  // A field the rule does not have (a typo, or a nested {"activation": …}) would otherwise be ignored, leaving the
  // default in its place unseen; likewise a boolean given as a string.
  const unknown = Object.keys(spec).find((k) => !(RULE_FIELDS as readonly string[]).includes(k));
  if (unknown !== undefined) throw new UserError(`'${unknown}' is not a rule field (fields: ${RULE_FIELDS.join(', ')})`, source);
  const problem = flagOrPercentileProblem(spec as unknown as Record<string, unknown>);
  if (problem) throw new UserError(problem, source);
  if (spec.matmulWeightAxis !== undefined && spec.matmulWeightAxis !== 'ppq' && spec.matmulWeightAxis !== 'output')
    throw new UserError(`matmulWeightAxis must be 'ppq' or 'output', got ${JSON.stringify(spec.matmulWeightAxis)}`, source);
  if (spec.ops !== undefined && !Array.isArray(spec.ops)) throw new UserError(`ops must be a list of op types, got ${JSON.stringify(spec.ops)}`, source);
  const bits = spec.bits ?? 8;
  if (!Number.isInteger(bits) || bits < 2 || bits > 16) throw new UserError(`bits must be an integer from 2 to 16, got ${spec.bits}`, source);
  const symmetric = spec.symmetric ?? true;
  const { qmin, qmax } = intRange(bits, symmetric);
  const observers: ObserverKind[] = ['minmax', 'percentile', 'kl', 'mse'];
  for (const [k, v] of [['activationObserver', spec.activationObserver], ['weightObserver', spec.weightObserver]] as const)
    if (v !== undefined && !observers.includes(v)) throw new UserError(`${k} must be one of ${observers.join(', ')}, got '${v}'`, source);
  for (const op of spec.ops ?? []) if (!OPS.includes(op)) throw new UserError(`ops: '${op}' is not one of ${OPS.join(', ')}`, source);
  const base = { format: 'int' as const, bits, qmin, qmax, symmetric, pow2: spec.pow2 ?? false };
  const perChannel = spec.perChannel ?? true;
  const activation: TensorQuantConfig = { ...base, perChannel: false, observer: spec.activationObserver ?? 'percentile', percentile: spec.percentile ?? 0.9999 };
  const weight: TensorQuantConfig = { ...base, perChannel, observer: spec.weightObserver ?? 'minmax' };
  return {
    name: spec.name,
    description: `INT${bits} ${symmetric ? 'symmetric' : 'asymmetric'}${perChannel ? ', per-channel weights' : ''}${spec.pow2 ? ', power-of-two' : ''}`,
    activation,
    weight,
    ops: spec.ops ?? OPS,
    matmulWeightAxis: spec.matmulWeightAxis ?? 'ppq',
    minOpset: Math.max(minOpsetFor(activation), minOpsetFor(weight)),
  };
}

export function getRule(name: string): QuantRule {
  const r = ONNXQUANT_RULES[name];
  if (!r) throw new UserError(`unknown rule '${name}' (known: ${RULE_NAMES.join(', ')}; or pass a rule JSON file)`);
  return r;
}
