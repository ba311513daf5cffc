/** Small numeric helpers shared by the quantizer and the data pipeline (one implementation each). */

/**
 * Round half to even (IEEE's default, numpy's round, Python's round()): Math.round rounds .5 up, which is wrong
 * for quantization (−0.5, 0.5, 2.5 …) and for torchvision/OpenCV reference arithmetic.
 */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds .5 up; at an exact tie step back to the even neighbour.
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** mulberry32: a tiny seeded PRNG, so generated data and sampling are the same on every machine. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return xs.length ? s / xs.length : NaN;
}

/**
 * Paired per-sample differences d = a − b: their mean and its standard error (sample standard deviation / √n; 0 with
 * one pair). What a recipe's keep test and the zoo's float-vs-quantized comparison both rest on.
 */
export function pairedDifference(a: ArrayLike<number>, b: ArrayLike<number>): { mean: number; se: number; n: number } {
  const n = a.length;
  if (b.length !== n) throw new RangeError(`pairedDifference: ${n} vs ${b.length} samples`);
  const d = Array.from({ length: n }, (_, i) => a[i] - b[i]);
  const m = mean(d);
  if (n < 2) return { mean: m, se: 0, n };
  let v = 0;
  for (const x of d) v += (x - m) ** 2;
  return { mean: m, se: Math.sqrt(v / (n - 1) / n), n };
}
