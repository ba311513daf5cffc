/**
 * Unlabelled data: the quantized model scored against the float model's own predictions (the float run scores
 * itself, 100 by construction, and hands its predictions on as the reference).
 *  - top1: top-1 agreement (%) of logits [N, C];
 *  - ultraface: box mAP (%) against the float model's confident faces (Ultra-Light detector: scores [N,K,2],
 *    boxes [N,K,4] normalised xyxy; candidates above 0.3 after NMS 0.3, float boxes ≥ 0.7 are the ground truth);
 *  - cosine: mean per-sample cosine similarity (%) of the first output.
 */
import type { CocoDetection } from '../metrics/detection.ts';
import { top1Agreement } from '../metrics/agreement.ts';
import { detectionAgreement } from '../metrics/agreement.ts';
import type { Batch } from '../data/types.ts';
import type * as ort from 'onnxruntime-node';
import { type Evaluator, floatData, outputOf } from './types.ts';

export function top1AgreementEvaluator(): Evaluator {
  return {
    metric: { name: 'top-1 agreement', unit: '%' },
    needsReference: true,
    start(reference) {
      const rows: Float32Array[] = [];
      let classes = 0;
      return {
        add(outputs) {
          const y = outputOf(outputs);
          classes = y.dims[y.dims.length - 1];
          rows.push(floatData(y).slice());
        },
        finish() {
          const mine = concat(rows);
          const ref = (reference as Float32Array | undefined) ?? mine;
          return { value: 100 * top1Agreement(ref, mine, classes) };
        },
        reference: () => concat(rows),
      };
    },
  };
}

function concat(xs: Float32Array[]): Float32Array {
  const out = new Float32Array(xs.reduce((n, x) => n + x.length, 0));
  let o = 0;
  for (const x of xs) {
    out.set(x, o);
    o += x.length;
  }
  return out;
}

function iou(a: number[], b: number[]): number {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = w * h;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

/** Ultra-Light face detector decoding: class-1 probability > threshold, hard NMS, boxes in input pixels. */
export function decodeUltraface(outputs: Record<string, ort.Tensor>, imageIndex: number, imageId: number, width: number, height: number, threshold = 0.3, nmsIou = 0.3): CocoDetection[] {
  const scores = outputs.scores ?? Object.values(outputs).find((t) => t.dims[2] === 2);
  const boxes = outputs.boxes ?? Object.values(outputs).find((t) => t.dims[2] === 4);
  if (!scores || !boxes) throw new Error('ultraface outputs scores [N,K,2] and boxes [N,K,4] not found');
  const K = scores.dims[1];
  const s = floatData(scores);
  const b = floatData(boxes);
  const cand: { box: number[]; score: number }[] = [];
  for (let k = 0; k < K; k++) {
    const p = s[(imageIndex * K + k) * 2 + 1];
    if (p > threshold) {
      const o = (imageIndex * K + k) * 4;
      cand.push({ box: [b[o] * width, b[o + 1] * height, b[o + 2] * width, b[o + 3] * height], score: p });
    }
  }
  cand.sort((x, y) => y.score - x.score);
  const kept: typeof cand = [];
  for (const c of cand) if (kept.every((k) => iou(k.box, c.box) <= nmsIou)) kept.push(c);
  return kept.slice(0, 200).map((c) => ({ image_id: imageId, category_id: 1, bbox: [c.box[0], c.box[1], c.box[2] - c.box[0], c.box[3] - c.box[1]], score: c.score }));
}

export function ultrafaceAgreementEvaluator(): Evaluator {
  return {
    metric: { name: 'mAP vs float', unit: '%' },
    needsReference: true,
    start(reference) {
      const dets: CocoDetection[] = [];
      const imageIds: number[] = [];
      return {
        add(outputs, batch: Batch<unknown>) {
          const [, , h, w] = batch.input.dims;
          batch.ids.forEach((_, i) => {
            const id = imageIds.length;
            imageIds.push(id);
            dets.push(...decodeUltraface(outputs, i, id, w, h));
          });
        },
        finish() {
          const ref = (reference as CocoDetection[] | undefined) ?? dets;
          const s = detectionAgreement(ref, dets, { scoreThreshold: 0.7, imageIds });
          return { value: 100 * s.ap, details: { ap50: 100 * s.ap50 } };
        },
        reference: () => dets,
      };
    },
  };
}

export function cosineAgreementEvaluator(): Evaluator {
  return {
    metric: { name: 'cosine vs float', unit: '%' },
    needsReference: true,
    start(reference) {
      const rows: Float32Array[] = [];
      return {
        add(outputs) {
          const y = floatData(outputOf(outputs));
          const n = outputOf(outputs).dims[0];
          const per = y.length / n;
          for (let i = 0; i < n; i++) rows.push(y.slice(i * per, (i + 1) * per));
        },
        finish() {
          const ref = (reference as Float32Array[] | undefined) ?? rows;
          let sum = 0;
          rows.forEach((r, i) => {
            const f = ref[i];
            let ab = 0;
            let aa = 0;
            let bb = 0;
            for (let j = 0; j < r.length; j++) {
              ab += r[j] * f[j];
              aa += r[j] * r[j];
              bb += f[j] * f[j];
            }
            sum += aa === 0 && bb === 0 ? 1 : ab / Math.sqrt(aa * bb || 1);
          });
          return { value: rows.length ? (100 * sum) / rows.length : NaN };
        },
        reference: () => rows,
      };
    },
  };
}
