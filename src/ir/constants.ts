/** Reading and replacing float initializers, and constant operands (scalars, Clip bounds), shared by passes that rewrite the graph. */
import { TensorProto_DataType as DT, type NodeProto, type TensorProto } from 'onnx-buf';
import { makeTensor, tensorDims, tensorToFloat32 } from '../onnx/tensor-codec.ts';
import { attrFloat, type GraphView } from './graph.ts';

export interface ConstFloat {
  dims: number[];
  data: Float32Array;
}

/** The value of a constant float-typed input (float32/16/bf16/64), or undefined when it is not a constant. */
export function constFloat(view: GraphView, name: string): ConstFloat | undefined {
  if (!name || !view.isConstant(name)) return undefined;
  const t = view.initializers.get(name)!;
  if (![DT.FLOAT, DT.FLOAT16, DT.BFLOAT16, DT.DOUBLE].includes(t.dataType)) return undefined;
  return { dims: tensorDims(t), data: tensorToFloat32(t) };
}

/** Replace an initializer's values in place, under its name (every reader sees the new values). */
export function replaceInitializer(view: GraphView, name: string, dims: readonly number[], data: Float32Array): void {
  const i = view.graph.initializer.findIndex((t) => t.name === name);
  if (i < 0) throw new Error(`'${name}' is not an initializer`);
  view.graph.initializer[i] = makeTensor(name, DT.FLOAT, dims, data);
  view.initializers.set(name, view.graph.initializer[i]);
}

/** Store new float32 values under a fresh name (the old initializer may have other readers). */
export function addFloatInitializer(view: GraphView, base: string, dims: readonly number[], data: Float32Array): string {
  const name = view.freshName(base);
  view.addInitializer(makeTensor(name, DT.FLOAT, dims, data));
  return name;
}

/** A 1-D int64 initializer under a fresh name (shapes, pads, axes given as inputs). */
export function addInt64Initializer(view: GraphView, base: string, values: readonly number[]): string {
  const name = view.freshName(base);
  view.addInitializer(makeTensor(name, DT.INT64, [values.length], values));
  return name;
}

export function isFloat32(t: TensorProto | undefined): boolean {
  return t?.dataType === DT.FLOAT;
}

/** A scalar constant input (an initializer with one element), or undefined. */
export function scalar(view: GraphView, name: string | undefined): number | undefined {
  const c = name ? constFloat(view, name) : undefined;
  return c && c.data.length === 1 ? c.data[0] : undefined;
}

/** Clip's bounds: inputs 1 and 2 (opset ≥ 11; absent = unbounded) or the min/max attributes (older opsets). */
export function clipBounds(view: GraphView, n: NodeProto): [number, number] | undefined {
  if (n.input.length > 1) {
    const lo = n.input[1] ? scalar(view, n.input[1]) : -Infinity;
    const hi = n.input[2] ? scalar(view, n.input[2]) : Infinity;
    return lo === undefined || hi === undefined ? undefined : [lo, hi];
  }
  return [attrFloat(n, 'min', -Infinity), attrFloat(n, 'max', Infinity)];
}
