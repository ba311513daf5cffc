import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import {
  batches,
  cityscapes,
  cocoDetection,
  type Dataset,
  fromIterator,
  imageFolder,
  iteratorDataset,
  mnistIdx,
  paddleOcrLabels,
  parsePaddleOcrLabels,
  type Sample,
  superResolutionPairs,
  take,
  unlabelledImages,
} from '../src/zoo/data/index.ts';

const root = mkdtempSync(join(tmpdir(), 'onnxquant-load-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function png(rel: string, width: number, height: number, value: (x: number, y: number, c: number) => number, channels = 3): Promise<string> {
  const file = join(root, rel);
  mkdirSync(dirname(file), { recursive: true });
  const px = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < channels; c++) px[(y * width + x) * channels + c] = value(x, y, c);
  await sharp(px, { raw: { width, height, channels: channels as 1 | 3 } }).png().toFile(file);
  return file;
}

async function all<L>(ds: Dataset<L>): Promise<Sample<L>[]> {
  const out: Sample<L>[] = [];
  for await (const s of ds.samples()) out.push(s);
  return out;
}

const vec = (id: string, dims: number[], fill = 0): Sample<string> => ({ id, input: { dims, data: new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(fill) }, label: id });

test('batches: stacks on dim 0, short last batch, limit, shape errors', async () => {
  const ds = iteratorDataset('v', 5, () => [0, 1, 2, 3, 4].map((i) => vec(`s${i}`, [1, 2], i)));
  const got = [];
  for await (const b of batches(ds, 2)) got.push(b);
  assert.deepEqual(got.map((b) => b.input.dims), [[2, 2], [2, 2], [1, 2]]);
  assert.deepEqual(got.map((b) => b.ids), [['s0', 's1'], ['s2', 's3'], ['s4']]);
  assert.deepEqual([...got[1].input.data], [2, 2, 3, 3]);
  assert.deepEqual(got[2].labels, ['s4']);
  const limited = [];
  for await (const b of batches(ds, 2, 3)) limited.push(b.ids);
  assert.deepEqual(limited, [['s0', 's1'], ['s2']]);
  const ragged = iteratorDataset('r', 2, () => [vec('a', [1, 3, 4, 5]), vec('b', [1, 3, 4, 6])]);
  await assert.rejects(async () => {
    for await (const _ of batches(ragged, 2));
  }, /batches\(r\): cannot stack sample b of shape \[1,3,4,6\] with a of shape \[1,3,4,5\]/);
  await assert.rejects(async () => {
    for await (const _ of batches(ds, 0));
  }, /batchSize must be a positive integer/);
});

test('take, iteratorDataset and fromIterator', async () => {
  let produced = 0;
  const ds = iteratorDataset('g', 10, function* () {
    for (let i = 0; i < 10; i++) {
      produced++;
      yield vec(String(i), [1, 1]);
    }
  });
  const t = take(ds, 3);
  assert.equal(t.size, 3);
  assert.deepEqual((await all(t)).map((s) => s.id), ['0', '1', '2']);
  assert.equal(produced, 3, 'take stops reading its source');
  assert.equal((await all(ds)).length, 10, 're-iterable');
  assert.equal(take(ds, 99).size, 10);
  await assert.rejects(all(iteratorDataset('short', 3, () => [vec('a', [1])])), /declared size 3 but the generator yielded only 1/);
  const ids: string[] = [];
  for await (const s of fromIterator([{ dims: [1, 2], data: new Float32Array(2) }])) ids.push(s.id);
  assert.deepEqual(ids, ['0']);
  await assert.rejects(async () => {
    for await (const _ of fromIterator([{ dims: [2, 2], data: new Float32Array(4) }]));
  }, /expected a leading batch dim of 1/);
});

