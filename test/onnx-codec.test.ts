/**
 * dtype codecs (src/onnx/float-formats.ts, src/onnx/tensor-codec.ts) against hand-computed bit patterns, and against
 * onnxruntime as an independent reference: its Cast kernels encode float32 → fp16/bf16/fp8 and decode every
 * storage dtype (raw_data and the typed fields) from initializers we write.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  GraphProtoSchema,
  ModelProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  TensorProtoSchema,
  TensorProto_DataType as DT,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import {
  bfloat16ToFloat32,
  bitsToFloat32,
  float16ToFloat32,
  float32Bits,
  float32ToBfloat16,
  float32ToFloat16,
  float32ToFloat8,
  float8MaxFinite,
  float8ToFloat32,
  type Float8Kind,
} from '../src/onnx/float-formats.ts';
import { decodeTensor, makeTensor, packSubByte, tensorToFloat32, unpackSubByte } from '../src/onnx/tensor-codec.ts';
import { makeNode, tensorValueInfo } from '../src/ir/graph.ts';
import { serializeModel } from '../src/onnx/model-io.ts';

const hex = (n: number) => `0x${n.toString(16).toUpperCase()}`;
const F8_KINDS: [Float8Kind, number][] = [
  ['e4m3fn', DT.FLOAT8E4M3FN],
  ['e4m3fnuz', DT.FLOAT8E4M3FNUZ],
  ['e5m2', DT.FLOAT8E5M2],
  ['e5m2fnuz', DT.FLOAT8E5M2FNUZ],
];

// Fixed: float32ToFloat8 used to drop the sign of negative fnuz values; these tests now run for real.
const FNUZ_SIGN_BUG: string | undefined = undefined;

// ---- hand-computed bit patterns -------------------------------------------------------------------------------

test('float16 encode: normals, subnormals, Inf, NaN, ties to even', () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [-0, 0x8000],
    [0, 0x0000],
    [65504, 0x7bff], // max finite
    [65519, 0x7bff], // below the halfway point to 65536
    [65520, 0x7c00], // exactly halfway, 0x7BFF is odd → rounds up to Inf
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // halfway 0 ↔ 0x0001: even is 0
    [2 ** -25 + 2 ** -35, 0x0001], // just above halfway
    [3 * 2 ** -25, 0x0002], // halfway 0x0001 ↔ 0x0002: even is 0x0002
    [-(2 ** -24), 0x8001],
    [1e-8, 0x0000],
    [1 + 2 ** -11, 0x3c00], // tie → even mantissa 0
    [1 + 3 * 2 ** -11, 0x3c02], // tie → even mantissa 2
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // above the tie
    [1 - 2 ** -12, 0x3c00], // tie between 0x3BFF (1 − 2^-11) and 0x3C00 → even 0x3C00 (carry into the exponent)
    [1 - 2 ** -11, 0x3bff],
    [1 / 3, 0x3555],
  ];
  for (const [x, bits] of cases) assert.equal(hex(float32ToFloat16(x)), hex(bits), `float16(${x})`);
  const nan = float32ToFloat16(NaN);
  assert.equal(nan & 0x7c00, 0x7c00, 'NaN exponent all ones');
  assert.notEqual(nan & 0x3ff, 0, 'NaN mantissa non-zero');
});

test('float16 decode', () => {
  assert.equal(float16ToFloat32(0x3c00), 1);
  assert.equal(float16ToFloat32(0x3555), 0.333251953125);
  assert.equal(float16ToFloat32(0x0001), 2 ** -24);
  assert.equal(float16ToFloat32(0x03ff), 2 ** -14 - 2 ** -24);
  assert.equal(float16ToFloat32(0x7bff), 65504);
  assert.equal(float16ToFloat32(0xfc00), -Infinity);
  assert.ok(Object.is(float16ToFloat32(0x8000), -0));
  assert.ok(Number.isNaN(float16ToFloat32(0x7e00)));
  assert.ok(Number.isNaN(float16ToFloat32(0xfc01)));
  // Every finite code round-trips exactly.
  for (let h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) === 0x7c00 && h & 0x3ff) continue;
    assert.equal(float32ToFloat16(float16ToFloat32(h)), h);
  }
});

test('bfloat16 encode/decode: ties to even, Inf, NaN', () => {
  const cases: [number, number][] = [
    [1, 0x3f80],
    [-1.5, 0xbfc0],
    [1 + 2 ** -8, 0x3f80], // tie → even
    [1 + 3 * 2 ** -8, 0x3f82], // tie → even
    [1 + 2 ** -8 + 2 ** -20, 0x3f81],
    [1e6, 0x4974], // 0x49742400: below halfway
    [Infinity, 0x7f80],
    [-Infinity, 0xff80],
    [bitsToFloat32(0x7f7fffff), 0x7f80], // float32 max rounds to Inf
    [-0, 0x8000],
    [bitsToFloat32(0x00010000), 0x0001], // a float32 subnormal stays a bf16 subnormal
  ];
  for (const [x, bits] of cases) assert.equal(hex(float32ToBfloat16(x)), hex(bits), `bfloat16(${x})`);
  const nan = float32ToBfloat16(NaN);
  assert.equal(nan & 0x7f80, 0x7f80);
  assert.notEqual(nan & 0x7f, 0);
  assert.ok(Number.isNaN(bfloat16ToFloat32(nan)));
  assert.equal(bfloat16ToFloat32(0x3f80), 1);
  assert.equal(bfloat16ToFloat32(0x4974), 999424);
});

test('float8: known values, NaN/Inf, fnuz zero, saturation, ties to even vs towardZero', () => {
  // e4m3fn
  assert.equal(float32ToFloat8(448, 'e4m3fn'), 0x7e);
  assert.equal(float32ToFloat8(-448, 'e4m3fn'), 0xfe);
  assert.equal(float32ToFloat8(2 ** -9, 'e4m3fn'), 0x01); // smallest subnormal
  assert.equal(float32ToFloat8(2 ** -10, 'e4m3fn'), 0x00); // tie with 0 → even
  assert.equal(float32ToFloat8(3 * 2 ** -10, 'e4m3fn'), 0x02);
  assert.equal(float32ToFloat8(1, 'e4m3fn'), 0x38);
  assert.equal(float32ToFloat8(NaN, 'e4m3fn'), 0x7f);
  assert.equal(float32ToFloat8(-0, 'e4m3fn'), 0x80);
  assert.equal(float32ToFloat8(500, 'e4m3fn'), 0x7e); // saturate (default)
  assert.equal(float32ToFloat8(1e9, 'e4m3fn'), 0x7e);
  assert.equal(float32ToFloat8(-Infinity, 'e4m3fn'), 0xfe);
  assert.equal(float32ToFloat8(464, 'e4m3fn', false), 0x7e); // halfway to 480, 0x7E even: stays
  assert.equal(float32ToFloat8(465, 'e4m3fn', false), 0x7f); // beyond: NaN when not saturating
  assert.equal(float32ToFloat8(-465, 'e4m3fn', false) & 0x7f, 0x7f);
  assert.equal(float8ToFloat32(0x7e, 'e4m3fn'), 448);
  assert.equal(float8ToFloat32(0x01, 'e4m3fn'), 2 ** -9);
  assert.ok(Number.isNaN(float8ToFloat32(0x7f, 'e4m3fn')));
  assert.ok(Number.isNaN(float8ToFloat32(0xff, 'e4m3fn')));
  // ties: 1.0625 halfway 1 (0x38) ↔ 1.125 (0x39); 1.1875 halfway 1.125 (0x39) ↔ 1.25 (0x3A)
  assert.equal(float32ToFloat8(1.0625, 'e4m3fn', true, 'even'), 0x38);
  assert.equal(float32ToFloat8(1.0625, 'e4m3fn', true, 'towardZero'), 0x38);
  assert.equal(float32ToFloat8(1.1875, 'e4m3fn', true, 'even'), 0x3a);
  assert.equal(float32ToFloat8(1.1875, 'e4m3fn', true, 'towardZero'), 0x39);
  assert.equal(float32ToFloat8(-1.1875, 'e4m3fn', true, 'towardZero'), 0xb9);
  assert.equal(float32ToFloat8(-1.1875, 'e4m3fn', true, 'even'), 0xba);
  // e5m2
  assert.equal(float32ToFloat8(57344, 'e5m2'), 0x7b);
  assert.equal(float32ToFloat8(Infinity, 'e5m2', false), 0x7c);
  assert.equal(float32ToFloat8(-Infinity, 'e5m2', false), 0xfc);
  assert.equal(float32ToFloat8(61440, 'e5m2', false), 0x7c); // halfway to 65536, 0x7B odd → overflows to Inf
  assert.equal(float32ToFloat8(61440, 'e5m2', true), 0x7b); // saturates
  assert.equal(float32ToFloat8(61439, 'e5m2', false), 0x7b);
  assert.equal(float32ToFloat8(2 ** -16, 'e5m2'), 0x01);
  assert.equal(float8ToFloat32(0x7c, 'e5m2'), Infinity);
  assert.equal(float8ToFloat32(0xfc, 'e5m2'), -Infinity);
  assert.ok(Number.isNaN(float8ToFloat32(0x7d, 'e5m2')));
  assert.equal(float8ToFloat32(0x7b, 'e5m2'), 57344);
  // fnuz: NaN is 0x80, there is no negative zero
  for (const kind of ['e4m3fnuz', 'e5m2fnuz'] as const) {
    assert.equal(float32ToFloat8(NaN, kind), 0x80);
    assert.equal(float32ToFloat8(-0, kind), 0x00);
    assert.equal(float32ToFloat8(-1e-30, kind), 0x00, `${kind}: a negative value rounding to zero is +0`);
    assert.ok(Number.isNaN(float8ToFloat32(0x80, kind)));
    assert.equal(float32ToFloat8(1e9, kind, false), 0x80);
    assert.equal(float8ToFloat32(float32ToFloat8(1e9, kind), kind), float8MaxFinite(kind));
  }
  assert.equal(float32ToFloat8(240, 'e4m3fnuz'), 0x7f);
  assert.equal(float32ToFloat8(2 ** -10, 'e4m3fnuz'), 0x01);
  assert.equal(float32ToFloat8(57344, 'e5m2fnuz'), 0x7f);
  assert.equal(float32ToFloat8(2 ** -17, 'e5m2fnuz'), 0x01);
});

for (const [kind] of F8_KINDS)
  test(`${kind}: every non-NaN code round-trips; negative values keep their sign`, { todo: kind.endsWith('uz') ? FNUZ_SIGN_BUG : undefined }, () => {
    assert.equal(float32ToFloat8(-1, kind), 0xc0 - (kind === 'e4m3fn' ? 0x08 : kind === 'e5m2' ? 0x04 : 0), `${kind}(-1)`);
    for (let c = 0; c < 256; c++) {
      const v = float8ToFloat32(c, kind);
      if (Number.isNaN(v)) continue;
      assert.equal(hex(float32ToFloat8(v, kind, false)), hex(c), `${kind} code ${hex(c)} (${v})`);
    }
  });

test('sub-byte packing: low nibble first, sign extension', () => {
  assert.deepEqual([...packSubByte([1, -1, 7, -8, 3], 4)], [0xf1, 0x87, 0x03]);
  assert.deepEqual([...unpackSubByte(Uint8Array.from([0xf1, 0x87, 0x03]), 5, 4, true)], [1, -1, 7, -8, 3]);
  assert.deepEqual([...unpackSubByte(Uint8Array.from([0xf1, 0x87, 0x03]), 5, 4, false)], [1, 15, 7, 8, 3]);
  // 2-bit: 1=01, -1=11, -2=10, 0=00 → 0b00_10_11_01 = 0x2D, then 1 → 0x01
  assert.deepEqual([...packSubByte([1, -1, -2, 0, 1], 2)], [0x2d, 0x01]);
  assert.deepEqual([...unpackSubByte(Uint8Array.from([0x2d, 0x01]), 5, 2, true)], [1, -1, -2, 0, 1]);
  assert.deepEqual([...unpackSubByte(Uint8Array.from([0x2d, 0x01]), 5, 2, false)], [1, 3, 2, 0, 1]);
  const t = makeTensor('w', DT.INT4, [5], [1, -1, 7, -8, 3]);
  assert.deepEqual([...t.rawData], [0xf1, 0x87, 0x03]);
});

// ---- typed fields, raw_data, alignment, round trips ------------------------------------------------------------

type TypedFields = { floatData?: number[]; doubleData?: number[]; int32Data?: number[]; int64Data?: bigint[]; uint64Data?: bigint[]; rawData?: Uint8Array<ArrayBuffer> };

function typed(dataType: number, dims: number[], fields: TypedFields): TensorProto {
  return create(TensorProtoSchema, { name: 't', dataType, dims: dims.map(BigInt), ...fields });
}

/** Typed-field encodings of the same sample values, for every dtype that has one. */
const TYPED_CASES: { dt: number; t: TensorProto; storage: (number | bigint)[]; values: number[] }[] = [
  { dt: DT.FLOAT, t: typed(DT.FLOAT, [3], { floatData: [1.5, -2, 3.25] }), storage: [1.5, -2, 3.25], values: [1.5, -2, 3.25] },
  { dt: DT.DOUBLE, t: typed(DT.DOUBLE, [2], { doubleData: [0.1, -1e300] }), storage: [0.1, -1e300], values: [Math.fround(0.1), -Infinity] },
  { dt: DT.INT32, t: typed(DT.INT32, [2], { int32Data: [-2147483648, 2147483647] }), storage: [-2147483648, 2147483647], values: [-2147483648, 2147483647] },
  { dt: DT.INT8, t: typed(DT.INT8, [3], { int32Data: [-128, 0, 127] }), storage: [-128, 0, 127], values: [-128, 0, 127] },
  { dt: DT.UINT8, t: typed(DT.UINT8, [2], { int32Data: [0, 255] }), storage: [0, 255], values: [0, 255] },
  { dt: DT.INT16, t: typed(DT.INT16, [2], { int32Data: [-32768, 32767] }), storage: [-32768, 32767], values: [-32768, 32767] },
  { dt: DT.UINT16, t: typed(DT.UINT16, [2], { int32Data: [0, 65535] }), storage: [0, 65535], values: [0, 65535] },
  { dt: DT.BOOL, t: typed(DT.BOOL, [3], { int32Data: [1, 0, 1] }), storage: [1, 0, 1], values: [1, 0, 1] },
  { dt: DT.FLOAT16, t: typed(DT.FLOAT16, [3], { int32Data: [0x3c00, 0xc000, 0x0001] }), storage: [0x3c00, 0xc000, 0x0001], values: [1, -2, 2 ** -24] },
  { dt: DT.BFLOAT16, t: typed(DT.BFLOAT16, [2], { int32Data: [0x3f80, 0xbfc0] }), storage: [0x3f80, 0xbfc0], values: [1, -1.5] },
  { dt: DT.FLOAT8E4M3FN, t: typed(DT.FLOAT8E4M3FN, [3], { int32Data: [0x7e, 0x01, 0xb8] }), storage: [0x7e, 0x01, 0xb8], values: [448, 2 ** -9, -1] },
  { dt: DT.FLOAT8E5M2, t: typed(DT.FLOAT8E5M2, [2], { int32Data: [0x7b, 0xfc] }), storage: [0x7b, 0xfc], values: [57344, -Infinity] },
  { dt: DT.FLOAT8E4M3FNUZ, t: typed(DT.FLOAT8E4M3FNUZ, [2], { int32Data: [0x7f, 0x01] }), storage: [0x7f, 0x01], values: [240, 2 ** -10] },
  { dt: DT.FLOAT8E5M2FNUZ, t: typed(DT.FLOAT8E5M2FNUZ, [2], { int32Data: [0x7f, 0xc0] }), storage: [0x7f, 0xc0], values: [57344, -1] },
  { dt: DT.INT4, t: typed(DT.INT4, [5], { int32Data: [0xf1, 0x87, 0x03] }), storage: [1, -1, 7, -8, 3], values: [1, -1, 7, -8, 3] },
  { dt: DT.UINT4, t: typed(DT.UINT4, [3], { int32Data: [0xf1, 0x08] }), storage: [1, 15, 8], values: [1, 15, 8] },
  { dt: DT.INT2, t: typed(DT.INT2, [5], { int32Data: [0x2d, 0x01] }), storage: [1, -1, -2, 0, 1], values: [1, -1, -2, 0, 1] },
  { dt: DT.UINT2, t: typed(DT.UINT2, [5], { int32Data: [0x2d, 0x01] }), storage: [1, 3, 2, 0, 1], values: [1, 3, 2, 0, 1] },
  { dt: DT.INT64, t: typed(DT.INT64, [3], { int64Data: [-(2n ** 63n), 2n ** 63n - 1n, -5n] }), storage: [-(2n ** 63n), 2n ** 63n - 1n, -5n], values: [-(2 ** 63), 2 ** 63, -5] },
  { dt: DT.UINT32, t: typed(DT.UINT32, [2], { uint64Data: [4294967295n, 7n] }), storage: [4294967295, 7], values: [4294967296, 7] },
  { dt: DT.UINT64, t: typed(DT.UINT64, [2], { uint64Data: [2n ** 64n - 1n, 7n] }), storage: [2n ** 64n - 1n, 7n], values: [2 ** 64, 7] },
];

