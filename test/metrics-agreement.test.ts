import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectionAgreement } from '../src/zoo/metrics/agreement.ts';
import type { Box, CocoDetection } from '../src/zoo/metrics/detection.ts';

const close = (a: number, b: number, tol = 1e-12): void => assert.ok(Math.abs(a - b) <= tol, `got ${a}, expected ${b}`);
const det = (bbox: Box, score: number, image_id = 1, category_id = 1): CocoDetection => ({ image_id, category_id, bbox, score });

test('detectionAgreement: identical confident outputs → AP 1', () => {
  const f = [det([0, 0, 10, 10], 0.9), det([50, 0, 10, 10], 0.8, 1, 2), det([0, 0, 100, 100], 0.7, 2)];
  const r = detectionAgreement(f, f);
  for (const v of [r.ap, r.ap50, r.ap75]) close(v, 1);
});

test('detectionAgreement: float boxes under the score threshold are not ground truth', () => {
  // Float: A at .9 (gt), B at .2 (below .3: not gt). Quant reproduces both → B is a FP ranked after A's TP:
  // recall [1, 1], precision [1, .5] → envelope keeps 1 at every recall ≤ 1 → AP 1.
  // Rank B first instead (quant score .95): recall [0, 1], precision [0, .5] → AP .5.
  const A: Box = [0, 0, 10, 10];
  const B: Box = [50, 0, 10, 10];
  const f = [det(A, 0.9), det(B, 0.2)];
  close(detectionAgreement(f, [det(A, 0.9), det(B, 0.2)]).ap, 1);
  close(detectionAgreement(f, [det(A, 0.9), det(B, 0.95)]).ap, 0.5);
  // Lowering the threshold to .1 makes B ground truth: both match → AP 1.
  close(detectionAgreement(f, [det(A, 0.9), det(B, 0.95)], { scoreThreshold: 0.1 }).ap, 1);
  // An image where the float model found nothing still counts the quant model's FPs when listed.
  close(detectionAgreement([det(A, 0.9)], [det(A, 0.5), det(A, 0.99, 2)], { imageIds: [1, 2] }).ap, 0.5);
});
