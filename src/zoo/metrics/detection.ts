/**
 * COCO box mAP, a line-by-line port of pycocotools COCOeval (iouType 'bbox') restricted
 * to what the summary needs (maxDets = 100), so results match the official evaluator:
 * IoU thresholds .50:.05:.95, 101 recall points, area ranges, crowd handling,
 * per-category AP averaged over categories that have ground truth.
 */

export type Box = [number, number, number, number]; // [x, y, w, h], COCO convention

export interface CocoGroundTruth {
  images: { id: number; width?: number; height?: number }[];
  annotations: {
    id?: number;
    image_id: number;
    category_id: number;
    bbox: Box;
    /** Segment area in COCO files; it (not the box) decides small/medium/large. Defaults to w·h. */
    area?: number;
    iscrowd?: 0 | 1;
  }[];
  categories: { id: number; name?: string }[];
}

export interface CocoDetection {
  image_id: number;
  category_id: number;
  bbox: Box;
  score: number;
}

export interface CocoSummary {
  ap: number;
  ap50: number;
  ap75: number;
  apSmall: number;
  apMedium: number;
  apLarge: number;
}

/** numpy.linspace(start, stop, num): arange·step + start, last element forced to stop. Reproduced
 * bit-for-bit because IoUs and recalls that land exactly on a threshold must compare the same way. */
function linspace(start: number, stop: number, num: number): number[] {
  const step = (stop - start) / (num - 1);
  const out: number[] = [];
  for (let i = 0; i < num; i++) out.push(i * step + start);
  out[num - 1] = stop;
  return out;
}

const IOU_THRS = linspace(0.5, 0.95, 10);
const REC_THRS = linspace(0, 1, 101);
const MAX_DETS = 100;
/** Params.areaRng for 'all', 'small', 'medium', 'large' (bounds inclusive on both ends). */
const AREA_RNGS: readonly (readonly [number, number])[] = [
  [0, 1e5 ** 2],
  [0, 32 ** 2],
  [32 ** 2, 96 ** 2],
  [96 ** 2, 1e5 ** 2],
];
/** np.spacing(1): pycocotools adds it to precision denominators. */
const EPS = 2.220446049250313e-16;

interface Gt {
  bbox: Box;
  area: number;
  crowd: boolean;
}
interface Dt {
  bbox: Box;
  area: number;
  score: number;
}

/** maskUtils.iou for boxes (bbIou in maskApi.c): a crowd gt's "IoU" is intersection / detection area. */
function boxIou(d: Box, g: Box, crowd: boolean): number {
  const w = Math.min(d[0] + d[2], g[0] + g[2]) - Math.max(d[0], g[0]);
  if (w <= 0) return 0;
  const h = Math.min(d[1] + d[3], g[1] + g[3]) - Math.max(d[1], g[1]);
  if (h <= 0) return 0;
  const i = w * h;
  const da = d[2] * d[3];
  const u = crowd ? da : da + g[2] * g[3] - i;
  return i / u;
}

/** One evaluateImg() result: per threshold, whether each score-sorted detection matched / is ignored. */
interface ImgEval {
  scores: number[];
  matched: boolean[][]; // [T][D]
  ignored: boolean[][]; // [T][D]
  numGtCounted: number; // gts not ignored in this area range
}

