/**
 * Model inputs that the data do not fill (a sample rate, a recurrent state, a scale factor), held fixed for every
 * batch: the checks a value must pass against its input and the tensors fed with each batch. Shared by the CLI's
 * `--feed name=value` (cli/fixed-feeds.ts) and the zoo's `feeds` (zoo/registry.ts). A value is a number, which fills
 * the input, or an array, fed as it is. A filled input takes its declared shape; a symbolic dimension it shares with
 * the data input (`batch`) takes that dimension's size in each batch, so a state of shape [2, batch, 128] follows a
 * ragged last batch.
 */
import { TensorProto_DataType as DT } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors.ts';
import type { InputSpec } from './inputs.ts';
import type { FloatTensor } from '../tensor.ts';

export interface FixedFeed {
  input: InputSpec;
  /** A fill value, or an array (from a .npy file or a zoo entry). */
  value: number | FloatTensor;
  /** How the user gave it, for messages: `--feed 'state=0'`, `feeds.factor`. */
  given: string;
}

export const FEED_TYPES: Partial<Record<number, { ort: 'float32' | 'float64' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool'; integer: boolean }>> = {
  [DT.FLOAT]: { ort: 'float32', integer: false },
  [DT.DOUBLE]: { ort: 'float64', integer: false },
  [DT.INT64]: { ort: 'int64', integer: true },
  [DT.INT32]: { ort: 'int32', integer: true },
  [DT.INT8]: { ort: 'int8', integer: true },
  [DT.UINT8]: { ort: 'uint8', integer: true },
  [DT.BOOL]: { ort: 'bool', integer: true },
};

export const shapeText = (dims: Readonly<InputSpec['dims']>) => (dims ? `[${dims.map((d) => d ?? '?').join(', ')}]` : 'of unknown shape');

/** `name type [dims]`, as the messages list inputs. */
export const describeInput = (i: InputSpec) => `${i.name} ${FEED_TYPES[i.dataType]?.ort ?? DT[i.dataType]} ${shapeText(i.dims)}`;

/**
 * Checks a value against its input's type and declared shape; `feed.given` names it in messages, `file` is the
 * model, `arrayFile` where an array came from (its messages name that file) and `arrayHow` how to give one. A fill
 * must be able to take every dimension: fixed ones, and symbolic ones in `shared` (those of the data input, which
 * follow each batch).
 */
export function checkFixedFeed(feed: FixedFeed, shared: readonly (string | number | null)[], o: { file?: string; arrayFile?: string; arrayHow?: string } = {}): FixedFeed {
  const { file, arrayFile } = o;
  const { input, value, given: what } = feed;
  const type = FEED_TYPES[input.dataType];
  if (!type) throw new UserError(`${what}: input '${input.name}' has an element type (${DT[input.dataType] ?? input.dataType}) that cannot be fed`, file);
  if (typeof value !== 'number') {
    const want = input.dims;
    const where = arrayFile ? '' : `${what}: `;
    if (want && (want.length !== value.dims.length || want.some((w, i) => typeof w === 'number' && w > 0 && w !== value.dims[i])))
      throw new UserError(`${where}array of shape [${value.dims.join(', ')}] does not fit input '${input.name}' ${shapeText(want)}`, arrayFile ?? file);
    if (type.integer && value.data.some((v) => !Number.isInteger(v))) throw new UserError(`${where}input '${input.name}' takes integers (${type.ort}); the array holds fractions`, arrayFile ?? file);
    return feed;
  }
  if (type.integer && !Number.isInteger(value)) throw new UserError(`${what}: input '${input.name}' takes integers (${type.ort})`, file);
  const unknown = (input.dims ?? [null]).find((d) => !(typeof d === 'number' && d > 0) && !(typeof d === 'string' && shared.includes(d)));
  if (unknown !== undefined)
    throw new UserError(`${what}: input '${input.name}' ${shapeText(input.dims)} has a dimension (${unknown ?? '?'}) ${shared.length ? `the data input ${shapeText(shared)} does not set` : 'that is not fixed'}: give ${o.arrayHow ?? 'an array'}`, file);
  return feed;
}

/** The inputs other than `data` that `feeds` leave without a value. */
export function unfedInputs(inputs: readonly InputSpec[], data: string, feeds: readonly FixedFeed[]): InputSpec[] {
  return inputs.filter((i) => i.name !== data && !feeds.some((f) => f.input.name === i.name));
}

/** The fixed inputs for one batch whose data input has dimensions `dataDims`. */
export function fixedFeedTensors(feeds: readonly FixedFeed[], data: InputSpec, dataDims: readonly number[]): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {};
  for (const { input, value, given } of feeds) {
    const type = FEED_TYPES[input.dataType]!;
    let dims: number[];
    let values: ArrayLike<number>;
    if (typeof value === 'number') {
      dims = (input.dims ?? []).map((d) => (typeof d === 'number' ? d : dataDims[data.dims!.indexOf(d)]));
      values = new Array<number>(dims.reduce((a, b) => a * b, 1)).fill(value);
    } else {
      // A dimension shared with the data must follow it: an array for batches of 32 does not fit a ragged last one.
      (input.dims ?? []).forEach((d, i) => {
        const j = typeof d === 'string' ? (data.dims?.indexOf(d) ?? -1) : -1;
        if (j >= 0 && value.dims[i] !== dataDims[j])
          throw new UserError(`${given}: dimension ${i} ('${d}') is ${value.dims[i]} but the data's batch has ${dataDims[j]} there (use a batch size that divides the data, or a fill value)`);
      });
      dims = [...value.dims];
      values = value.data;
    }
    const n = values.length;
    const typed =
      type.ort === 'float32' ? Float32Array.from(values)
      : type.ort === 'float64' ? Float64Array.from(values)
      : type.ort === 'int64' ? BigInt64Array.from({ length: n }, (_, i) => BigInt(values[i]))
      : type.ort === 'int32' ? Int32Array.from(values)
      : type.ort === 'int8' ? Int8Array.from(values)
      : Uint8Array.from(values, (v) => (type.ort === 'bool' ? Number(v !== 0) : v));
    out[input.name] = new ort.Tensor(type.ort, typed, dims);
  }
  return out;
}

/** `fixedFeedTensors` for each batch shape, built once per shape (the tensors depend on nothing else). */
export function fixedFeedsByShape(feeds: readonly FixedFeed[], data: InputSpec): (dataDims: readonly number[]) => Record<string, ort.Tensor> {
  const byShape = new Map<string, Record<string, ort.Tensor>>();
  return (dims) => {
    const key = dims.join('x');
    let held = byShape.get(key);
    if (!held) byShape.set(key, (held = fixedFeedTensors(feeds, data, dims)));
    return held;
  };
}
