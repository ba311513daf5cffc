/**
 * Opening a registry entry's data splits, and the in-memory cache that lets the float run and the three rules read
 * the test split once: the first pass streams from disk and keeps the decoded samples while they fit under a byte
 * budget (default 1 GiB); later passes replay them. A split larger than the budget stays streamed.
 */
import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import {
  type Batch,
  batches,
  cityscapes,
  cocoDetection,
  type Dataset,
  imageFolder,
  mnistIdx,
  normalizeImage,
  paddleOcrLabels,
  resizeImage,
  type Sample,
  superResolutionPairs,
  unlabelledImages,
} from './data/index.ts';
import { syntheticTextLines } from './data/synthetic-text.ts';
import type { DataSource, ZooEntry } from './registry.ts';

export const DEFAULT_CACHE_BYTES = 1024 ** 3;

export function modelPath(root: string, entry: ZooEntry): string {
  return isAbsolute(entry.file) ? entry.file : resolve(root, 'Model', entry.file);
}

export function dataPath(root: string, rel: string): string {
  return isAbsolute(rel) ? rel : resolve(root, 'Data', rel);
}

/** Files and folders an entry needs; the runner reports the entry as missing when any is absent. */
export function requiredPaths(root: string, entry: ZooEntry): string[] {
  const paths = [modelPath(root, entry)];
  if (entry.task.kind === 'ocr') paths.push(isAbsolute(entry.task.dictionary) ? entry.task.dictionary : resolve(root, 'Model', entry.task.dictionary));
  for (const src of [entry.data.calibration, entry.data.test]) {
    switch (src.kind) {
      case 'image-folder':
        paths.push(dataPath(root, src.dir));
        if (src.classesFile) paths.push(dataPath(root, src.classesFile));
        break;
      case 'paddle-ocr':
        paths.push(dataPath(root, src.labels));
        break;
      case 'mnist':
        paths.push(dataPath(root, src.images), dataPath(root, src.labels));
        break;
      case 'div2k':
        paths.push(join(dataPath(root, src.dir), `DIV2K_${src.split}_LR_bicubic`, `X${src.scale}`));
        break;
      case 'coco':
      case 'cityscapes':
        paths.push(join(dataPath(root, src.dir), src.split));
        break;
      case 'images':
        paths.push(dataPath(root, src.dir));
        break;
      case 'synthetic-text':
      case 'provided':
        break;
    }
  }
  return [...new Set(paths)];
}

export function missingPaths(root: string, entry: ZooEntry): string[] {
  return requiredPaths(root, entry).filter((p) => !existsSync(p));
}

/** skip/limit on any dataset, reading lazily. */
export function slice<L>(ds: Dataset<L>, skip = 0, limit = Infinity): Dataset<L> {
  if (skip === 0 && limit === Infinity) return ds;
  const size = Math.max(0, Math.min(limit, ds.size - skip));
  return {
    name: `${ds.name}[${skip}:${skip + size}]`,
    size,
    async *samples() {
      if (size === 0) return;
      let i = 0;
      let n = 0;
      for await (const s of ds.samples()) {
        if (i++ < skip) continue;
        yield s;
        if (++n >= size) return;
      }
    },
  };
}

/** Datasets supplied in code for `provided` sources, by name. */
export type ProvidedData = Readonly<Record<string, Dataset<unknown>>>;

/**
 * At most `limit` samples spread evenly over the whole dataset (indices ⌊i·size/limit⌋): a class-sorted folder keeps
 * every class. Samples between are still read (and decoded) but not kept.
 */
export function spread<L>(ds: Dataset<L>, limit: number): Dataset<L> {
  if (!(limit < ds.size)) return ds;
  const n = Math.max(0, Math.floor(limit));
  const picks = new Set(Array.from({ length: n }, (_, i) => Math.floor((i * ds.size) / n)));
  return {
    name: `${ds.name}[every ${(ds.size / n).toFixed(2)}: ${n}]`,
    size: n,
    async *samples() {
      let i = 0;
      let got = 0;
      for await (const s of ds.samples()) {
        if (picks.has(i++)) {
          yield s;
          if (++got >= n) return;
        }
      }
    },
  };
}

