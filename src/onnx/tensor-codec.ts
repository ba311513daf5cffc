/**
 * TensorProto ↔ typed arrays for every ONNX dtype. Elements come out in their storage form (`decodeTensor`:
 * fp16/bf16 as Uint16 bit patterns, fp8 as Uint8 codes, int4/uint4/int2/uint2 unpacked one per byte, complex as
 * interleaved re/im) or as float32 values (`tensorToFloat32`). raw_data is viewed in place when aligned and copied
 * only when its byte offset is not a multiple of the element size (typed arrays require alignment).
 */
import { create } from '@bufbuild/protobuf';
import { TensorProtoSchema, TensorProto_DataLocation, type TensorProto } from 'onnx-buf';
import { DataType as DT, dtypeInfo, type TensorArray } from './dtype.ts';
import { bfloat16ToFloat32, float16ToFloat32, float8ToFloat32 } from './float-formats.ts';

export interface DecodedTensor {
  dataType: number;
  dims: number[];
  data: TensorArray;
}

export function tensorDims(t: TensorProto): number[] {
  return t.dims.map(Number);
}

export function tensorSize(t: TensorProto): number {
  let n = 1;
  for (const d of t.dims) n *= Number(d);
  return n;
}

type ArrayCtor = { new (buf: ArrayBufferLike, off: number, len: number): TensorArray; BYTES_PER_ELEMENT: number };

function storageCtor(dt: number): ArrayCtor | undefined {
  switch (dt) {
    case DT.FLOAT:
    case DT.COMPLEX64:
      return Float32Array as unknown as ArrayCtor;
    case DT.DOUBLE:
    case DT.COMPLEX128:
      return Float64Array as unknown as ArrayCtor;
    case DT.INT8:
      return Int8Array as unknown as ArrayCtor;
    case DT.INT16:
      return Int16Array as unknown as ArrayCtor;
    case DT.UINT16:
    case DT.FLOAT16:
    case DT.BFLOAT16:
      return Uint16Array as unknown as ArrayCtor;
    case DT.INT32:
      return Int32Array as unknown as ArrayCtor;
    case DT.UINT32:
      return Uint32Array as unknown as ArrayCtor;
    case DT.INT64:
      return BigInt64Array as unknown as ArrayCtor;
    case DT.UINT64:
      return BigUint64Array as unknown as ArrayCtor;
    case DT.UINT8:
    case DT.BOOL:
    case DT.FLOAT8E4M3FN:
    case DT.FLOAT8E4M3FNUZ:
    case DT.FLOAT8E5M2:
    case DT.FLOAT8E5M2FNUZ:
    case DT.FLOAT8E8M0:
      return Uint8Array as unknown as ArrayCtor;
    default:
      return undefined;
  }
}

const SUB_BYTE: Record<number, { bits: 2 | 4; signed: boolean }> = {
  [DT.INT4]: { bits: 4, signed: true },
  [DT.UINT4]: { bits: 4, signed: false },
  [DT.FLOAT4E2M1]: { bits: 4, signed: false },
  [DT.INT2]: { bits: 2, signed: true },
  [DT.UINT2]: { bits: 2, signed: false },
};

/** Unpack low-nibble-first packed 4-bit (or 2-bit) elements; signed types are sign-extended. */
export function unpackSubByte(packed: Uint8Array, n: number, bits: 2 | 4, signed: boolean): Int8Array | Uint8Array {
  const out = signed ? new Int8Array(n) : new Uint8Array(n);
  const per = 8 / bits;
  const mask = (1 << bits) - 1;
  for (let i = 0; i < n; i++) {
    let v = (packed[(i / per) | 0] >> ((i % per) * bits)) & mask;
    if (signed && v >= 1 << (bits - 1)) v -= 1 << bits;
    out[i] = v;
  }
  return out;
}

export function packSubByte(values: ArrayLike<number>, bits: 2 | 4): Uint8Array {
  const per = 8 / bits;
  const mask = (1 << bits) - 1;
  const out = new Uint8Array(Math.ceil(values.length / per));
  for (let i = 0; i < values.length; i++) out[(i / per) | 0] |= (values[i] & mask) << ((i % per) * bits);
  return out;
}

