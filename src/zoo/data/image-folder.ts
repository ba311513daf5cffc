/** `<root>/<class>/<image>` classification folders (Data/Imagenet/{Calib,Test}, Data/Cifar10/{Calib,Test}). */
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { listDirs, listFiles } from './files.ts';
import { type PreprocessSpec, preprocessImage } from './preprocess.ts';
import type { Dataset } from './types.ts';

export interface ImageFolderOptions {
  /**
   * One class per line (first whitespace-separated token = folder name); the label is the line index. Needed when
   * a split holds only some classes (the ImageNet split here), so indices still match the model's 1000 outputs.
   */
  classesFile?: string;
  /** Keep only the first n images (in sorted order) of every class. */
  limitPerClass?: number;
  extensions?: readonly string[];
}

/** Reads a classes file: the first token of each non-empty line. */
export function readClassList(file: string): string[] {
  return readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((l) => l.length > 0);
}

/** Label = class index; order = classes by folder name, then files, both in code-unit order. */
export function imageFolder(root: string, spec: PreprocessSpec, opts: ImageFolderOptions = {}): Dataset<number> {
  const folders = listDirs(root);
  const classes = opts.classesFile ? readClassList(opts.classesFile) : folders;
  const index = new Map(classes.map((c, i) => [c, i]));
  const items: { rel: string; label: number }[] = [];
  for (const folder of folders) {
    const label = index.get(folder);
    if (label === undefined) throw new Error(`imageFolder(${root}): folder '${folder}' is not listed in ${opts.classesFile}`);
    let files = listFiles(join(root, folder), opts.extensions);
    if (opts.limitPerClass !== undefined) files = files.slice(0, opts.limitPerClass);
    for (const f of files) items.push({ rel: `${folder}/${f}`, label });
  }
  return {
    name: basename(root),
    size: items.length,
    async *samples() {
      for (const { rel, label } of items) yield { id: rel, input: await preprocessImage(join(root, rel), spec), label };
    },
  };
}
