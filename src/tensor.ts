/** A dense float32 tensor on the host: the currency between data loaders, observers and the runtime. */
export interface FloatTensor {
  readonly dims: readonly number[];
  readonly data: Float32Array;
}

/** Number of elements of a shape (an empty shape is a scalar: 1). */
export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}
