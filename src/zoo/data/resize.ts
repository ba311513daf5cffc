/**
 * Pixel-exact re-implementations of the two resize routines the reference pipelines use. sharp (libvips) is used
 * only to decode: its `reduce` kernels antialias differently from PIL and never behave like OpenCV's
 * non-antialiased bilinear, and a quarter-point accuracy gap in the float baselines is exactly what we must avoid.
 */
import { roundHalfEven } from '../../math.ts';

/** An 8-bit interleaved (HWC) image. */
export interface RawImage {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  readonly data: Uint8Array;
}

export type Interpolation = 'bilinear' | 'bicubic' | 'nearest' | 'area';

// ---- PIL (Image.resize, as torchvision's Resize calls it) ------------------------------------------------------

interface Filter {
  support: number;
  weight(x: number): number;
}

const BICUBIC_A = -0.5; // PIL's choice (OpenCV uses -0.75)
const FILTERS: Record<Exclude<Interpolation, 'nearest'>, Filter> = {
  area: { support: 0.5, weight: (x) => (x >= -0.5 && x < 0.5 ? 1 : 0) }, // PIL BOX
  bilinear: { support: 1, weight: (x) => (Math.abs(x) < 1 ? 1 - Math.abs(x) : 0) },
  bicubic: {
    support: 2,
    weight: (x) => {
      const a = BICUBIC_A;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
};

const PRECISION_BITS = 32 - 8 - 2; // PIL Resample.c: coefficients in 22-bit fixed point

interface Coeffs {
  bounds: Int32Array; // [xmin, count] per output pixel
  ksize: number;
  k: Int32Array; // fixed-point weights, ksize per output pixel
}

/** PIL's precompute_coeffs + normalize_coeffs_8bpc: the filter widens by the scale when downsampling (antialias). */
function pilCoeffs(inSize: number, outSize: number, filter: Filter): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const k = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    // C's (int) truncates toward zero; the operands here are >= -support so trunc matches PIL.
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = filter.weight((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const c = ww !== 0 ? w[x] / ww : w[x];
      k[xx * ksize + x] = c < 0 ? Math.trunc(-0.5 + c * (1 << PRECISION_BITS)) : Math.trunc(0.5 + c * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, ksize, k };
}

const clip8 = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : v);

function pilPass(img: RawImage, outSize: number, filter: Filter, horizontal: boolean): RawImage {
  const { width, height, channels: c, data } = img;
  const co = pilCoeffs(horizontal ? width : height, outSize, filter);
  const ow = horizontal ? outSize : width;
  const oh = horizontal ? height : outSize;
  const out = new Uint8Array(ow * oh * c);
  const half = 1 << (PRECISION_BITS - 1);
  const div = 2 ** PRECISION_BITS; // values reach ~2^30 * 255: stay in doubles, floor == C's >> on positives
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const o = horizontal ? x : y;
      const min = co.bounds[o * 2];
      const n = co.bounds[o * 2 + 1];
      const kb = o * co.ksize;
      for (let ch = 0; ch < c; ch++) {
        let ss = half;
        for (let i = 0; i < n; i++) {
          const src = horizontal ? (y * width + min + i) * c + ch : ((min + i) * width + x) * c + ch;
          ss += data[src] * co.k[kb + i];
        }
        out[(y * ow + x) * c + ch] = clip8(Math.floor(ss / div));
      }
    }
  }
  return { width: ow, height: oh, channels: c, data: out };
}

/** PIL `Image.resize((w, h), resample)`: horizontal pass then vertical, each rounded to uint8 like PIL. */
export function resizePil(img: RawImage, width: number, height: number, interp: Interpolation): RawImage {
  if (interp === 'nearest') return resizeNearest(img, width, height, true);
  const f = FILTERS[interp];
  let out = img;
  if (width !== img.width) out = pilPass(out, width, f, true);
  if (height !== img.height) out = pilPass(out, height, f, false);
  return out;
}

/** Nearest neighbour: PIL samples pixel centres ((x + 0.5) * scale), OpenCV INTER_NEAREST uses floor(x * scale). */
function resizeNearest(img: RawImage, width: number, height: number, centred: boolean): RawImage {
  const { channels: c } = img;
  const out = new Uint8Array(width * height * c);
  const sx = img.width / width;
  const sy = img.height / height;
  const off = centred ? 0.5 : 0;
  for (let y = 0; y < height; y++) {
    const yi = Math.min(img.height - 1, Math.floor((y + off) * sy));
    for (let x = 0; x < width; x++) {
      const xi = Math.min(img.width - 1, Math.floor((x + off) * sx));
      for (let ch = 0; ch < c; ch++) out[(y * width + x) * c + ch] = img.data[(yi * img.width + xi) * c + ch];
    }
  }
  return { width, height, channels: c, data: out };
}

// ---- OpenCV cv2.resize (as PaddleOCR and YOLO letterboxing call it) --------------------------------------------

const CV_COEF_BITS = 11;
const CV_COEF_SCALE = 1 << CV_COEF_BITS;
/** uint8 lanes of OpenCV's baseline (SSE2, 128-bit) universal intrinsics on x86-64. */
const CV_SIMD_LANES = 16;

