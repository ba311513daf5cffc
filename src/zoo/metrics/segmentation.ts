/**
 * Semantic-segmentation metrics with mmseg semantics (mmseg/core/evaluation/metrics.py
 * intersect_and_union + total_area_to_metrics): areas accumulate over the whole set,
 * then IoU per class; a class absent from both prediction and ground truth is NaN and
 * left out of the mean.
 */
export class MiouMeter {
  private readonly inter: Float64Array;
  private readonly predArea: Float64Array;
  private readonly labelArea: Float64Array;

  constructor(
    readonly numClasses: number,
    readonly ignoreIndex = 255,
  ) {
    if (!Number.isInteger(numClasses) || numClasses <= 0) throw new RangeError(`numClasses must be a positive integer, got ${numClasses}`);
    this.inter = new Float64Array(numClasses);
    this.predArea = new Float64Array(numClasses);
    this.labelArea = new Float64Array(numClasses);
  }

  /**
   * One label map (any shape, flattened). Pixels whose label is ignoreIndex are skipped;
   * values outside 0..numClasses-1 fall outside torch.histc's bins and are not counted,
   * as in mmseg.
   */
  add(pred: Int32Array | Uint8Array, label: Int32Array | Uint8Array): void {
    if (pred.length !== label.length) throw new RangeError(`MiouMeter.add: pred has ${pred.length} pixels, label ${label.length}`);
    const n = this.numClasses;
    for (let i = 0; i < label.length; i++) {
      const l = label[i];
      if (l === this.ignoreIndex) continue;
      const p = pred[i];
      const pIn = p >= 0 && p < n;
      const lIn = l >= 0 && l < n;
      if (pIn) this.predArea[p]++;
      if (lIn) this.labelArea[l]++;
      if (pIn && p === l) this.inter[p]++;
    }
  }

  /** IoU per class; NaN where the class is in neither prediction nor ground truth. */
  perClassIou(): number[] {
    return Array.from(this.inter, (i, c) => i / (this.predArea[c] + this.labelArea[c] - i));
  }

  /** Mean IoU over classes with a defined IoU (np.nanmean); NaN when none is. */
  miou(): number {
    const v = this.perClassIou().filter((x) => !Number.isNaN(x));
    return v.length === 0 ? NaN : v.reduce((s, x) => s + x, 0) / v.length;
  }

  /** mmseg's aAcc: correctly labelled pixels over all counted ground-truth pixels. */
  pixelAccuracy(): number {
    let i = 0;
    let l = 0;
    for (let c = 0; c < this.numClasses; c++) {
      i += this.inter[c];
      l += this.labelArea[c];
    }
    return i / l;
  }
}
