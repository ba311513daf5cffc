import { test } from 'node:test';
import assert from 'node:assert/strict';
import { psnr, roundToUint8, ssim } from '../src/zoo/metrics/super-resolution.ts';

const close = (a: number, b: number, tol: number, msg?: string): void =>
  assert.ok(Math.abs(a - b) <= tol, `${msg ?? ''} got ${a}, expected ${b} (±${tol})`);

function fill(n: number, v: number): Float32Array {
  return new Float32Array(n).fill(v);
}

test('roundToUint8: clamp to 0..255, numpy round (half to even)', () => {
  const x = new Float32Array([2.5, 3.5, -0.5, 0.5, 1.5, 254.5, 255.4, 300, -7, 0.49, 1.2, 1.7]);
  assert.deepEqual(Array.from(roundToUint8(x)), [2, 4, 0, 0, 2, 254, 255, 255, 0, 0, 1, 2]);
});

test('psnr: hand-computed MSEs', () => {
  const d = { dims: [1, 2, 2] };
  // MSE 1 → 20·log10(255) = 48.1308036087 dB
  close(psnr(fill(4, 0), fill(4, 1), d), 48.1308036087, 1e-9);
  // one pixel off by 10 of 4 → MSE 25 → 20·log10(255/5) = 20·log10(51) = 34.1514035220 dB
  close(psnr(new Float32Array([10, 0, 0, 0]), fill(4, 0), d), 34.151403522, 1e-9);
  assert.equal(psnr(fill(4, 7), fill(4, 7), d), Infinity);
  // maxValue 1, every value off by 0.1 → 20·log10(1/0.1) = 20 dB (float32 0.1 → loose tol)
  close(psnr(fill(4, 0), fill(4, 0.1), { ...d, maxValue: 1 }), 20, 1e-5);
});

test('psnr: Y (BT.601, MATLAB rgb2ycbcr) vs RGB on a pure red image', () => {
  const dims = [3, 1, 2];
  const red = new Float32Array([255, 255, 0, 0, 0, 0]); // R plane, G plane, B plane
  const black = fill(6, 0);
  // Y(red) = 16 + 65.481·255/255 = 81.481, Y(black) = 16 → error 65.481 everywhere.
  close(psnr(red, black, { dims, channel: 'y' }), 20 * Math.log10(255 / 65.481), 1e-9); // ≈ 11.8085 dB
  // RGB: MSE = 255²/3 → 10·log10(3) = 4.7712125472 dB
  close(psnr(red, black, { dims }), 4.7712125472, 1e-9);
  assert.throws(() => psnr(fill(4, 0), fill(4, 0), { dims: [1, 2, 2], channel: 'y' }), RangeError);
});

test('psnr: crop removes the border before measuring', () => {
  const dims = [1, 3, 3];
  const a = fill(9, 0);
  const border = new Float32Array([9, 9, 9, 9, 0, 9, 9, 9, 9]);
  assert.equal(psnr(a, border, { dims, crop: 1 }), Infinity);
  const centre = new Float32Array([0, 0, 0, 0, 5, 0, 0, 0, 0]);
  close(psnr(a, centre, { dims, crop: 1 }), 20 * Math.log10(255 / 5), 1e-9); // 1 pixel, MSE 25
  close(psnr(a, centre, { dims }), 20 * Math.log10(255 / Math.sqrt(25 / 9)), 1e-9);
});

const C1 = (0.01 * 255) ** 2; // 6.5025
const C2 = (0.03 * 255) ** 2; // 58.5225

test('ssim: identical → 1; constant images → luminance term only', () => {
  const dims = [1, 12, 13];
  const x = new Float32Array(12 * 13).map((_, i) => (i * 37) % 251);
  close(ssim(x, x, { dims }), 1, 1e-12);
  // Constant 100 vs 120: σ terms are 0, so SSIM = (2·100·120 + C1)/(100² + 120² + C1) = 24006.5025/24406.5025
  close(ssim(fill(156, 100), fill(156, 120), { dims }), 24006.5025 / 24406.5025, 1e-12); // 0.98361…
});

