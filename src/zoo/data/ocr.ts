/** PaddleOCR recognition label files: one "image_path<TAB>label" per line (Data/IC15/rec_gt_{train,test}.txt). */
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { type PreprocessSpec, preprocessImage } from './preprocess.ts';
import type { Dataset } from './types.ts';
import { UserError } from '../../errors.ts';

export interface OcrLabelLine {
  path: string;
  label: string;
}

/**
 * Splits at the first tab like PaddleOCR's SimpleDataSet; only the line ending is stripped, so labels keep
 * their inner and surrounding spaces. Blank lines are skipped; a line without a tab is an error.
 */
export function parsePaddleOcrLabels(text: string, source: string): OcrLabelLine[] {
  const out: OcrLabelLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return;
    const tab = line.indexOf('\t');
    if (tab <= 0) throw new UserError(`expected "path<TAB>label", got ${JSON.stringify(line)}`, `${source}:${i + 1}`);
    out.push({ path: line.slice(0, tab), label: line.slice(tab + 1) });
  });
  return out;
}

/**
 * Paths in the label file are relative to `imageRoot` (PaddleOCR's data_dir): for IC15 the files say
 * `test/word_1.png`, so imageRoot is `Data/IC15` itself.
 */
export function paddleOcrLabels(labelFile: string, imageRoot: string, spec: PreprocessSpec): Dataset<string> {
  const lines = parsePaddleOcrLabels(readFileSync(labelFile, 'utf8'), labelFile);
  return {
    name: basename(labelFile).replace(/\.txt$/, ''),
    size: lines.length,
    async *samples() {
      for (const { path, label } of lines) yield { id: path, input: await preprocessImage(join(imageRoot, path), spec), label };
    },
  };
}

/**
 * PaddleOCR's resize_norm_img: BGR as cv2.imread gives it, height `height` keeping the aspect ratio with width
 * ceil(height·w/h) capped at maxWidth (cv2 bilinear), (x/255 − 0.5)/0.5, then optionally zero-padded on the right
 * to maxWidth (PaddleOCR's eval always pads; without padding each word keeps its own width).
 */
export function OCR_SPEC(height: number, maxWidth: number, pad: boolean): PreprocessSpec {
  return {
    resize: { height, keepRatio: true, maxWidth },
    interpolation: 'bilinear',
    colorOrder: 'bgr',
    scale: 1 / 255,
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    layout: 'nchw',
    ...(pad ? { padTo: { width: maxWidth, value: 0 } } : {}),
  };
}
