/**
 * The exact numerics of DESIGN.md §2, held to values computed by hand and written out here (not recomputed with the
 * code under test): half-to-even rounding, float32 division, the symmetric scale rule (/127.5), the 1e-8 floor,
 * power-of-two scales rounded up, saturation, and FP8 E4M3 rounding with both tie rules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { e4m3fnCode, float32ToFloat8, float8ToFloat32, roundToE4m3fn } from '../src/onnx/float-formats.ts';
import {
  dequantizeInt,
  fakeQuantFp8,
  fakeQuantInt,
  forEachChannelRun,
  pow2Ceil,
  quantizeFp8,
  quantizeInt,
  roundHalfEven,
  scaleFromRange,
  SCALE_FLOOR,
} from '../src/quant/numerics.ts';
import { INT8_SYMMETRIC, type TensorQuantConfig } from '../src/quant/config.ts';
import { e4m3TiePoints, float32Sweep } from './helpers/float-points.ts';

const f = Math.fround;
const SYM: TensorQuantConfig = { ...INT8_SYMMETRIC, perChannel: false, pow2: false, observer: 'minmax' };
const POT: TensorQuantConfig = { ...SYM, pow2: true };

/** Value equality that treats −0 and +0 alike (for rounding results whose sign of zero is not the point). */
const isZero = (x: number) => x === 0;

// ---- rounding ------------------------------------------------------------------------------------------------------

test('roundHalfEven: exact ties go to the even neighbour, everything else to the nearest', () => {
  assert.ok(isZero(roundHalfEven(0.5)), '0.5 → 0');
  assert.ok(isZero(roundHalfEven(-0.5)), '−0.5 → 0');
  assert.equal(roundHalfEven(1.5), 2);
  assert.equal(roundHalfEven(-1.5), -2);
  assert.equal(roundHalfEven(2.5), 2);
  assert.equal(roundHalfEven(-2.5), -2);
  assert.equal(roundHalfEven(3.5), 4);
  assert.equal(roundHalfEven(-3.5), -4);
  assert.equal(roundHalfEven(3.5000001), 4, 'just above a tie rounds up');
  assert.equal(roundHalfEven(2.4999999), 2);
  assert.equal(roundHalfEven(2.5000001), 3, 'just above an even tie rounds up, not to even');
  assert.equal(roundHalfEven(-2.5000001), -3);
  assert.equal(roundHalfEven(0.49999999999999994), 0, 'largest double below 0.5');
  assert.equal(roundHalfEven(126.5), 126);
  assert.equal(roundHalfEven(127.5), 128);
  assert.equal(roundHalfEven(-127.5), -128);
  assert.equal(roundHalfEven(-128.5), -128);
  assert.equal(roundHalfEven(7), 7);
  assert.equal(roundHalfEven(-7), -7);
  // Math.round is half-up and would be wrong at these:
  assert.notEqual(Math.round(2.5), roundHalfEven(2.5));
  assert.notEqual(Math.round(-1.5), roundHalfEven(-1.5));
});

test('quantizeInt rounds by the 1.5·2^52 add exactly as clip(roundHalfEven(x / s) + z): every tie, its neighbours, a sweep, extremes', () => {
  const reference = (x: number, s: number, z: number, qmin: number, qmax: number) => {
    if (Number.isNaN(x)) return qmin;
    const q = roundHalfEven(f(x / s)) + z;
    return Math.min(qmax, Math.max(qmin, q));
  };
  const ranges = [[-128, 127, 0], [0, 255, 128], [0, 255, 0], [-8, 7, 0], [-32768, 32767, 0], [0, 65535, 32768], [-128, 127, -3]] as const;
  let checked = 0;
  for (const [qmin, qmax, z] of ranges)
    for (const s of [1, 0.03125, f(0.0173), f(3.7e-5), 1e-8, f(250.5)]) {
      const xs: number[] = [NaN, Infinity, -Infinity, 0, -0, 3e38, -3e38, f(1e-45), 2 ** 60, -(2 ** 60)];
      // Every half-integer quotient across the range and one float32 ulp either side of it, and a sweep.
      for (let k = qmin - z - 3; k <= qmax - z + 3; k += Math.max(1, Math.floor((qmax - qmin) / 500))) {
        const x = f((k + 0.5) * s);
        xs.push(x, f(x * (1 + 2 ** -23)), f(x * (1 - 2 ** -23)), f(k * s), -x);
      }
      for (let i = 0; i < 2000; i++) xs.push(f((Math.sin(i * 12.9898) * 43758.5453 % 1) * (qmax - qmin) * s * 1.2));
      for (const x of xs) {
        assert.equal(quantizeInt(x, s, z, qmin, qmax), reference(x, s, z, qmin, qmax), `x=${x} s=${s} z=${z} [${qmin}, ${qmax}]`);
        checked++;
      }
    }
  assert.ok(checked > 50_000);
});