/** Elements of a tensor in storage form. Throws for external data that was not loaded (see model-io). */
export function decodeTensor(t: TensorProto): DecodedTensor {
  const dt = t.dataType;
  const dims = tensorDims(t);
  if (t.dataLocation === TensorProto_DataLocation.EXTERNAL)
    throw new Error(`tensor '${t.name}' has external data that was not loaded`);
  const complex = dt === DT.COMPLEX64 || dt === DT.COMPLEX128 ? 2 : 1;
  const n = tensorSize(t) * complex;
  const sub = SUB_BYTE[dt];
  if (sub) {
    const packed = t.rawData.length ? t.rawData : Uint8Array.from(t.int32Data);
    return { dataType: dt, dims, data: unpackSubByte(packed, n / complex, sub.bits, sub.signed) };
  }
  if (dt === DT.STRING) throw new Error(`tensor '${t.name}': string tensors have no numeric data`);
  const Ctor = storageCtor(dt);
  if (!Ctor) throw new Error(`tensor '${t.name}': unsupported data type ${dt}`);
  if (t.rawData.length) {
    const raw = t.rawData;
    const need = n * Ctor.BYTES_PER_ELEMENT;
    if (raw.length !== need)
      throw new Error(`tensor '${t.name}': raw_data has ${raw.length} bytes, expected ${need} for dims [${dims}]`);
    if (raw.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) return { dataType: dt, dims, data: new Ctor(raw.buffer, raw.byteOffset, n) };
    // Not raw.slice(): when parsing from a Node Buffer, raw_data is a Buffer whose slice() is a view, not a copy.
    const copy = new Uint8Array(raw.length);
    copy.set(raw);
    return { dataType: dt, dims, data: new Ctor(copy.buffer, 0, n) };
  }
  const info = dtypeInfo(dt);
  const field = t[info.field] as ArrayLike<number | bigint | Uint8Array>;
  if (field.length !== n && n !== 0)
    throw new Error(`tensor '${t.name}': ${info.field} has ${field.length} elements, expected ${n}`);
  const out = new Ctor(new ArrayBuffer(n * Ctor.BYTES_PER_ELEMENT), 0, n);
  if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
    for (let i = 0; i < n; i++) out[i] = BigInt(field[i] as bigint | number);
  } else {
    for (let i = 0; i < n; i++) out[i] = Number(field[i]);
  }
  return { dataType: dt, dims, data: out };
}

/** Any numeric tensor as float32 values (fp16, bf16 and fp8 decoded exactly; int64 via Number). */
export function tensorToFloat32(t: TensorProto): Float32Array {
  const { dataType: dt, data } = decodeTensor(t);
  if (data instanceof Float32Array) return dt === DT.FLOAT ? data : Float32Array.from(data);
  const out = new Float32Array(data.length);
  const info = dtypeInfo(dt);
  if (dt === DT.FLOAT16) for (let i = 0; i < out.length; i++) out[i] = float16ToFloat32(data[i] as number);
  else if (dt === DT.BFLOAT16) for (let i = 0; i < out.length; i++) out[i] = bfloat16ToFloat32(data[i] as number);
  else if (info.float8) {
    const kind = info.float8;
    for (let i = 0; i < out.length; i++) out[i] = float8ToFloat32(data[i] as number, kind);
  } else if (dt === DT.FLOAT8E8M0) for (let i = 0; i < out.length; i++) out[i] = 2 ** ((data[i] as number) - 127);
  else if (dt === DT.FLOAT4E2M1) {
    const e2m1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
    for (let i = 0; i < out.length; i++) {
      const c = data[i] as number;
      out[i] = (c & 8 ? -1 : 1) * e2m1[c & 7];
    }
  } else for (let i = 0; i < out.length; i++) out[i] = Number(data[i]);
  return out;
}

/** Build a TensorProto with raw_data from elements in storage form (sub-byte types packed here). */
export function makeTensor(name: string, dataType: number, dims: readonly number[], data: TensorArray | ArrayLike<number>): TensorProto {
  const sub = SUB_BYTE[dataType];
  let raw: Uint8Array<ArrayBuffer>;
  if (sub) raw = packSubByte(data as ArrayLike<number>, sub.bits) as Uint8Array<ArrayBuffer>;
  else {
    const Ctor = storageCtor(dataType);
    if (!Ctor) throw new Error(`makeTensor('${name}'): unsupported data type ${dataType}`);
    let typed: TensorArray;
    if (data instanceof (Ctor as unknown as typeof Float32Array)) typed = data as TensorArray;
    else {
      const n = (data as ArrayLike<number>).length;
      typed = new Ctor(new ArrayBuffer(n * Ctor.BYTES_PER_ELEMENT), 0, n);
      const isBig = typed instanceof BigInt64Array || typed instanceof BigUint64Array;
      for (let i = 0; i < n; i++) (typed as unknown as (number | bigint)[])[i] = isBig ? BigInt((data as ArrayLike<number>)[i]) : (data as ArrayLike<number>)[i];
    }
    raw = new Uint8Array(typed.buffer.slice(typed.byteOffset, typed.byteOffset + typed.byteLength) as ArrayBuffer);
  }
  return create(TensorProtoSchema, { name, dataType, dims: dims.map((d) => BigInt(d)), rawData: raw });
}
