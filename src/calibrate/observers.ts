/**
 * Observers turn a stream of tensors into quantization parameters, in memory that does not grow with the number
 * of batches: min/max and per-batch percentiles are running sums, histograms have a fixed bin count (the range
 * doubles by merging bin pairs when a larger value arrives), FP8-MSE keeps one squared-error sum per candidate.
 */
import type { QuantParams, TensorQuantConfig } from '../quant/config.ts';
import { fakeQuantFp8, forEachChannelRun, fp8Kind, fakeQuantInt, scaleFromRange } from '../quant/numerics.ts';
import { seededRandom } from '../math.ts';

export interface Observer {
  observe(data: Float32Array, dims: readonly number[]): void;
  params(): QuantParams;
}

function single(scale: number, zeroPoint: number, min: number, max: number): QuantParams {
  return { scale: Float32Array.of(scale), zeroPoint: Int32Array.of(zeroPoint), min: Float32Array.of(min), max: Float32Array.of(max) };
}

/** Min and max over everything observed; per channel along `axis` when given. */
export class MinMaxObserver implements Observer {
  private mins?: Float64Array;
  private maxs?: Float64Array;
  constructor(
    private readonly cfg: TensorQuantConfig,
    private readonly axis?: number,
  ) {}
  /** The range of one batch computed elsewhere (in-graph ReduceMin/ReduceMax); per-tensor only. */
  observeRange(min: number, max: number): void {
    if (this.axis !== undefined) throw new Error('observeRange is per-tensor');
    if (!this.mins) {
      this.mins = Float64Array.of(Infinity);
      this.maxs = Float64Array.of(-Infinity);
    }
    if (min < this.mins[0]) this.mins[0] = min;
    if (max > this.maxs![0]) this.maxs![0] = max;
  }
  observe(data: Float32Array, dims: readonly number[]): void {
    const C = this.axis === undefined ? 1 : dims[this.axis];
    if (!this.mins) {
      this.mins = new Float64Array(C).fill(Infinity);
      this.maxs = new Float64Array(C).fill(-Infinity);
    }
    const mins = this.mins;
    const maxs = this.maxs!;
    forEachChannelRun(this.axis === undefined ? [data.length] : dims, this.axis, (start, end, c) => {
      let [lo, hi] = [mins[c], maxs[c]];
      for (let i = start; i < end; i++) {
        const v = data[i];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      [mins[c], maxs[c]] = [lo, hi];
    });
  }
  params(): QuantParams {
    if (!this.mins) throw new Error('minmax observer saw no data');
    const C = this.mins.length;
    const out: QuantParams = { scale: new Float32Array(C), zeroPoint: new Int32Array(C), min: new Float32Array(C), max: new Float32Array(C) };
    if (this.axis !== undefined) out.axis = this.axis;
    for (let c = 0; c < C; c++) {
      const { scale, zeroPoint } = scaleFromRange(this.mins[c], this.maxs![c], this.cfg);
      out.scale[c] = scale;
      out.zeroPoint[c] = zeroPoint;
      out.min[c] = this.mins[c];
      out.max[c] = this.maxs![c];
    }
    return out;
  }
}

/** k-th smallest (0-based) of a scratch copy, by quickselect (Hoare partition): O(n) per call. */
export function selectKth(a: Float32Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

/**
 * The value at sorted index `k` (0-based) for k near either end, in one pass: a bounded heap keeps the k+1 most
 * extreme values, and almost every element is rejected by one comparison with the heap's root. This is what makes
 * the percentile observer cheap (k ≈ n·1e-4); for k near the middle it falls back to quickselect.
 */
export function sortedValueAt(data: Float32Array, k: number, scratch?: Float32Array): number {
  const n = data.length;
  const fromTop = n - 1 - k;
  const small = Math.min(k, fromTop) + 1;
  if (small > 4096) {
    const a = scratch && scratch.length >= n ? scratch.subarray(0, n) : new Float32Array(n);
    a.set(data);
    return selectKth(a, k);
  }
  const largest = fromTop < k;
  // Heap of the `small` most extreme values; root = the least extreme of them (the answer at the end).
  const heap = new Float32Array(small);
  const worse = largest ? (a: number, b: number) => a < b : (a: number, b: number) => a > b;
  let size = 0;
  for (let i = 0; i < n; i++) {
    const v = data[i];
    if (size < small) {
      let j = size++;
      heap[j] = v;
      while (j > 0) {
        const parent = (j - 1) >> 1;
        if (!worse(heap[j], heap[parent])) break;
        const t = heap[j];
        heap[j] = heap[parent];
        heap[parent] = t;
        j = parent;
      }
    } else if (largest ? v > heap[0] : v < heap[0]) {
      heap[0] = v;
      let j = 0;
      for (;;) {
        const l = 2 * j + 1;
        const r = l + 1;
        let m = j;
        if (l < size && worse(heap[l], heap[m])) m = l;
        if (r < size && worse(heap[r], heap[m])) m = r;
        if (m === j) break;
        const t = heap[j];
        heap[j] = heap[m];
        heap[m] = t;
        j = m;
      }
    }
  }
  return heap[0];
}

/**
 * PPQ's percentile observer: per batch, over the flattened tensor, min = the value at sorted index
 * floor(n·(1−p)) and max = the value at min(floor(n·p), n−1) (torch.kthvalue with k = index + 1); the per-batch
 * values are averaged over batches (in double here; PPQ averages a float32 tensor). Index arithmetic is done in
 * double exactly as Python does it, so 1 − 0.9999 = 9.999999999998899e-05.
 */
export class PercentileObserver implements Observer {
  private sumMin = 0;
  private sumMax = 0;
  private batches = 0;
  private scratch = new Float32Array(0);
  constructor(private readonly cfg: TensorQuantConfig) {}
  observe(data: Float32Array): void {
    const n = data.length;
    const p = this.cfg.percentile ?? 0.9999;
    const minIdx = Math.max(0, Math.floor(n * (1 - p)));
    const maxIdx = Math.min(Math.floor(n * p), n - 1);
    if (this.scratch.length < n && Math.min(minIdx, n - 1 - maxIdx) > 4096) this.scratch = new Float32Array(n);
    this.observeOrderStatistics(sortedValueAt(data, minIdx, this.scratch), sortedValueAt(data, maxIdx, this.scratch));
  }
  /** The two per-batch order statistics, when computed elsewhere (inside onnxruntime: in-graph-stats.ts). */
  observeOrderStatistics(min: number, max: number): void {
    this.sumMin += min;
    this.sumMax += max;
    this.batches++;
  }
  params(): QuantParams {
    if (!this.batches) throw new Error('percentile observer saw no data');
    const min = this.sumMin / this.batches;
    const max = this.sumMax / this.batches;
    const { scale, zeroPoint } = scaleFromRange(min, max, this.cfg);
    return single(scale, zeroPoint, min, max);
  }
}

export const FP8_SCALE_CANDIDATES = [2 ** -7, 2 ** -5, 2 ** -3, 1, 4, 16, 64] as const;

/**
 * Graphcore FP8 rule: the per-tensor scale is the candidate with the least mean squared FP8 round-trip error.
 * Activations: 4096 samples per batch drawn with a seeded generator (PPQ draws 4096 random samples per batch);
 * weights (`sampleAll`): every value. Ties go to the smaller scale (first in ascending order).
 */
export class Fp8MseObserver implements Observer {
  private readonly sse = new Float64Array(FP8_SCALE_CANDIDATES.length);
  private count = 0;
  private min = Infinity;
  private max = -Infinity;
  private readonly rand = seededRandom(0x5eed);
  constructor(
    private readonly cfg: TensorQuantConfig,
    private readonly sampleAll = false,
    private readonly samplesPerBatch = 4096,
  ) {}
  /** The uniforms the next sampled batch will use (drawn once, kept until a batch consumes them). */
  private pending: Float64Array | null = null;
  observe(data: Float32Array): void {
    if (!this.samples(data.length)) return this.accumulate(data);
    const u = this.uniforms();
    this.observeSample(Float32Array.from(u, (r) => data[Math.floor(r * data.length)]));
  }
  /** Whether a batch tensor of n values is sampled (else every value is used, in order, and no uniform drawn). */
  samples(n: number): boolean {
    return !this.sampleAll && n > this.samplesPerBatch;
  }
  /**
   * The next batch's uniforms in [0, 1): sample j is element floor(u[j]·n) — computed the same way (in double)
   * inside onnxruntime by in-graph-stats.ts, so only the samples leave the runtime.
   */
  uniforms(): Float64Array {
    if (!this.pending) {
      // A fresh array each batch: the previous one may still be wrapped by an onnxruntime tensor.
      const u = new Float64Array(this.samplesPerBatch);
      for (let j = 0; j < u.length; j++) u[j] = this.rand();
      this.pending = u;
    }
    return this.pending;
  }
  /** A batch's samples, drawn with `uniforms()`; the next batch draws new ones. */
  observeSample(sample: Float32Array): void {
    this.pending = null;
    this.accumulate(sample);
  }
  /**
   * The candidates are powers of two, and E4M3's normals are numbers of 4 significant bits: wherever v/S falls in
   * the normal window [2^-6, 448), v/S and x̂·S are exact and fakeQuant(v, S) is v rounded to 4 significant bits —
   * the same value for every such S. So that error is computed once per value, and only candidates under which v
   * saturates or goes subnormal take their own round trip (most values sit inside the window for most of the seven
   * candidates, which span 13 binades against the window's 15). Same sums, bit for bit (tested against the
   * round trip for every candidate).
   */
  private accumulate(values: Float32Array): void {
    const kind = fp8Kind(this.cfg.format);
    const shared = kind === 'e4m3fn';
    for (let s = 0; s < values.length; s++) {
      const v = values[s];
      if (v < this.min) this.min = v;
      if (v > this.max) this.max = v;
      const a = Math.abs(v);
      if (a === 0) continue; // ±0 round-trips exactly under every candidate: adds 0 (often half a ReLU's output)
      let normal = NaN; // the in-window error, once computed
      for (let c = 0; c < FP8_SCALE_CANDIDATES.length; c++) {
        const S = FP8_SCALE_CANDIDATES[c];
        let d: number;
        if (shared && a >= 2 ** -6 * S && a < 448 * S) {
          if (normal !== normal) normal = fakeQuantFp8(v, S, kind) - v;
          d = normal;
        } else d = fakeQuantFp8(v, S, kind) - v;
        this.sse[c] += d * d;
      }
    }
    this.count += values.length;
  }
  /** The running sum of squared round-trip errors per candidate (FP8_SCALE_CANDIDATES order). */
  squaredErrors(): readonly number[] {
    return [...this.sse];
  }
  params(): QuantParams {
    if (!this.count) throw new Error('fp8 observer saw no data');
    let best = 0;
    for (let c = 1; c < this.sse.length; c++) if (this.sse[c] < this.sse[best]) best = c;
    return single(FP8_SCALE_CANDIDATES[best], 0, this.min, this.max);
  }
}

/**
 * A fixed-size histogram of |x| over [0, range). When a value beyond the range arrives, the range doubles and
 * neighbouring bins merge, so memory is constant and one pass suffices (no separate min/max pass). A batch is
 * counted into integer tallies first and added to the totals after (observe on the 2-core VM, extremes included: ~9 →
 * ~6 ns per value); the counts are the same as the plain loop's (tested). NaN is not counted.
 */
export class AbsHistogram {
  readonly counts: Float64Array;
  range = 0;
  private readonly tally: Uint32Array;
  constructor(readonly bins = 2048) {
    this.counts = new Float64Array(bins);
    this.tally = new Uint32Array(bins);
  }
  /** Counts a batch; `absmax` = max |x| over it, when the caller has it already. */
  add(data: Float32Array, absmax = absMaxOf(extremes(data))): void {
    if (absmax === 0 && this.range === 0) {
      this.counts[0] += data.length;
      return;
    }
    if (this.range === 0) this.range = absmax * (1 + 1e-6);
    while (absmax >= this.range) this.grow();
    const k = this.bins / this.range;
    const last = this.bins - 1;
    const tally = this.tally.fill(0);
    for (let i = 0; i < data.length; i++) {
      // a ∈ [0, last): its floor is a | 0 (an int32 index); NaN fails both tests and is not counted.
      const a = Math.abs(data[i]) * k;
      if (a < last) tally[a | 0]++;
      else if (a >= last) tally[last]++;
    }
    for (let j = 0; j < this.bins; j++) this.counts[j] += tally[j];
  }
  private grow(): void {
    const c = this.counts;
    for (let i = 0; i < this.bins / 2; i++) c[i] = c[2 * i] + c[2 * i + 1];
    c.fill(0, this.bins / 2);
    this.range *= 2;
  }
}

/**
 * The least and greatest value (NaN ignored; [Infinity, −Infinity] when there is none). Four running pairs: one pair
 * is a chain of dependent compares, ~4.4 ns per value on the 2-core VM; four interleaved ones take ~2.2. Where ±0
 * is the extreme its sign may differ from a left-to-right scan's, which no scale sees (scaleFromRange takes
 * min(lo, 0) and |·|); MinMaxObserver keeps its own scan, compared bit for bit with onnxruntime's reductions.
 */
function extremes(d: Float32Array): [number, number] {
  let a0 = Infinity;
  let a1 = Infinity;
  let a2 = Infinity;
  let a3 = Infinity;
  let b0 = -Infinity;
  let b1 = -Infinity;
  let b2 = -Infinity;
  let b3 = -Infinity;
  const n = d.length;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    const p = d[i];
    const q = d[i + 1];
    const r = d[i + 2];
    const s = d[i + 3];
    if (p < a0) a0 = p;
    if (p > b0) b0 = p;
    if (q < a1) a1 = q;
    if (q > b1) b1 = q;
    if (r < a2) a2 = r;
    if (r > b2) b2 = r;
    if (s < a3) a3 = s;
    if (s > b3) b3 = s;
  }
  for (; i < n; i++) {
    if (d[i] < a0) a0 = d[i];
    if (d[i] > b0) b0 = d[i];
  }
  return [Math.min(a0, a1, a2, a3), Math.max(b0, b1, b2, b3)];
}

/** max |x| from the extremes (0 when there is no value). */
function absMaxOf([lo, hi]: [number, number]): number {
  return lo > hi ? 0 : Math.max(Math.abs(lo), Math.abs(hi));
}

/** Symmetric-range observers over a histogram: TensorRT-style KL divergence, or least quantization MSE. */
export class HistogramObserver implements Observer {
  private readonly hist = new AbsHistogram(2048);
  private min = Infinity;
  private max = -Infinity;
  constructor(
    private readonly cfg: TensorQuantConfig,
    private readonly method: 'kl' | 'mse',
  ) {}
  observe(data: Float32Array): void {
    // One pass for the range and the batch's |x| maximum, one for the counts.
    const e = extremes(data);
    if (e[0] < this.min) this.min = e[0];
    if (e[1] > this.max) this.max = e[1];
    this.hist.add(data, absMaxOf(e));
  }
  params(): QuantParams {
    const { counts, range, bins } = this.hist;
    if (range === 0) return single(scaleFromRange(0, 0, this.cfg).scale, 0, 0, 0);
    const levels = this.cfg.symmetric ? Math.floor((this.cfg.qmax - this.cfg.qmin + 1) / 2) : this.cfg.qmax - this.cfg.qmin + 1;
    const threshold = this.method === 'kl' ? klThreshold(counts, levels) : mseThreshold(counts, range, this.cfg);
    const t = (threshold / bins) * range;
    const { scale, zeroPoint } = scaleFromRange(Math.max(this.min, -t), Math.min(this.max, t), this.cfg);
    return single(scale, zeroPoint, Math.max(this.min, -t), Math.min(this.max, t));
  }
}

/**
 * PPQ's KL search (TorchHistObserver.hist_to_scale_offset), on this project's |x| histogram: the first 0.2% of the
 * bins are emptied and the next one set to 1 — PPQ's "crucial" step: without it the spike of exact zeros after a
 * ReLU dominates the divergence and the search picks the narrowest range (resnet20_cifar10: ReLU outputs clipped at
 * 12% of their maximum, top-1 agreement with float 47%) — then candidate ranges of r = levels, 2·levels, … bins;
 * P = the first r bins with the rest added to the last, Q = those bins merged into `levels` groups and spread back
 * evenly over each group's non-empty bins; KL = Σ P·(log10(P + 1e-30) − log10(Q + 1e-30)), P normalised by the
 * whole histogram and Q by itself, as PPQ does. Returns the best r (the first on ties). PPQ builds its histogram
 * over [0, absmax] in a second pass; this one doubles its range as data arrive (one pass), so its bins can be
 * coarser by up to 2×.
 */
export function klThreshold(hist: Float64Array, levels: number): number {
  const bins = hist.length;
  const h = Float64Array.from(hist);
  const cut = Math.floor(bins * 0.002);
  h.fill(0, 0, cut);
  h[cut] = 1;
  let total = 0;
  for (const v of h) total += v;
  const eps = 1e-30;
  let best = bins;
  let bestKl = Infinity;
  for (let r = levels; r < bins + levels - 1 && r <= bins; r += levels) {
    const expand = Math.floor(r / levels);
    let outliers = 0;
    for (let j = r; j < bins; j++) outliers += h[j];
    const q = new Float64Array(r);
    let qSum = 0;
    for (let g = 0; g < levels; g++) {
      let sum = 0;
      let positive = 0;
      for (let j = g * expand; j < (g + 1) * expand; j++) {
        sum += h[j];
        if (h[j] > 0) positive++;
      }
      const v = sum / Math.max(positive, 1);
      for (let j = g * expand; j < (g + 1) * expand; j++) if (h[j] > 0) (q[j] = v), (qSum += v);
    }
    let kl = 0;
    for (let j = 0; j < r; j++) {
      const p = (h[j] + (j === r - 1 ? outliers : 0)) / total;
      const qj = qSum > 0 ? q[j] / qSum : 0;
      kl += p * (Math.log10(p + eps) - Math.log10(qj + eps));
    }
    if (kl < bestKl) {
      bestKl = kl;
      best = r;
    }
  }
  return best;
}

/** Threshold (in bins) minimising the expected squared error of symmetric quantization over the histogram. */
export function mseThreshold(hist: Float64Array, range: number, cfg: TensorQuantConfig): number {
  const bins = hist.length;
  const width = range / bins;
  let best = bins;
  let bestErr = Infinity;
  for (let i = Math.max(8, Math.floor(bins / 64)); i <= bins; i += Math.max(1, Math.floor(bins / 512))) {
    const t = i * width;
    const { scale, zeroPoint } = scaleFromRange(-t, t, cfg);
    let err = 0;
    for (let j = 0; j < bins; j++) {
      if (!hist[j]) continue;
      const x = (j + 0.5) * width;
      const d = fakeQuantInt(x, scale, zeroPoint, cfg.qmin, cfg.qmax) - x;
      err += hist[j] * d * d;
    }
    if (err < bestErr) {
      bestErr = err;
      best = i;
    }
  }
  return best;
}

export function makeObserver(cfg: TensorQuantConfig, role: 'activation' | 'weight', axis?: number): Observer {
  switch (cfg.observer) {
    case 'minmax':
      return new MinMaxObserver(cfg, axis);
    case 'percentile':
      return new PercentileObserver(cfg);
    case 'fp8-mse':
      return new Fp8MseObserver(cfg, role === 'weight');
    case 'kl':
    case 'mse':
      return new HistogramObserver(cfg, cfg.observer);
  }
}