// ---- float32 division ----------------------------------------------------------------------------------------------

test('quantizeInt divides in float32 (x / s), which differs from x · (1/s) on some ties', () => {
  // Search float32 pairs (x, s) with x = fround((k + 0.5)·s), where the quotient lands on or next to a tie.
  let found: { x: number; s: number; div: number; mul: number } | undefined;
  outer: for (let i = 1; i < 4000; i++) {
    const s = f(0.001 + i * 0.000731); // float32 scales that are not powers of two
    const inv = f(1 / s);
    for (let k = -40; k <= 40; k++) {
      const x = f((k + 0.5) * s);
      const div = roundHalfEven(f(x / s));
      const mul = roundHalfEven(f(x * inv));
      if (div !== mul) {
        found = { x, s, div, mul };
        break outer;
      }
    }
  }
  assert.ok(found, 'a pair where division and multiply-by-reciprocal round differently exists');
  const { x, s, div, mul } = found;
  assert.equal(Math.abs(div - mul), 1);
  assert.equal(quantizeInt(x, s, 0, -128, 127), div, `quantizeInt(${x}, ${s}) follows x / s (${div}), not x·(1/s) (${mul})`);
  assert.equal(fakeQuantInt(x, s, 0, -128, 127), f(div * s));
});

// ---- integer quantization ------------------------------------------------------------------------------------------

test('quantizeInt / dequantizeInt: ties to even, zero point, saturation at qmin/qmax', () => {
  const s = 0.03125; // power of two: every (k + 0.5)·s is an exact tie after the division
  assert.equal(quantizeInt(0.5 * s, s, 0, -128, 127), 0);
  assert.equal(quantizeInt(1.5 * s, s, 0, -128, 127), 2);
  assert.equal(quantizeInt(2.5 * s, s, 0, -128, 127), 2);
  assert.equal(quantizeInt(-2.5 * s, s, 0, -128, 127), -2);
  assert.equal(quantizeInt(126.5 * s, s, 0, -128, 127), 126);
  assert.equal(quantizeInt(127.5 * s, s, 0, -128, 127), 127, '127.5 → 128 → clipped to 127');
  assert.equal(quantizeInt(-128.5 * s, s, 0, -128, 127), -128);
  assert.equal(quantizeInt(-129 * s, s, 0, -128, 127), -128);
  assert.equal(quantizeInt(1000, s, 0, -128, 127), 127);
  assert.equal(quantizeInt(-1000, s, 0, -128, 127), -128);
  assert.equal(quantizeInt(3e38, 1e-8, 0, -128, 127), 127, 'x / s overflows float32 to Infinity: still saturates');
  assert.equal(quantizeInt(Infinity, s, 0, -128, 127), 127);
  assert.equal(quantizeInt(-Infinity, s, 0, -128, 127), -128);
  // Zero point is added after rounding, then clipped: uint8 with z = 128.
  assert.equal(quantizeInt(2.5 * s, s, 128, 0, 255), 130);
  assert.equal(quantizeInt(-200 * s, s, 128, 0, 255), 0);
  assert.equal(quantizeInt(200 * s, s, 128, 0, 255), 255);
  // Dequantize: (q − z)·s, rounded to float32.
  assert.equal(dequantizeInt(130, s, 128), 0.0625);
  assert.equal(dequantizeInt(-128, 0.02, 0), f(-128 * f(0.02)));
  assert.equal(fakeQuantInt(0.031, 0.02, 0, -128, 127), f(2 * 0.02)); // 1.55 → 2
  assert.equal(fakeQuantInt(0.029, 0.02, 0, -128, 127), f(0.02)); // 1.45 → 1
  assert.equal(fakeQuantInt(5, 0.02, 0, -128, 127), f(127 * 0.02));
  assert.equal(fakeQuantInt(-5, 0.02, 0, -128, 127), f(-128 * 0.02));
});

