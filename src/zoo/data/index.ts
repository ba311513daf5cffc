/** Dataset loaders and preprocessing for the QuantZoo benchmark (layout: DESIGN.md §4). */
export * from './types.ts';
export * from './preprocess.ts';
export { resizeOpenCv, resizeOpenCvLinear, resizePil, roundHalfEven } from './resize.ts';
export { IMAGE_EXTENSIONS, byCodeUnit } from './files.ts';
export * from './image-folder.ts';
export * from './ocr.ts';
export * from './mnist.ts';
export * from './super-resolution.ts';
export * from './coco.ts';
export * from './cityscapes.ts';
export * from './unlabelled.ts';
export * from './npy.ts';
export { readZipDirectory, readZipEntry, type ZipEntry } from './zip.ts';
export * from './iterator.ts';