const normal = (a: ArrayLike<number | bigint>) => Array.from(a, (v) => (typeof v === 'bigint' ? v : v));

test('typed fields decode (float_data, double_data, int32_data, int64_data, uint64_data)', () => {
  for (const c of TYPED_CASES) {
    const name = `dtype ${c.dt}`;
    const d = decodeTensor(c.t);
    assert.deepEqual(normal(d.data), c.storage, name);
    assert.deepEqual(Array.from(tensorToFloat32(c.t)), c.values.map(Math.fround), name);
  }
});

test('makeTensor → decodeTensor round trip (raw_data) for each dtype, equal to the typed-field decoding', () => {
  for (const c of TYPED_CASES) {
    const name = `dtype ${c.dt}`;
    const isBig = c.storage.some((v) => typeof v === 'bigint');
    const raw = isBig
      ? makeTensor('t', c.dt, [c.storage.length], (c.dt === DT.INT64 ? BigInt64Array : BigUint64Array).from(c.storage as bigint[]))
      : makeTensor('t', c.dt, [c.storage.length], c.storage as number[]);
    assert.ok(raw.rawData.length > 0, name);
    assert.deepEqual(normal(decodeTensor(raw).data), c.storage, name);
    assert.deepEqual(Array.from(tensorToFloat32(raw)), Array.from(tensorToFloat32(c.t)), name);
  }
  // Types without a typed case above.
  const c64 = makeTensor('c', DT.COMPLEX64, [2], [1, 2, 3, 4]);
  assert.deepEqual([...decodeTensor(c64).data], [1, 2, 3, 4]);
  const c128 = makeTensor('c', DT.COMPLEX128, [1], [0.1, -0.2]);
  assert.deepEqual([...decodeTensor(c128).data], [0.1, -0.2]);
  const e8m0 = makeTensor('e', DT.FLOAT8E8M0, [3], [127, 128, 0]);
  assert.deepEqual([...tensorToFloat32(e8m0)], [1, 2, 2 ** -127]);
  const f4 = makeTensor('f', DT.FLOAT4E2M1, [3], [0x1, 0xf, 0x7]);
  assert.deepEqual([...tensorToFloat32(f4)], [0.5, -6, 6]);
  // Empty and scalar tensors.
  assert.equal(decodeTensor(makeTensor('e', DT.FLOAT, [0], [])).data.length, 0);
  assert.deepEqual([...decodeTensor(makeTensor('s', DT.FLOAT, [], [7])).data], [7]);
});