/** Checkerboard 100 ± amp. Its gaussian-weighted mean under any 11×11 window is 100 ± amp·(Σ(-1)^k g_k)²,
 * and Σ(-1)^k g_k ≈ -1.4e-4 for σ = 1.5, so the local mean is 100 to within ~1e-6 and the local variance amp². */
function checker(h: number, w: number, amp: number, offset = 0): Float32Array {
  const out = new Float32Array(h * w);
  for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) out[i * w + j] = 100 + offset + ((i + j) % 2 === 0 ? amp : -amp);
  return out;
}

test('ssim: checkerboards isolate the luminance and contrast-structure terms', () => {
  const dims = [1, 16, 16];
  // Shift by 20: variances and covariance equal → cs = 1; luminance = (2·100·120 + C1)/(100² + 120² + C1).
  close(ssim(checker(16, 16, 50), checker(16, 16, 50, 20), { dims }), 24006.5025 / 24406.5025, 1e-6);
  // Amplitude 50 vs 25 in phase: μ equal → luminance 1; σ1² = 2500, σ2² = 625, σ12 = 1250:
  // cs = (2·1250 + C2)/(2500 + 625 + C2) = 2558.5225/3183.5225 ≈ 0.80368
  close(ssim(checker(16, 16, 50), checker(16, 16, 25), { dims }), 2558.5225 / 3183.5225, 1e-6);
});

test('ssim: single 11×11 window on an impulse pins σ = 1.5 gaussian weights', () => {
  // 1-D weights g_k = exp(-k²/(2·1.5²)) / Σ exp(-j²/4.5), k = -5..5 (Σ ≈ 3.759232, g_0 ≈ 0.266012).
  const g = (k: number): number => {
    let s = 0;
    for (let j = -5; j <= 5; j++) s += Math.exp(-(j * j) / 4.5);
    return Math.exp(-(k * k) / 4.5) / s;
  };
  // x: zeros with one pixel of value A at offset (dy, dx) from the centre; y: zeros. Then
  // μx = A·w, E[x²] = A²·w, σx² = A²(w − w²), μy = σy² = σxy = 0 (w = g_dy·g_dx), so
  // SSIM = C1·C2 / ((μx² + C1)(σx² + C2)).
  for (const [dy, dx] of [
    [0, 0],
    [1, -2],
  ]) {
    const A = 255;
    const x = fill(121, 0);
    x[(5 + dy) * 11 + 5 + dx] = A;
    const w = g(dy) * g(dx);
    const expected = (C1 * C2) / (((A * w) ** 2 + C1) * (A * A * (w - w * w) + C2)); // ≈ 2.6e-4 at the centre
    close(ssim(x, fill(121, 0), { dims: [1, 11, 11] }), expected, 1e-12, `impulse at (${dy},${dx})`);
  }
});

test('ssim: per-channel average, Y conversion and crop', () => {
  const dims = [3, 11, 11];
  const n = 121;
  const a = new Float32Array(3 * n);
  const b = new Float32Array(3 * n);
  a.fill(100, 0, n); // channel 0: 100 vs 100 → 1
  b.fill(100, 0, n);
  a.fill(100, n, 2 * n); // channel 1: 100 vs 120 → 24006.5025/24406.5025
  b.fill(120, n, 2 * n);
  a.fill(50, 2 * n); // channel 2: 50 vs 50 → 1
  b.fill(50, 2 * n);
  close(ssim(a, b, { dims }), (2 + 24006.5025 / 24406.5025) / 3, 1e-12);
  // Y: Ya = 16 + (65.481·100 + 128.553·100 + 24.966·50)/255, Yb the same with G = 120; constant planes.
  const ya = 16 + (65.481 * 100 + 128.553 * 100 + 24.966 * 50) / 255;
  const yb = 16 + (65.481 * 100 + 128.553 * 120 + 24.966 * 50) / 255;
  close(ssim(a, b, { dims, channel: 'y' }), (2 * ya * yb + C1) / (ya * ya + yb * yb + C1), 1e-12);
  assert.throws(() => ssim(a, b, { dims, crop: 1 }), RangeError, '9×9 after crop is below one window');
});
