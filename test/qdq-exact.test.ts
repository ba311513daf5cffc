/**
 * onnxruntime's QuantizeLinear → DequantizeLinear against the TypeScript reference (src/quant/numerics.ts), bit for
 * bit, on one-node models built here: INT8 per-tensor and per-axis (opset 13), FP8 E4M3FN with a float8 zero point
 * (opset 19). Then each OnnxQuant rule end to end on a small Conv → Relu → Conv → Flatten → Gemm model: every
 * DequantizeLinear output is exact, layer outputs match a TypeScript forward pass within 1e-5 (accumulation order
 * differs), and the calibration pieces (percentile, per-channel minmax axes, FP8 candidate MSE, the planner) are
 * checked against independent computations written in this file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { makeNode, opsetVersion, type AttrValue, tensorValueInfo } from '../src/ir/graph.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { fakeQuantFp8, fakeQuantInt, quantizeInt, roundHalfEven } from '../src/quant/numerics.ts';
import { getRule, type QuantRule } from '../src/quant/rules.ts';
import { planModel } from '../src/quant/plan.ts';
import type { QuantParams, TensorQuantConfig } from '../src/quant/config.ts';
import { Fp8MseObserver, MinMaxObserver, PercentileObserver, FP8_SCALE_CANDIDATES } from '../src/calibrate/observers.ts';
import { calibrateWeights, type Feeds } from '../src/calibrate/calibrate.ts';
import { realiseQdq } from '../src/realise/qdq.ts';
import { quantize } from '../src/quantize.ts';
import { createSession } from '../src/runtime/session.ts';
import { seededRandom } from '../src/runtime/inputs.ts';

const f = Math.fround;

// ---- model building --------------------------------------------------------------------------------------------------

const vi = tensorValueInfo;

function buildModel(nodes: NodeProto[], inputs: ValueInfoProto[], outputs: ValueInfoProto[], initializer: TensorProto[], opset: number): ModelProto {
  return create(ModelProtoSchema, {
    irVersion: BigInt(opset >= 19 ? 9 : 8),
    producerName: 'qdq-exact.test',
    opsetImport: [{ domain: '', version: BigInt(opset) }],
    graph: { name: 'g', node: nodes, input: inputs, output: outputs, initializer },
  });
}

/** x → QuantizeLinear → DequantizeLinear → y; q is an output too for integer types (onnxruntime-node cannot return
 * float8 tensors). */
function qdqModel(dims: number[], scale: number[], zeroPoint: TensorProto, opset: number, axis?: number): ModelProto {
  const perAxis = axis !== undefined;
  const attrs: Record<string, AttrValue> = axis !== undefined ? { axis } : {};
  return buildModel(
    [makeNode('QuantizeLinear', ['x', 's', 'z'], ['q'], 'quant', attrs), makeNode('DequantizeLinear', ['q', 's', 'z'], ['y'], 'dequant', attrs)],
    [vi('x', DT.FLOAT, dims)],
    zeroPoint.dataType === DT.FLOAT8E4M3FN ? [vi('y', DT.FLOAT, dims)] : [vi('y', DT.FLOAT, dims), vi('q', zeroPoint.dataType)],
    [makeTensor('s', DT.FLOAT, perAxis ? [scale.length] : [], Float32Array.from(scale)), zeroPoint],
    opset,
  );
}

async function runOnce(model: ModelProto, feeds: Record<string, Float32Array>, dims: Record<string, number[]>, extra: string[] = []): Promise<Record<string, ort.Tensor>> {
  const session = await createSession(model, { mode: 'simulate', extraOutputs: extra, intraOpThreads: 1 });
  try {
    const ff: Feeds = {};
    for (const [k, v] of Object.entries(feeds)) ff[k] = { dims: dims[k], data: v };
    return await session.run(ff);
  } finally {
    await session.release();
  }
}

// ---- float32 bit helpers and input sets -----------------------------------------------------------------------------

const F = new Float32Array(1);
const U = new Uint32Array(F.buffer);
const bits = (x: number) => ((F[0] = x), U[0]);
const fromBits = (b: number) => ((U[0] = b >>> 0), F[0]);
/** Adjacent float32 values (away from / toward zero by one ulp). */
const nextUp = (x: number) => (x === 0 ? fromBits(1) : x > 0 ? fromBits(bits(x) + 1) : fromBits(bits(x) - 1));
const nextDown = (x: number) => (x === 0 ? -fromBits(1) : x > 0 ? fromBits(bits(x) - 1) : fromBits(bits(x) + 1));

const SPECIALS = [0, -0, 1e-45, -1e-45, 1e-30, -1e-30, 1e30, -1e30, 3.4028234663852886e38, -3.4028234663852886e38, Infinity, -Infinity];

/** Values that exercise integer quantization at scale s: exact ties (k+0.5)·s, their float32 neighbours, integers,
 * the saturation edge, specials, and random values over eight decades. */
function intInputs(s: number, n: number, rnd: () => number): Float32Array {
  const out: number[] = [...SPECIALS];
  for (let k = -140; k <= 140; k++) {
    const t = f((k + 0.5) * s);
    out.push(t, nextUp(t), nextDown(t), f(k * s));
  }
  while (out.length < n) out.push((rnd() * 2 - 1) * 10 ** (rnd() * 8 - 5) * s * 128);
  return Float32Array.from(out.slice(0, n));
}

/** Positive finite E4M3 values, written out independently of src: subnormals m·2^-9, normals (1+m/8)·2^(e−7). */
const E4M3: number[] = [];
for (let e = 0; e < 16; e++)
  for (let m = 0; m < 8; m++) {
    if (e === 15 && m === 7) continue; // NaN
    E4M3.push(e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7));
  }

