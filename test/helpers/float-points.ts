/**
 * Float32 test points for FP8 rounding: every E4M3FN value and every midpoint between neighbours (the ties), each
 * with the float32 values one ulp either side, and sweeps of float32 bit patterns. Shared by the tests that hold a
 * fast rounding path to a reference (numerics, realised codes, simulation's FP8 emulation).
 */
import { float8ToFloat32 } from '../../src/onnx/float-formats.ts';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** x (≥ 0, float32) and the float32 values one ulp below and above it. */
export function float32Neighbours(x: number): number[] {
  f32[0] = x;
  const u = u32[0];
  return [-1, 0, 1].map((d) => ((u32[0] = u + d), f32[0]));
}

/** Every E4M3FN magnitude and every midpoint between neighbouring magnitudes, each with its float32 neighbours. */
export function e4m3TiePoints(): number[] {
  const mags = Array.from({ length: 0x7f }, (_, c) => float8ToFloat32(c, 'e4m3fn'));
  const points: number[] = [];
  for (let i = 0; i + 1 < mags.length; i++) points.push(...float32Neighbours((mags[i] + mags[i + 1]) / 2), ...float32Neighbours(mags[i]));
  return points;
}

/** Positive float32 values whose bit patterns run from 1 below `end` in steps of `stride` (odd: every mantissa
 * residue gets hit). */
export function float32Sweep(end: number, stride: number): number[] {
  const out: number[] = [];
  for (let u = 1; u < end; u += stride) out.push(((u32[0] = u), f32[0]));
  return out;
}
