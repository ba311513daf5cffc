import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MiouMeter } from '../src/zoo/metrics/segmentation.ts';
import { segmentationAgreement } from '../src/zoo/metrics/agreement.ts';

const close = (a: number, b: number, tol = 1e-12): void => assert.ok(Math.abs(a - b) <= tol, `got ${a}, expected ${b}`);

test('MiouMeter: hand-computed IoUs, ignore index, NaN for absent classes', () => {
  const m = new MiouMeter(4); // ignoreIndex 255
  // pixel:   0  1  2  3    4  5
  // pred:    0  0  1  0    2  1
  // label:   0  1  1  255  1  1   (pixel 3 ignored)
  m.add(new Uint8Array([0, 0, 1, 0, 2, 1]), new Uint8Array([0, 1, 1, 255, 1, 1]));
  // class 0: ∩ 1, pred 2, gt 1 → ∪ 2 → .5 ; class 1: ∩ 2, pred 2, gt 4 → ∪ 4 → .5 ;
  // class 2: ∩ 0, pred 1, gt 0 → 0 ; class 3: nowhere → NaN (excluded).
  const iou = m.perClassIou();
  assert.deepEqual(iou.slice(0, 3), [0.5, 0.5, 0]);
  assert.ok(Number.isNaN(iou[3]));
  close(m.miou(), 1 / 3);
  close(m.pixelAccuracy(), 3 / 5);
});

test('MiouMeter accumulates areas over the dataset (not a mean of per-image IoUs)', () => {
  const m = new MiouMeter(4);
  m.add(new Int32Array([0, 0, 1, 0, 2, 1]), new Int32Array([0, 1, 1, 255, 1, 1]));
  m.add(new Int32Array([3, 3, 3]), new Int32Array([3, 3, 0]));
  // class 0: ∩ 1, pred 2, gt 2 → 1/3 ; class 1: .5 ; class 2: 0 ; class 3: ∩ 2, pred 3, gt 2 → 2/3
  const iou = m.perClassIou();
  [1 / 3, 0.5, 0, 2 / 3].forEach((v, i) => close(iou[i], v));
  close(m.miou(), (1 / 3 + 0.5 + 0 + 2 / 3) / 4); // 0.375
  close(m.pixelAccuracy(), 5 / 8);
});

test('MiouMeter: predictions outside 0..numClasses-1 are not counted (torch.histc bins), custom ignore index', () => {
  const m = new MiouMeter(2, 0);
  // label 0 is ignored; pixel 2 predicts 7 (out of range): counts in gt area of class 1 only.
  m.add(new Int32Array([1, 1, 7, 0]), new Int32Array([0, 1, 1, 1]));
  // class 1: ∩ 1, pred 1, gt 3 → 1/3 ; class 0: ∩ 0, pred 1, gt 0 → 0
  assert.deepEqual(m.perClassIou(), [0, 1 / 3]);
  close(m.pixelAccuracy(), 1 / 3);
  assert.throws(() => m.add(new Int32Array(2), new Int32Array(3)), RangeError);
});

test('segmentationAgreement: mIoU of quant argmax vs float argmax from NCHW logits', () => {
  // N=1, C=3, H=1, W=4. Float argmax per pixel: 0, 1, 1, 2. Quant argmax: 0, 1, 2, 2.
  const f = new Float32Array([5, 0, 0, 0, /* c1 */ 0, 5, 5, 0, /* c2 */ 0, 0, 1, 5]);
  const q = new Float32Array([5, 0, 0, 0, /* c1 */ 0, 5, 1, 0, /* c2 */ 0, 0, 2, 5]);
  const r = segmentationAgreement({ dims: [1, 3, 1, 4], data: f }, { dims: [1, 3, 1, 4], data: q });
  // class 0: 1/1 ; class 1: ∩ 1, ∪ 2 → .5 ; class 2: ∩ 1, ∪ 2 → .5
  assert.deepEqual(r.perClassIou, [1, 0.5, 0.5]);
  close(r.miou, 2 / 3);
  close(r.pixelAgreement, 3 / 4);
});