test('raw_data at an unaligned byte offset decodes correctly (and is not aliased)', () => {
  const values = Float32Array.from([1.5, -2.25, 3e-7, 65504]);
  const backing = new Uint8Array(1 + values.byteLength + 3);
  backing.set(new Uint8Array(values.buffer), 1);
  const raw = backing.subarray(1, 1 + values.byteLength);
  assert.equal(raw.byteOffset, 1);
  const t = typed(DT.FLOAT, [4], { rawData: raw });
  const d = decodeTensor(t);
  assert.deepEqual([...d.data], [...values]);
  backing[1] ^= 0xff; // the decoded copy must not change with the source
  assert.equal(d.data[0], 1.5);
  const i64 = BigInt64Array.from([-3n, 2n ** 40n]);
  const b2 = new Uint8Array(17);
  b2.set(new Uint8Array(i64.buffer), 1);
  assert.deepEqual([...decodeTensor(typed(DT.INT64, [2], { rawData: b2.subarray(1) })).data], [-3n, 2n ** 40n]);
  assert.throws(() => decodeTensor(typed(DT.FLOAT, [5], { rawData: raw })), /raw_data has 16 bytes, expected 20/);
});

// ---- onnxruntime as the reference -------------------------------------------------------------------------------

const vi = tensorValueInfo;

