import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cocoEvaluate, type CocoDetection, type CocoGroundTruth, type Box } from '../src/zoo/metrics/detection.ts';

// Every hand-derived expectation below was also confirmed against pycocotools 2.0.11 (except "no detections",
// where pycocotools' loadRes raises on an empty list).
const close = (a: number, b: number, tol = 1e-12, msg = ''): void => assert.ok(Math.abs(a - b) <= tol, `${msg} got ${a}, expected ${b}`);

/** One image, one category, boxes given as gt list; annotations get ids 1.. */
function gtOf(boxes: { bbox: Box; area?: number; iscrowd?: 0 | 1; category_id?: number; image_id?: number }[], categories = [1], images = [1]): CocoGroundTruth {
  return {
    images: images.map((id) => ({ id })),
    annotations: boxes.map((b, i) => ({ id: i + 1, image_id: b.image_id ?? 1, category_id: b.category_id ?? 1, bbox: b.bbox, area: b.area, iscrowd: b.iscrowd })),
    categories: categories.map((id) => ({ id })),
  };
}
const det = (bbox: Box, score: number, category_id = 1, image_id = 1): CocoDetection => ({ image_id, category_id, bbox, score });

// Three well separated 10×10 boxes (area 100: "small").
const A: Box = [0, 0, 10, 10];
const B: Box = [50, 0, 10, 10];
const C: Box = [100, 0, 10, 10];

test('no detections → AP 0 where there is ground truth, -1 where there is none', () => {
  const r = cocoEvaluate(gtOf([{ bbox: A }]), []);
  assert.deepEqual(r, { ap: 0, ap50: 0, ap75: 0, apSmall: 0, apMedium: -1, apLarge: -1 });
});

test('perfect detections → AP 1 (pycocotools adds eps to the precision denominator: 1 - 1e-16)', () => {
  const r = cocoEvaluate(gtOf([{ bbox: A }, { bbox: B }]), [det(A, 0.9), det(B, 0.8)]);
  for (const v of [r.ap, r.ap50, r.ap75, r.apSmall]) close(v, 1);
});

test('duplicate detection is a false positive', () => {
  // Sorted: A (TP), A again (FP: A already taken), B (TP). npig = 2.
  // recall [.5, .5, 1], precision [1, .5, 2/3] → envelope [1, 2/3, 2/3].
  // 101-point: r = 0.00 … 0.50 (51 points) → first recall ≥ r is index 0 → 1;
  //            r = 0.51 … 1.00 (50 points) → index 2 → 2/3.
  // AP = (51 + 50·2/3)/101 = 253/303 ≈ 0.83498 at every IoU threshold (exact boxes).
  const r = cocoEvaluate(gtOf([{ bbox: A }, { bbox: B }]), [det(A, 0.9), det(A, 0.8), det(B, 0.7)]);
  close(r.ap, 253 / 303);
  close(r.ap50, 253 / 303);
  close(r.ap75, 253 / 303);
});

test('101-point interpolation with a missed object (hand-derived)', () => {
  // gts A, B, C; detections A (TP, .9), far-away box (FP, .8), B (TP, .7); C missed.
  // recall [1/3, 1/3, 2/3], precision [1, 1/2, 2/3] → envelope [1, 2/3, 2/3].
  // r = 0.00…0.33 (34 points) → 1; r = 0.34…0.66 (33 points) → 2/3; r = 0.67…1.00 (34 points) → 0 (never reached).
  // AP = (34 + 33·2/3)/101 = 56/101 ≈ 0.55446
  const r = cocoEvaluate(gtOf([{ bbox: A }, { bbox: B }, { bbox: C }]), [det(A, 0.9), det([300, 300, 10, 10], 0.8), det(B, 0.7)]);
  close(r.ap, 56 / 101);
});