/** Stable sort of indices by descending score (np.argsort(-s, kind='mergesort')). */
function byScoreDesc(scores: readonly number[]): number[] {
  return scores.map((_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
}

function evaluateImg(gts: readonly Gt[], dtsSorted: readonly Dt[], ious: readonly (readonly number[])[], aRng: readonly [number, number]): ImgEval | null {
  if (gts.length === 0 && dtsSorted.length === 0) return null;
  const gIgnoreRaw = gts.map((g) => g.crowd || g.area < aRng[0] || g.area > aRng[1]);
  // Non-ignored gts first (stable), so a detection prefers a real match over an ignored one.
  const gOrder = gts.map((_, i) => i).sort((a, b) => Number(gIgnoreRaw[a]) - Number(gIgnoreRaw[b]) || a - b);
  const gIg = gOrder.map((i) => gIgnoreRaw[i]);
  const crowd = gOrder.map((i) => gts[i].crowd);
  const D = Math.min(dtsSorted.length, MAX_DETS);
  const T = IOU_THRS.length;
  const matched: boolean[][] = [];
  const ignored: boolean[][] = [];
  for (let t = 0; t < T; t++) {
    const gtMatched = new Array<boolean>(gOrder.length).fill(false);
    const dm = new Array<boolean>(D).fill(false);
    const di = new Array<boolean>(D).fill(false);
    for (let d = 0; d < D; d++) {
      let iou = Math.min(IOU_THRS[t], 1 - 1e-10);
      let m = -1;
      for (let gi = 0; gi < gOrder.length; gi++) {
        if (gtMatched[gi] && !crowd[gi]) continue;
        // Already matched a real gt and only ignored ones remain: stop.
        if (m > -1 && !gIg[m] && gIg[gi]) break;
        const v = ious[d][gOrder[gi]];
        if (v < iou) continue;
        iou = v; // ">=": on equal IoU the later gt wins, as in pycocotools
        m = gi;
      }
      if (m === -1) continue;
      di[d] = gIg[m];
      dm[d] = true;
      gtMatched[m] = true;
    }
    // Unmatched detections outside the area range are neither TP nor FP.
    for (let d = 0; d < D; d++) {
      const a = dtsSorted[d].area;
      if (!dm[d] && (a < aRng[0] || a > aRng[1])) di[d] = true;
    }
    matched.push(dm);
    ignored.push(di);
  }
  return {
    scores: dtsSorted.slice(0, D).map((d) => d.score),
    matched,
    ignored,
    numGtCounted: gIg.filter((x) => !x).length,
  };
}

/** searchsorted(a, v, side='left') on an ascending array. */
function searchLeft(a: readonly number[], v: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** accumulate() for one (category, area range): the 101-point interpolated precision per IoU threshold, or null (-1) without counted gt. */
function precisionCurve(evals: readonly ImgEval[]): number[][] | null {
  if (evals.length === 0) return null;
  const npig = evals.reduce((s, e) => s + e.numGtCounted, 0);
  if (npig === 0) return null;
  const scores = evals.flatMap((e) => e.scores);
  const order = byScoreDesc(scores);
  const out: number[][] = [];
  for (let t = 0; t < IOU_THRS.length; t++) {
    const m = evals.flatMap((e) => e.matched[t]);
    const ig = evals.flatMap((e) => e.ignored[t]);
    const rc: number[] = [];
    const pr: number[] = [];
    let tp = 0;
    let fp = 0;
    for (const i of order) {
      if (!ig[i]) {
        if (m[i]) tp++;
        else fp++;
      }
      rc.push(tp / npig);
      pr.push(tp / (fp + tp + EPS));
    }
    // Precision envelope: make it non-increasing in recall.
    for (let i = pr.length - 1; i > 0; i--) if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
    const q = REC_THRS.map((r) => {
      const j = searchLeft(rc, r);
      return j < pr.length ? pr[j] : 0; // recall never reached: precision 0
    });
    out.push(q);
  }
  return out;
}

/**
 * COCO bbox evaluation (COCOeval.evaluate + accumulate + summarize). Returns the six
 * maxDets=100 AP figures; a figure with no ground truth to measure is -1, as pycocotools
 * prints. Detections whose category is not in gt.categories are dropped; detections on
 * images absent from gt.images are an error (loadRes asserts the same).
 * Matching uses flags rather than pycocotools' "annotation id ≠ 0" test, which agrees
 * whenever gt ids are nonzero (always in COCO files).
 */
export function cocoEvaluate(gt: CocoGroundTruth, dets: readonly CocoDetection[]): CocoSummary {
  const imgIds = [...new Set(gt.images.map((i) => i.id))].sort((a, b) => a - b);
  const imgSet = new Set(imgIds);
  const catIds = [...new Set(gt.categories.map((c) => c.id))].sort((a, b) => a - b);
  const catSet = new Set(catIds);
  const key = (img: number, cat: number): string => `${img}/${cat}`;

  const gts = new Map<string, Gt[]>();
  for (const a of gt.annotations) {
    if (!imgSet.has(a.image_id) || !catSet.has(a.category_id)) continue;
    const k = key(a.image_id, a.category_id);
    const list = gts.get(k) ?? [];
    list.push({ bbox: a.bbox, area: a.area ?? a.bbox[2] * a.bbox[3], crowd: a.iscrowd === 1 });
    gts.set(k, list);
  }
  const dts = new Map<string, Dt[]>();
  for (const d of dets) {
    if (!imgSet.has(d.image_id)) throw new RangeError(`detection on image ${d.image_id}, which is not in the ground truth`);
    if (!catSet.has(d.category_id)) continue;
    const k = key(d.image_id, d.category_id);
    const list = dts.get(k) ?? [];
    list.push({ bbox: d.bbox, area: d.bbox[2] * d.bbox[3], score: d.score });
    dts.set(k, list);
  }

  // precision[area][cat] → [T][R] or null
  const precision: (number[][] | null)[][] = AREA_RNGS.map(() => []);
  for (const cat of catIds) {
    const perImg: { g: Gt[]; d: Dt[]; ious: number[][] }[] = [];
    for (const img of imgIds) {
      const g = gts.get(key(img, cat)) ?? [];
      const dAll = dts.get(key(img, cat)) ?? [];
      // computeIoU sorts by score and keeps the top maxDets.
      const d = byScoreDesc(dAll.map((x) => x.score))
        .slice(0, MAX_DETS)
        .map((i) => dAll[i]);
      const ious = d.map((dd) => g.map((gg) => boxIou(dd.bbox, gg.bbox, gg.crowd)));
      perImg.push({ g, d, ious });
    }
    AREA_RNGS.forEach((rng, a) => {
      const evals: ImgEval[] = [];
      for (const p of perImg) {
        const e = evaluateImg(p.g, p.d, p.ious, rng);
        if (e) evals.push(e);
      }
      precision[a].push(precisionCurve(evals));
    });
  }

  /** summarize(): mean over every stored precision value > -1 for the chosen threshold(s). */
  const summarize = (a: number, tIdx: number | null): number => {
    let sum = 0;
    let n = 0;
    for (const curve of precision[a]) {
      if (!curve) continue;
      const rows = tIdx === null ? curve : [curve[tIdx]];
      for (const row of rows)
        for (const v of row) {
          sum += v;
          n++;
        }
    }
    return n === 0 ? -1 : sum / n;
  };
  const t50 = IOU_THRS.indexOf(0.5);
  const t75 = IOU_THRS.indexOf(0.75);
  return {
    ap: summarize(0, null),
    ap50: summarize(0, t50),
    ap75: summarize(0, t75),
    apSmall: summarize(1, null),
    apMedium: summarize(2, null),
    apLarge: summarize(3, null),
  };
}
