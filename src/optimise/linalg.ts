/**
 * Dense symmetric linear algebra in double precision for the weight-rounding pass: matrices are row-major
 * Float64Array of n×n. Sizes are a layer's fan-in (≤ a few thousand), so O(n³) in TypeScript is fine.
 */

/** Lower-triangular L with A = L·Lᵀ, or undefined when A is not (numerically) positive definite. */
export function cholesky(a: Float64Array, n: number): Float64Array | undefined {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    const lj = j * n;
    for (let k = 0; k < j; k++) d -= l[lj + k] * l[lj + k];
    if (!(d > 0)) return undefined;
    const djj = Math.sqrt(d);
    l[lj + j] = djj;
    for (let i = j + 1; i < n; i++) {
      const li = i * n;
      let s = a[li + j];
      for (let k = 0; k < j; k++) s -= l[li + k] * l[lj + k];
      l[li + j] = s / djj;
    }
  }
  return l;
}

/** A⁻¹ from A's Cholesky factor L (A = L·Lᵀ): A⁻¹ = L⁻ᵀ·L⁻¹. */
export function inverseFromCholesky(l: Float64Array, n: number): Float64Array {
  // Inverse of the lower-triangular L, column by column (forward substitution on unit vectors).
  const li = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    li[c * n + c] = 1 / l[c * n + c];
    for (let i = c + 1; i < n; i++) {
      let s = 0;
      for (let k = c; k < i; k++) s -= l[i * n + k] * li[k * n + c];
      li[i * n + c] = s / l[i * n + i];
    }
  }
  // (L⁻¹)ᵀ·L⁻¹, symmetric: fill both halves.
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += li[k * n + i] * li[k * n + j];
      inv[i * n + j] = s;
      inv[j * n + i] = s;
    }
  return inv;
}

/** y = A·x for a row-major n×n matrix. */
export function matVec(a: Float64Array, x: Float64Array, n: number): Float64Array {
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += a[i * n + k] * x[k];
    y[i] = s;
  }
  return y;
}

/**
 * sums[b] = Σₚ u[uo + p]·v[b·take + p] for b in [from, to), each sum from 0 in the order of p: the numbers one loop
 * per b gives, four rows at a time (four independent chains of additions, where one chain waits on each add).
 */
export function dotRows(u: Float32Array | Float64Array, uo: number, v: Float32Array, take: number, from: number, to: number, sums: Float64Array): void {
  let b = from;
  for (; b + 4 <= to; b += 4) {
    const o0 = b * take;
    const o1 = o0 + take;
    const o2 = o1 + take;
    const o3 = o2 + take;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let p = 0; p < take; p++) {
      const x = u[uo + p];
      s0 += x * v[o0 + p];
      s1 += x * v[o1 + p];
      s2 += x * v[o2 + p];
      s3 += x * v[o3 + p];
    }
    sums[b] = s0;
    sums[b + 1] = s1;
    sums[b + 2] = s2;
    sums[b + 3] = s3;
  }
  for (; b < to; b++) {
    const o = b * take;
    let s = 0;
    for (let p = 0; p < take; p++) s += u[uo + p] * v[o + p];
    sums[b] = s;
  }
}
