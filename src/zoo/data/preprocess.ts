/**
 * Image preprocessing described by a JSON-serialisable spec, so a benchmark config can state exactly what the
 * reference pipeline did. Order of operations: decode (sharp) → resize → centre crop → channel order →
 * (x·scale − mean)/std → layout → right-pad.
 *
 * Resize semantics follow the reference each mode comes from (see resize.ts for the pixel-exact ports):
 *  - `{shortSide}` and `{height,width}`: torchvision on PIL images (PIL's antialiased filters, uint8 rounding).
 *  - `{height,keepRatio,maxWidth}`: PaddleOCR's resize_norm_img, i.e. OpenCV cv2.resize (no antialias).
 * Deviations: JPEG decoding is sharp's (mozjpeg/libjpeg-turbo islow IDCT, same as PIL's default but not
 * guaranteed bit-identical to OpenCV's bundled libjpeg); EXIF orientation is ignored (like PIL, unlike cv2.imread);
 * 'gray' is PIL's ITU-R 601 luma `convert('L')`, which equals the Y of `convert('YCbCr')` up to rounding.
 */
import sharp, { type OutputInfo } from 'sharp';
import { isJsonObject, jsonFields, type JsonObject } from '../../json-fields.ts';
import { UserError } from '../../errors.ts';
import type { FloatTensor } from '../../tensor.ts';
import { type Interpolation, type RawImage, resizeOpenCv, resizePil, roundHalfEven } from './resize.ts';

export type { Interpolation, RawImage } from './resize.ts';

export type ResizeSpec =
  | { shortSide: number }
  | { height: number; width: number }
  | { height: number; keepRatio: true; maxWidth: number };

export interface PreprocessSpec {
  resize?: ResizeSpec;
  /** Centre crop (torchvision CenterCrop: offsets rounded half-to-even, zero-padded when larger than the image). */
  crop?: { height: number; width: number };
  interpolation?: Interpolation;
  colorOrder?: 'rgb' | 'bgr' | 'gray';
  /** Multiplies the 0..255 pixel values before mean/std, e.g. 1/255. */
  scale?: number;
  mean?: number[];
  std?: number[];
  layout?: 'nchw' | 'nhwc';
  /** Right-pad the width after normalisation (PaddleOCR pads its normalised tensor with zeros). */
  padTo?: { width: number; value: number };
}

export type ImageSource = string | Buffer | Uint8Array;

/** Decodes to 8-bit RGB, HWC. Alpha is dropped, not composited, as PIL's convert('RGB') and cv2.imread do. */
export async function decodeImage(src: ImageSource): Promise<RawImage> {
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    decoded = await sharp(src, { failOn: 'none' }).removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    // A file that is missing, empty or not an image: one line naming it (a buffer has no name to give).
    const reason = (e as Error).message.split('\n')[0];
    if (typeof src === 'string') throw new UserError(`cannot decode image (${/no such file|missing/i.test(reason) ? 'file not found' : reason})`, src);
    throw new UserError(`cannot decode image (${reason})`);
  }
  const { data, info } = decoded;
  let px = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (info.channels === 1) {
    const rgb = new Uint8Array(px.length * 3);
    for (let i = 0; i < px.length; i++) rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = px[i];
    px = rgb;
  } else if (info.channels !== 3) {
    throw new Error(`decodeImage: expected 1 or 3 channels after sRGB conversion, got ${info.channels}`);
  }
  return { width: info.width, height: info.height, channels: 3, data: px };
}

/** The output size of a resize spec for an image of (width, height), with the reference's rounding. */
export function resizedSize(spec: ResizeSpec, width: number, height: number): { width: number; height: number } {
  if ('shortSide' in spec) {
    // torchvision _compute_resized_output_size: the long side is truncated, not rounded.
    const s = spec.shortSide;
    return width <= height ? { width: s, height: Math.trunc((s * height) / width) } : { width: Math.trunc((s * width) / height), height: s };
  }
  if ('keepRatio' in spec) {
    const ratio = width / height;
    return { width: Math.min(spec.maxWidth, Math.ceil(spec.height * ratio)), height: spec.height };
  }
  return { width: spec.width, height: spec.height };
}

