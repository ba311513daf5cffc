/** One evaluator per task kind; `makeEvaluator` reads what the task settings name (OCR dictionary). */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { loadCharset } from '../metrics/ocr.ts';
import type { TaskKind, ZooEntry } from '../registry.ts';
import { cosineAgreementEvaluator, top1AgreementEvaluator, ultrafaceAgreementEvaluator } from './agreement.ts';
import { classificationEvaluator } from './classification.ts';
import { detectionEvaluator } from './detection.ts';
import { ocrEvaluator } from './ocr.ts';
import { poseAgreementEvaluator } from './pose.ts';
import { segmentationEvaluator } from './segmentation.ts';
import { superResolutionEvaluator } from './super-resolution.ts';
import type { KeepTest } from '../../optimise/context.ts';
import type { Evaluator } from './types.ts';

export * from './types.ts';

/** Every task kind the registry may name. */
export const TASK_KINDS: readonly TaskKind[] = ['classification', 'ocr', 'super-resolution', 'detection', 'segmentation', 'pose', 'agreement'];

/**
 * How a recipe judges its passes on this task's models (optimise/context.ts keepDecision): PSNR is a mean of
 * per-image log errors, and super-resolution's 16 measuring images have heavy-tailed errors, so the log test may
 * accept a change too; every other task keeps the mean test.
 */
export function keepTestFor(entry: Pick<ZooEntry, 'task'>): KeepTest {
  return entry.task.kind === 'super-resolution' ? 'mean-or-log' : 'mean';
}

export function makeEvaluator(entry: ZooEntry, root: string): Evaluator {
  const t = entry.task;
  switch (t.kind) {
    case 'classification':
      return classificationEvaluator(t.numClasses);
    case 'ocr': {
      const dict = isAbsolute(t.dictionary) ? t.dictionary : resolve(root, 'Model', t.dictionary);
      return ocrEvaluator(loadCharset(readFileSync(dict, 'utf8'), t.useSpaceChar));
    }
    case 'super-resolution':
      return superResolutionEvaluator(t);
    case 'detection':
      return detectionEvaluator();
    case 'segmentation':
      return segmentationEvaluator(t.numClasses, t.ignoreIndex);
    case 'pose':
      return poseAgreementEvaluator();
    case 'agreement':
      return t.compare === 'top1' ? top1AgreementEvaluator() : t.compare === 'ultraface' ? ultrafaceAgreementEvaluator() : cosineAgreementEvaluator();
  }
}
