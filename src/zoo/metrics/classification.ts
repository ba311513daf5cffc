/**
 * Classification metrics: top-k accuracy against labels, and top-1 agreement
 * between two models (float vs quantised) where no labels exist.
 * Logits are row-major [N, numClasses]; softmax is monotonic so it is never applied.
 */

function rowCount(logits: Float32Array, numClasses: number): number {
  if (!Number.isInteger(numClasses) || numClasses <= 0) throw new RangeError(`numClasses must be a positive integer, got ${numClasses}`);
  if (logits.length % numClasses !== 0) throw new RangeError(`logits length ${logits.length} is not a multiple of numClasses ${numClasses}`);
  return logits.length / numClasses;
}

/**
 * Per row, the indices of the k largest logits, largest first. Ties go to the lower
 * index so results are deterministic (numpy's stable argsort of -x does the same).
 * k is clamped to numClasses. NaN logits rank below every number.
 */
export function topK(logits: Float32Array, numClasses: number, k: number): number[][] {
  const n = rowCount(logits, numClasses);
  const kk = Math.max(0, Math.min(k, numClasses));
  const out: number[][] = [];
  if (kk === 0) return Array.from({ length: n }, () => []);
  for (let r = 0; r < n; r++) {
    const base = r * numClasses;
    // Insertion into a small sorted list: O(C·k), cheaper than sorting C for k ≤ 5.
    const best: number[] = [];
    for (let c = 0; c < numClasses; c++) {
      const v = logits[base + c];
      if (best.length === kk && !greater(v, logits[base + best[kk - 1]])) continue;
      let pos = best.length;
      while (pos > 0 && greater(v, logits[base + best[pos - 1]])) pos--;
      best.splice(pos, 0, c);
      if (best.length > kk) best.pop();
    }
    out.push(best);
  }
  return out;
}

/** Strictly greater, with NaN lowest; strictness is what keeps the lower index on ties. */
function greater(a: number, b: number): boolean {
  if (Number.isNaN(a)) return false;
  if (Number.isNaN(b)) return true;
  return a > b;
}

/** Index of the largest logit per row (first one on ties, like numpy argmax). */
export function argmaxRows(logits: Float32Array, numClasses: number): Int32Array {
  const n = rowCount(logits, numClasses);
  const out = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    const base = r * numClasses;
    let best = 0;
    for (let c = 1; c < numClasses; c++) if (greater(logits[base + c], logits[base + best])) best = c;
    out[r] = best;
  }
  return out;
}

/** Fraction of positions where two label vectors agree (NaN when empty: no evidence). */
export function agreement(a: Int32Array, b: Int32Array): number {
  if (a.length !== b.length) throw new RangeError(`agreement: lengths differ (${a.length} vs ${b.length})`);
  if (a.length === 0) return NaN;
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / a.length;
}

/** Running top-1 / top-5 accuracy over batches (fractions 0..1; NaN before any sample). */
export class AccuracyMeter {
  count = 0;
  private hit1 = 0;
  private hit5 = 0;
  /** Per sample in order, 1 where the top-1 class is the label (for paired comparisons of two models). */
  readonly hits: number[] = [];

  add(logits: Float32Array, numClasses: number, labels: readonly number[]): void {
    const rows = topK(logits, numClasses, 5);
    if (rows.length !== labels.length) throw new RangeError(`AccuracyMeter: ${rows.length} rows but ${labels.length} labels`);
    for (let i = 0; i < rows.length; i++) {
      const hit = rows[i][0] === labels[i] ? 1 : 0;
      this.hit1 += hit;
      this.hits.push(hit);
      if (rows[i].includes(labels[i])) this.hit5++;
    }
    this.count += rows.length;
  }

  top1(): number {
    return this.count === 0 ? NaN : this.hit1 / this.count;
  }

  top5(): number {
    return this.count === 0 ? NaN : this.hit5 / this.count;
  }
}