test('integer q of −0 and of small negatives is +0 (an int8 has no −0; onnxruntime DequantizeLinear gives +0)', () => {
  // roundHalfEven(−0.2) is −0; adding the zero point (+0) makes it +0, as an integer should be.
  assert.ok(Object.is(quantizeInt(-0, 0.02, 0, -128, 127), 0));
  assert.ok(Object.is(quantizeInt(-0.004, 0.02, 0, -128, 127), 0));
  assert.ok(Object.is(fakeQuantInt(-0, 0.02, 0, -128, 127), 0));
  assert.ok(Object.is(fakeQuantInt(-0.004, 0.02, 0, -128, 127), 0));
  assert.ok(Object.is(fakeQuantInt(-0.004, 0.02, 3, -128, 127), 0));
});

// ---- scale from a range ----------------------------------------------------------------------------------------------

test('scaleFromRange: symmetric s = absmax / 127.5 for [-128, 127], stored as float32, offset 0', () => {
  // 2·2.55 / 255 = 0.02 (not 2.55/127 = 0.020078…)
  const a = scaleFromRange(-1, 2.55, SYM);
  assert.equal(a.scale, f(0.02));
  assert.equal(a.zeroPoint, 0);
  assert.notEqual(a.scale, f(2.55 / 127));
  // The larger magnitude wins, whichever side it is on.
  assert.equal(scaleFromRange(-2.55, 1, SYM).scale, f(0.02));
  assert.equal(scaleFromRange(-12.75, 0, SYM).scale, f(0.1));
  // Clamp min ≤ 0 ≤ max: [0.5, 3] uses [0, 3] → 3/127.5 = 0.023529411764705882…
  assert.equal(scaleFromRange(0.5, 3, SYM).scale, f(0.023529411764705882));
  assert.equal(scaleFromRange(-3, -0.5, SYM).scale, f(0.023529411764705882));
  // All-zero tensor: floor 1e-8 (as float32).
  assert.equal(SCALE_FLOOR, 1e-8);
  assert.equal(scaleFromRange(0, 0, SYM).scale, f(1e-8));
  assert.equal(scaleFromRange(0, 1e-12, SYM).scale, f(1e-8));
  // 4-bit symmetric [-8, 7]: absmax / 7.5
  assert.equal(scaleFromRange(-1, 1.5, { ...SYM, bits: 4, qmin: -8, qmax: 7 }).scale, f(0.2));
});

test('power-of-two scales are rounded UP: 0.02 → 2^-5, exact powers stay', () => {
  assert.equal(pow2Ceil(0.02), 0.03125);
  assert.equal(pow2Ceil(0.0625), 0.0625);
  assert.equal(pow2Ceil(0.0625 * (1 + 2 ** -52)), 0.125);
  assert.equal(pow2Ceil(0.0625 * (1 - 2 ** -53)), 0.0625);
  assert.equal(pow2Ceil(1), 1);
  assert.equal(pow2Ceil(3), 4);
  assert.equal(pow2Ceil(1e-8), 2 ** -26); // 2^-27 = 7.45e-9 < 1e-8 ≤ 2^-26 = 1.49e-8
  assert.equal(scaleFromRange(-1, 2.55, POT).scale, 0.03125, '0.02 rounds up to 2^-5, never down to 2^-6');
  assert.equal(scaleFromRange(-7.96875, 1, POT).scale, 0.0625, '7.96875 / 127.5 = 0.0625 exactly stays');
  assert.equal(scaleFromRange(0, 0, POT).scale, 2 ** -26, 'the floor is applied before rounding up');
});

// ---- FP8 E4M3 ------------------------------------------------------------------------------------------------------

/** Encode with the given tie rule and decode back. */
const e4m3 = (x: number, ties: 'even' | 'towardZero' = 'even') => float8ToFloat32(float32ToFloat8(x, 'e4m3fn', true, ties), 'e4m3fn');

test('FP8 E4M3: codes of landmark values (bias 7, max 448, min normal 2^-6, subnormal step 2^-9)', () => {
  assert.equal(float32ToFloat8(448, 'e4m3fn'), 0x7e);
  assert.equal(float8ToFloat32(0x7e, 'e4m3fn'), 448);
  assert.ok(Number.isNaN(float8ToFloat32(0x7f, 'e4m3fn')));
  assert.equal(float32ToFloat8(-448, 'e4m3fn'), 0xfe);
  assert.equal(float32ToFloat8(1, 'e4m3fn'), 0x38); // exponent 7 = bias, mantissa 0
  assert.equal(float32ToFloat8(2 ** -6, 'e4m3fn'), 0x08); // min normal
  assert.equal(float32ToFloat8(7 * 2 ** -9, 'e4m3fn'), 0x07); // max subnormal
  assert.equal(float32ToFloat8(2 ** -9, 'e4m3fn'), 0x01); // smallest subnormal
  assert.equal(float8ToFloat32(0x01, 'e4m3fn'), 2 ** -9);
  assert.equal(float32ToFloat8(0, 'e4m3fn'), 0x00);
  assert.equal(float32ToFloat8(-0, 'e4m3fn'), 0x80);
  assert.ok(Object.is(float8ToFloat32(0x80, 'e4m3fn'), -0));
  assert.equal(float32ToFloat8(NaN, 'e4m3fn'), 0x7f);
});

