/** Text recognition: greedy CTC decode of [N,T,C] and PaddleOCR RecMetric exact match (%, alphanumeric, lowercase). */
import { ctcGreedyDecode, OcrAccuracyMeter } from '../metrics/ocr.ts';
import { type Evaluator, floatData, outputOf } from './types.ts';

export function ocrEvaluator(charset: readonly string[]): Evaluator {
  return {
    metric: { name: 'exact match', unit: '%' },
    needsReference: false,
    start() {
      const meter = new OcrAccuracyMeter();
      return {
        add(outputs, batch) {
          const y = outputOf(outputs);
          if (y.dims.length !== 3) throw new Error(`OCR output must be [N,T,C], got [${y.dims.join(',')}]`);
          const [n, t, c] = y.dims;
          if (c !== charset.length + 1) throw new Error(`OCR output has ${c} classes but the dictionary gives ${charset.length} + blank`);
          const p = floatData(y);
          for (let i = 0; i < n; i++) meter.add(ctcGreedyDecode(p.subarray(i * t * c, (i + 1) * t * c), t, c, charset), batch.labels[i] as string);
        },
        finish: () => ({ value: 100 * meter.accuracy(), details: { normEditDistance: 100 * meter.normEditDistance() }, perSample: meter.hits.map((h) => 100 * h) }),
      };
    },
  };
}
