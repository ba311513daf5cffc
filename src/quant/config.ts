/**
 * How one tensor is quantized. Plain, serialisable data: rules are built from these, plans carry them, the JSON
 * sidecar records them.
 */
export type NumberFormat = 'int' | 'fp8e4m3' | 'fp8e5m2';
export type ObserverKind = 'minmax' | 'percentile' | 'kl' | 'mse' | 'fp8-mse';

export interface TensorQuantConfig {
  format: NumberFormat;
  /** Integer formats: bit width (2–16) and the clip range of q. */
  bits: number;
  qmin: number;
  qmax: number;
  symmetric: boolean;
  /** Per-channel along `axis` of the tensor; weights only. */
  perChannel: boolean;
  /** Scales rounded up to a power of two (`s = 2^ceil(log2 s)`). */
  pow2: boolean;
  observer: ObserverKind;
  /** Percentile observer: the upper quantile, e.g. 0.9999 (lower is 1 − p). */
  percentile?: number;
}

export const INT8_SYMMETRIC: Omit<TensorQuantConfig, 'perChannel' | 'pow2' | 'observer'> = {
  format: 'int',
  bits: 8,
  qmin: -128,
  qmax: 127,
  symmetric: true,
};

/** Parameters chosen by calibration for one quantized tensor (per channel when `axis` is set). */
export interface QuantParams {
  scale: Float32Array;
  /** Integer zero points (0 for symmetric and FP8). */
  zeroPoint: Int32Array;
  axis?: number;
  /** The float range the observer settled on (per channel or one value each), for reports. */
  min: Float32Array;
  max: Float32Array;
}

export function intRange(bits: number, signed: boolean): { qmin: number; qmax: number } {
  return signed ? { qmin: -(2 ** (bits - 1)), qmax: 2 ** (bits - 1) - 1 } : { qmin: 0, qmax: 2 ** bits - 1 };
}
