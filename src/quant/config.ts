/**
 * How one tensor is quantized. Plain, serialisable data: rules are built from these, plans carry them, the JSON
 * sidecar records them.
 */
import { UserError } from '../errors.ts';
import { float8MaxFinite } from '../onnx/float-formats.ts';

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

const NUMBER_FORMATS: readonly NumberFormat[] = ['int', 'fp8e4m3', 'fp8e5m2'];
const OBSERVERS: readonly ObserverKind[] = ['minmax', 'percentile', 'kl', 'mse', 'fp8-mse'];
const CONFIG_FIELDS: readonly (keyof TensorQuantConfig)[] = ['format', 'bits', 'qmin', 'qmax', 'symmetric', 'perChannel', 'pow2', 'observer', 'percentile'];

/** An override is a JSON object of config fields, each of its kind: anything else would be ignored unseen. */
function checkOverrideFields(o: unknown, what: string): asserts o is Partial<TensorQuantConfig> {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new UserError(`${what}: expected 'float' or a JSON object of fields (${CONFIG_FIELDS.join(', ')}), got ${JSON.stringify(o)}`);
  const r = o as Record<string, unknown>;
  const unknown = Object.keys(r).find((k) => !(CONFIG_FIELDS as readonly string[]).includes(k));
  if (unknown !== undefined) throw new UserError(`${what}: '${unknown}' is not a field (fields: ${CONFIG_FIELDS.join(', ')})`);
  if (r.format !== undefined && !(NUMBER_FORMATS as readonly unknown[]).includes(r.format)) throw new UserError(`${what}: format must be one of ${NUMBER_FORMATS.join(', ')}, got ${JSON.stringify(r.format)}`);
  if (r.observer !== undefined && !(OBSERVERS as readonly unknown[]).includes(r.observer)) throw new UserError(`${what}: observer must be one of ${OBSERVERS.join(', ')}, got ${JSON.stringify(r.observer)}`);
  for (const k of ['qmin', 'qmax']) if (r[k] !== undefined && !Number.isInteger(r[k])) throw new UserError(`${what}: ${k} must be an integer, got ${JSON.stringify(r[k])}`);
  const problem = flagOrPercentileProblem(r);
  if (problem) throw new UserError(`${what}: ${problem}`);
}

/** The fields rules and overrides share the kind of: the booleans, and a percentile as a fraction in (0, 1]. */
export function flagOrPercentileProblem(r: Record<string, unknown>): string | undefined {
  for (const k of ['symmetric', 'perChannel', 'pow2']) if (r[k] !== undefined && typeof r[k] !== 'boolean') return `${k} must be true or false, got ${JSON.stringify(r[k])}`;
  if (r.percentile !== undefined && !(typeof r.percentile === 'number' && r.percentile > 0 && r.percentile <= 1)) return `percentile must be a number in (0, 1], got ${JSON.stringify(r.percentile)}`;
  return undefined;
}

/**
 * A config with a user's override applied. An override that changes the integer width, the symmetry or the format
 * (to int) without giving the range gets the full range of the new width (signed when symmetric, as rules are
 * built), so `{ bits: 16 }` means int16 −32768…32767, not int8's range stored in 16 bits. `what` names the override
 * in errors.
 */
export function applyOverride(base: TensorQuantConfig, o: Partial<TensorQuantConfig>, what: string): TensorQuantConfig {
  checkOverrideFields(o, what);
  const cfg = { ...base, ...o };
  if (cfg.format !== 'int') {
    // A switch to FP8 without a range gets the format's whole range (±448 for E4M3), as a new integer width gets
    // its own: an int rule's −128…127 kept there would use a sliver of E4M3.
    if (o.format !== undefined && o.qmin === undefined && o.qmax === undefined) {
      const max = float8MaxFinite(cfg.format === 'fp8e4m3' ? 'e4m3fn' : 'e5m2');
      Object.assign(cfg, { bits: 8, qmin: -max, qmax: max, symmetric: true });
    }
    return cfg;
  }
  if (cfg.observer === 'fp8-mse') throw new UserError(`${what}: the fp8-mse observer picks FP8 scales; give an integer tensor another observer (minmax, percentile, kl, mse)`);
  if (!Number.isInteger(cfg.bits) || cfg.bits < 2 || cfg.bits > 16) throw new UserError(`${what}: bits must be an integer from 2 to 16, got ${JSON.stringify(cfg.bits)}`);
  if ((o.bits !== undefined || o.symmetric !== undefined || o.format !== undefined) && o.qmin === undefined && o.qmax === undefined) Object.assign(cfg, intRange(cfg.bits, cfg.symmetric));
  const full = intRange(cfg.bits, cfg.qmin < 0);
  if (!(cfg.qmin < cfg.qmax && cfg.qmin >= full.qmin && cfg.qmax <= full.qmax))
    throw new UserError(`${what}: qmin ${cfg.qmin} … qmax ${cfg.qmax} does not fit ${cfg.bits} bits`);
  return cfg;
}
