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
