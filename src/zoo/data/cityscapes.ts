/**
 * Cityscapes segmentation: `<root>/<split>/…/*_leftImg8bit.png` with the label
 * `*_gtFine_labelTrainIds.png` either beside it or in the mirrored `gtFine` tree (the official layout is
 * leftImg8bit/<city>/… next to gtFine/<city>/…). Labels are train ids 0..18, 255 = ignore, at full resolution.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { walkFiles } from './files.ts';
import { IMAGENET_SPEC, type PreprocessSpec, preprocessImage } from './preprocess.ts';
import type { Dataset } from './types.ts';

export interface SegmentationLabel {
  width: number;
  height: number;
  /** Row-major train ids, 255 = ignore. */
  trainIds: Uint8Array;
}

const IMG_SUFFIX = '_leftImg8bit.png';
const LABEL_SUFFIX = '_gtFine_labelTrainIds.png';

/** Default input: ImageNet mean/std on RGB/255 at full resolution (mmseg's Cityscapes normalisation). */
export const CITYSCAPES_SPEC: PreprocessSpec = { colorOrder: 'rgb', scale: 1 / 255, mean: IMAGENET_SPEC.mean, std: IMAGENET_SPEC.std, layout: 'nchw' };

function labelPathFor(dir: string, rel: string): string {
  const stem = rel.slice(0, -IMG_SUFFIX.length);
  const candidates = [join(dir, `${stem}${LABEL_SUFFIX}`), join(dir, `${stem.replace(/(^|\/)leftImg8bit(\/|$)/, '$1gtFine$2')}${LABEL_SUFFIX}`)];
  const found = candidates.find((f) => existsSync(f));
  if (!found) throw new Error(`cityscapes: no ${LABEL_SUFFIX} label for ${join(dir, rel)} (looked in ${candidates.map(dirname).join(', ')})`);
  return found;
}

export async function readTrainIds(file: string): Promise<SegmentationLabel> {
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  const n = info.width * info.height;
  const ids = new Uint8Array(n);
  for (let i = 0; i < n; i++) ids[i] = data[i * info.channels]; // a palette/RGB save still keeps the id in channel 0
  return { width: info.width, height: info.height, trainIds: ids };
}

export function cityscapes(root: string, split: string, spec: PreprocessSpec = CITYSCAPES_SPEC): Dataset<SegmentationLabel> {
  const dir = join(root, split);
  const images = walkFiles(dir, (n) => n.endsWith(IMG_SUFFIX)).map((rel) => ({ rel, label: labelPathFor(dir, rel) }));
  return {
    name: `cityscapes-${split}`,
    size: images.length,
    async *samples() {
      for (const { rel, label } of images) yield { id: rel, input: await preprocessImage(join(dir, rel), spec), label: await readTrainIds(label) };
    },
  };
}