export function resizeImage(img: RawImage, spec: ResizeSpec, interp: Interpolation = 'bilinear'): RawImage {
  const { width, height } = resizedSize(spec, img.width, img.height);
  if (width === img.width && height === img.height) return img; // PIL and cv2 both copy unchanged
  return 'keepRatio' in spec ? resizeOpenCv(img, width, height, interp) : resizePil(img, width, height, interp);
}

/** Extracts a (height, width) window at (top, left); pixels outside the image become `fill`. */
export function cropImage(img: RawImage, top: number, left: number, height: number, width: number, fill = 0): RawImage {
  const c = img.channels;
  const out = new Uint8Array(width * height * c).fill(fill);
  for (let y = 0; y < height; y++) {
    const sy = top + y;
    if (sy < 0 || sy >= img.height) continue;
    for (let x = 0; x < width; x++) {
      const sx = left + x;
      if (sx < 0 || sx >= img.width) continue;
      for (let ch = 0; ch < c; ch++) out[(y * width + x) * c + ch] = img.data[(sy * img.width + sx) * c + ch];
    }
  }
  return { width, height, channels: c, data: out };
}

/** torchvision CenterCrop offset along one axis. */
export function centreOffset(size: number, crop: number): number {
  return size >= crop ? roundHalfEven((size - crop) / 2) : -Math.floor((crop - size) / 2);
}

export function centreCrop(img: RawImage, height: number, width: number): RawImage {
  if (height === img.height && width === img.width) return img;
  return cropImage(img, centreOffset(img.height, height), centreOffset(img.width, width), height, width);
}

/** Channel order, (x·scale − mean)/std, layout and right-padding: everything after the geometry. */
export function normalizeImage(img: RawImage, spec: PreprocessSpec, source = 'image'): FloatTensor {
  const order = spec.colorOrder ?? 'rgb';
  const c = order === 'gray' ? 1 : 3;
  const scale = spec.scale ?? 1;
  const mean = broadcast(spec.mean, c, 0, 'mean', source);
  const std = broadcast(spec.std, c, 1, 'std', source);
  const h = img.height;
  const w = img.width;
  const W = spec.padTo ? spec.padTo.width : w;
  if (W < w) throw new UserError(`image width ${w} exceeds padTo.width ${W}`, source);
  const nhwc = (spec.layout ?? 'nchw') === 'nhwc';
  const out = new Float32Array(c * h * W);
  if (spec.padTo && W > w) out.fill(spec.padTo.value);
  const src = img.data;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * img.channels;
      for (let ch = 0; ch < c; ch++) {
        let v: number;
        if (order === 'gray') v = (src[p] * 19595 + src[p + 1] * 38470 + src[p + 2] * 7471 + 0x8000) >>> 16;
        else v = src[p + (order === 'bgr' ? 2 - ch : ch)];
        const o = nhwc ? (y * W + x) * c + ch : (ch * h + y) * W + x;
        out[o] = (v * scale - mean[ch]) / std[ch];
      }
    }
  }
  return { dims: nhwc ? [1, h, W, c] : [1, c, h, W], data: out };
}

function broadcast(v: number[] | undefined, c: number, dflt: number, field: string, source: string): number[] {
  if (v === undefined) return new Array<number>(c).fill(dflt);
  if (v.length === 1) return new Array<number>(c).fill(v[0]);
  if (v.length !== c) throw new UserError(`${field} has ${v.length} values but the image has ${c} channel(s)`, source);
  return v;
}

/** Decode, resize, crop and normalise one image into a [1,C,H,W] (or [1,H,W,C]) tensor. */
export async function preprocessImage(src: ImageSource, spec: PreprocessSpec): Promise<FloatTensor> {
  const name = typeof src === 'string' ? src : 'image buffer';
  let img = await decodeImage(src);
  if (spec.resize) img = resizeImage(img, spec.resize, spec.interpolation);
  if (spec.crop) img = centreCrop(img, spec.crop.height, spec.crop.width);
  return normalizeImage(img, spec, name);
}