/**
 * Per output index: source index and 11-bit fixed-point weights (half-pixel centres, edge-clamped, no antialias).
 * Mirrors OpenCV's arithmetic: scale = 1/(out/in) in double, the fraction in float32, each weight cvRound-ed.
 */
function cvLinearTable(inSize: number, outSize: number): { idx: Int32Array; a0: Int32Array; a1: Int32Array } {
  const scale = 1 / (outSize / inSize);
  const idx = new Int32Array(outSize);
  const a0 = new Int32Array(outSize);
  const a1 = new Int32Array(outSize);
  const f32 = Math.fround;
  for (let d = 0; d < outSize; d++) {
    let f = f32((d + 0.5) * scale - 0.5);
    let s = Math.floor(f);
    f = f32(f - s);
    if (s < 0) {
      s = 0;
      f = 0;
    }
    if (s >= inSize - 1) {
      s = inSize - 1;
      f = 0;
    }
    idx[d] = s;
    a0[d] = roundHalfEven(f32(f32(1 - f) * CV_COEF_SCALE));
    a1[d] = roundHalfEven(f32(f * CV_COEF_SCALE));
  }
  return { idx, a0, a1 };
}

/**
 * `cv2.resize(img, (w, h), interpolation=INTER_LINEAR)` on uint8, following OpenCV's scalar fixed-point path
 * (HResizeLinear, then VResizeLinear with the SIMD rounding for whole vectors and FixedPtCast<…, 22> for the
 * tail). An exact 2x downscale in both axes switches to INTER_AREA, as OpenCV does.
 */
export function resizeOpenCvLinear(img: RawImage, width: number, height: number): RawImage {
  const { channels: c } = img;
  if (width === img.width && height === img.height) return img;
  if (img.width === width * 2 && img.height === height * 2) return areaHalf(img);
  const tx = cvLinearTable(img.width, width);
  const ty = cvLinearTable(img.height, height);
  const rowBuf = (sy: number): Int32Array => {
    const r = new Int32Array(width * c);
    const base = sy * img.width;
    for (let x = 0; x < width; x++) {
      const s0 = tx.idx[x];
      const s1 = Math.min(s0 + 1, img.width - 1);
      for (let ch = 0; ch < c; ch++) {
        r[x * c + ch] = img.data[(base + s0) * c + ch] * tx.a0[x] + img.data[(base + s1) * c + ch] * tx.a1[x];
      }
    }
    return r;
  };
  const out = new Uint8Array(width * height * c);
  const shift = 2 ** (CV_COEF_BITS * 2);
  const delta = 2 ** (CV_COEF_BITS * 2 - 1);
  for (let y = 0; y < height; y++) {
    const s0 = ty.idx[y];
    const r0 = rowBuf(s0);
    const r1 = rowBuf(Math.min(s0 + 1, img.height - 1));
    const b0 = ty.a0[y];
    const b1 = ty.a1[y];
    const n = width * c;
    // OpenCV's SIMD VResizeLinearVec_32s8u handles whole 16-byte vectors with a cheaper (slightly different)
    // rounding, mul_hi of (S >> 4) by the weight; only the tail goes through the exact scalar FixedPtCast.
    const simd = n - (n % CV_SIMD_LANES);
    const o = y * n;
    for (let i = 0; i < simd; i++) {
      const v = ((r0[i] >> 4) * b0) >> 16;
      const w = ((r1[i] >> 4) * b1) >> 16;
      out[o + i] = clip8((v + w + 2) >> 2);
    }
    for (let i = simd; i < n; i++) out[o + i] = clip8(Math.floor((r0[i] * b0 + r1[i] * b1 + delta) / shift));
  }
  return { width, height, channels: c, data: out };
}

/** OpenCV INTER_AREA fast path for exact 2x: rounded mean of each 2x2 block. */
function areaHalf(img: RawImage): RawImage {
  const { channels: c } = img;
  const width = img.width / 2;
  const height = img.height / 2;
  const out = new Uint8Array(width * height * c);
  const at = (x: number, y: number, ch: number): number => img.data[(y * img.width + x) * c + ch];
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let ch = 0; ch < c; ch++) {
        const s = at(2 * x, 2 * y, ch) + at(2 * x + 1, 2 * y, ch) + at(2 * x, 2 * y + 1, ch) + at(2 * x + 1, 2 * y + 1, ch);
        out[(y * width + x) * c + ch] = (s + 2) >> 2;
      }
  return { width, height, channels: c, data: out };
}

/** OpenCV's other interpolations have no exact port here: nearest is exact, the rest fall back to PIL's filters. */
export function resizeOpenCv(img: RawImage, width: number, height: number, interp: Interpolation): RawImage {
  if (interp === 'bilinear') return resizeOpenCvLinear(img, width, height);
  if (interp === 'nearest') return resizeNearest(img, width, height, false);
  return resizePil(img, width, height, interp);
}

/** Python's round(): half to even (used by torchvision's centre crop and OpenCV's cvRound). */
export { roundHalfEven };
