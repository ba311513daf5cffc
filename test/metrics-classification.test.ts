import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AccuracyMeter, agreement, argmaxRows, topK } from '../src/zoo/metrics/classification.ts';
import { top1Agreement } from '../src/zoo/metrics/agreement.ts';

test('topK: k largest per row, ties to the lower index', () => {
  const logits = new Float32Array([
    0.1, 0.5, 0.5, -1, 2, // row 0: 4 (2.0), then the 0.5 tie → 1 before 2
    3, 3, 3, 3, 3, //        row 1: all equal → 0,1,2
  ]);
  assert.deepEqual(topK(logits, 5, 3), [
    [4, 1, 2],
    [0, 1, 2],
  ]);
  assert.deepEqual(topK(new Float32Array([1, 2]), 2, 5), [[1, 0]], 'k is clamped to numClasses');
  assert.throws(() => topK(new Float32Array(7), 3, 1), RangeError);
});

test('AccuracyMeter: top-1 / top-5 fractions over batches (hand-counted)', () => {
  const m = new AccuracyMeter();
  // 7 classes. Row 0 ranking: 6,5,4,3,2,1,0 ; row 1 ranking: 0,1,2,3,4,5,6
  m.add(new Float32Array([0, 1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1, 0]), 7, [6, 5]);
  // row 0 label 6 → top-1 hit; row 1 label 5 is 6th → neither.
  m.add(new Float32Array([0, 0, 9, 8, 7, 6, 5]), 7, [5]);
  // row 2 ranking 2,3,4,5,6,... label 5 → 4th → top-5 only.
  assert.equal(m.count, 3);
  assert.equal(m.top1(), 1 / 3);
  assert.equal(m.top5(), 2 / 3);
  assert.deepEqual(m.hits, [1, 0, 0], 'per sample, in order: the paired comparison pairs these');
  assert.throws(() => m.add(new Float32Array(7), 7, [1, 2]), RangeError);
});

test('argmaxRows and agreement', () => {
  const a = argmaxRows(new Float32Array([1, 9, 9, 5, 2, 0]), 3); // ties → first
  assert.deepEqual(Array.from(a), [1, 0]);
  assert.equal(agreement(new Int32Array([1, 2, 3, 4]), new Int32Array([1, 0, 3, 0])), 0.5);
  assert.ok(Number.isNaN(agreement(new Int32Array(0), new Int32Array(0))));
  assert.throws(() => agreement(new Int32Array(1), new Int32Array(2)), RangeError);
  // float rows argmax: 2, 0, 1 ; quant rows argmax: 2, 1, 1 → 2 of 3 agree
  const f = new Float32Array([0, 1, 5, 4, 1, 0, 0, 3, 1]);
  const q = new Float32Array([0, 1, 6, 1, 2, 0, 0, 3, 2]);
  assert.equal(top1Agreement(f, q, 3), 2 / 3);
});
