import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { OCR_SPEC, parsePreprocessSpec, preprocessImage, resizedSize } from '../src/zoo/data/index.ts';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import { fitToModelInput } from '../src/cli/data-source.ts';
import { PREPROCESS_PRESETS } from '../src/zoo/data/presets.ts';

const dir = mkdtempSync(join(tmpdir(), 'onnxquant-pre-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Writes an RGB PNG from interleaved pixel values (PNG is lossless, so values are hand-checkable). */
async function png(name: string, width: number, height: number, rgb: number[]): Promise<string> {
  const file = join(dir, name);
  await sharp(Buffer.from(rgb), { raw: { width, height, channels: 3 } }).png().toFile(file);
  return file;
}

const two = (): Promise<string> => png('two.png', 2, 1, [10, 20, 30, 40, 50, 60]);

test('mean/std after scale, NCHW', async () => {
  const t = await preprocessImage(await two(), { scale: 0.5, mean: [5, 10, 15], std: [2, 4, 5] });
  assert.deepEqual(t.dims, [1, 3, 1, 2]);
  // (x·0.5 − mean)/std: R (5−5)/2, (20−5)/2; G (10−10)/4, (25−10)/4; B (15−15)/5, (30−15)/5
  assert.deepEqual([...t.data], [0, 7.5, 0, 3.75, 0, 3]);
});

test('BGR order, NHWC layout and gray', async () => {
  const f = await two();
  assert.deepEqual([...(await preprocessImage(f, { colorOrder: 'bgr' })).data], [30, 60, 20, 50, 10, 40]);
  const nhwc = await preprocessImage(f, { layout: 'nhwc' });
  assert.deepEqual(nhwc.dims, [1, 1, 2, 3]);
  assert.deepEqual([...nhwc.data], [10, 20, 30, 40, 50, 60]);
  const bgrNhwc = await preprocessImage(f, { layout: 'nhwc', colorOrder: 'bgr' });
  assert.deepEqual([...bgrNhwc.data], [30, 20, 10, 60, 50, 40]);
  // PIL convert('L'): (19595 R + 38470 G + 7471 B + 2^15) >> 16 = 18, 48
  const gray = await preprocessImage(f, { colorOrder: 'gray' });
  assert.deepEqual(gray.dims, [1, 1, 1, 2]);
  assert.deepEqual([...gray.data], [18, 48]);
});

test('right padding after normalisation', async () => {
  const t = await preprocessImage(await two(), { mean: [10, 20, 30], padTo: { width: 4, value: -1 } });
  assert.deepEqual(t.dims, [1, 3, 1, 4]);
  assert.deepEqual([...t.data], [0, 30, -1, -1, 0, 30, -1, -1, 0, 30, -1, -1]);
  await assert.rejects(preprocessImage(await two(), { padTo: { width: 1, value: 0 } }), /width 2 exceeds padTo.width 1/);
});

test('centre crop offsets round half to even like torchvision', async () => {
  const px: number[] = [];
  for (let i = 0; i < 16; i++) px.push(i, i, i);
  const f = await png('grid.png', 4, 4, px);
  const c2 = await preprocessImage(f, { crop: { height: 2, width: 2 }, colorOrder: 'gray' });
  assert.deepEqual([...c2.data], [5, 6, 9, 10]);
  // (4 − 3)/2 = 0.5 → round() = 0 in Python, so the window starts at the top-left
  const c3 = await preprocessImage(f, { crop: { height: 3, width: 3 }, colorOrder: 'gray' });
  assert.deepEqual([...c3.data], [0, 1, 2, 4, 5, 6, 8, 9, 10]);
  // larger than the image: zero padded around it, (6 − 4) // 2 = 1 on each leading side
  const c6 = await preprocessImage(f, { crop: { height: 6, width: 6 }, colorOrder: 'gray' });
  assert.equal(c6.data[0], 0);
  assert.equal(c6.data[1 * 6 + 1], 0); // pixel (0,0) of the image, value 0
  assert.equal(c6.data[1 * 6 + 2], 1);
  assert.equal(c6.data[4 * 6 + 4], 15);
});

test('PIL bilinear (antialiased) vs OpenCV bilinear (not) on a 4→2 downscale, and 2→4 upscale', async () => {
  const f = await png('row.png', 4, 1, [0, 0, 0, 100, 100, 100, 200, 200, 200, 250, 250, 250]);
  // PIL: triangle of radius 2 source px: (0·3 + 100·3 + 200)/7 = 71.4, (100 + 200·3 + 250·3)/7 = 207.1
  const pil = await preprocessImage(f, { resize: { height: 1, width: 2 }, colorOrder: 'gray' });
  assert.deepEqual([...pil.data], [71, 207]);
  // cv2.resize INTER_LINEAR: samples at 0.5 and 2.5 → (0+100)/2, (200+250)/2
  const cv = await preprocessImage(f, { resize: { height: 1, keepRatio: true, maxWidth: 2 }, colorOrder: 'gray' });
  assert.deepEqual([...cv.data], [50, 225]);
  const up = await preprocessImage(await two(), { resize: { height: 1, width: 4 } });
  // R channel: 10, 0.75·10 + 0.25·40 = 17.5 → 18, 0.25·10 + 0.75·40 = 32.5 → 33, 40
  assert.deepEqual([...up.data.subarray(0, 4)], [10, 18, 33, 40]);
});

test('resize sizes follow torchvision and PaddleOCR rounding', () => {
  assert.deepEqual(resizedSize({ shortSide: 256 }, 500, 375), { width: 341, height: 256 });
  assert.deepEqual(resizedSize({ shortSide: 256 }, 375, 500), { width: 256, height: 341 });
  assert.deepEqual(resizedSize({ height: 32, keepRatio: true, maxWidth: 320 }, 100, 30), { width: 107, height: 32 });
  assert.deepEqual(resizedSize({ height: 32, keepRatio: true, maxWidth: 320 }, 400, 20), { width: 320, height: 32 });
});

test('OCR_SPEC: BGR, (x/255 − 0.5)/0.5, keep ratio, zero right-pad', async () => {
  const f = await png('word.png', 2, 1, [255, 0, 51, 0, 255, 255]);
  const t = await preprocessImage(f, OCR_SPEC(1, 4, true));
  assert.deepEqual(t.dims, [1, 3, 1, 4]);
  const r = (v: number): number => Math.fround((v / 255 - 0.5) / 0.5);
  assert.deepEqual([...t.data], [r(51), r(255), 0, 0, r(0), r(255), 0, 0, r(255), r(0), 0, 0]);
  assert.deepEqual((await preprocessImage(f, OCR_SPEC(1, 4, false))).dims, [1, 3, 1, 2]);
});

test('parsePreprocessSpec validates and names the source and field', () => {
  const spec = parsePreprocessSpec({ resize: { shortSide: 256 }, crop: { height: 224, width: 224 }, mean: [0.5], std: [0.5], layout: 'nhwc' }, 'cfg.json');
  assert.deepEqual(spec, { resize: { shortSide: 256 }, crop: { height: 224, width: 224 }, mean: [0.5], std: [0.5], layout: 'nhwc' });
  assert.deepEqual(parsePreprocessSpec(OCR_SPEC(32, 320, true), 'x'), OCR_SPEC(32, 320, true));
  assert.throws(() => parsePreprocessSpec({ layout: 'chw' }, 'cfg.json'), /cfg\.json: preprocess\.layout must be one of nchw\|nhwc/);
  assert.throws(() => parsePreprocessSpec({ scal: 1 }, 'cfg.json'), /cfg\.json: preprocess\.scal is not a known field/);
  assert.throws(() => parsePreprocessSpec({ mean: [1, 2] }, 'm.json'), /m\.json: preprocess\.mean has 2 values/);
  assert.throws(() => parsePreprocessSpec({ std: [1, 'a', 1] }, 'm.json'), /preprocess\.std\[1\] must be a finite number/);
  assert.throws(() => parsePreprocessSpec({ resize: { height: 32, keepRatio: false, maxWidth: 3 } }, 's'), /s: preprocess\.resize\.keepRatio must be true/);
  assert.throws(() => parsePreprocessSpec({ crop: { height: 0, width: 2 } }, 's'), /preprocess\.crop\.height must be a positive integer/);
  assert.throws(() => parsePreprocessSpec([], 's'), /^UserError: s: preprocess must be an object, got \[\]$/);
});

test('a spec without resize or crop takes the fixed height and width of the model input; dynamic sizes and explicit resizes are kept', () => {
  const model = (dims: (number | string)[]) =>
    create(ModelProtoSchema, {
      graph: {
        input: [{ name: 'x', type: { value: { case: 'tensorType', value: { elemType: 1, shape: { dim: dims.map((d) => (typeof d === 'number' ? { value: { case: 'dimValue' as const, value: BigInt(d) } } : { value: { case: 'dimParam' as const, value: d } })) } } } } }],
      },
    });
  const nhwc = PREPROCESS_PRESETS['rgb01-nhwc'];
  assert.deepEqual(fitToModelInput(nhwc, model([1, 128, 96, 3]), 'x').resize, { height: 128, width: 96 });
  assert.deepEqual(fitToModelInput(PREPROCESS_PRESETS['raw-rgb'], model(['N', 3, 64, 48]), 'x').resize, { height: 64, width: 48 });
  assert.equal(fitToModelInput(nhwc, model([1, 'H', 'W', 3]), 'x').resize, undefined, 'dynamic: unchanged');
  assert.equal(fitToModelInput(PREPROCESS_PRESETS.imagenet, model([1, 3, 128, 128]), 'x'), PREPROCESS_PRESETS.imagenet, 'a spec that resizes is kept');
});
