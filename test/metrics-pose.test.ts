import { test } from 'node:test';
import assert from 'node:assert/strict';
import { COCO_KEYPOINT_SIGMAS, oks } from '../src/zoo/metrics/pose.ts';

const close = (a: number, b: number, tol = 1e-12): void => assert.ok(Math.abs(a - b) <= tol, `got ${a}, expected ${b}`);

test('COCO_KEYPOINT_SIGMAS: pycocotools cocoeval.py values /10', () => {
  // pycocotools: np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62,.62, 1.07, 1.07, .87, .87, .89, .89])/10.0
  assert.equal(COCO_KEYPOINT_SIGMAS.length, 17);
  close(COCO_KEYPOINT_SIGMAS[0], 0.026);
  close(COCO_KEYPOINT_SIGMAS[11], 0.107);
  close(COCO_KEYPOINT_SIGMAS[16], 0.089);
});

test('oks: exp(-d²/(2·area·(2σ)²)) averaged over visible keypoints', () => {
  const gt: [number, number][] = Array.from({ length: 17 }, (_, i) => [10 * i, 5 * i]);
  const vis = new Array<boolean>(17).fill(true);
  close(oks(gt.map((p) => [p[0], p[1]]), gt, vis, 5000, COCO_KEYPOINT_SIGMAS), 1);
  // Nose (σ = .026) off by (3, 4): d² = 25, (2σ)² = 0.002704, e = 25 / (0.002704·5000·2) = 25/27.04 ≈ 0.92456,
  // exp(-e) ≈ 0.39672, the other 16 keypoints are exact → OKS = (16 + 0.39672)/17 ≈ 0.96451.
  const pred = gt.map((p): [number, number] => [p[0], p[1]]);
  pred[0] = [3, 4];
  close(oks(pred, gt, vis, 5000, COCO_KEYPOINT_SIGMAS), (16 + Math.exp(-25 / 27.04)) / 17, 1e-9);
  // Invisible keypoints do not count, however far off: hide the nose → 16 exact of 16.
  const vis2 = vis.slice();
  vis2[0] = false;
  pred[0] = [1e4, 1e4];
  close(oks(pred, gt, vis2, 5000, COCO_KEYPOINT_SIGMAS), 1);
});

test('oks with no visible keypoint: distance outside the 3× box (pycocotools), NaN without a box', () => {
  const gt: [number, number][] = Array.from({ length: 17 }, () => [0, 0]);
  const none = new Array<boolean>(17).fill(false);
  assert.ok(Number.isNaN(oks(gt, gt, none, 100, COCO_KEYPOINT_SIGMAS)));
  // bbox [10,10,10,10] → region x,y ∈ [0, 30]. Predictions at (5,5) are inside → distance 0 → OKS 1.
  const inside: [number, number][] = Array.from({ length: 17 }, () => [5, 5]);
  close(oks(inside, gt, none, 100, COCO_KEYPOINT_SIGMAS, [10, 10, 10, 10]), 1);
  // At (33, 0) every keypoint is 3 px right of the region: OKS = mean_i exp(-9 / ((2σ_i)²·100·2)).
  const right: [number, number][] = Array.from({ length: 17 }, () => [33, 0]);
  const expected = COCO_KEYPOINT_SIGMAS.reduce((s, sg) => s + Math.exp(-9 / ((2 * sg) ** 2 * 200)), 0) / 17;
  close(oks(right, gt, none, 100, COCO_KEYPOINT_SIGMAS, [10, 10, 10, 10]), expected, 1e-9);
});
