/** Semantic segmentation mIoU (%), mmseg semantics: argmax of [N,C,H,W] logits (or a [N,H,W] / [N,1,H,W] class map). */
import type { SegmentationLabel } from '../data/cityscapes.ts';
import { argmaxChannels } from '../metrics/agreement.ts';
import { MiouMeter } from '../metrics/segmentation.ts';
import { type Evaluator, floatData, outputOf } from './types.ts';

/** Nearest-neighbour resize of a class map (used only when the model's output size differs from the label's). */
function resizeNearest(src: Int32Array, h: number, w: number, H: number, W: number): Int32Array {
  if (h === H && w === W) return src;
  const out = new Int32Array(H * W);
  for (let y = 0; y < H; y++) {
    const sy = Math.min(h - 1, Math.floor((y * h) / H));
    for (let x = 0; x < W; x++) out[y * W + x] = src[sy * w + Math.min(w - 1, Math.floor((x * w) / W))];
  }
  return out;
}

export function segmentationEvaluator(numClasses: number, ignoreIndex: number): Evaluator {
  return {
    metric: { name: 'mIoU', unit: '%' },
    needsReference: false,
    start() {
      const meter = new MiouMeter(numClasses, ignoreIndex);
      return {
        add(outputs, batch) {
          const y = outputOf(outputs);
          const d = y.dims;
          let maps: Int32Array;
          let h: number;
          let w: number;
          if (d.length === 4 && d[1] > 1) {
            maps = argmaxChannels({ dims: [...d], data: floatData(y) });
            [h, w] = [d[2], d[3]];
          } else {
            maps = Int32Array.from(y.data as ArrayLike<number | bigint>, Number);
            [h, w] = [d[d.length - 2], d[d.length - 1]];
          }
          batch.labels.forEach((l, i) => {
            const label = l as SegmentationLabel;
            meter.add(resizeNearest(maps.subarray(i * h * w, (i + 1) * h * w), h, w, label.height, label.width), label.trainIds);
          });
        },
        finish: () => ({ value: 100 * meter.miou() }),
      };
    },
  };
}