async function runOrt(nodes: NodeProto[], inputs: ValueInfoProto[], outputs: ValueInfoProto[], feeds: Record<string, ort.Tensor>, initializer: TensorProto[] = []) {
  const model = create(ModelProtoSchema, {
    irVersion: 10n,
    opsetImport: [{ domain: '', version: 25n }],
    graph: { name: 'g', node: nodes, input: inputs, output: outputs, initializer },
  });
  // onnxruntime's own session, not the project's (which hands float16 outputs back as float32): its bits are the reference.
  const s = await ort.InferenceSession.create(serializeModel(model), { logSeverityLevel: 3 });
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

/** f32 neighbours (one float32 ulp either side) of each value, plus the value. */
function withNeighbours(xs: number[]): number[] {
  const out: number[] = [];
  for (const x of xs) {
    out.push(x);
    if (!Number.isFinite(x) || x === 0) continue;
    const b = float32Bits(x);
    out.push(bitsToFloat32(b + 1), bitsToFloat32(b - 1));
  }
  return out;
}

const sameValue = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));

test('onnxruntime decodes our initializers (raw_data and typed fields) to the same values', async () => {
  const tensors: TensorProto[] = [];
  const expect: Float32Array[] = [];
  const all16 = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const all8 = Uint8Array.from({ length: 256 }, (_, i) => i);
  const add = (t: TensorProto) => {
    tensors.push(create(TensorProtoSchema, { ...t, name: `w${tensors.length}` }));
    expect.push(tensorToFloat32(t));
  };
  add(makeTensor('', DT.FLOAT16, [65536], all16));
  add(makeTensor('', DT.BFLOAT16, [65536], all16));
  for (const [, dt] of F8_KINDS) add(makeTensor('', dt, [256], all8));
  add(makeTensor('', DT.INT4, [16], Array.from({ length: 16 }, (_, i) => i - 8)));
  add(makeTensor('', DT.UINT4, [15], Array.from({ length: 15 }, (_, i) => i))); // odd count: last byte half used
  add(makeTensor('', DT.INT2, [7], [-2, -1, 0, 1, 1, -2, -1]));
  add(makeTensor('', DT.UINT2, [7], [0, 1, 2, 3, 3, 2, 1]));
  for (const c of TYPED_CASES) if (c.dt !== DT.FLOAT) add(c.t);
  const nodes = tensors.map((t, i) => makeNode('Cast', [t.name], [`y${i}`], `cast${i}`, { to: DT.FLOAT }));
  const outs = tensors.map((t, i) => vi(`y${i}`, DT.FLOAT, t.dims.map(Number)));
  // A model needs an input; this one just passes through.
  nodes.push(makeNode('Identity', ['x'], ['xo'], 'id'));
  const r = await runOrt(nodes, [vi('x', DT.FLOAT, [1])], [...outs, vi('xo', DT.FLOAT, [1])], { x: new ort.Tensor('float32', Float32Array.from([0]), [1]) }, tensors);
  tensors.forEach((t, i) => {
    const got = r[`y${i}`].data as Float32Array;
    const want = expect[i];
    assert.equal(got.length, want.length, `dtype ${t.dataType}`);
    for (let k = 0; k < want.length; k++)
      if (!sameValue(got[k], want[k])) assert.fail(`dtype ${t.dataType} (${t.rawData.length ? 'raw_data' : 'typed field'}) element ${k}: onnxruntime ${got[k]}, ours ${want[k]}`);
  });
});