/** Brute-force E4M3 round to nearest, ties to the even code (index parity = code parity), saturating at 448. */
function refE4M3(v: number, ties: 'even' | 'towardZero' = 'even'): number {
  if (Number.isNaN(v)) return NaN;
  const a = Math.abs(v);
  const sign = v < 0 || Object.is(v, -0) ? -1 : 1;
  let best = 0;
  for (let i = 1; i < E4M3.length; i++) {
    const d = Math.abs(E4M3[i] - a);
    const db = Math.abs(E4M3[best] - a);
    if (d < db || (d === db && ties === 'even' && (best & 1) === 1)) best = i;
  }
  if (a > 448) best = E4M3.length - 1; // saturate (including the 464 tie: 448 is even, 480 does not exist)
  return sign * E4M3[best];
}
const refFakeFp8 = (x: number, s: number) => f(refE4M3(f(x / s)) * s);

function fp8Inputs(s: number, n: number, rnd: () => number): Float32Array {
  const out: number[] = [...SPECIALS];
  for (let i = 0; i < E4M3.length; i++) {
    const v = E4M3[i];
    const mid = i + 1 < E4M3.length ? (v + E4M3[i + 1]) / 2 : 464;
    for (const u of [v, mid]) {
      const t = f(u * s);
      out.push(t, -t, nextUp(t), -nextUp(t), nextDown(t), -nextDown(t));
    }
  }
  for (const m of [440, 447, 448, 449, 463, 464, 465, 479, 480, 481, 500, 1000, 1e6])
    for (const x of [f(m * s), nextUp(f(m * s)), nextDown(f(m * s))]) out.push(x, -x);
  while (out.length < n) out.push((rnd() * 2 - 1) * 10 ** (rnd() * 9 - 6) * s * 448);
  return Float32Array.from(out.slice(0, n));
}

/** Indices where two float32 arrays differ in bits (all NaNs count as equal). */
function bitDiffs(a: Float32Array, b: Float32Array): number[] {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (ua[i] !== ub[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) out.push(i);
  return out;
}

function describe(idx: number[], x: Float32Array, got: Float32Array, want: Float32Array): string {
  return idx
    .slice(0, 8)
    .map((i) => `x=${x[i]} ort=${got[i]} ref=${want[i]}`)
    .join('; ');
}

// ---- one-node QDQ models vs the reference ---------------------------------------------------------------------------

test('INT8 per-tensor QDQ (opset 13): onnxruntime equals fakeQuantInt bit for bit', async () => {
  const rnd = seededRandom(11);
  let mulDiffers = 0;
  let halfUpDiffers = 0;
  for (const [s, z] of [
    [f(0.0173), 0],
    [2 ** -5, 0],
    [f(0.0173), 7],
    [f(3.7), -3],
  ] as const) {
    const n = 50_000;
    const x = intInputs(s, n, rnd);
    const r = await runOnce(qdqModel([n], [s], makeTensor('z', DT.INT8, [], [z]), 13), { x }, { x: [n] });
    const y = r.y.data as Float32Array;
    const q = r.q.data as Int8Array;
    const want = Float32Array.from(x, (v) => fakeQuantInt(v, s, z, -128, 127));
    const wantQ = Int8Array.from(x, (v) => quantizeInt(v, s, z, -128, 127));
    const d = bitDiffs(y, want);
    assert.deepEqual(d, [], `s=${s} z=${z}: ${d.length} outputs differ: ${describe(d, x, y, want)}`);
    assert.deepEqual(q, wantQ, `s=${s} z=${z}: int8 codes`);
    // The set has teeth: x·(1/s) instead of x / s, or Math.round instead of half-even, would differ from onnxruntime.
    const inv = f(1 / s);
    const clip = (v: number) => Math.min(127, Math.max(-128, v));
    x.forEach((v, i) => {
      if (f((clip(roundHalfEven(f(v * inv)) + z) - z) * s) !== y[i]) mulDiffers++;
      if (f((clip(Math.round(f(v / s)) + z) - z) * s) !== y[i]) halfUpDiffers++;
    });
  }
  assert.ok(mulDiffers > 50, `inputs where multiply-by-reciprocal would be wrong: ${mulDiffers}`);
  assert.ok(halfUpDiffers > 500, `inputs where Math.round would be wrong: ${halfUpDiffers}`);
});

test('INT8 QDQ: NaN input — onnxruntime gives qmin, and so does the reference', async () => {
  // onnxruntime's int8 QuantizeLinear turns NaN into qmin (measured: −128 with zero point 3, onnxruntime-node 1.30
  // on x86-64); quantizeInt follows it, so a NaN weight is stored as qmin like onnxruntime would quantize it.
  const x = Float32Array.of(NaN, -NaN, 1);
  const r = await runOnce(qdqModel([3], [0.5], makeTensor('z', DT.INT8, [], [3]), 13), { x }, { x: [3] });
  const q = Array.from(r.q.data as Int8Array);
  assert.equal(q[2], 5);
  assert.equal(quantizeInt(NaN, 0.5, 3, -128, 127), -128);
  assert.deepEqual(q.slice(0, 2), [-128, -128], 'onnxruntime maps NaN to qmin');
});

test('INT8 per-axis QDQ (opset 13) on axis 0 and axis 1: onnxruntime equals fakeQuantInt per channel', async () => {
  const rnd = seededRandom(12);
  const scales = [f(0.0173), 2 ** -5, f(1e-8), f(3.7), f(1 / 3)];
  const C = scales.length;
  const M = 10_000;
  for (const axis of [0, 1]) {
    // axis 0: [C, M]; axis 1: [2, C, M/2] (an outer and an inner stride)
    const dims = axis === 0 ? [C, M] : [2, C, M / 2];
    const inner = axis === 0 ? M : M / 2;
    const x = new Float32Array(C * M);
    const chanOf = (i: number) => Math.floor(i / inner) % C;
    const perChan = scales.map((s) => intInputs(s, M, rnd));
    const used = new Array(C).fill(0);
    for (let i = 0; i < x.length; i++) {
      const c = chanOf(i);
      x[i] = perChan[c][used[c]++];
    }
    const zps = [0, 1, -2, 0, 5];
    const r = await runOnce(qdqModel(dims, scales, makeTensor('z', DT.INT8, [C], zps), 13, axis), { x }, { x: dims });
    const y = r.y.data as Float32Array;
    const want = Float32Array.from(x, (v, i) => fakeQuantInt(v, scales[chanOf(i)], zps[chanOf(i)], -128, 127));
    const d = bitDiffs(y, want);
    assert.deepEqual(d, [], `axis ${axis}: ${d.length} differ: ${describe(d, x, y, want)}`);
  }
});

test('FP8 E4M3FN QDQ (opset 19, float8 zero point): onnxruntime equals fakeQuantFp8 (ties even) bit for bit', async () => {
  const rnd = seededRandom(13);
  let ties = 0;
  for (const s of [2 ** -3, 1, 16, f(0.0173), f(3.7)]) {
    const n = 20_000;
    const x = fp8Inputs(s, n, rnd);
    const z = makeTensor('z', DT.FLOAT8E4M3FN, [], new Uint8Array(1));
    const r = await runOnce(qdqModel([n], [s], z, 19), { x }, { x: [n] }, []);
    const y = r.y.data as Float32Array;
    const want = Float32Array.from(x, (v) => fakeQuantFp8(v, s, 'e4m3fn', 'even'));
    // The reference itself agrees with the brute-force E4M3 rounding written in this file.
    const brute = Float32Array.from(x, (v) => refFakeFp8(v, s));
    assert.deepEqual(bitDiffs(want, brute), [], `s=${s}: fakeQuantFp8 vs brute force`);
    const d = bitDiffs(y, want);
    assert.deepEqual(d, [], `s=${s}: ${d.length} differ: ${describe(d, x, y, want)}`);
    // The exact ties covered (x / s halfway between two E4M3 values, or at 464), so a silent loss of coverage shows.
    const isTie = (v: number) => {
      const a = Math.abs(f(v / s));
      if (a === 464) return true;
      const i = E4M3.findIndex((e) => e > a);
      return i > 0 && a - E4M3[i - 1] === E4M3[i] - a;
    };
    const tieIdx = new Set<number>();
    x.forEach((v, i) => isTie(v) && tieIdx.add(i));
    ties += tieIdx.size;
    // PPQ's CUDA kernel rounds ties toward zero: onnxruntime differs from that rule on exactly the ties whose lower
    // neighbour has an odd code (and on no other input).
    const tz = Float32Array.from(x, (v) => fakeQuantFp8(v, s, 'e4m3fn', 'towardZero'));
    const dTz = bitDiffs(y, tz);
    assert.ok(dTz.length > 0);
    for (const i of dTz) assert.ok(tieIdx.has(i), `s=${s}: ORT vs towardZero differ off a tie at x=${x[i]}`);
    const oddTies = [...tieIdx].filter((i) => Math.abs(want[i]) > Math.abs(tz[i]));
    assert.deepEqual(dTz, oddTies.sort((a, b) => a - b));
  }
  assert.ok(ties > 1000, `exact ties tested: ${ties}`);
});

// ---- end to end per rule --------------------------------------------------------------------------------------------

const N = 2;
const X_DIMS = [N, 3, 8, 8];

interface ConvSpec {
  w: Float32Array;
  wDims: number[];
  b: Float32Array;
  stride: number;
  pad: number;
}

function randArr(rnd: () => number, n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * scale);
}

