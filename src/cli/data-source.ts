/**
 * Turning CLI arguments into calibration/test batches: an image folder (flat, or one folder per class), a
 * PaddleOCR label file, .npy/.npz tensors (a file or a folder), with a preprocessing spec that is a preset name,
 * a JSON file or inline JSON. Deterministic order; batches are fed to the model's (single) float input.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import { UserError } from '../errors.ts';
import type { Feeds } from '../calibrate/calibrate.ts';
import { imageFolder } from '../zoo/data/image-folder.ts';
import { npyDataset } from '../zoo/data/npy.ts';
import { paddleOcrLabels } from '../zoo/data/ocr.ts';
import { parsePreprocessSpec, type PreprocessSpec } from '../zoo/data/preprocess.ts';
import { PREPROCESS_PRESETS } from '../zoo/data/presets.ts';
import { fixedFeedsByShape, type FixedFeed } from '../runtime/fixed-feeds.ts';
import { batches, type Dataset } from '../zoo/data/types.ts';
import { unlabelledImages } from '../zoo/data/unlabelled.ts';
import type { ModelProto } from 'onnx-buf';
import { graphInputs, type InputSpec } from '../runtime/inputs.ts';

export function resolvePreprocess(spec: string | undefined): PreprocessSpec {
  if (!spec) return PREPROCESS_PRESETS.imagenet;
  if (PREPROCESS_PRESETS[spec]) return PREPROCESS_PRESETS[spec];
  let json: unknown;
  const source = spec.trim().startsWith('{') ? '--preprocess' : spec;
  try {
    json = JSON.parse(source === spec ? readFileSync(spec, 'utf8') : spec);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? `not a preset (${Object.keys(PREPROCESS_PRESETS).join(', ')}) nor a file` : (e as Error).message;
    throw new UserError(`cannot read preprocessing spec: ${why}`, source);
  }
  try {
    return parsePreprocessSpec(json, source);
  } catch (e) {
    throw new UserError((e as Error).message.replace(`${source}: `, ''), source);
  }
}

/**
 * A spec that neither resizes nor crops, for a model whose image input has a fixed height and width: resize to
 * them, so that `rgb01-nhwc` or `raw-rgb` serve any such model (blazeface 128×128 from 478×720 photos). Images
 * already of that size pass unchanged (a same-size resize is a copy, as in PIL and cv2). Other specs are kept.
 */
export function fitToModelInput(spec: PreprocessSpec, model: ModelProto, input: string): PreprocessSpec {
  if (spec.resize || spec.crop) return spec;
  const dims = graphInputs(model).find((i) => i.name === input)?.dims;
  if (!dims || dims.length !== 4) return spec;
  const [h, w] = spec.layout === 'nhwc' ? [dims[1], dims[2]] : [dims[2], dims[3]];
  return typeof h === 'number' && typeof w === 'number' && h > 0 && w > 0 ? { ...spec, resize: { height: h, width: w } } : spec;
}

export function openDataset(path: string, spec: PreprocessSpec): Dataset<unknown> {
  const ds = openAnyDataset(path, spec);
  // An empty source would calibrate on nothing (a stack trace) or analyse nothing (an empty report, exit 0).
  if (ds.size === 0) throw new UserError('no samples in it (no images, .npy/.npz arrays or label lines found)', path);
  return ds;
}

function openAnyDataset(path: string, spec: PreprocessSpec): Dataset<unknown> {
  if (!existsSync(path)) throw new UserError('data not found', path);
  const st = statSync(path);
  const ext = extname(path).toLowerCase();
  if (st.isFile()) {
    if (ext === '.npy' || ext === '.npz') return npyDataset(path);
    if (ext === '.txt') return paddleOcrLabels(path, dirname(path), spec);
    throw new UserError('expected a folder of images, a .npy/.npz file or a PaddleOCR label .txt', path);
  }
  const entries = readdirSync(path, { withFileTypes: true });
  if (entries.some((e) => e.isFile() && /\.(npy|npz)$/i.test(e.name))) return npyDataset(path);
  if (entries.some((e) => e.isDirectory())) return imageFolder(path, spec);
  return unlabelledImages(path, spec);
}

/** The model input `name` (singleInput picked it, so it exists). */
export function modelInput(model: ModelProto, name: string): InputSpec {
  return graphInputs(model).find((i) => i.name === name)!;
}

/** Images laid out channels-first for a channels-last input (or the reverse) get a hint at the preprocessing. */
function layoutHint(d: readonly number[], want: InputSpec['dims'] & {}): string {
  if (d.length !== 4 || want.length !== 4) return '';
  const channels = (c: unknown) => c === 1 || c === 3;
  if (channels(want[3]) && d[1] === want[3] && !channels(want[1])) return `: the model takes channels last — use a preprocessing with "layout": "nhwc" (e.g. --preprocess rgb01-nhwc)`;
  if (channels(want[1]) && d[3] === want[1] && !channels(want[3])) return `: the model takes channels first — use a preprocessing with "layout": "nchw" (e.g. --preprocess imagenet)`;
  return '';
}

/**
 * Batches as feeds for one input, with the other inputs' fixed values (--feed); `steps` limits the number of
 * batches. A batch whose rank or fixed sizes (past the batch dimension) do not fit the input fails naming the data:
 * onnxruntime's message would name neither it nor the shapes after preprocessing.
 */
export async function* feedBatches(
  ds: Dataset<unknown>,
  input: InputSpec,
  batchSize: number,
  steps: number | undefined,
  source: string,
  fixed: readonly FixedFeed[] = [],
): AsyncIterable<Feeds> {
  const limit = steps !== undefined ? steps * batchSize : Infinity;
  const fixedFor = fixedFeedsByShape(fixed, input);
  for await (const b of batches(ds, batchSize, limit)) {
    const d = b.input.dims;
    const want = input.dims;
    if (typeof want?.[0] === 'number' && want[0] > 0 && d.length === want.length && d[0] !== want[0])
      throw new UserError(`input '${input.name}' takes batches of exactly ${want[0]} (fixed in the model), got a batch of ${d[0]}: use --batch ${want[0]}`);
    if (want && (want.length !== d.length || want.some((w, i) => i > 0 && typeof w === 'number' && w > 0 && w !== d[i])))
      throw new UserError(`samples of shape [${d.slice(1).join(', ')}] (after preprocessing) do not fit input '${input.name}' of shape [${want.map((w) => w ?? '?').join(', ')}]${layoutHint(d, want)}`, source);
    yield { [input.name]: b.input, ...fixedFor(d) };
  }
}
