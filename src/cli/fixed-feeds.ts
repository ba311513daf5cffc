/**
 * `--feed name=value`: the model inputs that the data do not fill (a sample rate, a recurrent state, a scale
 * factor), held fixed for every batch. A value is a number, which fills the input, or a .npy file, fed as it is.
 * A filled input takes its declared shape; a symbolic dimension it shares with the data input (`batch`) takes that
 * dimension's size in each batch, so a state of shape [2, batch, 128] follows a ragged last batch. Everything is
 * checked before any work: every other input needs a value, and a value must suit its input.
 */
import { TensorProto_DataType as DT, type ModelProto, type TensorProto } from 'onnx-buf';
import { makeTensor } from '../onnx/tensor-codec.ts';
import { freezeInputs } from '../ir/freeze-inputs.ts';
import { evaluateOutputs } from '../runtime/evaluate.ts';
import * as ort from 'onnxruntime-node';
import { readUserFile, UserError } from '../errors.ts';
import { graphInputs, type InputSpec } from '../runtime/inputs.ts';
import type { FloatTensor } from '../tensor.ts';
import { parseNpy } from '../zoo/data/npy.ts';

export interface FixedFeed {
  input: InputSpec;
  /** A fill value, or an array read from a .npy file. */
  value: number | FloatTensor;
  /** The --feed argument, for messages. */
  given: string;
}

const TYPES: Partial<Record<number, { ort: 'float32' | 'float64' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool'; integer: boolean }>> = {
  [DT.FLOAT]: { ort: 'float32', integer: false },
  [DT.DOUBLE]: { ort: 'float64', integer: false },
  [DT.INT64]: { ort: 'int64', integer: true },
  [DT.INT32]: { ort: 'int32', integer: true },
  [DT.INT8]: { ort: 'int8', integer: true },
  [DT.UINT8]: { ort: 'uint8', integer: true },
  [DT.BOOL]: { ort: 'bool', integer: true },
};

const shapeText = (dims: Readonly<InputSpec['dims']>) => (dims ? `[${dims.map((d) => d ?? '?').join(', ')}]` : 'of unknown shape');

/**
 * One `name=value` argument of `flag` against the model's inputs: the input and its value, checked against its type
 * and declared shape. A fill must be able to take every dimension: fixed ones, and symbolic ones in `shared` (those
 * of the data input, which follow each batch).
 */
function parseValueArg(flag: string, arg: string, inputs: readonly InputSpec[], shared: readonly (string | number | null)[], file: string): FixedFeed {
  const eq = arg.indexOf('=');
  if (eq <= 0 || eq === arg.length - 1) throw new UserError(`${flag} '${arg}': expected input=number or input=file.npy`);
  const [name, text] = [arg.slice(0, eq), arg.slice(eq + 1)];
  const input = inputs.find((i) => i.name === name);
  if (!input) throw new UserError(`${flag} '${arg}': the model has no input '${name}' (inputs: ${inputs.map((i) => i.name).join(', ')})`, file);
  const type = TYPES[input.dataType];
  if (!type) throw new UserError(`${flag} '${arg}': input '${name}' has an element type (${DT[input.dataType] ?? input.dataType}) ${flag} cannot make`, file);
  if (/\.npy$/i.test(text)) {
    const value = parseNpy(readUserFile(text), text);
    const want = input.dims;
    if (want && (want.length !== value.dims.length || want.some((w, i) => typeof w === 'number' && w > 0 && w !== value.dims[i])))
      throw new UserError(`array of shape [${value.dims.join(', ')}] does not fit input '${name}' ${shapeText(want)}`, text);
    if (type.integer && value.data.some((v) => !Number.isInteger(v))) throw new UserError(`input '${name}' takes integers (${type.ort}); the array holds fractions`, text);
    return { input, value, given: arg };
  }
  const value = Number(text);
  if (!Number.isFinite(value) || text.trim() === '') throw new UserError(`${flag} '${arg}': '${text}' is neither a number nor a .npy file`);
  if (type.integer && !Number.isInteger(value)) throw new UserError(`${flag} '${arg}': input '${name}' takes integers (${type.ort})`);
  const unknown = (input.dims ?? [null]).find((d) => !(typeof d === 'number' && d > 0) && !(typeof d === 'string' && shared.includes(d)));
  if (unknown !== undefined)
    throw new UserError(`${flag} '${arg}': input '${name}' ${shapeText(input.dims)} has a dimension (${unknown ?? '?'}) ${shared.length ? `the data input ${shapeText(shared)} does not set` : 'that is not fixed'}: give a .npy array`, file);
  return { input, value, given: arg };
}

