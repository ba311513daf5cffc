/**
 * Pose: PPQ publishes no pose metric (QuantZoo_Pose.py only measures errors) and the QuantZoo pose split ships no
 * keypoint file we know the layout of, so pose models are scored against the float model: the percentage of
 * keypoints whose argmax location matches the float model's within one bin (heatmaps [N,K,H,W]: one pixel in
 * each direction; SimCC / regression outputs [N,K,B]: one bin along the last axis).
 */
import type * as ort from 'onnxruntime-node';
import { type Evaluator, floatData } from './types.ts';

function argmaxLocations(t: ort.Tensor): { locs: Int32Array; width: number } {
  const d = t.dims;
  const data = floatData(t);
  const width = d.length === 4 ? d[3] : 0;
  const bins = d.length === 4 ? d[2] * d[3] : d[d.length - 1];
  const rows = data.length / bins;
  const locs = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let j = 1; j < bins; j++) if (data[r * bins + j] > data[r * bins + best]) best = j;
    locs[r] = best;
  }
  return { locs, width };
}

export function poseAgreementEvaluator(): Evaluator {
  return {
    metric: { name: 'keypoint agreement', unit: '%' },
    needsReference: true,
    start(reference) {
      const mine: { locs: Int32Array; width: number }[][] = [];
      return {
        add(outputs) {
          mine.push(Object.values(outputs).map(argmaxLocations));
        },
        finish() {
          const ref = (reference as typeof mine | undefined) ?? mine;
          let ok = 0;
          let n = 0;
          mine.forEach((outs, b) =>
            outs.forEach((o, k) => {
              const f = ref[b][k];
              for (let i = 0; i < o.locs.length; i++) {
                const a = o.locs[i];
                const c = f.locs[i];
                const close = o.width ? Math.abs((a % o.width) - (c % o.width)) <= 1 && Math.abs(Math.floor(a / o.width) - Math.floor(c / o.width)) <= 1 : Math.abs(a - c) <= 1;
                if (close) ok++;
                n++;
              }
            }),
          );
          return { value: n ? (100 * ok) / n : NaN };
        },
        reference: () => mine,
      };
    },
  };
}
