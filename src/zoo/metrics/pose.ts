/**
 * COCO keypoint similarity (OKS), as pycocotools COCOeval.computeOks computes it for one
 * prediction against one ground-truth person.
 */

/** Per-keypoint standard deviations of the 17 COCO keypoints (nose, eyes, ears, shoulders,
 * elbows, wrists, hips, knees, ankles), pycocotools' values divided by 10. */
export const COCO_KEYPOINT_SIGMAS: readonly number[] = [
  0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89,
].map((s) => s / 10);

/** np.spacing(1), added to the area as pycocotools does (keeps area 0 finite). */
const EPS = 2.220446049250313e-16;

/**
 * OKS = mean over visible gt keypoints of exp(-d² / (2 · area · (2σ)²)), `area` being the
 * gt segment area (scale²). With no visible keypoints pycocotools measures the distance
 * to a box 3× the gt bbox instead; pass `bbox` ([x,y,w,h]) for that, otherwise the
 * result is NaN (COCO marks such people ignored anyway).
 */
export function oks(
  pred: [number, number][],
  gt: [number, number][],
  visible: boolean[],
  area: number,
  sigmas: readonly number[],
  bbox?: readonly [number, number, number, number],
): number {
  const k = sigmas.length;
  if (pred.length !== k || gt.length !== k || visible.length !== k) throw new RangeError(`oks: expected ${k} keypoints`);
  const anyVisible = visible.some((v) => v);
  let sum = 0;
  let n = 0;
  for (let i = 0; i < k; i++) {
    let dx: number;
    let dy: number;
    if (anyVisible) {
      if (!visible[i]) continue;
      dx = pred[i][0] - gt[i][0];
      dy = pred[i][1] - gt[i][1];
    } else {
      if (!bbox) return NaN;
      const [bx, by, bw, bh] = bbox;
      dx = Math.max(0, bx - bw - pred[i][0]) + Math.max(0, pred[i][0] - (bx + 2 * bw));
      dy = Math.max(0, by - bh - pred[i][1]) + Math.max(0, pred[i][1] - (by + 2 * bh));
    }
    const v = (2 * sigmas[i]) ** 2;
    sum += Math.exp(-(dx * dx + dy * dy) / v / (area + EPS) / 2);
    n++;
  }
  return sum / n;
}