test('FP8 E4M3: saturation and the tie just above 448', () => {
  assert.equal(e4m3(464), 448, '464 is halfway between 448 (0x7E, even) and 480 (not finite): even → 448');
  assert.equal(e4m3(464, 'towardZero'), 448);
  assert.equal(e4m3(465), 448, 'beyond the tie: saturates');
  assert.equal(e4m3(500), 448);
  assert.equal(e4m3(1e30), 448);
  assert.equal(e4m3(Infinity), 448);
  assert.equal(e4m3(-500), -448);
  assert.equal(float32ToFloat8(500, 'e4m3fn', false), 0x7f, 'without saturation: NaN');
  assert.equal(e4m3(456), 448, '456 is below the tie');
  // The top binade steps by 32: …, 416 (0x7D, odd), 448 (0x7E, even).
  assert.equal(e4m3(432), 448, '432 is halfway between 416 (odd) and 448 (even) → 448');
  assert.equal(e4m3(432, 'towardZero'), 416);
  assert.equal(e4m3(431), 416);
});

test('FP8 E4M3: subnormal ties', () => {
  assert.equal(e4m3(2 ** -10), 0, '2^-10: halfway between 0 (even) and 2^-9 → 0');
  assert.equal(e4m3(2 ** -10, 'towardZero'), 0);
  assert.equal(e4m3(f(2 ** -10 * (1 + 2 ** -20))), 2 ** -9, 'just above half the smallest subnormal');
  assert.equal(e4m3(3 * 2 ** -10), 2 * 2 ** -9, '3·2^-10 = 1.5·2^-9: between 1 (odd) and 2 (even) steps → 2·2^-9');
  assert.equal(e4m3(3 * 2 ** -10, 'towardZero'), 2 ** -9);
  assert.equal(e4m3(5 * 2 ** -10), 2 * 2 ** -9, '2.5 steps → 2 (even)');
  assert.equal(e4m3(5 * 2 ** -10, 'towardZero'), 2 * 2 ** -9);
  assert.equal(e4m3(-3 * 2 ** -10), -2 * 2 ** -9);
  assert.equal(e4m3(-3 * 2 ** -10, 'towardZero'), -(2 ** -9));
  // Across the subnormal / normal boundary: 7.5 steps = 15·2^-10 lies between 7·2^-9 (0x07, odd) and 2^-6 (0x08).
  assert.equal(e4m3(15 * 2 ** -10), 2 ** -6);
  assert.equal(e4m3(15 * 2 ** -10, 'towardZero'), 7 * 2 ** -9);
  assert.ok(Object.is(e4m3(-(2 ** -11)), -0), 'a tiny negative rounds to −0');
});

test('FP8 E4M3: normal-range ties', () => {
  // 1 + 1/16 is halfway between 1 (0x38, even) and 1.125 (0x39): both rules give 1.
  assert.equal(e4m3(1.0625), 1);
  assert.equal(e4m3(1.0625, 'towardZero'), 1);
  // 1.1875 is halfway between 1.125 (0x39, odd) and 1.25 (0x3A, even).
  assert.equal(e4m3(1.1875), 1.25);
  assert.equal(e4m3(1.1875, 'towardZero'), 1.125);
  assert.equal(e4m3(-1.1875), -1.25);
  assert.equal(e4m3(-1.1875, 'towardZero'), -1.125);
  // Off-tie values round to the nearest under both rules.
  assert.equal(e4m3(1.19), 1.25);
  assert.equal(e4m3(1.19, 'towardZero'), 1.25);
  assert.equal(e4m3(1.18), 1.125);
  // Binade boundary: at exponent 1 the values are 2, 2.25, …, 3.75 (0x40…0x47); 3.875 lies halfway between
  // 3.75 (0x47, odd) and 4 (0x48, even) → 4.
  assert.equal(e4m3(3.875), 4);
  assert.equal(e4m3(3.875, 'towardZero'), 3.75);
});

