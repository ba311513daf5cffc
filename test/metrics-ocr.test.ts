import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OcrAccuracyMeter, ctcGreedyDecode, levenshtein, loadCharset, normalizeOcrText } from '../src/zoo/metrics/ocr.ts';

test('loadCharset: PaddleOCR readlines + strip("\\n").strip("\\r\\n") semantics', () => {
  // Lines: "a", "b\r" (CRLF file), " " (a space character entry), "" (empty line), "c"; final newline adds nothing.
  assert.deepEqual(loadCharset('a\nb\r\n \n\nc\n', false), ['a', 'b', ' ', '', 'c']);
  assert.deepEqual(loadCharset('x\ny', true), ['x', 'y', ' ']);
});

/** One-hot score rows from a class-index sequence. */
function oneHot(seq: number[], C: number): Float32Array {
  const p = new Float32Array(seq.length * C);
  seq.forEach((c, t) => (p[t * C + c] = 1));
  return p;
}

test('ctcGreedyDecode: collapse repeats first, then drop blank 0, class i → charset[i-1]', () => {
  const cs = ['a', 'b', 'c'];
  // a a _ a b b _ _ c  →  "a" "a" "b" "c"  (the blank separates the two a's)
  assert.equal(ctcGreedyDecode(oneHot([1, 1, 0, 1, 2, 2, 0, 0, 3], 4), 9, 4, cs), 'aabc');
  assert.equal(ctcGreedyDecode(oneHot([0, 0, 0], 4), 3, 4, cs), '');
  // argmax on non-one-hot scores: t0 → 2 (b), t1 → 2 (b, repeat), t2 → 3 (c)
  const p = new Float32Array([0.1, 0.2, 0.6, 0.1, 0.3, 0.1, 0.4, 0.2, 0.1, 0.1, 0.1, 0.7]);
  assert.equal(ctcGreedyDecode(p, 3, 4, cs), 'bc');
  assert.throws(() => ctcGreedyDecode(oneHot([4], 5), 1, 5, cs), RangeError);
});

test('normalizeOcrText keeps [a-zA-Z0-9] lowercased', () => {
  assert.equal(normalizeOcrText('Hello, World! 42 é_'), 'helloworld42');
});

test('levenshtein classic values', () => {
  assert.equal(levenshtein('kitten', 'sitting'), 3);
  assert.equal(levenshtein('', 'abc'), 3);
  assert.equal(levenshtein('flaw', 'lawn'), 2);
});

test('OcrAccuracyMeter: exact match and 1 - mean normalised edit distance (hand-computed)', () => {
  const m = new OcrAccuracyMeter();
  m.add('Hello!', 'hello'); // equal after normalisation: distance 0
  m.add('abc', 'abd'); //       1 substitution / max(3,3) = 1/3
  m.add('', 'xy'); //           2 / max(0,2) = 1
  assert.equal(m.count, 3);
  assert.equal(m.accuracy(), 1 / 3);
  assert.deepEqual(m.hits, [1, 0, 0]);
  assert.ok(Math.abs(m.normEditDistance() - (1 - (0 + 1 / 3 + 1) / 3)) < 1e-12); // 5/9
});
