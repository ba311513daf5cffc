/**
 * The exact arithmetic of quantization, shared by weights (quantized here, in TypeScript) and by tests that hold
 * onnxruntime's QuantizeLinear/DequantizeLinear to it bit for bit. Choices, each matching PPQ (DESIGN.md §2) and
 * onnxruntime's CPU kernels:
 * - x / s is a float32 division: Math.fround(x / s) with float32 operands (never x · (1/s), which differs in the
 *   last bit for some values and changes the rounding of ties).
 * - rounding is half to even (Math.round is half up: wrong for −0.5, 0.5, 2.5 …).
 * - q = clip(round(x/s) + z, qmin, qmax); x̂ = float32((q − z) · s).
 * - symmetric scale from a range: clamp min ≤ 0 ≤ max, s = 2·max(|min|,|max|)/(qmax − qmin) computed in double then
 *   stored as float32; s = max(s, 1e-8); power-of-two scales are rounded UP: 2^ceil(log2 s).
 * - FP8: x/s in float32, then round to E4M3 (ties to even, as onnxruntime; PPQ's CUDA kernel rounds ties toward
 *   zero — `ties: 'towardZero'` reproduces it), saturating at ±448.
 */
import { float32ToFloat8, float8ToFloat32, roundToE4m3fn, type Float8Kind, type Float8Ties } from '../onnx/float-formats.ts';
import type { TensorQuantConfig } from './config.ts';
import { roundHalfEven } from '../math.ts';

export const SCALE_FLOOR = 1e-8;

export { roundHalfEven };

/** 1.5 · 2^52: adding and subtracting it rounds a double to an integer, half to even (the FPU's own rounding). */
const ROUND_MAGIC = 6755399441055744;

/**
 * clip(roundHalfEven(float32(x / s)) + z, qmin, qmax). The rounding is y + 1.5·2^52 − 1.5·2^52, exact for
 * |y| < 2^51; a larger quotient (or ±Infinity) lies far outside any integer range and clips to qmin/qmax whatever
 * its rounding. Same values as roundHalfEven (tested over ties, extremes and a sweep), cheaper in the per-weight
 * loops (realising PP-OCRv4 rec's 2.7 M weights).
 */
export function quantizeInt(x: number, scale: number, zeroPoint: number, qmin: number, qmax: number): number {
  if (x !== x) return qmin; // NaN: onnxruntime's QuantizeLinear maps it to qmin
  const q = Math.fround(x / scale) + ROUND_MAGIC - ROUND_MAGIC + zeroPoint;
  return q < qmin ? qmin : q > qmax ? qmax : q;
}

export function dequantizeInt(q: number, scale: number, zeroPoint: number): number {
  return Math.fround((q - zeroPoint) * scale);
}

export function fakeQuantInt(x: number, scale: number, zeroPoint: number, qmin: number, qmax: number): number {
  return dequantizeInt(quantizeInt(x, scale, zeroPoint, qmin, qmax), scale, zeroPoint);
}

export function fp8Kind(format: TensorQuantConfig['format']): Float8Kind {
  if (format === 'fp8e4m3') return 'e4m3fn';
  if (format === 'fp8e5m2') return 'e5m2';
  throw new Error(`not an FP8 format: ${format}`);
}

export function quantizeFp8(x: number, scale: number, kind: Float8Kind = 'e4m3fn', ties: Float8Ties = 'even'): number {
  return float32ToFloat8(Math.fround(x / scale), kind, true, ties);
}

export function fakeQuantFp8(x: number, scale: number, kind: Float8Kind = 'e4m3fn', ties: Float8Ties = 'even'): number {
  if (kind === 'e4m3fn' && ties === 'even') return Math.fround(roundToE4m3fn(Math.fround(x / scale)) * scale);
  return Math.fround(float8ToFloat32(quantizeFp8(x, scale, kind, ties), kind) * scale);
}

/** For a tensor of `dims` quantized per channel along `axis` (or per tensor): the channel of flat element i. */
export function channelOf(dims: readonly number[], axis: number | undefined): (i: number) => number {
  if (axis === undefined) return () => 0;
  const C = dims[axis];
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  return (i) => Math.floor(i / inner) % C;
}

/**
 * The flat elements of a tensor of `dims` as contiguous runs [start, end) that share one channel along `axis` (one
 * run for per-tensor), so per-element loops read their channel's scale once per run instead of dividing per element
 * (`channelOf`): realising PP-OCRv4 rec's 2.6 M weights spent most of its time there.
 */
export function forEachChannelRun(dims: readonly number[], axis: number | undefined, fn: (start: number, end: number, channel: number) => void): void {
  const n = dims.reduce((a, b) => a * b, 1);
  if (axis === undefined) {
    fn(0, n, 0);
    return;
  }
  const C = dims[axis];
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  for (let start = 0, c = 0; start < n; start += inner, c = c + 1 === C ? 0 : c + 1) fn(start, start + inner, c);
}

/** x̂ for any format: the integer or FP8 (ties to even, as realised) fake-quantization of x. */
export function fakeQuant(x: number, cfg: Pick<TensorQuantConfig, 'format' | 'qmin' | 'qmax'>, scale: number, zeroPoint: number): number {
  return cfg.format === 'int' ? fakeQuantInt(x, scale, zeroPoint, cfg.qmin, cfg.qmax) : fakeQuantFp8(x, scale, fp8Kind(cfg.format));
}

/** PPQ's `2 ** ceil(log2(s))`, in double like Python (for s one ulp above a power of two log2 rounds down). */
export function pow2Ceil(s: number): number {
  return 2 ** Math.ceil(Math.log2(s));
}

/** Scale (and zero point) for a float range under an integer config. */
export function scaleFromRange(min: number, max: number, cfg: TensorQuantConfig): { scale: number; zeroPoint: number } {
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  let scale: number;
  let zeroPoint = 0;
  if (cfg.symmetric) {
    scale = (2 * Math.max(Math.abs(lo), Math.abs(hi))) / (cfg.qmax - cfg.qmin);
  } else {
    scale = (hi - lo) / (cfg.qmax - cfg.qmin);
  }
  scale = Math.max(scale, SCALE_FLOOR);
  if (cfg.pow2) scale = pow2Ceil(scale);
  scale = Math.fround(scale);
  if (!cfg.symmetric) zeroPoint = Math.min(cfg.qmax, Math.max(cfg.qmin, roundHalfEven(cfg.qmin - lo / scale)));
  return { scale, zeroPoint };
}