test('roundToE4m3fn (the fast path of fakeQuantFp8) equals encode-then-decode on every tie, its neighbours and a dense float32 sweep', () => {
  const generic = (x: number) => float8ToFloat32(float32ToFloat8(x, 'e4m3fn'), 'e4m3fn');
  // Every tie and E4M3 value with its float32 neighbours; bit patterns from 0 to beyond 2^10.
  const points = [0, -0, NaN, Infinity, -Infinity, 448, 464, 480, 2 ** -6, 2 ** -9, 2 ** -10, ...e4m3TiePoints(), ...float32Sweep(0x44800000, 997)];
  let bad = 0;
  for (const x of points)
    for (const v of [x, -x]) {
      const [a, b] = [roundToE4m3fn(v), generic(v)];
      if (!Object.is(a, b) && !(Number.isNaN(a) && Number.isNaN(b))) assert.fail(`x=${v}: fast ${a}, generic ${b} (${++bad})`);
    }
  assert.ok(points.length > 1_000_000);
});

test('e4m3fnCode (the realised FP8 weight codes) equals float32ToFloat8(·, e4m3fn) on every tie, its neighbours and a dense float32 sweep', () => {
  const points = [0, -0, NaN, Infinity, -Infinity, 448, 464, 480, 1e30, 2 ** -6, 2 ** -9, 2 ** -10, 2 ** -149, ...e4m3TiePoints(), ...float32Sweep(0x44800000, 997)];
  for (const x of points)
    for (const v of [x, -x]) {
      const [a, b] = [e4m3fnCode(v), float32ToFloat8(v, 'e4m3fn', true, 'even')];
      if (a !== b) assert.fail(`x=${v}: fast 0x${a.toString(16)}, generic 0x${b.toString(16)}`);
    }
  assert.ok(points.length > 1_000_000);
});

test('quantizeFp8 / fakeQuantFp8 divide by the scale in float32, round to E4M3, multiply back', () => {
  const s = 0.25;
  assert.equal(quantizeFp8(1.1875 * s, s), 0x3a);
  assert.equal(fakeQuantFp8(1.1875 * s, s), 1.25 * s);
  assert.equal(fakeQuantFp8(1.1875 * s, s, 'e4m3fn', 'towardZero'), 1.125 * s);
  assert.equal(fakeQuantFp8(448 * s, s), 112);
  assert.equal(fakeQuantFp8(1000, s), 112, 'saturates at 448·s');
  assert.equal(fakeQuantFp8(-1000, s), -112);
  assert.equal(fakeQuantFp8(2 ** -10 * s, s), 0);
  assert.equal(fakeQuantFp8(3 * 2 ** -10 * s, s), 2 ** -8 * s);
  // A non-power-of-two scale: x / s = 0.3 / 0.1 in float32 = 3.0000001…? → nearest E4M3 is 3 → 3·0.1 in float32.
  const q = fakeQuantFp8(0.3, 0.1);
  assert.equal(q, f(3 * f(0.1)));
  // Scale 16: 5000 / 16 = 312.5 → E4M3 neighbours 288 and 320 → 320 → 5120.
  assert.equal(fakeQuantFp8(5000, 16), 5120);
  assert.ok(Object.is(fakeQuantFp8(-0, 4), -0), 'FP8 keeps the sign of zero (as onnxruntime does)');
});

test('forEachChannelRun: contiguous runs covering every element once, each with its channel along the axis', () => {
  // Hand-worked: dims [2, 3, 2], axis 1 → runs of 2 elements, channels 0 1 2 0 1 2.
  const runs: number[][] = [];
  forEachChannelRun([2, 3, 2], 1, (s, e, c) => runs.push([s, e, c]));
  assert.deepEqual(runs, [[0, 2, 0], [2, 4, 1], [4, 6, 2], [6, 8, 0], [8, 10, 1], [10, 12, 2]]);
  for (const [dims, axis] of [[[4, 3, 5, 5], 0], [[4, 3, 5, 5], 1], [[7, 9], 1], [[6], 0], [[2, 3, 4], undefined]] as [number[], number | undefined][]) {
    const n = dims.reduce((a, b) => a * b, 1);
    const seen = new Int32Array(n).fill(-1);
    let next = 0;
    forEachChannelRun(dims, axis, (s, e, c) => {
      assert.equal(s, next, 'runs are contiguous and in order');
      for (let i = s; i < e; i++) seen[i] = c;
      next = e;
    });
    assert.equal(next, n);
    // The per-element definition: channel = floor(i / (product of dims after the axis)) mod dims[axis].
    const inner = axis === undefined ? n : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
    const C = axis === undefined ? 1 : dims[axis];
    assert.deepEqual([...seen], Array.from({ length: n }, (_, i) => Math.floor(i / inner) % C), `dims ${dims}, axis ${axis}`);
  }
});
