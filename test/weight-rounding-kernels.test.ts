/**
 * Weight rounding's kernels. Its features (optimise/weight-rounding.ts `featureGatherer`) (optimise/weight-rounding.ts `featureGatherer`): the receptive field of each sampled
 * output position, as onnxruntime's own Conv reads it. The reference is onnxruntime: at every position the features
 * dotted with the Conv's weights must give the Conv's output there, for strides, dilations, explicit and automatic
 * padding, groups and a 1-D Conv; a tap in the padding must be zero, and the quantized side must come from x̂. Its
 * moment sums (linalg.ts `dotRows`) must be the very numbers of one plain loop per row: the pass's results are
 * compared across versions bit for bit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, type ModelProto } from 'onnx-buf';
import { makeNode, tensorValueInfo, type AttrValue } from '../src/ir/graph.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { seededRandom } from '../src/runtime/inputs.ts';
import { createSession } from '../src/runtime/session.ts';
import { featureGatherer } from '../src/optimise/weight-rounding.ts';
import { dotRows } from '../src/optimise/linalg.ts';

interface ConvCase {
  name: string;
  x: number[];
  w: number[];
  group: number;
  strides: number[];
  dilations: number[];
  pads?: number[];
  autoPad?: string;
}

const CASES: ConvCase[] = [
  { name: 'stride 2, dilation 2, uneven pads, 3×2 kernel', x: [2, 4, 9, 7], w: [6, 4, 3, 2], group: 1, strides: [2, 1], dilations: [2, 2], pads: [1, 0, 2, 1] },
  { name: 'two groups', x: [1, 6, 6, 6], w: [4, 3, 3, 3], group: 2, strides: [1, 1], dilations: [1, 1], pads: [1, 1, 1, 1] },
  { name: 'depthwise, stride 2', x: [2, 5, 7, 8], w: [5, 1, 3, 3], group: 5, strides: [2, 2], dilations: [1, 1], pads: [1, 1, 1, 1] },
  { name: 'SAME_UPPER, stride 2', x: [1, 3, 7, 6], w: [2, 3, 4, 3], group: 1, strides: [2, 2], dilations: [1, 1], autoPad: 'SAME_UPPER' },
  { name: 'SAME_LOWER', x: [1, 2, 5, 5], w: [3, 2, 2, 2], group: 1, strides: [1, 1], dilations: [1, 1], autoPad: 'SAME_LOWER' },
  { name: '1-D, stride 3, dilation 2', x: [2, 3, 20], w: [4, 3, 3], group: 1, strides: [3], dilations: [2], pads: [2, 1] },
];

const random = (n: number, seed: number) => {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
};
const size = (d: number[]) => d.reduce((a, b) => a * b, 1);

function convModel(c: ConvCase, w: Float32Array): ModelProto {
  const attrs: Record<string, AttrValue> = { group: c.group, strides: c.strides, dilations: c.dilations };
  if (c.autoPad) attrs.auto_pad = c.autoPad;
  else attrs.pads = c.pads!;
  return create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [{ domain: '', version: 17n }],
    graph: {
      name: 'conv',
      node: [makeNode('Conv', ['x', 'w'], ['y'], 'conv', attrs)],
      initializer: [makeTensor('w', DT.FLOAT, c.w, w)],
      input: [tensorValueInfo('x', DT.FLOAT, c.x)],
      output: [tensorValueInfo('y', DT.FLOAT, [])],
    },
  });
}

for (const c of CASES)
  test(`features of a Conv (${c.name}) dotted with its weights give onnxruntime's Conv output at every position`, async () => {
    const rank = c.w.length - 2;
    const x = random(size(c.x), 1);
    const xq = x.map((v) => v * 3); // the quantized side: another tensor of the same shape
    const w = random(size(c.w), 2);
    const s = await createSession(convModel(c, w), { mode: 'float' });
    const y = (await s.run({ x: { dims: c.x, data: x } }))['y'];
    await s.release();
    const yData = y.data as Float32Array;
    const layer = {
      op: 'Conv' as const,
      groups: c.group,
      k: size(c.w.slice(1)),
      conv: { strides: c.strides, dilations: c.dilations, kernel: c.w.slice(2), autoPad: c.autoPad ?? 'NOTSET', pads: c.pads ?? Array(2 * rank).fill(0) },
    };
    const { P, S, gather } = featureGatherer(layer, { dims: c.x, data: x }, xq);
    assert.equal(S, size(y.dims.slice(2)), 'output positions per image');
    assert.equal(P, c.x[0] * S, 'positions');
    const O = c.w[0];
    const perGroup = O / c.group;
    // Every position, in a shuffled order (the picks need not be sorted): a stride coprime with P.
    const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);
    const m = [7, 11, 13, 17].find((v) => gcd(v, P) === 1)!;
    const picks = Int32Array.from({ length: P }, (_, i) => (i * m) % P);
    assert.equal(new Set(picks).size, P);
    const k = layer.k;
    const dst = new Float32Array(k * P);
    const dq = new Float32Array(k * P);
    let zeros = 0;
    for (let g = 0; g < c.group; g++) {
      gather(g, picks, dst, dq);
      for (let p = 0; p < P; p++)
        for (let r = 0; r < perGroup; r++) {
          const o = g * perGroup + r;
          let sum = 0;
          let sumQ = 0;
          for (let j = 0; j < k; j++) {
            sum += w[o * k + j] * dst[j * P + p];
            sumQ += w[o * k + j] * dq[j * P + p];
          }
          const pos = picks[p];
          const want = yData[(Math.floor(pos / S) * O + o) * S + (pos % S)];
          assert.ok(Math.abs(sum - want) <= 1e-5 * (1 + Math.abs(want)), `group ${g} channel ${o} position ${pos}: ${sum} vs ${want}`);
          // x̂ = 3x, and the padding is zero on both sides.
          assert.ok(Math.abs(sumQ - 3 * want) <= 3e-5 * (1 + Math.abs(want)), `x̂ side, channel ${o} position ${pos}`);
        }
      for (let i = 0; i < dst.length; i++) if (dst[i] === 0) zeros++;
    }
    if (c.autoPad !== 'SAME_LOWER' || c.w[2] > 1) assert.ok(zeros > 0, 'some taps fall in the padding');
  });

test('features of a MatMul are the rows of its input, one per leading position', () => {
  const K = 5;
  const x = random(4 * 3 * K, 3);
  const xq = x.map((v) => -v);
  const { P, S, gather } = featureGatherer({ op: 'MatMul', groups: 1, k: K }, { dims: [4, 3, K], data: x }, xq);
  assert.equal(P, 12);
  assert.equal(S, 1);
  const picks = Int32Array.from([11, 0, 5]);
  const dst = new Float32Array(K * 3);
  const dq = new Float32Array(K * 3);
  gather(0, picks, dst, dq);
  picks.forEach((pos, p) => {
    for (let j = 0; j < K; j++) {
      assert.equal(dst[j * 3 + p], x[pos * K + j]);
      assert.equal(dq[j * 3 + p], -x[pos * K + j]);
    }
  });
});

test('dotRows gives bit for bit the sums of one plain loop per row, for every start and end row', () => {
  const take = 37;
  const rows = 11;
  const r = seededRandom(9);
  const v = Float32Array.from({ length: rows * take }, () => (r() - 0.5) * 10 ** Math.floor(r() * 8 - 4));
  for (const u of [Float32Array.from({ length: 3 + take }, () => r() - 0.5), Float64Array.from({ length: 3 + take }, () => (r() - 0.5) / 3)]) {
    for (let from = 0; from < rows; from++)
      for (let to = from; to <= rows; to++) {
        const sums = new Float64Array(rows).fill(NaN);
        dotRows(u, 3, v, take, from, to, sums);
        for (let b = 0; b < rows; b++) {
          if (b < from || b >= to) {
            assert.ok(Number.isNaN(sums[b]), `row ${b} outside [${from}, ${to}) untouched`);
            continue;
          }
          let s = 0;
          for (let p = 0; p < take; p++) s += u[3 + p] * v[b * take + p];
          assert.ok(Object.is(sums[b], s), `row ${b} of [${from}, ${to}): ${sums[b]} vs ${s}`);
        }
      }
  }
});