test('float32 → float16 bits equal onnxruntime Cast over ties, subnormals and specials', async () => {
  const xs: number[] = [0, -0, Infinity, -Infinity, NaN, 65504, 65519, 65520, 65536, 1e-8, 2 ** -25, 3 * 2 ** -25];
  for (let h = 0; h < 0x7c00; h += 7) {
    const v = float16ToFloat32(h);
    const next = float16ToFloat32(h + 1);
    xs.push(v, (v + next) / 2, -(v + next) / 2); // midpoints are exact float32 values: the ties
  }
  const x = Float32Array.from(withNeighbours(xs));
  const r = await runOrt([makeNode('Cast', ['x'], ['y'], 'c', { to: DT.FLOAT16 })], [vi('x', DT.FLOAT, ['n'])], [vi('y', DT.FLOAT16, ['n'])], {
    x: new ort.Tensor('float32', x, [x.length]),
  });
  const got = r.y.data as Uint16Array;
  assert.ok(x.length > 5000);
  let nanChecked = 0;
  for (let i = 0; i < x.length; i++) {
    const ours = float32ToFloat16(x[i]);
    if (Number.isNaN(x[i])) {
      assert.ok(Number.isNaN(float16ToFloat32(got[i])) && Number.isNaN(float16ToFloat32(ours)));
      nanChecked++;
      continue;
    }
    if (ours !== got[i]) assert.fail(`float16(${x[i]}): onnxruntime ${hex(got[i])}, ours ${hex(ours)}`);
  }
  assert.equal(nanChecked, 1);
});

