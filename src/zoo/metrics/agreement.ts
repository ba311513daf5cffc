/**
 * Label-free accuracy proxies: score the quantised model against the float model's own
 * outputs, for benchmark inputs that have no annotations. Each reuses the labelled metric
 * so the numbers read on the same scale.
 */
import type { FloatTensor } from '../../tensor.ts';
import { agreement, argmaxRows } from './classification.ts';
import { cocoEvaluate, type CocoDetection, type CocoGroundTruth, type CocoSummary } from './detection.ts';
import { MiouMeter } from './segmentation.ts';

/** Fraction of rows whose top-1 class is the same for both models' logits [N, numClasses]. */
export function top1Agreement(floatLogits: Float32Array, quantLogits: Float32Array, numClasses: number): number {
  return agreement(argmaxRows(floatLogits, numClasses), argmaxRows(quantLogits, numClasses));
}

export interface DetectionAgreementOptions {
  /** Float detections at or above this score become pseudo ground truth (default 0.3):
   * low-confidence float boxes are mostly noise and would punish the quantised model for not copying it. */
  scoreThreshold?: number;
  /** Images evaluated; default: every image either model reported a box on. Pass the full
   * list so images where the float model found nothing still count the quantised model's false positives. */
  imageIds?: readonly number[];
}

/**
 * COCO mAP of the quantised detections, with the float model's confident detections as
 * ground truth (area = box area, never crowd). Categories with no pseudo ground truth are -1 and left out, as in COCOeval.
 */
export function detectionAgreement(
  floatDets: readonly CocoDetection[],
  quantDets: readonly CocoDetection[],
  opts: DetectionAgreementOptions = {},
): CocoSummary {
  const thr = opts.scoreThreshold ?? 0.3;
  const imageIds = opts.imageIds ?? [...new Set([...floatDets, ...quantDets].map((d) => d.image_id))];
  const cats = [...new Set([...floatDets, ...quantDets].map((d) => d.category_id))];
  const gt: CocoGroundTruth = {
    images: imageIds.map((id) => ({ id })),
    annotations: floatDets
      .filter((d) => d.score >= thr)
      .map((d, i) => ({ id: i + 1, image_id: d.image_id, category_id: d.category_id, bbox: d.bbox, area: d.bbox[2] * d.bbox[3], iscrowd: 0 as const })),
    categories: cats.map((id) => ({ id })),
  };
  return cocoEvaluate(gt, quantDets);
}

/** Argmax over the channel axis of segmentation logits [N, C, H, W] or [C, H, W] → [N·H·W] class map. */
export function argmaxChannels(logits: FloatTensor): Int32Array {
  const d = logits.dims;
  if (d.length !== 3 && d.length !== 4) throw new RangeError(`argmaxChannels: expected [N,C,H,W] or [C,H,W], got [${d.join(',')}]`);
  const [n, c, h, w] = d.length === 4 ? d : [1, d[0], d[1], d[2]];
  const hw = h * w;
  const out = new Int32Array(n * hw);
  for (let b = 0; b < n; b++) {
    const base = b * c * hw;
    for (let p = 0; p < hw; p++) {
      let best = 0;
      let bv = logits.data[base + p];
      for (let k = 1; k < c; k++) {
        const v = logits.data[base + k * hw + p];
        if (v > bv) {
          bv = v;
          best = k;
        }
      }
      out[b * hw + p] = best;
    }
  }
  return out;
}

export interface SegmentationAgreement {
  /** mIoU of the quantised argmax against the float argmax (classes absent from both excluded). */
  miou: number;
  perClassIou: number[];
  /** Fraction of pixels with the same class. */
  pixelAgreement: number;
}

/** mIoU of the quantised model's argmax map against the float model's, from logits [N,C,H,W] / [C,H,W]. */
export function segmentationAgreement(floatLogits: FloatTensor, quantLogits: FloatTensor): SegmentationAgreement {
  if (floatLogits.dims.join(',') !== quantLogits.dims.join(',')) throw new RangeError('segmentationAgreement: shapes differ');
  const numClasses = floatLogits.dims[floatLogits.dims.length - 3];
  // ignoreIndex -1 can never occur in an argmax map: no pixel is skipped.
  const meter = new MiouMeter(numClasses, -1);
  meter.add(argmaxChannels(quantLogits), argmaxChannels(floatLogits));
  return { miou: meter.miou(), perClassIou: meter.perClassIou(), pixelAgreement: meter.pixelAccuracy() };
}
