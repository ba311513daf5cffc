/**
 * How one tensor is quantized. Plain, serialisable data: rules are built from these, plans carry them, the JSON
 * sidecar records them.
 */
import { UserError } from '../errors.ts';

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

/**
 * The least ai.onnx opset whose QuantizeLinear/DequantizeLinear carry a config's codes: int8/uint8 per-tensor 10,
 * per-channel (`axis`) 13, float8 19, int16/uint16 and int4/uint4 21 (the types realise stores for 9–16 and 2–4 bits).
 */
export function minOpsetFor(cfg: TensorQuantConfig): number {
  if (cfg.format !== 'int') return 19;
  if (cfg.bits > 8 || cfg.bits <= 4) return 21;
  return cfg.perChannel ? 13 : 10;
}

/**
 * A config with a user's override applied. An override that changes the integer width, the symmetry or the format
 * (to int) without giving the range gets the full range of the new width (signed when symmetric, as rules are
 * built), so `{ bits: 16 }` means int16 −32768…32767, not int8's range stored in 16 bits. `what` names the override
 * in errors.
 */
export function applyOverride(base: TensorQuantConfig, o: Partial<TensorQuantConfig>, what: string): TensorQuantConfig {
  const cfg = { ...base, ...o };
  if (cfg.format !== 'int') return cfg;
  if (cfg.observer === 'fp8-mse') throw new UserError(`${what}: the fp8-mse observer picks FP8 scales; give an integer tensor another observer (minmax, percentile, kl, mse)`);
  if (!Number.isInteger(cfg.bits) || cfg.bits < 2 || cfg.bits > 16) throw new UserError(`${what}: bits must be an integer from 2 to 16, got ${cfg.bits}`);
  if ((o.bits !== undefined || o.symmetric !== undefined || o.format !== undefined) && o.qmin === undefined && o.qmax === undefined) Object.assign(cfg, intRange(cfg.bits, cfg.symmetric));
  const full = intRange(cfg.bits, cfg.qmin < 0);
  if (!(cfg.qmin < cfg.qmax && cfg.qmin >= full.qmin && cfg.qmax <= full.qmax))
    throw new UserError(`${what}: qmin ${cfg.qmin} … qmax ${cfg.qmax} does not fit ${cfg.bits} bits`);
  return cfg;
}