function e2eModel(): { model: ModelProto; conv1: ConvSpec; conv2: ConvSpec; w3: Float32Array; b3: Float32Array } {
  const rnd = seededRandom(2024);
  const conv1: ConvSpec = { w: randArr(rnd, 4 * 3 * 9, 0.5), wDims: [4, 3, 3, 3], b: randArr(rnd, 4, 0.1), stride: 1, pad: 1 };
  // One output channel of conv1 gets much smaller weights so per-channel scales differ a lot.
  for (let i = 0; i < 27; i++) conv1.w[27 + i] *= 0.01;
  const conv2: ConvSpec = { w: randArr(rnd, 6 * 4 * 9, 0.3), wDims: [6, 4, 3, 3], b: randArr(rnd, 6, 0.1), stride: 2, pad: 1 };
  const w3 = randArr(rnd, 10 * 96, 0.2);
  const b3 = randArr(rnd, 10, 0.1);
  const model = buildModel(
    [
      makeNode('Conv', ['x', 'W1', 'B1'], ['c1'], 'conv1', { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [1, 1] }),
      makeNode('Relu', ['c1'], ['r1'], 'relu'),
      makeNode('Conv', ['r1', 'W2', 'B2'], ['c2'], 'conv2', { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] }),
      makeNode('Flatten', ['c2'], ['fl'], 'flatten', { axis: 1 }),
      makeNode('Gemm', ['fl', 'W3', 'B3'], ['y'], 'gemm', { transB: 1 }),
    ],
    [vi('x', DT.FLOAT, X_DIMS)],
    [vi('y', DT.FLOAT, [N, 10])],
    [
      makeTensor('W1', DT.FLOAT, conv1.wDims, conv1.w),
      makeTensor('B1', DT.FLOAT, [4], conv1.b),
      makeTensor('W2', DT.FLOAT, conv2.wDims, conv2.w),
      makeTensor('B2', DT.FLOAT, [6], conv2.b),
      makeTensor('W3', DT.FLOAT, [10, 96], w3),
      makeTensor('B3', DT.FLOAT, [10], b3),
    ],
    13,
  );
  return { model, conv1, conv2, w3, b3 };
}

