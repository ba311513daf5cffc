/**
 * Text-recognition metrics with PaddleOCR semantics (ppocr/postprocess/rec_postprocess.py
 * CTCLabelDecode and ppocr/metrics/rec_metric.py RecMetric), so numbers compare with
 * PaddleOCR's published accuracies.
 */

/**
 * Builds the CTC class table the way BaseRecLabelDecode reads a dictionary file:
 * one entry per line (readlines, so a final newline does not add an empty entry),
 * each stripped of surrounding '\n' / '\r' only — a line holding a single space stays a
 * space — then ' ' appended when use_space_char. Class 0 (blank) is NOT included:
 * ctcGreedyDecode maps class i ≥ 1 to charset[i-1].
 */
export function loadCharset(dictText: string, useSpaceChar: boolean): string[] {
  const lines = dictText.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const out = lines.map((l) => l.replace(/^[\r\n]+|[\r\n]+$/g, ''));
  if (useSpaceChar) out.push(' ');
  return out;
}

/**
 * Greedy CTC decode of one sequence of scores [T, C] (probabilities or logits: only
 * the argmax is used). Like CTCLabelDecode(is_remove_duplicate=True): repeats are
 * collapsed on the raw index sequence BEFORE blanks are dropped, so "a a _ a" → "aa".
 */
export function ctcGreedyDecode(probs: Float32Array, T: number, C: number, charset: readonly string[]): string {
  if (probs.length !== T * C) throw new RangeError(`ctcGreedyDecode: ${probs.length} values, expected T·C = ${T * C}`);
  let text = '';
  let prev = -1;
  for (let t = 0; t < T; t++) {
    const base = t * C;
    let best = 0;
    for (let c = 1; c < C; c++) if (probs[base + c] > probs[base + best]) best = c;
    if (best !== 0 && best !== prev) {
      const ch = charset[best - 1];
      if (ch === undefined) throw new RangeError(`ctcGreedyDecode: class ${best} has no charset entry (charset has ${charset.length})`);
      text += ch;
    }
    prev = best;
  }
  return text;
}

/** RecMetric(is_filter=True) normalisation: keep ASCII letters and digits only, lowercase. */
export function normalizeOcrText(s: string): string {
  return s.replace(/[^a-zA-Z0-9]/g, '').toLowerCase();
}

/** Levenshtein distance over Unicode code points (Python str semantics, not UTF-16 units). */
export function levenshtein(a: string, b: string): number {
  const x = Array.from(a);
  const y = Array.from(b);
  if (x.length === 0) return y.length;
  if (y.length === 0) return x.length;
  let prev = new Array<number>(y.length + 1);
  let cur = new Array<number>(y.length + 1);
  for (let j = 0; j <= y.length; j++) prev[j] = j;
  for (let i = 1; i <= x.length; i++) {
    cur[0] = i;
    for (let j = 1; j <= y.length; j++) {
      const sub = prev[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1);
      cur[j] = Math.min(sub, prev[j] + 1, cur[j - 1] + 1);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[y.length];
}

/**
 * Word accuracy and normalised edit distance as RecMetric(is_filter=True) reports them:
 * both strings normalised, exact-match accuracy, and 1 - mean(lev / max(len, len, 1)).
 * RecMetric divides by (n + 1e-5); we divide by n exactly (the difference is < 1e-5
 * relative) and return NaN before any sample.
 */
export class OcrAccuracyMeter {
  count = 0;
  private correct = 0;
  private editSum = 0;
  /** Per sample in order, 1 where the normalised strings match exactly (for paired comparisons of two models). */
  readonly hits: number[] = [];

  add(pred: string, label: string): void {
    const p = normalizeOcrText(pred);
    const l = normalizeOcrText(label);
    const hit = p === l ? 1 : 0;
    this.correct += hit;
    this.hits.push(hit);
    this.editSum += levenshtein(p, l) / Math.max(p.length, l.length, 1);
    this.count++;
  }

  accuracy(): number {
    return this.count === 0 ? NaN : this.correct / this.count;
  }

  normEditDistance(): number {
    return this.count === 0 ? NaN : 1 - this.editSum / this.count;
  }
}