/** The arguments of `flag` naming one input at most once each. */
function once(flag: string, list: readonly FixedFeed[]): void {
  const twice = list.find((f, i) => list.findIndex((g) => g.input.name === f.input.name) !== i);
  if (twice) throw new UserError(`${flag}: input '${twice.input.name}' is given twice`);
}

/** Parses the --feed arguments against the model: `data` is the input the calibration/test data fill. */
export function parseFixedFeeds(given: readonly string[], model: ModelProto, data: InputSpec, file: string): FixedFeed[] {
  const inputs = graphInputs(model);
  const feeds = given.map((arg) => {
    const f = parseValueArg('--feed', arg, inputs, data.dims ?? [], file);
    if (f.input.name === data.name) throw new UserError(`--feed '${arg}': '${data.name}' is the input the data fill (--input); feed the others`, file);
    return f;
  });
  once('--feed', feeds);
  const missing = inputs.filter((i) => i.name !== data.name && !feeds.some((f) => f.input.name === i.name));
  if (missing.length)
    throw new UserError(
      `model inputs besides '${data.name}' need values: ${missing.map((i) => `${i.name} ${TYPES[i.dataType]?.ort ?? DT[i.dataType]} ${shapeText(i.dims)}`).join(', ')}; ` +
        `give each with --feed name=number (fills it) or --feed name=file.npy, e.g. --feed ${missing[0].name}=0` +
        `${missing.some((i) => i.dims?.length === 0) ? ' (or --freeze a setting such as a sample rate into the model)' : ''}`,
      file,
    );
  return feeds;
}

/** Parses the --freeze arguments: each input becomes a constant of the model (a fill needs fixed dimensions). */
export function parseFrozenInputs(given: readonly string[], model: ModelProto, file: string): TensorProto[] {
  const frozen = given.map((arg) => parseValueArg('--freeze', arg, graphInputs(model), [], file));
  once('--freeze', frozen);
  return frozen.map(({ input, value }) => {
    const dims = typeof value === 'number' ? (input.dims as number[]) : value.dims;
    const n = dims.reduce((a, b) => a * b, 1);
    const data = typeof value === 'number' ? new Array<number>(n).fill(value) : Array.from(value.data);
    return makeTensor(input.name, input.dataType, dims, input.dataType === DT.BOOL ? data.map((v) => Number(v !== 0)) : data);
  });
}

/** The fixed inputs for one batch whose data input has dimensions `dataDims`. */
export function fixedFeedTensors(feeds: readonly FixedFeed[], data: InputSpec, dataDims: readonly number[]): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {};
  for (const { input, value, given } of feeds) {
    const type = TYPES[input.dataType]!;
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
          throw new UserError(`--feed '${given}': dimension ${i} ('${d}') is ${value.dims[i]} but the data's batch has ${dataDims[j]} there (use a --batch that divides the data, or a fill value)`);
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

/** The model with the --freeze inputs made constants and the Ifs they decide inlined; says what it did on stderr. */
export async function freezeModel(model: ModelProto, given: readonly string[], file: string, quiet = false): Promise<ModelProto> {
  if (!given.length) return model;
  const values = parseFrozenInputs(given, model, file);
  const { model: frozen, inlined } = await freezeInputs(model, values, evaluateOutputs);
  if (!quiet)
    process.stderr.write(`froze ${values.map((t) => t.name).join(', ')} into the model (no longer inputs)${inlined.length ? `; If decided and inlined: ${inlined.join(', ')}` : ''}\n`);
  return frozen;
}