/** NCHW conv, float64 accumulation then float32. */
function conv2d(x: Float32Array, xDims: number[], w: Float32Array, wDims: number[], b: Float32Array, stride: number, pad: number): { data: Float32Array; dims: number[] } {
  const [n, c, h, wd] = xDims;
  const [o, ci, kh, kw] = wDims;
  assert.equal(ci, c);
  const oh = Math.floor((h + 2 * pad - kh) / stride) + 1;
  const ow = Math.floor((wd + 2 * pad - kw) / stride) + 1;
  const out = new Float32Array(n * o * oh * ow);
  for (let b0 = 0; b0 < n; b0++)
    for (let oc = 0; oc < o; oc++)
      for (let y = 0; y < oh; y++)
        for (let xx = 0; xx < ow; xx++) {
          let acc = b[oc];
          for (let ic = 0; ic < c; ic++)
            for (let i = 0; i < kh; i++)
              for (let j = 0; j < kw; j++) {
                const iy = y * stride - pad + i;
                const ix = xx * stride - pad + j;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                acc += x[((b0 * c + ic) * h + iy) * wd + ix] * w[((oc * ci + ic) * kh + i) * kw + j];
              }
          out[((b0 * o + oc) * oh + y) * ow + xx] = acc;
        }
  return { data: out, dims: [n, o, oh, ow] };
}

/** y = a · bᵀ + c with a [M, K], b [N, K]. */
function gemmTransB(a: Float32Array, M: number, K: number, bm: Float32Array, Nn: number, c: Float32Array): Float32Array {
  const out = new Float32Array(M * Nn);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < Nn; j++) {
      let acc = c[j];
      for (let k = 0; k < K; k++) acc += a[i * K + k] * bm[j * K + k];
      out[i * Nn + j] = acc;
    }
  return out;
}

