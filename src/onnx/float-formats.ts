/**
 * Bit-exact conversions between float32 (JS numbers rounded with Math.fround) and the narrow float formats ONNX
 * stores: float16, bfloat16 and the four float8 types. Encoding rounds to nearest with ties to even (IEEE and
 * ONNX Cast semantics) unless told otherwise; decoding is exact.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function float32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

export function bitsToFloat32(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0];
}

export function float16ToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 0x1f) return man ? NaN : sign * Infinity;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** float32 → float16 bits, round to nearest even; overflow → ±Inf (IEEE). */
export function float32ToFloat16(x: number): number {
  const bits = float32Bits(x);
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let man = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: ±0
    man |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = man & ((1 << shift) - 1);
    let h = man >>> shift;
    if (rest > half || (rest === half && (h & 1))) h += 1;
    return sign | h;
  }
  const rest = man & 0x1fff;
  let h = (e << 10) | (man >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h += 1; // may carry into the exponent: still correct
  return sign | h;
}

export function bfloat16ToFloat32(b: number): number {
  return bitsToFloat32((b & 0xffff) << 16);
}

/** float32 → bfloat16 bits, round to nearest even; NaN stays a quiet NaN. */
export function float32ToBfloat16(x: number): number {
  const bits = float32Bits(x);
  if (Number.isNaN(x)) return ((bits >>> 16) | 0x40) & 0xffff;
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** The four ONNX float8 types. FN: finite only (no Inf); UZ: unsigned zero, NaN is 0x80. */
export type Float8Kind = 'e4m3fn' | 'e4m3fnuz' | 'e5m2' | 'e5m2fnuz';

interface Float8Format {
  expBits: number;
  manBits: number;
  bias: number;
  /** NaN encodings are excluded from the value table. */
  isNaN(code: number): boolean;
  isInf(code: number): boolean;
  maxFinite: number;
}

const FORMATS: Record<Float8Kind, Float8Format> = {
  e4m3fn: { expBits: 4, manBits: 3, bias: 7, isNaN: (c) => (c & 0x7f) === 0x7f, isInf: () => false, maxFinite: 448 },
  e4m3fnuz: { expBits: 4, manBits: 3, bias: 8, isNaN: (c) => c === 0x80, isInf: () => false, maxFinite: 240 },
  e5m2: {
    expBits: 5,
    manBits: 2,
    bias: 15,
    isNaN: (c) => (c & 0x7c) === 0x7c && (c & 3) !== 0,
    isInf: (c) => (c & 0x7f) === 0x7c,
    maxFinite: 57344,
  },
  e5m2fnuz: { expBits: 5, manBits: 2, bias: 16, isNaN: (c) => c === 0x80, isInf: () => false, maxFinite: 57344 },
};

export function float8MaxFinite(kind: Float8Kind): number {
  return FORMATS[kind].maxFinite;
}

export function float8ToFloat32(code: number, kind: Float8Kind): number {
  const f = FORMATS[kind];
  code &= 0xff;
  if (f.isNaN(code)) return NaN;
  const sign = code & 0x80 ? -1 : 1;
  if (f.isInf(code)) return sign * Infinity;
  const exp = (code >> f.manBits) & ((1 << f.expBits) - 1);
  const man = code & ((1 << f.manBits) - 1);
  const mag = exp === 0 ? man * 2 ** (1 - f.bias - f.manBits) : (1 + man / (1 << f.manBits)) * 2 ** (exp - f.bias);
  return sign * mag;
}

/** Non-negative finite magnitudes with their codes, ascending; code order equals magnitude order. */
const tables = new Map<Float8Kind, { values: Float64Array; codes: Uint8Array }>();
function table(kind: Float8Kind): { values: Float64Array; codes: Uint8Array } {
  let t = tables.get(kind);
  if (!t) {
    const f = FORMATS[kind];
    const codes: number[] = [];
    for (let c = 0; c < 0x80; c++) if (!f.isNaN(c) && !f.isInf(c)) codes.push(c);
    t = { values: Float64Array.from(codes, (c) => float8ToFloat32(c, kind)), codes: Uint8Array.from(codes) };
    tables.set(kind, t);
  }
  return t;
}

/**
 * The E4M3FN value nearest to the float32 x, ties to even, saturating at ±448 — what
 * float8ToFloat32(float32ToFloat8(x, 'e4m3fn'), 'e4m3fn') returns, without the table search (the FP8 observer
 * calls it 7 times per sample; tested equal over every tie and a dense sweep of float32). Normal range
 * (|x| ≥ 2^-6): round the float32 significand to 3 bits in the bit pattern (adding 2^19 − 1 plus the kept lsb
 * carries exactly on ties to even); subnormals are multiples of 2^-9, rounded with roundHalfEven-style logic on
 * x·512, which is exact in double.
 */
export function roundToE4m3fn(x: number): number {
  if (x !== x) return NaN;
  const a = Math.abs(x);
  let r: number;
  if (a >= 448) r = 448;
  else if (a >= 2 ** -6) {
    f32[0] = a;
    const u = u32[0];
    u32[0] = (u + 0x7ffff + ((u >>> 20) & 1)) & 0xfff00000;
    r = f32[0];
    if (r > 448) r = 448; // only [464, 480) rounds up past 448; 464 itself ties to 448's even code
  } else {
    const q = a * 512;
    const fl = Math.floor(q);
    const d = q - fl;
    r = (d > 0.5 || (d === 0.5 && (fl & 1) === 1) ? fl + 1 : fl) / 512;
  }
  return x < 0 || Object.is(x, -0) ? -r : r;
}

/**
 * float32ToFloat8(x, 'e4m3fn') (saturating, ties to even) without the table search: the code of roundToE4m3fn(x),
 * read from its bit pattern. Realising FP8 weights spent ~180 ns per weight in the search (PP-OCRv4 rec, 2.7 M
 * weights); tested equal to float32ToFloat8 on every tie, its neighbours and a dense float32 sweep.
 */
export function e4m3fnCode(x: number): number {
  if (x !== x) return 0x7f;
  const r = roundToE4m3fn(x);
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.abs(r);
  if (a < 2 ** -6) return sign | (a * 512); // subnormals and zero: k · 2^-9, code k (0…7)
  f32[0] = a;
  const u = u32[0];
  // Normal: biased E4M3 exponent (float32's − 127 + 7) over the 3 kept mantissa bits.
  return sign | ((((u >>> 23) - 120) << 3) | ((u >>> 20) & 7));
}

/**
 * Ties rule for values exactly halfway between two float8 neighbours. 'even' is IEEE/ONNX (what onnxruntime's
 * QuantizeLinear and Cast do); 'towardZero' is what PPQ's CUDA FP8 kernel does.
 */
export type Float8Ties = 'even' | 'towardZero';

/**
 * float32 → float8 code, round to nearest. With `saturate` (ONNX's default for QuantizeLinear/Cast) magnitudes
 * beyond the largest finite value become ±max; without it they become Inf (e5m2) or NaN (the others).
 */
export function float32ToFloat8(x: number, kind: Float8Kind, saturate = true, ties: Float8Ties = 'even'): number {
  const f = FORMATS[kind];
  const uz = kind.endsWith('uz');
  if (Number.isNaN(x)) return uz ? 0x80 : 0x7f;
  const neg = x < 0 || Object.is(x, -0);
  const signBit = neg ? 0x80 : 0; // fnuz: a rounded-to-zero result returns +0 below (no negative zero)
  const a = Math.abs(x);
  const { values, codes } = table(kind);
  const top = values.length - 1;
  let code: number;
  if (a >= values[top]) {
    // Within half an ulp above max, round to max; at exactly half an ulp, ties-to-even keeps max when its code is
    // even (e4m3fn: 448 = 0x7E, so 464 → 448) and overflows when odd (e5m2: 57344 = 0x7B, so 61440 → Inf).
    const ulp = values[top] - values[top - 1];
    const overflow = a > values[top] + ulp / 2 || (a === values[top] + ulp / 2 && ties === 'even' && (codes[top] & 1) === 1);
    if (!overflow || saturate) code = codes[top];
    else if (f.isInf(0x7c)) code = 0x7c;
    else return uz ? 0x80 : 0x7f | signBit;
  } else {
    let lo = 0;
    let hi = top; // values[lo] <= a < values[hi]
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (values[mid] <= a) lo = mid;
      else hi = mid;
    }
    const dLo = a - values[lo];
    const dHi = values[hi] - a;
    if (dLo < dHi) code = codes[lo];
    else if (dHi < dLo) code = codes[hi];
    else code = ties === 'towardZero' || (codes[lo] & 1) === 0 ? codes[lo] : codes[hi];
  }
  if (code === 0 && uz) return 0;
  return code | signBit;
}
