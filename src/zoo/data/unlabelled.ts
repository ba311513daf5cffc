/** A flat folder of images with no labels (Data/Faces): scored against the float model's own outputs. */
import { basename, join } from 'node:path';
import { IMAGE_EXTENSIONS, listFiles } from './files.ts';
import { type PreprocessSpec, preprocessImage } from './preprocess.ts';
import type { Dataset } from './types.ts';

export function unlabelledImages(dir: string, spec: PreprocessSpec, extensions: readonly string[] = IMAGE_EXTENSIONS): Dataset<null> {
  const files = listFiles(dir, extensions);
  return {
    name: basename(dir),
    size: files.length,
    async *samples() {
      for (const f of files) yield { id: f, input: await preprocessImage(join(dir, f), spec), label: null };
    },
  };
}