/** Cast x → T → float32 in onnxruntime (node-onnxruntime cannot return bf16/fp8 tensors); compare with decode(encode(x)). */
async function castRoundTrip(x: Float32Array, to: number, saturate?: number): Promise<Float32Array> {
  const r = await runOrt(
    [makeNode('Cast', ['x'], ['y'], 'c', saturate === undefined ? { to } : { to, saturate }), makeNode('Cast', ['y'], ['z'], 'c2', { to: DT.FLOAT })],
    [vi('x', DT.FLOAT, ['n'])],
    [vi('z', DT.FLOAT, ['n'])],
    { x: new ort.Tensor('float32', x, [x.length]) },
  );
  return r.z.data as Float32Array;
}

test('float32 → bfloat16 equals onnxruntime Cast (ties to even)', async () => {
  const xs: number[] = [0, -0, Infinity, -Infinity, NaN, bitsToFloat32(0x7f7fffff), 1e-40];
  for (let b = 0; b < 0x7f80; b += 5) {
    const v = bfloat16ToFloat32(b);
    const next = bfloat16ToFloat32(b + 1);
    xs.push(v, (v + next) / 2, -(v + next) / 2);
  }
  const x = Float32Array.from(withNeighbours(xs));
  const got = await castRoundTrip(x, DT.BFLOAT16);
  for (let i = 0; i < x.length; i++) {
    const ours = bfloat16ToFloat32(float32ToBfloat16(x[i]));
    if (!sameValue(got[i], ours)) assert.fail(`bfloat16(${x[i]}): onnxruntime ${got[i]}, ours ${ours}`);
  }
});