test('IoU thresholds .50:.05:.95, a match at IoU exactly 0.80 counts (>=)', () => {
  // Detection [0,0,10,8] on gt [0,0,10,10]: IoU = 80/100 = 0.8 → TP at .50 … .80 (7 thresholds), FP at .85/.90/.95.
  const r = cocoEvaluate(gtOf([{ bbox: A }]), [det([0, 0, 10, 8], 0.9)]);
  close(r.ap, 0.7);
  close(r.ap50, 1);
  close(r.ap75, 1);
  close(r.apSmall, 0.7);
  assert.equal(r.apMedium, -1);
  assert.equal(r.apLarge, -1);
  // IoU 0.7 ([0,0,10,7]) → TP only for .50 … .70 (5 thresholds): AP 0.5, AP75 = 0
  const s = cocoEvaluate(gtOf([{ bbox: A }]), [det([0, 0, 10, 7], 0.9)]);
  close(s.ap, 0.5);
  close(s.ap75, 0);
});

test('crowd regions: detections inside are ignored (IoU = intersection / detection area), not FPs', () => {
  // gt: A (normal) and a 50×50 crowd region. Detections: two boxes inside the crowd (.95, .92), then A (.9).
  // The crowd boxes have "IoU" 100/100 = 1 with the crowd, both match it (a crowd may match many) and are ignored.
  // Counted sequence: just A's TP → recall [0, 0, 1], precision [0, 0, 1] → envelope 1 → AP 1.
  // Treating the crowd as a normal box (IoU 100/2500) would give FP, FP, TP → AP 1/3;
  // letting it match only once would give FP at .92 → AP 1/2.
  const gt = gtOf([{ bbox: A }, { bbox: [100, 100, 50, 50], area: 2500, iscrowd: 1 }]);
  const r = cocoEvaluate(gt, [det([110, 110, 10, 10], 0.95), det([120, 120, 10, 10], 0.92), det(A, 0.9)]);
  close(r.ap, 1);
  close(r.apSmall, 1);
  assert.equal(r.apMedium, -1, 'only gt in medium range is the crowd, which never counts');
});

test('a detection matched to a real gt is not taken over by an overlapping crowd region', () => {
  // Real gt A = [0,0,10,10] inside crowd [0,0,100,100]. Detection [0,0,10,6.2]: IoU with A 0.62, with the crowd 1.
  // t ∈ {.50, .55, .60}: matched to A first, and the search stops at ignored gts → TP (AP 1).
  // t ≥ .65: A fails, the crowd matches → ignored; A is missed → AP 0.  Mean over 10 thresholds: 0.3.
  const gt = gtOf([{ bbox: A }, { bbox: [0, 0, 100, 100], area: 10000, iscrowd: 1 }]);
  const r = cocoEvaluate(gt, [det([0, 0, 10, 6.2], 0.9)]);
  close(r.ap, 0.3);
  close(r.ap50, 1);
  close(r.ap75, 0);
});

test('area ranges use the annotation area; out-of-range gts and unmatched detections are ignored', () => {
  // gt S: box 40×40 but segment area 500 → small. gt L: 100×100, area 10000 → large.
  // Detections: FP large box (.95, area 10000), exact L (.9), exact S (.8).
  const S: Box = [0, 0, 40, 40];
  const L: Box = [200, 200, 100, 100];
  const gt = gtOf([{ bbox: S, area: 500 }, { bbox: L, area: 10000 }]);
  const r = cocoEvaluate(gt, [det([500, 500, 100, 100], 0.95), det(L, 0.9), det(S, 0.8)]);
  // all: FP, TP, TP with npig 2 → recall [0, .5, 1], precision [0, .5, 2/3] → envelope 2/3 → AP 2/3.
  close(r.ap, 2 / 3);
  // small: L ignored; its detection matched an ignored gt → ignored; the FP is large and unmatched → ignored.
  // Only S's detection counts → AP 1.
  close(r.apSmall, 1);
  // medium: no gt with area in [32², 96²] (S is 500 although its box is 1600) → -1.
  assert.equal(r.apMedium, -1);
  // large: FP (large, counted), L TP, S's detection ignored → recall [0, 1, 1], precision [0, .5, .5] → AP .5.
  close(r.apLarge, 0.5);
});

