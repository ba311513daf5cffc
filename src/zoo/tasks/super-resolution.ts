/**
 * Super-resolution PSNR (dB), mmediting style: outputs ·outputScale, clamped and rounded to uint8, border crop =
 * scale, averaged over images. The label is the HR region of the un-padded LR window ([3,h,w] RGB 0..255); the
 * output's top-left h×w is compared (padding sits bottom/right).
 */
import { mean } from '../../math.ts';
import type { FloatTensor } from '../../tensor.ts';
import { psnr, roundToUint8 } from '../metrics/super-resolution.ts';
import { type Evaluator, floatData, outputOf } from './types.ts';

export interface SrSettings {
  channel: 'y' | 'rgb' | 'gray';
  crop: number;
  outputScale: number;
}

function topLeft(data: Float32Array, c: number, H: number, W: number, h: number, w: number): Float32Array {
  if (h === H && w === W) return data;
  const out = new Float32Array(c * h * w);
  for (let ch = 0; ch < c; ch++) for (let y = 0; y < h; y++) out.set(data.subarray((ch * H + y) * W, (ch * H + y) * W + w), (ch * h + y) * w);
  return out;
}

/** PIL convert('L') luma, the same integer formula the input preprocessing uses. */
function pilLuma(rgb: Float32Array, hw: number): Float32Array {
  const out = new Float32Array(hw);
  for (let i = 0; i < hw; i++) out[i] = (rgb[i] * 19595 + rgb[hw + i] * 38470 + rgb[2 * hw + i] * 7471 + 0x8000) >>> 16;
  return out;
}

export function superResolutionEvaluator(s: SrSettings): Evaluator {
  return {
    metric: { name: 'PSNR', unit: 'dB' },
    needsReference: false,
    start() {
      // Per image: the metric is their mean, so two models compare image by image.
      const perImage: number[] = [];
      return {
        add(outputs, batch) {
          const y = outputOf(outputs);
          if (y.dims.length !== 4) throw new Error(`SR output must be [N,C,H,W], got [${y.dims.join(',')}]`);
          const [N, C, H, W] = y.dims;
          const all = floatData(y);
          for (let i = 0; i < N; i++) {
            const label = batch.labels[i] as FloatTensor;
            const [, h, w] = label.dims;
            if (h > H || w > W) throw new Error(`SR label ${h}×${w} is larger than the output ${H}×${W}`);
            const raw = all.subarray(i * C * H * W, (i + 1) * C * H * W);
            const scaled = s.outputScale === 1 ? raw : raw.map((v) => v * s.outputScale);
            const pred = roundToUint8(topLeft(scaled, C, H, W, h, w));
            let ref = label.data;
            let dims = [C, h, w];
            if (s.channel === 'gray') {
              if (C !== 1) throw new Error(`channel 'gray' expects a 1-channel output, got ${C}`);
              ref = pilLuma(label.data, h * w);
              dims = [1, h, w];
            }
            perImage.push(psnr(pred, ref, { dims, crop: s.crop, maxValue: 255, channel: s.channel === 'y' ? 'y' : 'rgb' }));
          }
        },
        finish: () => ({ value: mean(perImage), perSample: perImage }),
      };
    },
  };
}
