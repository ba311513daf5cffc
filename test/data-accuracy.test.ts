/**
 * Float accuracy reproduction on ../shared/quantzoo: the README's figures come from the reference preprocessing,
 * so matching them within half a point proves ours. Full splits: each test takes 1–16 s on a 2-core machine.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { type TestContext, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { batches, type Dataset, IMAGENET_SPEC, imageFolder, mnistIdx, OCR_SPEC, paddleOcrLabels } from '../src/zoo/data/index.ts';
import { ctcGreedyDecode, loadCharset, OcrAccuracyMeter } from '../src/zoo/metrics/ocr.ts';

const Q = new URL('../../shared/quantzoo/', import.meta.url).pathname;
const skip = existsSync(Q) ? false : '../shared absent: no QuantZoo models/data to reproduce float accuracies';

async function session(model: string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(`${Q}Model/${model}`, { logSeverityLevel: 3 });
}

async function top1(model: string, ds: Dataset<number>, batchSize: number): Promise<number> {
  const s = await session(model);
  let ok = 0;
  let n = 0;
  for await (const b of batches(ds, batchSize)) {
    const out = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', b.input.data, [...b.input.dims]) });
    const y = out[s.outputNames[0]];
    const logits = y.data as Float32Array;
    const C = logits.length / b.labels.length;
    b.labels.forEach((label, i) => {
      let best = 0;
      for (let c = 1; c < C; c++) if (logits[i * C + c] > logits[i * C + best]) best = c;
      if (best === label) ok++;
      n++;
    });
  }
  await s.release();
  assert.equal(n, ds.size);
  return (100 * ok) / n;
}

function near(t: TestContext, actual: number, expected: number, tol: number, what: string): void {
  t.diagnostic(`${what}: ${actual.toFixed(2)}% (README ${expected}%)`);
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual.toFixed(2)}% vs expected ${expected}% (±${tol})`);
}

test('squeezenet_cifar10 (NHWC, RGB/255): 75.8% on the first 200 test images per class', { skip }, async (t) => {
  const spec = { colorOrder: 'rgb', scale: 1 / 255, layout: 'nhwc' } as const;
  const ds = imageFolder(`${Q}Data/Cifar10/Test`, spec, { limitPerClass: 200 });
  assert.equal(ds.size, 2000);
  near(t, await top1('cifar10/squeezenet_cifar10.onnx', ds, 100), 75.8, 0.5, 'squeezenet_cifar10');
});

test('mnist-8 (raw 0–255): 98.9% on images 1000..9999', { skip }, async (t) => {
  const ds = mnistIdx(`${Q}Data/Mnist/t10k-images-idx3-ubyte.gz`, `${Q}Data/Mnist/t10k-labels-idx1-ubyte.gz`, { offset: 1000 });
  assert.equal(ds.size, 9000);
  near(t, await top1('mnist/mnist-8.onnx', ds, 1), 98.9, 0.5, 'mnist-8'); // the graph fixes batch 1
});

test('mobilenetv2-7 (short side 256, crop 224, ImageNet mean/std): 83.7% on Imagenet/Test', { skip }, async (t) => {
  const ds = imageFolder(`${Q}Data/Imagenet/Test`, IMAGENET_SPEC, { classesFile: `${Q}Data/Imagenet/classes.txt` });
  assert.equal(ds.size, 750);
  near(t, await top1('Imagenet/mobilenetv2-7.onnx', ds, 25), 83.7, 0.5, 'mobilenetv2-7');
});

test('en_number_mobile_v2.0_rec (BGR, H32, W≤320, right-padded): 47.8% on all 2077 IC15 words', { skip }, async (t) => {
  const charset = loadCharset(readFileSync(`${Q}Model/ocr/en_dict.txt`, 'utf8'), true);
  const s = await session('ocr/en_number_mobile_v2.0_rec_infer.onnx');
  const ds = paddleOcrLabels(`${Q}Data/IC15/rec_gt_test.txt`, `${Q}Data/IC15`, OCR_SPEC(32, 320, true));
  assert.equal(ds.size, 2077);
  const meter = new OcrAccuracyMeter();
  for await (const b of batches(ds, 16)) {
    const out = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', b.input.data, [...b.input.dims]) });
    const y = out[s.outputNames[0]];
    const [N, T, C] = y.dims;
    const probs = y.data as Float32Array;
    for (let i = 0; i < N; i++) meter.add(ctcGreedyDecode(probs.subarray(i * T * C, (i + 1) * T * C), T, C, charset), b.labels[i]);
  }
  await s.release();
  near(t, 100 * meter.accuracy(), 47.8, 0.5, 'en_number_mobile_v2.0_rec');
});
