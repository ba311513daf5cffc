/** Top-1 accuracy (%) from logits [N, numClasses] (any trailing dims flattened). */
import { AccuracyMeter } from '../metrics/classification.ts';
import { type Evaluator, floatData, outputOf } from './types.ts';

export function classificationEvaluator(numClasses: number): Evaluator {
  return {
    metric: { name: 'top-1', unit: '%' },
    needsReference: false,
    start() {
      const meter = new AccuracyMeter();
      return {
        add(outputs, batch) {
          meter.add(floatData(outputOf(outputs)), numClasses, batch.labels as number[]);
        },
        finish: () => ({ value: 100 * meter.top1(), details: { top5: 100 * meter.top5() }, perSample: meter.hits.map((h) => 100 * h) }),
      };
    },
  };
}
