/** Task metrics for the benchmark: labelled metrics per task, and float-vs-quant agreement for unlabelled data. */
export * from './classification.ts';
export * from './ocr.ts';
export * from './super-resolution.ts';
export * from './detection.ts';
export * from './segmentation.ts';
export * from './pose.ts';
export * from './agreement.ts';