test('categories: AP per category then mean; categories without gt are -1 and left out', () => {
  // cat 1: perfect (AP 1). cat 2: gt but no detection (AP 0). cat 3: detections only (-1, excluded).
  // cat 99 is not a category at all: its detection is dropped.
  const gt = gtOf([{ bbox: A, category_id: 1 }, { bbox: B, category_id: 2 }], [1, 2, 3]);
  const r = cocoEvaluate(gt, [det(A, 0.9, 1), det(C, 0.9, 3), det(B, 0.5, 99)]);
  close(r.ap, 0.5);
  // Only -1 everywhere when no category has gt at all.
  assert.equal(cocoEvaluate(gtOf([], [1]), [det(A, 0.9)]).ap, -1);
  assert.throws(() => cocoEvaluate(gtOf([{ bbox: A }]), [det(A, 0.9, 1, 7)]), RangeError, 'image 7 is not in the gt');
});

test('only the 100 highest-scoring detections per image and category count', () => {
  // 100 FPs outscore the single true detection, which becomes the 101st and is dropped → AP 0.
  const fps = Array.from({ length: 100 }, (_, i) => det([1000 + 20 * i, 0, 10, 10], 0.5 + i / 1000));
  assert.equal(cocoEvaluate(gtOf([{ bbox: A }]), [...fps, det(A, 0.1)]).ap, 0);
  // With 99 FPs the true one is kept: recall reaches 1 at rank 100, precision 1/100 → AP = 0.01.
  close(cocoEvaluate(gtOf([{ bbox: A }]), [...fps.slice(1), det(A, 0.1)]).ap, 0.01, 1e-12);
});

test('two images, three categories, all area ranges: matches pycocotools 2.0.11', () => {
  // Random fixture (integer boxes, distinct scores); expected values printed by
  // pycocotools 2.0.11 COCO.loadRes + COCOeval(iouType='bbox').evaluate/accumulate/summarize, stats[0:6].
  const gt: CocoGroundTruth = {
    images: [{ id: 1 }, { id: 2 }],
    categories: [{ id: 1 }, { id: 2 }, { id: 3 }],
    annotations: [
      { id: 1, image_id: 1, category_id: 1, bbox: [71, 146, 82, 79], area: 6478, iscrowd: 0 },
      { id: 2, image_id: 1, category_id: 1, bbox: [60, 199, 29, 50], area: 1450, iscrowd: 0 },
      { id: 3, image_id: 1, category_id: 2, bbox: [114, 27, 20, 18], area: 360, iscrowd: 0 },
      { id: 4, image_id: 1, category_id: 2, bbox: [50, 51, 112, 90], area: 10080, iscrowd: 0 },
      { id: 5, image_id: 2, category_id: 1, bbox: [133, 128, 99, 108], area: 10692, iscrowd: 0 },
      { id: 6, image_id: 2, category_id: 2, bbox: [116, 50, 45, 25], area: 1125, iscrowd: 0 },
      { id: 7, image_id: 2, category_id: 1, bbox: [25, 184, 20, 11], area: 220, iscrowd: 0 },
      { id: 8, image_id: 2, category_id: 1, bbox: [183, 4, 36, 41], area: 1476, iscrowd: 0 },
    ],
  };
  const dets: CocoDetection[] = [
    det([73, 149, 81, 75], 0.99, 1, 1),
    det([46, 54, 116, 86], 0.23, 2, 1),
    det([69, 199, 30, 30], 0.45, 1, 1),
    det([132, 125, 101, 110], 0.17, 1, 2),
    det([120, 51, 48, 26], 0.84, 2, 2),
    det([27, 181, 20, 15], 0.42, 1, 2),
    det([184, 8, 38, 41], 0.63, 1, 2),
    det([55, 16, 30, 30], 0.55, 1, 2),
  ];
  const r = cocoEvaluate(gt, dets);
  close(r.ap, 0.4052805280528053, 1e-12, 'AP');
  close(r.ap50, 0.6666666666666666, 1e-12, 'AP50');
  close(r.ap75, 0.22112211221122108, 1e-12, 'AP75');
  close(r.apSmall, 0.049999999999999996, 1e-12, 'APs');
  close(r.apMedium, 0.48316831683168315, 1e-12, 'APm');
  close(r.apLarge, 0.8999999999999999, 1e-12, 'APl');
});
