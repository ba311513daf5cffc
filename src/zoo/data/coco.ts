/**
 * COCO-style detection: `<root>/<split>/` images plus a `DetectionAnnotation.json` (COCO format: images,
 * annotations with [x,y,w,h] boxes, categories) in the split folder or in root. Inputs are letterboxed YOLO-style
 * (cv2 bilinear resize keeping ratio, centred pad with 114) or plainly resized; the label carries the transform so
 * predicted boxes can be mapped back to original pixels.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { byCodeUnit } from './files.ts';
import { decodeImage, normalizeImage, type PreprocessSpec, type RawImage } from './preprocess.ts';
import { resizeOpenCvLinear } from './resize.ts';
import type { Dataset } from './types.ts';
import { UserError } from '../../errors.ts';

export interface CocoBox {
  /** [x, y, width, height] in original image pixels. */
  bbox: [number, number, number, number];
  categoryId: number;
  iscrowd: boolean;
}

export interface DetectionLabel {
  imageId: number;
  fileName: string;
  width: number;
  height: number;
  boxes: CocoBox[];
  /** input pixel = original pixel · scale + pad (per axis). */
  transform: { scaleX: number; scaleY: number; padLeft: number; padTop: number };
}

export interface CocoOptions {
  /** Square input side (default 640). */
  size?: number;
  /** 'letterbox' (default; YOLOv5/v8 LetterBox, auto=False) or 'resize' (stretch to size×size). */
  mode?: 'letterbox' | 'resize';
  /** Letterbox pad value, 0..255 before normalisation (default 114). */
  padValue?: number;
  /** Colour and normalisation of the input; default RGB /255 NCHW. resize/crop are not allowed (geometry is above). */
  spec?: PreprocessSpec;
}

interface CocoJson {
  images: { id: number; file_name: string; width: number; height: number }[];
  annotations?: { image_id: number; bbox: number[]; category_id: number; iscrowd?: number }[];
}

function readCocoJson(file: string): CocoJson {
  const j: unknown = JSON.parse(readFileSync(file, 'utf8'));
  if (typeof j !== 'object' || j === null || !Array.isArray((j as { images?: unknown }).images)) {
    throw new UserError(`expected a COCO annotation object with an "images" array`, file);
  }
  return j as CocoJson;
}

/** YOLOv5 letterbox: r = min(S/h, S/w), unpadded size rounded, padding split with the −0.1/+0.1 rounding trick. */
export function letterbox(img: RawImage, size: number, padValue: number): { image: RawImage; transform: DetectionLabel['transform'] } {
  const r = Math.min(size / img.height, size / img.width);
  const w = Math.round(img.width * r);
  const h = Math.round(img.height * r);
  const resized = resizeOpenCvLinear(img, w, h);
  const dw = (size - w) / 2;
  const dh = (size - h) / 2;
  const top = Math.max(0, Math.round(dh - 0.1)); // max: Math.round(-0.1) is -0
  const left = Math.max(0, Math.round(dw - 0.1));
  const c = img.channels;
  const out = new Uint8Array(size * size * c).fill(padValue);
  for (let y = 0; y < h; y++) out.set(resized.data.subarray(y * w * c, (y + 1) * w * c), ((y + top) * size + left) * c);
  return { image: { width: size, height: size, channels: c, data: out }, transform: { scaleX: w / img.width, scaleY: h / img.height, padLeft: left, padTop: top } };
}

export function cocoDetection(root: string, split: string, opts: CocoOptions = {}): Dataset<DetectionLabel> {
  const dir = join(root, split);
  const annFile = [join(dir, 'DetectionAnnotation.json'), join(root, 'DetectionAnnotation.json')].find((f) => existsSync(f));
  if (!annFile) throw new Error(`cocoDetection: no DetectionAnnotation.json in ${dir} or ${root}`);
  const json = readCocoJson(annFile);
  const byImage = new Map<number, CocoBox[]>();
  for (const a of json.annotations ?? []) {
    const list = byImage.get(a.image_id) ?? [];
    list.push({ bbox: [a.bbox[0], a.bbox[1], a.bbox[2], a.bbox[3]], categoryId: a.category_id, iscrowd: a.iscrowd === 1 });
    byImage.set(a.image_id, list);
  }
  // The annotation file may cover several splits: keep the images present in this split's folder.
  const imageDir = existsSync(join(dir, 'images')) ? join(dir, 'images') : dir;
  const images = json.images.filter((im) => existsSync(join(imageDir, im.file_name))).sort((a, b) => byCodeUnit(a.file_name, b.file_name));
  const size = opts.size ?? 640;
  const spec = opts.spec ?? { colorOrder: 'rgb', scale: 1 / 255, layout: 'nchw' };
  if (spec.resize || spec.crop) throw new Error('cocoDetection: spec.resize/crop are not allowed; use the size/mode options');
  return {
    name: `coco-${split}`,
    size: images.length,
    async *samples() {
      for (const im of images) {
        const file = join(imageDir, im.file_name);
        const img = await decodeImage(file);
        let geo: ReturnType<typeof letterbox>;
        if ((opts.mode ?? 'letterbox') === 'letterbox') geo = letterbox(img, size, opts.padValue ?? 114);
        else geo = { image: resizeOpenCvLinear(img, size, size), transform: { scaleX: size / img.width, scaleY: size / img.height, padLeft: 0, padTop: 0 } };
        yield {
          id: im.file_name,
          input: normalizeImage(geo.image, spec, file),
          label: { imageId: im.id, fileName: im.file_name, width: img.width, height: img.height, boxes: byImage.get(im.id) ?? [], transform: geo.transform },
        };
      }
    },
  };
}
