/**
 * A zoo entry's model inputs: the one its data fill (`input.name`) and values for the others (`feeds`: a scale
 * factor, a recurrent state), checked against the model before any work — the same checks as the CLI's `--feed`
 * (runtime/fixed-feeds.ts), with the entry and field named.
 */
import type { ModelProto } from 'onnx-buf';
import { UserError } from '../errors.ts';
import { checkFixedFeed, describeInput, unfedInputs, type FixedFeed } from '../runtime/fixed-feeds.ts';
import { graphInputs, type InputSpec } from '../runtime/inputs.ts';
import type { ZooEntry } from './registry.ts';

/** The data input's spec and the fixed feeds of `entry` on `model` (read from `file`, named in messages); errors
 * name `source` (a registry file) when given. */
export function entryInputs(entry: ZooEntry, model: ModelProto, file: string, source?: string): { data: InputSpec; fixed: FixedFeed[] } {
  const inputs = graphInputs(model);
  const at = `model '${entry.id}'`;
  const data = inputs.find((i) => i.name === entry.input.name);
  if (!data) throw new UserError(`${at}: input.name '${entry.input.name}' is not an input of ${file} (inputs: ${inputs.map((i) => i.name).join(', ')})`, source);
  const fixed = Object.entries(entry.feeds ?? {}).map(([name, v]) => {
    const given = `${at}: feeds.${name}`;
    const input = inputs.find((i) => i.name === name);
    if (!input) throw new UserError(`${given}: ${file} has no input '${name}' (inputs: ${inputs.map((i) => i.name).join(', ')})`, source);
    if (name === data.name) throw new UserError(`${given}: '${name}' is the input the data fill (input.name)`, source);
    const value = typeof v === 'number' ? v : { dims: [...v.dims], data: Float32Array.from(v.values) };
    return checkFixedFeed({ input, value, given }, data.dims ?? [], { file: source, arrayHow: 'an array: { "dims": [...], "values": [...] }' });
  });
  const missing = unfedInputs(inputs, data.name, fixed);
  if (missing.length)
    throw new UserError(`${at}: inputs of ${file} besides '${data.name}' need values: ${missing.map(describeInput).join(', ')}; give each in the entry's feeds, e.g. "feeds": { "${missing[0].name}": 0 }`, source);
  return { data, fixed };
}
