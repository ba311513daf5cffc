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