test('imageFolder: classes.txt indices, sorted order, limitPerClass', async () => {
  for (const cls of ['n3', 'n1']) for (const f of ['b.png', 'a.png', 'C.png']) await png(`inet/${cls}/${f}`, 2, 2, () => (cls === 'n1' ? 10 : 20));
  writeFileSync(join(root, 'inet/notes.txt'), 'not an image');
  writeFileSync(join(root, 'classes.txt'), 'n0\tzero\nn1\tone\nn2 two\nn3\tthree\n');
  const ds = imageFolder(join(root, 'inet'), { colorOrder: 'gray' }, { classesFile: join(root, 'classes.txt'), limitPerClass: 2 });
  assert.equal(ds.size, 4);
  const s = await all(ds);
  assert.deepEqual(s.map((x) => x.id), ['n1/C.png', 'n1/a.png', 'n3/C.png', 'n3/a.png']);
  assert.deepEqual(s.map((x) => x.label), [1, 1, 3, 3]);
  assert.deepEqual(s[0].input.dims, [1, 1, 2, 2]);
  // without a classes file: index among the sorted folder names
  assert.deepEqual((await all(imageFolder(join(root, 'inet'), {}))).map((x) => x.label), [0, 0, 0, 1, 1, 1]);
  writeFileSync(join(root, 'few.txt'), 'n1\n');
  assert.throws(() => imageFolder(join(root, 'inet'), {}, { classesFile: join(root, 'few.txt') }), /folder 'n3' is not listed/);
});

test('PaddleOCR label files: first tab splits, paths relative to the image root', async () => {
  assert.deepEqual(parsePaddleOcrLabels('a.png\tHello World\r\nb.png\tx\ty\n\n', 'l.txt'), [
    { path: 'a.png', label: 'Hello World' },
    { path: 'b.png', label: 'x\ty' },
  ]);
  assert.throws(() => parsePaddleOcrLabels('ok.png\tfine\nbroken line\n', 'l.txt'), /l\.txt:2: expected "path<TAB>label"/);
  await png('ic/test/word_1.png', 4, 2, () => 128);
  writeFileSync(join(root, 'ic/rec_gt_test.txt'), 'test/word_1.png\tJOINT\n');
  const s = await all(paddleOcrLabels(join(root, 'ic/rec_gt_test.txt'), join(root, 'ic'), { colorOrder: 'bgr' }));
  assert.deepEqual(s.map((x) => [x.id, x.label, x.input.dims]), [['test/word_1.png', 'JOINT', [1, 3, 2, 4]]]);
});

test('mnistIdx streams records with offset and count', async () => {
  const n = 4;
  const img = Buffer.alloc(16 + n * 4);
  img.writeUInt32BE(0x00000803, 0);
  img.writeUInt32BE(n, 4);
  img.writeUInt32BE(2, 8);
  img.writeUInt32BE(2, 12);
  for (let i = 0; i < n * 4; i++) img[16 + i] = i * 10;
  const lab = Buffer.alloc(8 + n);
  lab.writeUInt32BE(0x00000801, 0);
  lab.writeUInt32BE(n, 4);
  [7, 2, 1, 0].forEach((v, i) => (lab[8 + i] = v));
  mkdirSync(join(root, 'mnist'));
  writeFileSync(join(root, 'mnist/i.gz'), gzipSync(img));
  writeFileSync(join(root, 'mnist/l.gz'), gzipSync(lab));
  const ds = mnistIdx(join(root, 'mnist/i.gz'), join(root, 'mnist/l.gz'), { offset: 1, count: 2 });
  assert.equal(ds.size, 2);
  const s = await all(ds);
  assert.deepEqual(s.map((x) => [x.id, x.label, x.input.dims]), [['1', 2, [1, 1, 2, 2]], ['2', 1, [1, 1, 2, 2]]]);
  assert.deepEqual([...s[0].input.data], [40, 50, 60, 70]);
  assert.equal(mnistIdx(join(root, 'mnist/i.gz'), join(root, 'mnist/l.gz')).size, 4);
  assert.throws(() => mnistIdx(join(root, 'mnist/l.gz'), join(root, 'mnist/l.gz')), /l\.gz: could not read the 16-byte idx header/);
});

