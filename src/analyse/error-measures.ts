/**
 * Streaming error measures between a quantized-network tensor A and the float-network tensor B (DESIGN.md §3).
 * Sums are kept in double; nothing of the tensors is retained between batches.
 * - powerRatio: PPQ's torch_snr_error — per sample Σ(A−B)² / (ΣB² + 1e-7), averaged over samples. Samples are
 *   the leading dimension (PPQ flattens from dim 1).
 * - normRatio: ‖A−B‖_F / ‖B‖_F over all samples (the OnnxQuant README definition).
 */
import type { ErrorMeasures } from './schema.ts';

export const PPQ_POWER_EPS = 1e-7;

/** PPQ's per-sample power ratio Σ(A−B)² / (ΣB² + 1e-7) of each of the `samples` equal leading slices (the same
 * formula as `ErrorAccumulator.powerRatio`, kept per sample for paired comparisons). */
export function perSamplePowerRatio(a: Float32Array, b: Float32Array, samples: number): Float64Array {
  const out = new Float64Array(samples);
  new ErrorAccumulator().add(a, b, samples, out);
  return out;
}

export class ErrorAccumulator {
  private samples = 0;
  private powerRatioSum = 0;
  private noise = 0;
  private signal = 0;
  private quantPower = 0;
  private dot = 0;
  private maxAbs = 0;

  /** A and B with the same shape; `samplesInBatch` splits them into equal per-sample slices; `perSample`, when
   * given, receives each slice's power ratio. */
  add(a: Float32Array, b: Float32Array, samplesInBatch: number, perSample?: Float64Array): void {
    if (a.length !== b.length) throw new Error(`error measures: shapes differ (${a.length} vs ${b.length} elements)`);
    const per = a.length / samplesInBatch;
    for (let s = 0; s < samplesInBatch; s++) {
      let noise = 0;
      let signal = 0;
      for (let i = s * per, end = i + per; i < end; i++) {
        const d = a[i] - b[i];
        noise += d * d;
        signal += b[i] * b[i];
        this.quantPower += a[i] * a[i];
        this.dot += a[i] * b[i];
        const ad = Math.abs(d);
        if (ad > this.maxAbs) this.maxAbs = ad;
      }
      const ratio = noise / (signal + PPQ_POWER_EPS);
      if (perSample) perSample[s] = ratio;
      this.powerRatioSum += ratio;
      this.noise += noise;
      this.signal += signal;
      this.samples++;
    }
  }

  result(): ErrorMeasures {
    const snr = this.noise === 0 ? Infinity : 10 * Math.log10(this.signal / this.noise);
    const denom = Math.sqrt(this.quantPower * this.signal);
    return {
      powerRatio: this.samples ? this.powerRatioSum / this.samples : NaN,
      normRatio: this.signal > 0 ? Math.sqrt(this.noise / this.signal) : this.noise > 0 ? Infinity : 0,
      snrDb: snr,
      cosine: denom > 0 ? this.dot / denom : 1,
      maxAbs: this.maxAbs,
    };
  }
}
