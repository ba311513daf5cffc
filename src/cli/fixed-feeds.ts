/**
 * `--feed name=value` and `--freeze name=value`: the model inputs that the data do not fill (a sample rate, a
 * recurrent state, a scale factor), held fixed for every batch or made constants of the model. A value is a number,
 * which fills the input, or a .npy file, fed as it is (runtime/fixed-feeds.ts builds the tensors). Everything is
 * checked before any work: every other input needs a value, and a value must suit its input.
 */
import { TensorProto_DataType as DT, type ModelProto, type TensorProto } from 'onnx-buf';
import { makeTensor } from '../onnx/tensor-codec.ts';
import { freezeInputs } from '../ir/freeze-inputs.ts';
import { evaluateOutputs } from '../runtime/evaluate.ts';
import { readUserFile, UserError } from '../errors.ts';
import { checkFixedFeed, describeInput, unfedInputs, type FixedFeed } from '../runtime/fixed-feeds.ts';
import { graphInputs, type InputSpec } from '../runtime/inputs.ts';
import { parseNpy } from '../zoo/data/npy.ts';

/**
 * One `name=value` argument of `flag` against the model's inputs: the input and its value, checked against its type
 * and declared shape (runtime/fixed-feeds.ts); `shared` are the data input's dimensions, which a fill may take.
 */
function parseValueArg(flag: string, arg: string, inputs: readonly InputSpec[], shared: readonly (string | number | null)[], file: string): FixedFeed {
  const eq = arg.indexOf('=');
  if (eq <= 0 || eq === arg.length - 1) throw new UserError(`${flag} '${arg}': expected input=number or input=file.npy`);
  const [name, text] = [arg.slice(0, eq), arg.slice(eq + 1)];
  const input = inputs.find((i) => i.name === name);
  if (!input) throw new UserError(`${flag} '${arg}': the model has no input '${name}' (inputs: ${inputs.map((i) => i.name).join(', ')})`, file);
  const given = `${flag} '${arg}'`;
  if (/\.npy$/i.test(text)) return checkFixedFeed({ input, value: parseNpy(readUserFile(text), text), given }, shared, { file, arrayFile: text });
  const value = Number(text);
  if (!Number.isFinite(value) || text.trim() === '') throw new UserError(`${given}: '${text}' is neither a number nor a .npy file`);
  return checkFixedFeed({ input, value, given }, shared, { file, arrayHow: 'a .npy array' });
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
  const missing = unfedInputs(inputs, data.name, feeds);
  if (missing.length)
    throw new UserError(
      `model inputs besides '${data.name}' need values: ${missing.map(describeInput).join(', ')}; ` +
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

/** The model with the --freeze inputs made constants and the Ifs they decide inlined; says what it did on stderr. */
export async function freezeModel(model: ModelProto, given: readonly string[], file: string, quiet = false): Promise<ModelProto> {
  if (!given.length) return model;
  const values = parseFrozenInputs(given, model, file);
  const { model: frozen, inlined } = await freezeInputs(model, values, evaluateOutputs);
  if (!quiet)
    process.stderr.write(`froze ${values.map((t) => t.name).join(', ')} into the model (no longer inputs)${inlined.length ? `; If decided and inlined: ${inlined.join(', ')}` : ''}\n`);
  return frozen;
}