export function openSource(root: string, entry: ZooEntry, src: DataSource, provided: ProvidedData = {}): Dataset<unknown> {
  const spec = entry.preprocess;
  let ds: Dataset<unknown>;
  switch (src.kind) {
    case 'provided': {
      const p = provided[src.name];
      if (!p) throw new Error(`${entry.id}: no dataset provided under the name '${src.name}'`);
      ds = p;
      break;
    }
    case 'image-folder':
      ds = imageFolder(dataPath(root, src.dir), spec, {
        ...(src.classesFile ? { classesFile: dataPath(root, src.classesFile) } : {}),
        ...(src.limitPerClass !== undefined ? { limitPerClass: src.limitPerClass } : {}),
      });
      break;
    case 'paddle-ocr':
      ds = paddleOcrLabels(dataPath(root, src.labels), dataPath(root, src.imageRoot), spec);
      break;
    case 'mnist':
      ds = mnistIdx(dataPath(root, src.images), dataPath(root, src.labels), {});
      break;
    case 'div2k': {
      const opts = { scale: src.scale, spec, ...(src.patch !== undefined ? { patch: src.patch } : {}) };
      ds = src.split === 'valid' ? superResolutionPairs(dataPath(root, src.dir), { ...opts, split: 'valid' }) : superResolutionPairs(dataPath(root, src.dir), { ...opts, split: 'train' });
      break;
    }
    case 'coco': {
      const t = entry.task;
      ds = cocoDetection(dataPath(root, src.dir), src.split, { size: t.kind === 'detection' ? t.size : 640, spec });
      break;
    }
    case 'cityscapes':
      ds = cityscapes(dataPath(root, src.dir), src.split, spec);
      break;
    case 'images':
      ds = unlabelledImages(dataPath(root, src.dir), spec);
      break;
    case 'synthetic-text':
      ds = syntheticTextDataset(src.split, src.count, src.seed, entry);
      break;
  }
  return slice(ds, src.skip ?? 0, src.limit ?? Infinity);
}

/** The project's rendered text lines (RGB, 48 px high) through the entry's OCR preprocessing. */
export function syntheticTextDataset(split: 'calib' | 'test', count: number, seed: number, entry: ZooEntry): Dataset<string> {
  const spec = entry.preprocess;
  return {
    name: `synthetic-text-${split}(seed ${seed})`,
    size: count,
    async *samples() {
      for await (const s of syntheticTextLines({ split, count, seed })) {
        const img = spec.resize ? resizeImage(s.image, spec.resize, spec.interpolation) : s.image;
        yield { id: s.id, input: normalizeImage(img, spec, s.id), label: s.label };
      }
    },
  };
}

/** A split read once and replayed from memory when it fits. */
export interface CachedSplit<L> {
  name: string;
  size: number;
  batches(batchSize: number, limit?: number): AsyncIterable<Batch<L>>;
  /** True once a complete pass is held in memory. */
  readonly cached: boolean;
  bytes(): number;
}

export function cacheSplit<L>(ds: Dataset<L>, maxBytes = DEFAULT_CACHE_BYTES): CachedSplit<L> {
  let store: Sample<L>[] | undefined;
  let tooBig = false;
  let stored = 0;
  const memory: Dataset<L> = {
    name: ds.name,
    size: ds.size,
    async *samples() {
      yield* store!;
    },
  };
  const recording: Dataset<L> = {
    name: ds.name,
    size: ds.size,
    async *samples() {
      const got: Sample<L>[] = [];
      let bytes = 0;
      let keep = !tooBig;
      for await (const s of ds.samples()) {
        if (keep) {
          bytes += s.input.data.byteLength;
          if (bytes > maxBytes) {
            keep = false;
            tooBig = true;
            got.length = 0;
          } else got.push(s);
        }
        yield s;
      }
      if (keep) {
        store = got;
        stored = bytes;
      }
    },
  };
  return {
    name: ds.name,
    size: ds.size,
    get cached() {
      return store !== undefined;
    },
    bytes: () => stored,
    batches(batchSize, limit = Infinity) {
      // A pass cut short by `limit` does not complete the recording: it is simply not kept.
      return batches(store ? memory : recording, batchSize, limit);
    },
  };
}