// ---- validation -------------------------------------------------------------------------------------------------

/** Validates untrusted JSON (a config file) into a PreprocessSpec; errors name the source and the field. */
export function parsePreprocessSpec(json: unknown, source: string): PreprocessSpec {
  const fail = (field: string, why: string): never => {
    throw new UserError(`preprocess${field ? `.${field}` : ''} ${why}`, source);
  };
  const { obj, int, num, oneOf } = jsonFields(fail);
  const posInt = (v: unknown, field: string) => int(v, field, 1);
  obj(json, '', ['resize', 'crop', 'interpolation', 'colorOrder', 'scale', 'mean', 'std', 'layout', 'padTo']);
  const o = json as JsonObject;
  const spec: PreprocessSpec = {};
  if (o.resize !== undefined) {
    const r = o.resize;
    if (!isJsonObject(r)) return fail('resize', 'must be an object');
    if ('shortSide' in r) spec.resize = { shortSide: posInt(r.shortSide, 'resize.shortSide') };
    else if (r.keepRatio !== undefined) {
      if (r.keepRatio !== true) fail('resize.keepRatio', 'must be true when given');
      spec.resize = { height: posInt(r.height, 'resize.height'), keepRatio: true, maxWidth: posInt(r.maxWidth, 'resize.maxWidth') };
    } else if ('height' in r || 'width' in r) spec.resize = { height: posInt(r.height, 'resize.height'), width: posInt(r.width, 'resize.width') };
    else fail('resize', 'must be {shortSide}, {height,width} or {height,keepRatio:true,maxWidth}');
  }
  if (o.crop !== undefined) {
    const c = o.crop;
    if (!isJsonObject(c)) return fail('crop', 'must be an object {height,width}');
    spec.crop = { height: posInt(c.height, 'crop.height'), width: posInt(c.width, 'crop.width') };
  }
  if (o.interpolation !== undefined) spec.interpolation = oneOf(o.interpolation, 'interpolation', ['bilinear', 'bicubic', 'nearest', 'area'] as const);
  if (o.colorOrder !== undefined) spec.colorOrder = oneOf(o.colorOrder, 'colorOrder', ['rgb', 'bgr', 'gray'] as const);
  if (o.scale !== undefined) spec.scale = num(o.scale, 'scale');
  for (const field of ['mean', 'std'] as const) {
    const v = o[field];
    if (v === undefined) continue;
    if (!Array.isArray(v) || v.length === 0) fail(field, 'must be a non-empty array of numbers');
    const arr = (v as unknown[]).map((x, i) => num(x, `${field}[${i}]`));
    if (field === 'std' && arr.some((x) => x === 0)) fail(field, 'must not contain 0');
    spec[field] = arr;
  }
  if (o.layout !== undefined) spec.layout = oneOf(o.layout, 'layout', ['nchw', 'nhwc'] as const);
  if (o.padTo !== undefined) {
    const p = o.padTo;
    if (!isJsonObject(p)) return fail('padTo', 'must be an object {width,value}');
    spec.padTo = { width: posInt(p.width, 'padTo.width'), value: num(p.value ?? 0, 'padTo.value') };
  }
  const c = spec.colorOrder === 'gray' ? 1 : 3;
  for (const field of ['mean', 'std'] as const) {
    const n = spec[field]?.length;
    if (n !== undefined && n !== 1 && n !== c) fail(field, `has ${n} values; expected 1 or ${c} for colorOrder ${spec.colorOrder ?? 'rgb'}`);
  }
  return spec;
}

/** Standard presets. */
export const IMAGENET_SPEC: PreprocessSpec = {
  resize: { shortSide: 256 },
  crop: { height: 224, width: 224 },
  interpolation: 'bilinear',
  colorOrder: 'rgb',
  scale: 1 / 255,
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  layout: 'nchw',
};