/** Fake quantization with a tensor's parameters (per channel along p.axis when set). */
function fakeQuant(x: Float32Array, dims: readonly number[], cfg: TensorQuantConfig, p: QuantParams): Float32Array {
  const axis = p.axis;
  const C = axis === undefined ? 1 : dims[axis];
  const inner = axis === undefined ? x.length : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  return Float32Array.from(x, (v, i) => {
    const c = C === 1 ? 0 : Math.floor(i / inner) % C;
    return cfg.format === 'int' ? fakeQuantInt(v, p.scale[c], p.zeroPoint[c], cfg.qmin, cfg.qmax) : fakeQuantFp8(v, p.scale[c], 'e4m3fn', 'even');
  });
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

/** |a − b| ≤ rtol · max|b| element-wise. */
function assertClose(a: Float32Array, b: Float32Array, rtol: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  const tol = rtol * maxAbs(b) + 1e-30;
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  assert.ok(worst <= tol, `${what}: max |ref − ort| = ${worst} > ${tol}`);
}

async function* batches(count: number, seed: number): AsyncGenerator<Feeds> {
  const rnd = seededRandom(seed);
  const n = X_DIMS.reduce((a, b) => a * b, 1);
  for (let b = 0; b < count; b++) yield { x: { dims: X_DIMS, data: Float32Array.from({ length: n }, () => (rnd() + rnd() + rnd() - 1.5) * 2) } };
}

const flipReport: Record<string, number> = {};

for (const ruleName of ['onnxquant-int8-perchannel', 'onnxquant-int8-pot', 'onnxquant-fp8']) {
  test(`end to end ${ruleName}: DequantizeLinear outputs exact, layers match a TypeScript forward pass`, async () => {
    const rule = getRule(ruleName);
    const { model, conv1, conv2, w3, b3 } = e2eModel();
    const calib: Float32Array[] = [];
    for await (const b of batches(4, 99)) calib.push(b.x.data as Float32Array);
    const result = await quantize(model, batches(6, 99), { rule, steps: 4, intraOpThreads: 1 });
    assert.equal(result.batches, 4);
    const opset = opsetVersion(result.model);
    assert.ok(opset >= rule.minOpset, `opset ${opset} ≥ ${rule.minOpset}`);
    if (rule.activation.format === 'fp8e4m3') assert.ok(opset >= 19);
    else assert.ok(opset >= 13);

    // The plan: x, r1, fl as activations; W1, W2, W3 as weights (per-channel axis 0 under the per-channel rule).
    const byTensor = new Map(result.plan.tensors.map((t) => [t.tensor, t]));
    assert.deepEqual([...byTensor.keys()].sort(), ['W1', 'W2', 'W3', 'fl', 'r1', 'x']);
    for (const w of ['W1', 'W2', 'W3']) assert.equal(byTensor.get(w)!.axis, rule.weight.perChannel ? 0 : undefined, `${w} axis`);
    const params = (t: string) => result.params.get(byTensor.get(t)!.key)!;
    if (rule.weight.perChannel) {
      // conv1's second output channel has 100× smaller weights: its own scale.
      const s1 = params('W1').scale;
      assert.equal(s1.length, 4);
      assert.ok(s1[1] < 0.05 * s1[0], `per-channel scales ${Array.from(s1)}`);
    } else for (const w of ['W1', 'W2', 'W3']) assert.equal(params(w).scale.length, 1);
    if (rule.weight.pow2) for (const t of byTensor.keys()) for (const v of params(t).scale) assert.equal(2 ** Math.round(Math.log2(v)), v, `${t} pow2`);
    // The sidecar records the same parameters.
    for (const st of result.sidecar.tensors) {
      const p = params(st.tensor);
      assert.deepEqual(st.scale, Array.from(p.scale), `sidecar scale of ${st.tensor}`);
      assert.deepEqual(st.zeroPoint, Array.from(p.zeroPoint));
    }

    // Activation parameters of the graph input x, recomputed independently from the 4 calibration batches.
    const px = params('x');
    if (rule.activation.observer === 'percentile') {
      let lo = 0;
      let hi = 0;
      for (const d of calib) {
        const s = Float64Array.from(d).sort();
        const n = s.length;
        lo += s[Math.floor(n * (1 - 0.9999))];
        hi += s[Math.min(Math.floor(n * 0.9999), n - 1)];
      }
      lo /= 4;
      hi /= 4;
      let s = Math.max((2 * Math.max(Math.abs(Math.min(lo, 0)), Math.max(hi, 0))) / 255, 1e-8);
      if (rule.activation.pow2) s = 2 ** Math.ceil(Math.log2(s));
      assert.equal(px.scale[0], f(s), 'scale of x');
      assert.equal(px.min[0], f(lo));
      assert.equal(px.max[0], f(hi));
    } else {
      assert.equal(px.scale[0], bruteFp8Scale(calib), 'FP8 scale of x (brute-force least MSE)');
    }

    // Calibration order: r1's statistics come from the network with fake-quantized weights and float activations.
    // Recompute r1 on the calibration batches with the reference conv, once with quantized W1 and once with float
    // W1; the observed range must match the former (within accumulation-order tolerance) and not the latter.
    {
      const w1q = fakeQuant(conv1.w, conv1.wDims, byTensor.get('W1')!.config, params('W1'));
      const range = (w: Float32Array) => {
        let lo = 0;
        let hi = 0;
        let mn = Infinity;
        let mx = -Infinity;
        for (const d of calib) {
          const r = conv2d(d, X_DIMS, w, conv1.wDims, conv1.b, 1, 1).data.map((v) => (v > 0 ? v : 0));
          let bmn = Infinity;
          let bmx = -Infinity;
          for (const v of r) {
            bmn = Math.min(bmn, v);
            bmx = Math.max(bmx, v);
          }
          lo += bmn; // n = 512: the 0.0001 / 0.9999 quantiles are the batch min / max
          hi += bmx;
          mn = Math.min(mn, bmn);
          mx = Math.max(mx, bmx);
        }
        return rule.activation.observer === 'percentile' ? [lo / calib.length, hi / calib.length] : [mn, mx];
      };
      const [qlo, qhi] = range(w1q);
      const [, fhi] = range(conv1.w);
      const pr = params('r1');
      assert.equal(pr.min[0], f(qlo));
      assert.ok(Math.abs(pr.max[0] - qhi) <= 1e-5 * qhi, `r1 max ${pr.max[0]} vs reference with quantized weights ${qhi}`);
      assert.ok(Math.abs(pr.max[0] - fhi) > 1e-5 * fhi, `r1 max ${pr.max[0]} must not be the float-weight statistic ${fhi}`);
    }

    // Find each DequantizeLinear output feeding the layers.
    const nodes = new Map(result.model.graph!.node.map((n) => [n.name, n]));
    const dqOf = (layer: string, input: number) => nodes.get(layer)!.input[input];
    const dq = { x: dqOf('conv1', 0), W1: dqOf('conv1', 1), r1: dqOf('conv2', 0), W2: dqOf('conv2', 1), fl: dqOf('gemm', 0), W3: dqOf('gemm', 1) };
    for (const [k, v] of Object.entries(dq)) {
      assert.notEqual(v, k, `${k} goes through a DequantizeLinear`);
      assert.equal(result.model.graph!.node.find((n) => n.output[0] === v)?.opType, 'DequantizeLinear');
    }
    const session = await createSession(result.model, { mode: 'simulate', extraOutputs: [...Object.values(dq), 'c1', 'r1', 'c2', 'fl'], intraOpThreads: 1 });
    const rnd = seededRandom(7);
    const xin = Float32Array.from({ length: X_DIMS.reduce((a, b) => a * b, 1) }, () => (rnd() * 2 - 1) * 2.5);
    const out = await session.run({ x: { dims: X_DIMS, data: xin } });
    await session.release();
    const get = (name: string) => out[name].data as Float32Array;
    const cfgOf = (t: string) => byTensor.get(t)!.config;
    const exact = (name: string, got: Float32Array, want: Float32Array) => {
      const d = bitDiffs(got, want);
      assert.deepEqual(d, [], `${ruleName} ${name}: ${d.length} of ${got.length} DequantizeLinear outputs differ`);
    };

    // 1. Weights: DequantizeLinear(stored codes) = fake-quant of the float weights, exactly.
    const w1q = fakeQuant(conv1.w, conv1.wDims, cfgOf('W1'), params('W1'));
    const w2q = fakeQuant(conv2.w, conv2.wDims, cfgOf('W2'), params('W2'));
    const w3q = fakeQuant(w3, [10, 96], cfgOf('W3'), params('W3'));
    exact('W1', get(dq.W1), w1q);
    exact('W2', get(dq.W2), w2q);
    exact('W3', get(dq.W3), w3q);

    // 2. Activations: DequantizeLinear output = fake-quant of onnxruntime's own float tensor, exactly.
    exact('x', get(dq.x), fakeQuant(xin, X_DIMS, cfgOf('x'), params('x')));
    exact('r1', get(dq.r1), fakeQuant(get('r1'), [N, 4, 8, 8], cfgOf('r1'), params('r1')));
    exact('fl', get(dq.fl), fakeQuant(get('fl'), [N, 96], cfgOf('fl'), params('fl')));

    // 3. A TypeScript forward pass. Each layer is fed the (verified) quantized tensors; its float output must agree
    // with onnxruntime within 1e-5 of the tensor's range, and the reference's own quantization of that output must
    // give the same DequantizeLinear values except where the accumulation-order difference straddles a rounding
    // boundary ("flips", counted and reported).
    const xq = fakeQuant(xin, X_DIMS, cfgOf('x'), params('x'));
    const c1 = conv2d(xq, X_DIMS, w1q, conv1.wDims, conv1.b, 1, 1);
    assertClose(c1.data, get('c1'), 1e-5, 'c1');
    const r1 = c1.data.map((v) => (v > 0 ? v : 0));
    let flips = checkQuantized('r1', r1, get('r1'), get(dq.r1), c1.dims, cfgOf('r1'), params('r1'));
    const c2 = conv2d(get(dq.r1), c1.dims, w2q, conv2.wDims, conv2.b, 2, 1);
    assertClose(c2.data, get('c2'), 1e-5, 'c2');
    flips += checkQuantized('fl', c2.data, get('fl'), get(dq.fl), [N, 96], cfgOf('fl'), params('fl'));
    const y = gemmTransB(get(dq.fl), N, 96, w3q, 10, b3);
    assertClose(y, get('y'), 1e-5, 'y');
    flipReport[ruleName] = flips;

    // 4. The fully independent chain (reference quantization all the way) gives the same y when nothing flipped.
    if (flips === 0) {
      const r1q = fakeQuant(r1, c1.dims, cfgOf('r1'), params('r1'));
      const c2r = conv2d(r1q, c1.dims, w2q, conv2.wDims, conv2.b, 2, 1);
      const flq = fakeQuant(c2r.data, [N, 96], cfgOf('fl'), params('fl'));
      assertClose(gemmTransB(flq, N, 96, w3q, 10, b3), get('y'), 1e-5, 'y (independent chain)');
    }
  });
}

/** Reference pre-quantization values agree with onnxruntime's; their quantization agrees except at explained flips. */
function checkQuantized(name: string, ref: Float32Array, ortFloat: Float32Array, ortDq: Float32Array, dims: number[], cfg: TensorQuantConfig, p: QuantParams): number {
  assertClose(ref, ortFloat, 1e-5, `${name} (float)`);
  const refDq = fakeQuant(ref, dims, cfg, p);
  const tol = 1e-5 * maxAbs(ortFloat);
  let flips = 0;
  for (const i of bitDiffs(refDq, ortDq)) {
    // A flip is legitimate only when a rounding boundary lies within the tolerance band around the reference value.
    const lo = fakeQuant(Float32Array.of(ref[i] - tol), [1], cfg, { ...p, axis: undefined });
    const hi = fakeQuant(Float32Array.of(ref[i] + tol), [1], cfg, { ...p, axis: undefined });
    assert.notEqual(lo[0], hi[0], `${name}[${i}]: reference ${ref[i]} → ${refDq[i]}, onnxruntime ${ortFloat[i]} → ${ortDq[i]}, no boundary nearby`);
    flips++;
  }
  return flips;
}

test('end to end: accumulation-order flips at quantization boundaries (reported)', () => {
  // Informational: how many quantized activations differ between the TS reference chain and onnxruntime because a
  // ~1-ulp accumulation difference straddled a rounding boundary. Every such case was checked to be explained.
  console.log(`# accumulation-order flips per rule: ${JSON.stringify(flipReport)}`);
  for (const v of Object.values(flipReport)) assert.ok(v <= 2, JSON.stringify(flipReport));
});

// ---- observers and the planner --------------------------------------------------------------------------------------

/** FP8 scale by brute force: least sum of squared round-trip error over all values, ties to the smaller scale. */
function bruteFp8Scale(batchesData: Float32Array[]): number {
  const cands = [2 ** -7, 2 ** -5, 2 ** -3, 1, 4, 16, 64];
  let best = -1;
  let bestErr = Infinity;
  for (let c = 0; c < cands.length; c++) {
    let err = 0;
    for (const d of batchesData)
      for (const v of d) {
        const e = refFakeFp8(v, cands[c]) - v;
        err += e * e;
      }
    if (err < bestErr) {
      bestErr = err;
      best = c;
    }
  }
  return cands[best];
}

test('percentile observer equals a sort-based reference averaged over batches', () => {
  const rnd = seededRandom(5);
  for (const p of [0.9999, 0.99, 0.5]) {
    const cfg = { ...getRule('onnxquant-int8-perchannel').activation, percentile: p };
    const obs = new PercentileObserver(cfg);
    let lo = 0;
    let hi = 0;
    const B = 3;
    for (let b = 0; b < B; b++) {
      const n = 30_001 + b * 7;
      const d = Float32Array.from({ length: n }, () => (rnd() - 0.4) * 8 * rnd() ** 3);
      obs.observe(d);
      const s = Float64Array.from(d).sort();
      lo += s[Math.floor(n * (1 - p))];
      hi += s[Math.min(Math.floor(n * p), n - 1)];
    }
    const par = obs.params();
    assert.equal(par.min[0], f(lo / B), `p=${p} min`);
    assert.equal(par.max[0], f(hi / B), `p=${p} max`);
    const mn = Math.min(lo / B, 0);
    const mx = Math.max(hi / B, 0);
    assert.equal(par.scale[0], f(Math.max((2 * Math.max(-mn, mx)) / 255, 1e-8)), `p=${p} scale`);
  }
});

function convModel(op: 'Conv' | 'ConvTranspose', wDims: number[], w: Float32Array): ModelProto {
  return buildModel(
    [makeNode(op, ['x', 'W'], ['y'], 'layer', { kernel_shape: wDims.slice(2) })],
    [vi('x', DT.FLOAT, [1, op === 'Conv' ? wDims[1] : wDims[0], 5, 5])],
    [vi('y', DT.FLOAT)],
    [makeTensor('W', DT.FLOAT, wDims, w)],
    13,
  );
}

test('per-channel minmax: Conv weights per output channel (axis 0), ConvTranspose per output channel (axis 1)', () => {
  const rule = getRule('onnxquant-int8-perchannel');
  const rnd = seededRandom(8);
  for (const [op, wDims, axis] of [
    ['Conv', [5, 3, 2, 2], 0],
    ['ConvTranspose', [3, 6, 2, 2], 1],
  ] as const) {
    const n = wDims.reduce((a, b) => a * b, 1);
    // Each channel along the output axis gets its own magnitude.
    const w = new Float32Array(n);
    const dims = [...wDims];
    for (let i = 0; i < n; i++) {
      const idx = [Math.floor(i / (dims[1] * 4)), Math.floor(i / 4) % dims[1]];
      w[i] = (rnd() * 2 - 1) * (1 + idx[axis]) * 0.3;
    }
    const model = convModel(op, dims, w);
    const plan = planModel(model, rule);
    const wt = plan.tensors.find((t) => t.role === 'weight')!;
    assert.equal(wt.axis, axis, `${op} axis`);
    const p = calibrateWeights(model, plan).get(wt.key)!;
    assert.equal(p.axis, axis);
    const C = dims[axis];
    assert.equal(p.scale.length, C);
    for (let c = 0; c < C; c++) {
      let mn = 0;
      let mx = 0;
      for (let i = 0; i < n; i++) {
        const ch = axis === 0 ? Math.floor(i / (dims[1] * 4)) : Math.floor(i / 4) % dims[1];
        if (ch !== c) continue;
        mn = Math.min(mn, w[i]);
        mx = Math.max(mx, w[i]);
      }
      assert.equal(p.scale[c], f((2 * Math.max(-mn, mx)) / 255), `${op} channel ${c}`);
    }
    // The channels really differ (the test would not notice a per-tensor scale otherwise).
    assert.ok(p.scale[C - 1] > 1.5 * p.scale[0]);
    // MinMaxObserver directly: the same numbers.
    const o = new MinMaxObserver(rule.weight, axis);
    o.observe(w, dims);
    assert.deepEqual(o.params().scale, p.scale);
  }
});

test('Gemm weight axis with transB, and MatMul: PPQ axis 0 vs the output axis', () => {
  const ppq = getRule('onnxquant-int8-perchannel');
  const output: QuantRule = { ...ppq, matmulWeightAxis: 'output' };
  const gemm = (transB: number, wDims: number[], op = 'Gemm') =>
    buildModel(
      [makeNode(op, ['x', 'W'], ['y'], 'layer', op === 'Gemm' ? { transB } : {})],
      [vi('x', DT.FLOAT, [2, 8])],
      [vi('y', DT.FLOAT)],
      [makeTensor('W', DT.FLOAT, wDims, new Float32Array(wDims[0] * wDims[1]).fill(0.5))],
      13,
    );
  const axisOf = (m: ModelProto, r: QuantRule) => planModel(m, r).tensors.find((t) => t.role === 'weight')!.axis;
  assert.equal(axisOf(gemm(1, [4, 8]), ppq), 0, 'Gemm transB=1 [N,K]: PPQ axis 0 (= output channel)');
  assert.equal(axisOf(gemm(1, [4, 8]), output), 0);
  assert.equal(axisOf(gemm(0, [8, 4]), ppq), 0, 'Gemm transB=0 [K,N]: PPQ still axis 0');
  assert.equal(axisOf(gemm(0, [8, 4]), output), 1, 'Gemm transB=0: output axis 1');
  assert.equal(axisOf(gemm(0, [8, 4], 'MatMul'), ppq), 0);
  assert.equal(axisOf(gemm(0, [8, 4], 'MatMul'), output), 1);
  // Per-tensor rule: no axis.
  assert.equal(axisOf(gemm(1, [4, 8]), getRule('onnxquant-int8-pot')), undefined);
});

test('planner: a weight shared by two Convs is one entry with two uses, one DequantizeLinear feeding both', async () => {
  const rule = getRule('onnxquant-int8-perchannel');
  const w = Float32Array.from({ length: 4 * 3 * 9 }, (_, i) => Math.sin(i));
  const model = buildModel(
    [
      makeNode('Conv', ['x', 'W'], ['a'], 'convA', { kernel_shape: [3, 3] }),
      makeNode('Conv', ['x', 'W'], ['b'], 'convB', { kernel_shape: [3, 3], dilations: [1, 1] }),
      makeNode('Add', ['a', 'b'], ['y'], 'add'),
    ],
    [vi('x', DT.FLOAT, [1, 3, 6, 6])],
    [vi('y', DT.FLOAT)],
    [makeTensor('W', DT.FLOAT, [4, 3, 3, 3], w)],
    13,
  );
  const plan = planModel(model, rule);
  const weights = plan.tensors.filter((t) => t.role === 'weight');
  assert.equal(weights.length, 1);
  assert.equal(weights[0].tensor, 'W');
  assert.deepEqual(
    weights[0].uses.map((u) => [u.node, u.input]),
    [
      ['convA', 1],
      ['convB', 1],
    ],
  );
  const acts = plan.tensors.filter((t) => t.role === 'activation');
  assert.equal(acts.length, 1, 'the shared input x too');
  assert.equal(acts[0].uses.length, 2);
  const params = calibrateWeights(model, plan);
  params.set(acts[0].key, { scale: Float32Array.of(0.05), zeroPoint: Int32Array.of(0), min: Float32Array.of(-1), max: Float32Array.of(1) });
  const q = realiseQdq(model, plan, params);
  const [ca, cb] = ['convA', 'convB'].map((n) => q.graph!.node.find((x) => x.name === n)!);
  assert.equal(ca.input[1], cb.input[1]);
  assert.equal(q.graph!.node.filter((n) => n.opType === 'DequantizeLinear').length, 2, 'one for W, one for x');
  assert.equal(q.graph!.node.filter((n) => n.opType === 'QuantizeLinear').length, 1);
  const x = Float32Array.from({ length: 108 }, (_, i) => Math.cos(i));
  const r = await runOnce(q, { x }, { x: [1, 3, 6, 6] });
  assert.deepEqual(r.y.dims, [1, 4, 4, 4]);
});

test('planner: MatMul of two activations quantizes both inputs as activations', async () => {
  const rule = getRule('onnxquant-int8-pot');
  const model = buildModel(
    [makeNode('MatMul', ['a', 'b'], ['y'], 'mm')],
    [vi('a', DT.FLOAT, [3, 4]), vi('b', DT.FLOAT, [4, 5])],
    [vi('y', DT.FLOAT, [3, 5])],
    [],
    13,
  );
  const plan = planModel(model, rule);
  assert.deepEqual(
    plan.tensors.map((t) => [t.tensor, t.role, t.uses[0].input]),
    [
      ['a', 'activation', 0],
      ['b', 'activation', 1],
    ],
  );
  const res = await quantize(
    model,
    (async function* () {
      const rnd = seededRandom(3);
      for (let i = 0; i < 2; i++)
        yield { a: { dims: [3, 4], data: Float32Array.from({ length: 12 }, () => rnd() - 0.5) }, b: { dims: [4, 5], data: Float32Array.from({ length: 20 }, () => rnd() * 3) } };
    })(),
    { rule },
  );
  const mm = res.model.graph!.node.find((n) => n.name === 'mm')!;
  for (const i of [0, 1]) assert.equal(res.model.graph!.node.find((n) => n.output[0] === mm.input[i])?.opType, 'DequantizeLinear');
});

test('FP8 observer: the shared in-window error equals a round trip per candidate, value by value and summed', () => {
  const cfg = getRule('onnxquant-fp8').activation;
  const rnd = seededRandom(77);
  const values: number[] = [0, -0, 448, -448, 464, 480, 2 ** -6, 2 ** -9, 2 ** -13, 2 ** -16, 28672, 28673, 1e-30, 3e38, NaN];
  // Every candidate's window edges (2^-6·S, 448·S) and a float32 ulp either side, and magnitudes over 30 binades.
  for (const S of FP8_SCALE_CANDIDATES) for (const edge of [2 ** -7 * S, 2 ** -6 * S, 448 * S, 464 * S]) values.push(edge, Math.fround(edge * (1 + 2 ** -23)), Math.fround(edge * (1 - 2 ** -24)));
  for (let i = 0; i < 5000; i++) values.push((rnd() * 2 - 1) * 2 ** (rnd() * 30 - 18));
  const data = Float32Array.from(values);
  const errors = (v: number) => FP8_SCALE_CANDIDATES.map((S) => (refFakeFp8(v, S) - v) ** 2);
  // One value per observer: a sum would hide a small value's error under a large one's.
  let differ = 0;
  for (const v of data) {
    const o = new Fp8MseObserver(cfg, true);
    o.observe(Float32Array.of(v));
    if (!isDeepStrictEqual(o.squaredErrors(), errors(v)) && differ++ < 3) assert.fail(`x=${v}: ${o.squaredErrors()} vs ${errors(v)}`);
  }
  // And the running sums, in the same order.
  const all = new Fp8MseObserver(cfg, true);
  const finite = data.filter((v) => Math.abs(v) < 1e6);
  all.observe(finite);
  assert.deepEqual(all.squaredErrors(), FP8_SCALE_CANDIDATES.map((_, c) => finite.reduce((sum, v) => sum + errors(v)[c], 0)));
});

test('FP8 observer picks the least-MSE candidate (brute force) and breaks ties toward the smaller scale', () => {
  const cfg = getRule('onnxquant-fp8').weight;
  const scaleOf = (d: Float32Array) => {
    const o = new Fp8MseObserver(cfg, true);
    o.observe(d);
    return o.params().scale[0];
  };
  assert.deepEqual([...FP8_SCALE_CANDIDATES], [2 ** -7, 2 ** -5, 2 ** -3, 1, 4, 16, 64]);
  const rnd = seededRandom(21);
  for (const mag of [0.01, 0.3, 2, 40, 900, 20000]) {
    const d = Float32Array.from({ length: 17 }, () => (rnd() * 2 - 1) * mag * rnd());
    assert.equal(scaleOf(d), bruteFp8Scale([d]), `magnitude ${mag}`);
  }
  // Every candidate represents these exactly (zero error): the smallest scale wins.
  assert.equal(scaleOf(Float32Array.of(1, 0.5, -0.25)), 2 ** -7);
  assert.equal(scaleOf(new Float32Array(5)), 2 ** -7);
  // 300: scales 2^-7 … 2^-3 saturate; under 1, 4, 16, 64 the error is 12 each (300 → 288, 75 → 72, 18.75 → 18,
  // 4.6875 → 4.5): a four-way tie, and the smallest of them, 1, wins.
  for (const s of [1, 4, 16, 64]) assert.equal(Math.abs(refFakeFp8(300, s) - 300), 12);
  assert.equal(scaleOf(Float32Array.of(300)), 1);
  assert.equal(bruteFp8Scale([Float32Array.of(300)]), 1);
});
