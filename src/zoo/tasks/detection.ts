/**
 * COCO box mAP (%) for detectors exported with NMS inside the graph (mmyolo end2end: num_dets [N,1],
 * boxes [N,K,4] xyxy in input pixels, scores [N,K], labels [N,K] as 0..79). Boxes are mapped back through the
 * letterbox transform to original pixels; class indices to COCO category ids.
 */
import type { DetectionLabel } from '../data/coco.ts';
import { type CocoDetection, type CocoGroundTruth, cocoEvaluate } from '../metrics/detection.ts';
import type * as ort from 'onnxruntime-node';
import type { Evaluator } from './types.ts';

/** The 80 training classes → COCO 2017 category ids. */
export const COCO80_TO_91 = [
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46,
  47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
];

function num(t: ort.Tensor, i: number): number {
  return Number((t.data as ArrayLike<number | bigint>)[i]);
}

/** Finds boxes/scores/labels by name, else by shape ([N,K,4] boxes; the two [N,K] tensors: float scores, then labels). */
function endToEnd(outputs: Record<string, ort.Tensor>): { boxes: ort.Tensor; scores: ort.Tensor; labels: ort.Tensor; numDets?: ort.Tensor } {
  const ts = Object.entries(outputs);
  const boxes = outputs.boxes ?? outputs.dets ?? ts.find(([, t]) => t.dims.length === 3 && t.dims[2] === 4)?.[1];
  const twoD = ts.filter(([, t]) => t.dims.length === 2 && t.dims[1] > 1).map(([, t]) => t);
  const scores = outputs.scores ?? twoD.find((t) => t.type === 'float32');
  const labels = outputs.labels ?? twoD.find((t) => t !== scores);
  if (!boxes || !scores || !labels) throw new Error(`detection outputs not recognised as end2end (got ${ts.map(([k, t]) => `${k}[${t.dims}]`).join(', ')})`);
  return { boxes, scores, labels, numDets: outputs.num_dets };
}

export function detectionEvaluator(): Evaluator {
  return {
    metric: { name: 'mAP', unit: '%' },
    needsReference: false,
    start() {
      const gt: CocoGroundTruth = { images: [], annotations: [], categories: COCO80_TO_91.map((id) => ({ id })) };
      const dets: CocoDetection[] = [];
      return {
        add(outputs, batch) {
          const { boxes, scores, labels, numDets } = endToEnd(outputs);
          const K = scores.dims[1];
          batch.labels.forEach((l, i) => {
            const label = l as DetectionLabel;
            gt.images.push({ id: label.imageId, width: label.width, height: label.height });
            for (const b of label.boxes) gt.annotations.push({ image_id: label.imageId, category_id: b.categoryId, bbox: b.bbox, area: b.bbox[2] * b.bbox[3], iscrowd: b.iscrowd ? 1 : 0 });
            const n = numDets ? Math.min(K, num(numDets, i)) : K;
            const { scaleX, scaleY, padLeft, padTop } = label.transform;
            for (let k = 0; k < n; k++) {
              const score = num(scores, i * K + k);
              if (!(score > 0)) continue;
              const o = (i * K + k) * 4;
              const x1 = Math.min(label.width, Math.max(0, (num(boxes, o) - padLeft) / scaleX));
              const y1 = Math.min(label.height, Math.max(0, (num(boxes, o + 1) - padTop) / scaleY));
              const x2 = Math.min(label.width, Math.max(0, (num(boxes, o + 2) - padLeft) / scaleX));
              const y2 = Math.min(label.height, Math.max(0, (num(boxes, o + 3) - padTop) / scaleY));
              const cls = num(labels, i * K + k);
              dets.push({ image_id: label.imageId, category_id: COCO80_TO_91[cls] ?? cls, bbox: [x1, y1, x2 - x1, y2 - y1], score });
            }
          });
        },
        finish() {
          const s = cocoEvaluate(gt, dets);
          return { value: 100 * s.ap, details: { ap50: 100 * s.ap50, ap75: 100 * s.ap75 } };
        },
      };
    },
  };
}