/** Known disagreements with onnxruntime, per kind and saturate flag (see the final report). */
const F8_TODO: Record<string, string | undefined> = {
  'e4m3fnuz/1': FNUZ_SIGN_BUG,
  'e4m3fnuz/0': FNUZ_SIGN_BUG,
  'e5m2fnuz/1': FNUZ_SIGN_BUG,
  'e5m2fnuz/0': FNUZ_SIGN_BUG,
  'e4m3fn/0':
    'saturate=0: onnxruntime (like the onnx reference float32_to_float8e4m3) maps (464, 496) to 448 and only larger to NaN; ours gives NaN above 464',
  'e5m2/0': 'saturate=0: onnxruntime (like the onnx reference) maps [61440, 65536) to NaN (0x7F); ours gives ±Inf there (IEEE overflow)',
};

for (const [kind, dt] of F8_KINDS)
  for (const saturate of [1, 0]) {
    test(`float32 → ${kind} saturate=${saturate} equals onnxruntime Cast (ties to even, ±Inf, NaN, ±0)`, { todo: F8_TODO[`${kind}/${saturate}`] }, async () => {
      const xs: number[] = [0, -0, NaN, Infinity, -Infinity, 1e9, -1e9, 1e-30, -1e-30];
      const max = float8MaxFinite(kind);
      for (let c = 0; c < 0x80; c++) {
        const v = float8ToFloat32(c, kind);
        const next = float8ToFloat32(c + 1, kind);
        if (Number.isNaN(v)) continue;
        xs.push(v, -v);
        if (Number.isFinite(next)) xs.push((v + next) / 2, -(v + next) / 2);
      }
      const ulpTop = max - float8ToFloat32(float32ToFloat8(max, kind) - 1, kind);
      for (const f of [0.25, 0.5, 0.75, 1, 1.5, 2]) xs.push(max + ulpTop * f, -(max + ulpTop * f));
      const x = Float32Array.from(withNeighbours(xs));
      const got = await castRoundTrip(x, dt, saturate);
      const bad: string[] = [];
      for (let i = 0; i < x.length; i++) {
        const ours = float8ToFloat32(float32ToFloat8(x[i], kind, saturate === 1), kind);
        if (!sameValue(got[i], ours)) bad.push(`${x[i]} → onnxruntime ${got[i]}, ours ${ours}`);
      }
      assert.equal(bad.length, 0, `${bad.length} of ${x.length} values differ, e.g. ${bad.slice(0, 4).join('; ')}`);
    });
  }

