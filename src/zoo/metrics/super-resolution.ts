/**
 * Super-resolution image metrics as mmediting (mmedit/core/evaluation/metrics.py, now
 * mmagic) computes them, so numbers compare with published model-zoo tables:
 * inputs are 0..255 images, optionally reduced to BT.601 luma, border-cropped, float64 maths.
 */

export interface ImageMetricOptions {
  /** [C, H, W] of both images. */
  dims: readonly number[];
  layout?: 'CHW';
  /** Peak signal value (255 for 8-bit images). Also scales SSIM's C1/C2 (mmediting fixes 255). */
  maxValue?: number;
  /** Pixels removed from each border of H and W before measuring (the SR scale, by convention). */
  crop?: number;
  /** 'y': measure luma only (needs C = 3, RGB order). Default 'rgb': every channel. */
  channel?: 'rgb' | 'y';
}

/**
 * Clamp to 0..255 and round to integers as mmediting's tensor2img does before metrics:
 * numpy's ndarray.round(), which rounds half to EVEN (2.5 → 2, 3.5 → 4), unlike Math.round.
 */
export function roundToUint8(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = Math.min(255, Math.max(0, x[i]));
    const f = Math.floor(v);
    const d = v - f;
    out[i] = d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
  }
  return out;
}

/** Planes [C][H·W] after the optional Y conversion and border crop, in float64. */
function preparePlanes(img: Float32Array, opts: ImageMetricOptions): { planes: Float64Array[]; h: number; w: number } {
  if ((opts.layout ?? 'CHW') !== 'CHW') throw new RangeError(`unsupported layout ${String(opts.layout)}`);
  if (opts.dims.length !== 3) throw new RangeError(`dims must be [C,H,W], got [${opts.dims.join(',')}]`);
  const [c, h, w] = opts.dims;
  if (img.length !== c * h * w) throw new RangeError(`image has ${img.length} values, dims say ${c * h * w}`);
  const hw = h * w;
  let full: Float64Array[];
  if ((opts.channel ?? 'rgb') === 'y') {
    if (c !== 3) throw new RangeError(`channel 'y' needs 3 channels, got ${c}`);
    // MATLAB rgb2ycbcr / mmcv bgr2ycbcr(y_only) on 0..1 input, rescaled to 0..255:
    // Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255.
    const y = new Float64Array(hw);
    for (let i = 0; i < hw; i++) y[i] = 16 + (65.481 * img[i] + 128.553 * img[hw + i] + 24.966 * img[2 * hw + i]) / 255;
    full = [y];
  } else {
    full = [];
    for (let ch = 0; ch < c; ch++) full.push(Float64Array.from(img.subarray(ch * hw, (ch + 1) * hw)));
  }
  const b = opts.crop ?? 0;
  if (b === 0) return { planes: full, h, w };
  const ch2 = h - 2 * b;
  const cw = w - 2 * b;
  if (b < 0 || ch2 <= 0 || cw <= 0) throw new RangeError(`crop ${b} leaves nothing of ${h}×${w}`);
  const planes = full.map((p) => {
    const out = new Float64Array(ch2 * cw);
    for (let yy = 0; yy < ch2; yy++) for (let xx = 0; xx < cw; xx++) out[yy * cw + xx] = p[(yy + b) * w + xx + b];
    return out;
  });
  return { planes, h: ch2, w: cw };
}

/** Peak signal-to-noise ratio in dB over all measured values (Infinity for identical images). */
export function psnr(a: Float32Array, b: Float32Array, opts: ImageMetricOptions): number {
  const pa = preparePlanes(a, opts).planes;
  const pb = preparePlanes(b, opts).planes;
  let sum = 0;
  let n = 0;
  for (let c = 0; c < pa.length; c++) {
    for (let i = 0; i < pa[c].length; i++) {
      const d = pa[c][i] - pb[c][i];
      sum += d * d;
    }
    n += pa[c].length;
  }
  const mse = sum / n;
  if (mse === 0) return Infinity;
  return 20 * Math.log10((opts.maxValue ?? 255) / Math.sqrt(mse));
}

/** cv2.getGaussianKernel(11, 1.5): normalised 1-D gaussian; the 2-D window is its outer product. */
function gaussianKernel(size: number, sigma: number): Float64Array {
  const k = new Float64Array(size);
  const mid = (size - 1) / 2;
  let s = 0;
  for (let i = 0; i < size; i++) {
    k[i] = Math.exp(-((i - mid) ** 2) / (2 * sigma * sigma));
    s += k[i];
  }
  for (let i = 0; i < size; i++) k[i] /= s;
  return k;
}

const WIN = 11;
const KERNEL = gaussianKernel(WIN, 1.5);

/** Separable gaussian filter keeping only the 'valid' region, as cv2.filter2D(...)[5:-5, 5:-5]. */
function filterValid(p: Float64Array, h: number, w: number): Float64Array {
  const oh = h - WIN + 1;
  const ow = w - WIN + 1;
  const tmp = new Float64Array(h * ow);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let k = 0; k < WIN; k++) s += KERNEL[k] * p[y * w + x + k];
      tmp[y * ow + x] = s;
    }
  const out = new Float64Array(oh * ow);
  for (let y = 0; y < oh; y++)
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let k = 0; k < WIN; k++) s += KERNEL[k] * tmp[(y + k) * ow + x];
      out[y * ow + x] = s;
    }
  return out;
}

/** mmediting _ssim on one plane: mean of the SSIM map over the valid region. */
function ssimPlane(x: Float64Array, y: Float64Array, h: number, w: number, maxValue: number): number {
  const c1 = (0.01 * maxValue) ** 2;
  const c2 = (0.03 * maxValue) ** 2;
  const xx = new Float64Array(x.length);
  const yy = new Float64Array(x.length);
  const xy = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    xx[i] = x[i] * x[i];
    yy[i] = y[i] * y[i];
    xy[i] = x[i] * y[i];
  }
  const mu1 = filterValid(x, h, w);
  const mu2 = filterValid(y, h, w);
  const e11 = filterValid(xx, h, w);
  const e22 = filterValid(yy, h, w);
  const e12 = filterValid(xy, h, w);
  let sum = 0;
  for (let i = 0; i < mu1.length; i++) {
    const m1 = mu1[i];
    const m2 = mu2[i];
    const s11 = e11[i] - m1 * m1;
    const s22 = e22[i] - m2 * m2;
    const s12 = e12[i] - m1 * m2;
    sum += ((2 * m1 * m2 + c1) * (2 * s12 + c2)) / ((m1 * m1 + m2 * m2 + c1) * (s11 + s22 + c2));
  }
  return sum / mu1.length;
}

/**
 * Structural similarity (Wang et al. 2004: 11×11 gaussian window σ = 1.5, K1 = 0.01,
 * K2 = 0.03) computed per channel on the valid region and averaged, as mmediting does.
 * Needs at least 11×11 pixels after cropping.
 */
export function ssim(a: Float32Array, b: Float32Array, opts: ImageMetricOptions): number {
  const A = preparePlanes(a, opts);
  const B = preparePlanes(b, opts);
  if (A.h < WIN || A.w < WIN) throw new RangeError(`ssim needs at least ${WIN}×${WIN} pixels, got ${A.h}×${A.w}`);
  let s = 0;
  for (let c = 0; c < A.planes.length; c++) s += ssimPlane(A.planes[c], B.planes[c], A.h, A.w, opts.maxValue ?? 255);
  return s / A.planes.length;
}
