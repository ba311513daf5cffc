/**
 * DIV2K-layout super-resolution pairs: `DIV2K_{valid,train}_HR/<name>.png` and
 * `DIV2K_{valid,train}_LR_bicubic/X<s>/<name>x<s>.png` (Data/DIV2K holds Set5+Set14 as "valid", BSD68 as "train").
 *
 * The zoo models take fixed sizes (srcnn_x3_256: [1,3,256,256] RGB 0–255; espcn_x3_y224: [B,1,224,224] Y in
 * [0,1]) while most LR images here are smaller, so a `patch` takes the centre crop of at most patch×patch and pads
 * it at the bottom/right. The label is the HR region of the un-padded LR window (×scale), RGB 0..255 [3,H,W], so
 * the metric compares the top-left label-sized part of the output.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FloatTensor } from '../../tensor.ts';
import { listFiles } from './files.ts';
import { centreOffset, cropImage, decodeImage, normalizeImage, type PreprocessSpec, type RawImage } from './preprocess.ts';
import type { Dataset } from './types.ts';

export interface SuperResolutionOptions {
  scale: 3 | 4;
  split: 'valid' | 'train';
  /** Channel order / scaling of the LR input; resize and crop are not allowed (use `patch`). Default: RGB 0–255 NCHW. */
  spec?: PreprocessSpec;
  /** Fixed LR input size: centre crop to at most patch×patch, then pad to exactly patch×patch. */
  patch?: number;
  /** How the pad is filled: replicate the edge (default, keeps the border statistics natural) or zeros. */
  padMode?: 'edge' | 'zero';
}

/** srcnn_x3_256 / srcnn_scale_input: RGB 0–255, 256×256 patches. */
export const SRCNN_SPEC: PreprocessSpec = { colorOrder: 'rgb', layout: 'nchw' };
/** espcn_x3_y224 (PyTorch tutorial): PIL Y channel scaled to [0,1], 224×224 patches. */
export const ESPCN_SPEC: PreprocessSpec = { colorOrder: 'gray', scale: 1 / 255, layout: 'nchw' };

function hwcToChwFloat(img: RawImage): FloatTensor {
  const { width: w, height: h, channels: c, data } = img;
  const out = new Float32Array(c * h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let ch = 0; ch < c; ch++) out[(ch * h + y) * w + x] = data[(y * w + x) * c + ch];
  return { dims: [c, h, w], data: out };
}

function padEdge(img: RawImage, height: number, width: number): RawImage {
  const c = img.channels;
  const out = new Uint8Array(width * height * c);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(y, img.height - 1);
    for (let x = 0; x < width; x++) {
      const sx = Math.min(x, img.width - 1);
      for (let ch = 0; ch < c; ch++) out[(y * width + x) * c + ch] = img.data[(sy * img.width + sx) * c + ch];
    }
  }
  return { width, height, channels: c, data: out };
}

export function superResolutionPairs(root: string, opts: SuperResolutionOptions & { split: 'valid' }): Dataset<FloatTensor>;
export function superResolutionPairs(root: string, opts: SuperResolutionOptions & { split: 'train' }): Dataset<null>;
export function superResolutionPairs(root: string, opts: SuperResolutionOptions): Dataset<FloatTensor | null> {
  const { scale, split } = opts;
  const spec = opts.spec ?? SRCNN_SPEC;
  if (spec.resize || spec.crop || spec.padTo) throw new Error('superResolutionPairs: spec.resize/crop/padTo are not allowed here; use the patch option');
  const lrDir = join(root, `DIV2K_${split}_LR_bicubic`, `X${scale}`);
  const hrDir = join(root, `DIV2K_${split}_HR`);
  if (!existsSync(lrDir)) throw new Error(`superResolutionPairs: missing ${lrDir}`);
  const suffix = `x${scale}`;
  // Pair by stem so a missing HR image is reported, not silently skipped (valid); train needs LR only.
  const lrFiles = listFiles(lrDir, ['.png']);
  const items = lrFiles.map((f) => {
    const stem = f.slice(0, -'.png'.length);
    if (!stem.endsWith(suffix)) throw new Error(`superResolutionPairs: ${join(lrDir, f)} does not end in ${suffix}.png`);
    return { lr: join(lrDir, f), hr: join(hrDir, `${stem.slice(0, -suffix.length)}.png`), id: stem.slice(0, -suffix.length) };
  });
  if (split === 'valid') for (const it of items) if (!existsSync(it.hr)) throw new Error(`superResolutionPairs: no HR image ${it.hr} for ${it.lr}`);
  return {
    name: `DIV2K_${split}_X${scale}`,
    size: items.length,
    async *samples() {
      for (const it of items) {
        let lr = await decodeImage(it.lr);
        let top = 0;
        let left = 0;
        let h = lr.height;
        let w = lr.width;
        if (opts.patch !== undefined) {
          const p = opts.patch;
          h = Math.min(p, lr.height);
          w = Math.min(p, lr.width);
          top = centreOffset(lr.height, h);
          left = centreOffset(lr.width, w);
          lr = cropImage(lr, top, left, h, w);
          if (h < p || w < p) lr = opts.padMode === 'zero' ? cropImage(lr, 0, 0, p, p) : padEdge(lr, p, p);
        }
        const input = normalizeImage(lr, spec, it.lr);
        if (split === 'train') {
          yield { id: it.id, input, label: null };
          continue;
        }
        const hr = await decodeImage(it.hr);
        yield { id: it.id, input, label: hwcToChwFloat(cropImage(hr, top * scale, left * scale, h * scale, w * scale)) };
      }
    },
  };
}
