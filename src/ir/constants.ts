/** Reading and replacing float initializers, shared by passes that rewrite weights. */
import { TensorProto_DataType as DT, type TensorProto } from 'onnx-buf';
import { makeTensor, tensorDims, tensorToFloat32 } from '../onnx/tensor-codec.ts';
import type { GraphView } from './graph.ts';

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

/** Store new float32 values under a fresh name (the old initializer may have other readers). */
export function addFloatInitializer(view: GraphView, base: string, dims: readonly number[], data: Float32Array): string {
  const name = view.freshName(base);
  view.addInitializer(makeTensor(name, DT.FLOAT, dims, data));
  return name;
}

export function isFloat32(t: TensorProto | undefined): boolean {
  return t?.dataType === DT.FLOAT;
}
