/** Describing a model's graph inputs and building deterministic feeds for them (tests, inspect, benchmarks). */
import { TensorProto_DataType as DT, type ModelProto, type ValueInfoProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';

export interface InputSpec {
  name: string;
  dataType: number;
  /** A number for a fixed dimension, a string for a symbolic one, null when unknown. */
  dims: (number | string | null)[] | null;
}

export function valueInfoSpec(v: ValueInfoProto): InputSpec {
  const tt = v.type?.value.case === 'tensorType' ? v.type.value.value : undefined;
  const dims =
    tt?.shape?.dim.map((d) => (d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : null)) ?? null;
  return { name: v.name, dataType: tt?.elemType ?? DT.FLOAT, dims };
}

export function graphInputs(model: ModelProto): InputSpec[] {
  const g = model.graph!;
  const inits = new Set(g.initializer.map((t) => t.name));
  return g.input.filter((v) => !inits.has(v.name)).map(valueInfoSpec);
}

export function graphOutputs(model: ModelProto): InputSpec[] {
  return model.graph!.output.map(valueInfoSpec);
}

import { seededRandom } from '../math.ts';
export { seededRandom };

export interface FeedOptions {
  /** Concrete sizes for symbolic or unknown dims, by input name. */
  shapes?: Record<string, number[]>;
  /** Fixed values for inputs (e.g. a sample rate), by input name. */
  values?: Record<string, number>;
  seed?: number;
  /** Size used for a symbolic dimension without an override. */
  defaultDim?: number;
}

/** Random feeds in [0, 1) (floats) for every graph input, symbolic dims resolved from `shapes` or `defaultDim`. */
export function randomFeeds(model: ModelProto, opts: FeedOptions = {}): Record<string, ort.Tensor> {
  const rnd = seededRandom(opts.seed ?? 1234);
  const feeds: Record<string, ort.Tensor> = {};
  for (const spec of graphInputs(model)) {
    const dims = opts.shapes?.[spec.name] ?? (spec.dims ?? []).map((d, i) => (typeof d === 'number' && d > 0 ? d : i === 0 ? 1 : (opts.defaultDim ?? 32)));
    const n = dims.reduce((a, b) => a * b, 1);
    const fixed = opts.values?.[spec.name];
    switch (spec.dataType) {
      case DT.FLOAT:
        feeds[spec.name] = new ort.Tensor('float32', Float32Array.from({ length: n }, () => fixed ?? rnd()), dims);
        break;
      case DT.FLOAT16:
        throw new Error(`input '${spec.name}': float16 inputs are not generated yet`);
      case DT.INT64:
        feeds[spec.name] = new ort.Tensor('int64', BigInt64Array.from({ length: n }, () => BigInt(fixed ?? 0)), dims);
        break;
      case DT.INT32:
        feeds[spec.name] = new ort.Tensor('int32', Int32Array.from({ length: n }, () => fixed ?? 0), dims);
        break;
      case DT.BOOL:
        feeds[spec.name] = new ort.Tensor('bool', Uint8Array.from({ length: n }, () => fixed ?? 0), dims);
        break;
      default:
        throw new Error(`input '${spec.name}': cannot generate data of type ${spec.dataType}`);
    }
  }
  return feeds;
}