test('superResolutionPairs: patch crop + edge pad, label is the matching HR region', async () => {
  const sr = join(root, 'div2k');
  await png('div2k/DIV2K_valid_HR/img.png', 6, 9, (x, y) => x + 10 * y);
  await png('div2k/DIV2K_valid_LR_bicubic/X3/imgx3.png', 2, 3, (x, y) => 100 + x + 10 * y);
  await png('div2k/DIV2K_train_LR_bicubic/X3/cx3.png', 2, 2, () => 1);
  const ds = superResolutionPairs(sr, { scale: 3, split: 'valid', patch: 2 });
  const [s] = await all(ds);
  assert.equal(s.id, 'img');
  assert.deepEqual(s.input.dims, [1, 3, 2, 2]);
  assert.deepEqual([...s.input.data.subarray(0, 4)], [100, 101, 110, 111]); // (3 − 2)/2 = 0.5 → top 0
  assert.deepEqual(s.label.dims, [3, 6, 6]);
  assert.equal(s.label.data[0], 0);
  assert.equal(s.label.data[5 * 6 + 5], 55);
  const padded = await all(superResolutionPairs(sr, { scale: 3, split: 'valid', patch: 4, spec: { colorOrder: 'gray', scale: 1 / 255 } }));
  assert.deepEqual(padded[0].input.dims, [1, 1, 4, 4]);
  assert.equal(padded[0].input.data[3], Math.fround(101 / 255)); // edge replicated to the right
  assert.equal(padded[0].input.data[15], Math.fround(121 / 255)); // and down
  assert.deepEqual(padded[0].label.dims, [3, 9, 6]);
  const train = await all(superResolutionPairs(sr, { scale: 3, split: 'train' }));
  assert.deepEqual(train.map((x) => [x.id, x.label]), [['c', null]]);
  assert.throws(() => superResolutionPairs(sr, { scale: 4, split: 'valid' }), /missing/);
});

test('cocoDetection: letterbox geometry and boxes', async () => {
  await png('coco/Test/b.png', 4, 2, () => 255);
  await png('coco/Test/a.png', 2, 2, () => 0);
  writeFileSync(
    join(root, 'coco/DetectionAnnotation.json'),
    JSON.stringify({
      images: [
        { id: 2, file_name: 'b.png', width: 4, height: 2 },
        { id: 1, file_name: 'a.png', width: 2, height: 2 },
        { id: 3, file_name: 'elsewhere.png', width: 2, height: 2 },
      ],
      annotations: [{ image_id: 2, bbox: [1, 0, 2, 2], category_id: 5, iscrowd: 0 }],
    }),
  );
  const s = await all(cocoDetection(join(root, 'coco'), 'Test', { size: 8 }));
  assert.deepEqual(s.map((x) => x.id), ['a.png', 'b.png']);
  const b = s[1];
  assert.deepEqual(b.input.dims, [1, 3, 8, 8]);
  assert.deepEqual(b.label.transform, { scaleX: 2, scaleY: 2, padLeft: 0, padTop: 2 });
  assert.deepEqual(b.label.boxes, [{ bbox: [1, 0, 2, 2], categoryId: 5, iscrowd: false }]);
  assert.equal(b.input.data[0], Math.fround(114 / 255)); // pad row
  assert.equal(b.input.data[2 * 8], 1); // first image row
  const stretched = await all(cocoDetection(join(root, 'coco'), 'Test', { size: 8, mode: 'resize' }));
  assert.deepEqual(stretched[1].label.transform, { scaleX: 2, scaleY: 4, padLeft: 0, padTop: 0 });
});

test('cityscapes: images paired with labelTrainIds in the gtFine tree', async () => {
  await png('city/Test/leftImg8bit/aachen/aachen_1_leftImg8bit.png', 3, 2, () => 50);
  await png('city/Test/gtFine/aachen/aachen_1_gtFine_labelTrainIds.png', 3, 2, (x) => [0, 18, 255][x], 1);
  const ds = cityscapes(join(root, 'city'), 'Test');
  const [s] = await all(ds);
  assert.equal(s.id, 'leftImg8bit/aachen/aachen_1_leftImg8bit.png');
  assert.deepEqual(s.input.dims, [1, 3, 2, 3]);
  assert.deepEqual([...s.label.trainIds], [0, 18, 255, 0, 18, 255]);
  await png('city/Bad/x_leftImg8bit.png', 1, 1, () => 0);
  assert.throws(() => cityscapes(join(root, 'city'), 'Bad'), /no _gtFine_labelTrainIds\.png label/);
});

test('unlabelledImages: sorted images only', async () => {
  await png('faces/b.png', 2, 2, () => 127);
  await png('faces/a.png', 2, 2, () => 255);
  writeFileSync(join(root, 'faces/readme.txt'), '');
  const s = await all(unlabelledImages(join(root, 'faces'), { mean: [127], std: [128] }));
  assert.deepEqual(s.map((x) => [x.id, x.label]), [['a.png', null], ['b.png', null]]);
  assert.equal(s[0].input.data[0], 1);
  assert.equal(s[1].input.data[0], 0);
});
