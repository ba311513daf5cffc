import { TensorProto_DataType as DT } from 'onnx-buf';
import type { Float8Kind } from './float-formats.ts';

export { TensorProto_DataType as DataType } from 'onnx-buf';

/** The JS array that holds a tensor's elements as stored (narrow floats as their bit patterns). */
export type TensorArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

export interface DTypeInfo {
  name: string;
  /** Bits per element in raw_data (4 for int4/uint4/float4, 2 for int2/uint2). */
  bits: number;
  /** Where elements live when raw_data is not used. */
  field: 'floatData' | 'int32Data' | 'int64Data' | 'doubleData' | 'uint64Data' | 'stringData';
  float8?: Float8Kind;
}

export const DTYPES: Partial<Record<DT, DTypeInfo>> = {
  [DT.FLOAT]: { name: 'float32', bits: 32, field: 'floatData' },
  [DT.UINT8]: { name: 'uint8', bits: 8, field: 'int32Data' },
  [DT.INT8]: { name: 'int8', bits: 8, field: 'int32Data' },
  [DT.UINT16]: { name: 'uint16', bits: 16, field: 'int32Data' },
  [DT.INT16]: { name: 'int16', bits: 16, field: 'int32Data' },
  [DT.INT32]: { name: 'int32', bits: 32, field: 'int32Data' },
  [DT.INT64]: { name: 'int64', bits: 64, field: 'int64Data' },
  [DT.STRING]: { name: 'string', bits: 0, field: 'stringData' },
  [DT.BOOL]: { name: 'bool', bits: 8, field: 'int32Data' },
  [DT.FLOAT16]: { name: 'float16', bits: 16, field: 'int32Data' },
  [DT.DOUBLE]: { name: 'float64', bits: 64, field: 'doubleData' },
  [DT.UINT32]: { name: 'uint32', bits: 32, field: 'uint64Data' },
  [DT.UINT64]: { name: 'uint64', bits: 64, field: 'uint64Data' },
  [DT.COMPLEX64]: { name: 'complex64', bits: 64, field: 'floatData' },
  [DT.COMPLEX128]: { name: 'complex128', bits: 128, field: 'doubleData' },
  [DT.BFLOAT16]: { name: 'bfloat16', bits: 16, field: 'int32Data' },
  [DT.FLOAT8E4M3FN]: { name: 'float8e4m3fn', bits: 8, field: 'int32Data', float8: 'e4m3fn' },
  [DT.FLOAT8E4M3FNUZ]: { name: 'float8e4m3fnuz', bits: 8, field: 'int32Data', float8: 'e4m3fnuz' },
  [DT.FLOAT8E5M2]: { name: 'float8e5m2', bits: 8, field: 'int32Data', float8: 'e5m2' },
  [DT.FLOAT8E5M2FNUZ]: { name: 'float8e5m2fnuz', bits: 8, field: 'int32Data', float8: 'e5m2fnuz' },
  [DT.UINT4]: { name: 'uint4', bits: 4, field: 'int32Data' },
  [DT.INT4]: { name: 'int4', bits: 4, field: 'int32Data' },
  [DT.FLOAT4E2M1]: { name: 'float4e2m1', bits: 4, field: 'int32Data' },
  [DT.FLOAT8E8M0]: { name: 'float8e8m0', bits: 8, field: 'int32Data' },
  [DT.UINT2]: { name: 'uint2', bits: 2, field: 'int32Data' },
  [DT.INT2]: { name: 'int2', bits: 2, field: 'int32Data' },
};

export function dtypeInfo(dt: number): DTypeInfo {
  const info = DTYPES[dt as DT];
  if (!info) throw new Error(`unsupported tensor data type ${dt}`);
  return info;
}

export function dtypeName(dt: number): string {
  return DTYPES[dt as DT]?.name ?? `dtype(${dt})`;
}