test('serializeModel splices large raw_data and writes the same bytes as toBinary (field order, small tensors, unknown fields)', () => {
  const big = (name: string, n: number, extra: Partial<TensorProto> = {}) => ({ ...makeTensor(name, DT.FLOAT, [n], Float32Array.from({ length: n }, (_, i) => Math.sin(i))), ...extra });
  const graph = create(GraphProtoSchema, {
    name: 'g',
    node: [makeNode('Add', ['x', 'w0'], ['y'], 'add')],
    initializer: [
      big('w0', 20000),
      makeTensor('small', DT.INT64, [2], [1, 2]),
      create(TensorProtoSchema, { name: 'typed', dataType: DT.FLOAT, dims: [3n], floatData: [1, 2, 3] }),
      // Fields numbered above raw_data (9): doc_string 12, metadata_props 16.
      big('w1', 70000, { docString: 'after raw_data', metadataProps: [create(StringStringEntryProtoSchema, { key: 'k', value: 'v' })] }),
      big('w2', 16384), // exactly the splice threshold (64 KiB)
    ],
    input: [tensorValueInfo('x', DT.FLOAT, [20000])],
    output: [tensorValueInfo('y', DT.FLOAT, [20000])],
    docString: 'graph fields after the initializers',
  });
  const model = create(ModelProtoSchema, {
    irVersion: 8n,
    producerName: 'test',
    graph,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 17n })],
    metadataProps: [create(StringStringEntryProtoSchema, { key: 'a', value: 'b' })],
  });
  // An unknown field (number 99, varint 7) on the model survives parsing and must be written after the known ones.
  const withUnknown = fromBinary(ModelProtoSchema, Uint8Array.from([...toBinary(ModelProtoSchema, model), 0x98, 0x06, 0x07]));
  for (const m of [model, withUnknown]) {
    const expected = toBinary(ModelProtoSchema, m);
    const got = serializeModel(m);
    assert.ok(Buffer.from(got).equals(Buffer.from(expected)), `bytes differ (${got.length} vs ${expected.length})`);
  }
  assert.ok(withUnknown.$unknown?.length, 'the unknown field was kept by the parser');
});
