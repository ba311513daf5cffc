/**
 * ir/value-range.ts: an interval holding every value of a tensor. Checked on a graph built here against ranges worked
 * out by hand, the closed-form minima against dense float64 scans, and on every real model: each tensor with a bound
 * is fetched from onnxruntime on signed random inputs and must stay inside it (a wrong bound would drop a real lower
 * statistic in calibration) — to the margin calibration allows a nonzero bound, exactly for a bound of 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { BOUND_MARGIN } from '../src/calibrate/calibrate.ts';
import { clippedAffineProductMin, ERF_GATE_MIN, SILU_MIN } from '../src/ir/gated-activation.ts';
import { makeNode } from '../src/ir/graph.ts';
import { nonNegativeTensors, valueRanges } from '../src/ir/value-range.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { getRule } from '../src/quant/rules.ts';
import { prepareModel } from '../src/quantize.ts';
import { randomFeeds } from '../src/runtime/inputs.ts';
import { createSession } from '../src/runtime/session.ts';
import { feedOptions, NPM_MODEL, onnxFiles, SHARED } from './helpers/models.ts';

const INF = Infinity;

test('value ranges of a hand-built graph', () => {
  const f = (name: string, v: number[]) => makeTensor(name, DT.FLOAT, [v.length], v);
  const g = create(ModelProtoSchema, {
    graph: {
      node: [
        makeNode('Relu', ['x'], ['r'], 'relu'),
        makeNode('MaxPool', ['r'], ['mp', 'mpi'], 'mp', { kernel_shape: [2, 2] }),
        makeNode('Clip', ['x', 'zero', 'six'], ['c6'], 'relu6'),
        makeNode('Clip', ['x', 'm1', 'six'], ['cm1'], 'clip_neg'),
        makeNode('Clip', ['x', 'x', 'six'], ['cvar'], 'clip_var'),
        makeNode('Concat', ['mp', 'c6'], ['cat'], 'cat', { axis: 1 }),
        makeNode('Concat', ['mp', 'cm1'], ['cat_mixed'], 'cat_mixed', { axis: 1 }),
        makeNode('Add', ['cat', 'pos'], ['add_pos'], 'add_pos'),
        makeNode('Add', ['cat', 'neg'], ['add_neg'], 'add_neg'),
        makeNode('Sub', ['c6', 'cm1'], ['sub'], 'sub'),
        makeNode('Max', ['x', 'zero'], ['max0'], 'max0'),
        makeNode('Min', ['max0', 'pos'], ['min_pos'], 'min_pos'),
        makeNode('Resize', ['r', '', 'scales'], ['up'], 'up', { mode: 'linear' }),
        makeNode('Resize', ['r', '', 'scales'], ['upc'], 'upc', { mode: 'cubic' }),
        makeNode('Pad', ['r', 'pads', 'm1'], ['pad_neg'], 'pad_neg'),
        makeNode('Pad', ['r', 'pads'], ['pad_zero'], 'pad_zero'),
        makeNode('Conv', ['r', 'w'], ['conv'], 'conv'),
        makeNode('Sigmoid', ['conv'], ['sig'], 'sig'),
        makeNode('Mul', ['conv', 'sig'], ['silu'], 'silu'),
        makeNode('Sigmoid', ['x'], ['sx'], 'sx'),
        makeNode('Reshape', ['sx', 'shape'], ['sig_flat'], 'flat'),
        makeNode('Split', ['cat'], ['s0', 's1'], 'split', { axis: 1 }),
        // Paddle's hard swish z·clip(z + 3, 0, 6)/6, PyTorch's before opset 14 z·hardsigmoid(z), and the op.
        makeNode('Conv', ['x', 'w'], ['z'], 'conv_z'),
        makeNode('Add', ['z', 'three'], ['z3'], 'z3'),
        makeNode('Clip', ['z3', 'zero', 'six'], ['zc'], 'zc'),
        makeNode('Mul', ['z', 'zc'], ['zm'], 'zm'),
        makeNode('Div', ['zm', 'six'], ['hswish'], 'hswish'),
        makeNode('Conv', ['x', 'w'], ['y'], 'conv_y'),
        makeNode('HardSigmoid', ['y'], ['yg'], 'yg', { alpha: { float: 1 / 6 }, beta: { float: 0.5 } }),
        makeNode('Mul', ['y', 'yg'], ['hswish2'], 'hswish2'),
        makeNode('HardSwish', ['x'], ['hswish3'], 'hswish3'),
        // A squeeze-excitation gate in [0, 1] on it keeps the bound; a negative divisor flips the range.
        makeNode('Mul', ['hswish', 'sx'], ['se'], 'se'),
        makeNode('Div', ['r', 'm1'], ['neg_r'], 'neg_r'),
        makeNode('Mul', ['x', 'c6'], ['any'], 'any'),
        // GELU as PyTorch exports it before opset 20: z·(1 + erf(z/√2))·½.
        makeNode('Conv', ['x', 'w'], ['u'], 'conv_u'),
        makeNode('Div', ['u', 'sqrt2'], ['ud'], 'ud'),
        makeNode('Erf', ['ud'], ['ue'], 'ue'),
        makeNode('Add', ['ue', 'one'], ['ug'], 'ug'),
        makeNode('Mul', ['u', 'ug'], ['um'], 'um'),
        makeNode('Mul', ['um', 'half'], ['gelu'], 'gelu'),
        // Rows of a 500 000-value table (an embedding): its range, read without spreading the values into arguments.
        makeNode('Gather', ['table', 'ids'], ['rows'], 'rows'),
      ],
      initializer: [
        f('zero', [0]), f('six', [6]), f('three', [3]), f('m1', [-1]), f('pos', [0.5, 2]), f('neg', [1, -0.1]), f('scales', [1, 1, 2, 2]), f('w', [0.3]),
        f('sqrt2', [Math.SQRT2]), f('one', [1]), f('half', [0.5]),
        makeTensor('table', DT.FLOAT, [1000, 500], Float32Array.from({ length: 500_000 }, (_, i) => (i === 123_456 ? -7 : i === 4321 ? 9 : Math.sin(i)))),
      ],
    },
  }).graph!;
  const want: Record<string, [number, number]> = {
    r: [0, INF], mp: [0, INF], c6: [0, 6], cm1: [-1, 6], cat: [0, INF], cat_mixed: [-1, INF], add_pos: [0.5, INF],
    add_neg: [Math.fround(-0.1), INF], sub: [-6, 7], max0: [0, INF], min_pos: [0, 2], up: [0, INF], pad_neg: [-1, INF], pad_zero: [0, INF],
    sig: [0, 1], silu: [SILU_MIN, INF], sx: [0, 1], sig_flat: [0, 1], s0: [0, INF], s1: [0, INF],
    zc: [0, 6], zm: [-2.25, INF], hswish: [-0.375, INF], yg: [0, 1], hswish2: [-0.375, INF], hswish3: [-0.375, INF],
    se: [-0.375, INF], neg_r: [-INF, 0], rows: [-7, 9],
    // √2 stored as float32; GELU's least value is ERF_GATE_MIN/√2 ≈ −0.16997 (checked against a scan below).
    um: [Math.fround(Math.SQRT2) * ERF_GATE_MIN, INF], gelu: [Math.fround(Math.SQRT2) * ERF_GATE_MIN * 0.5, INF],
  };
  const got = Object.fromEntries([...valueRanges(g)].map(([k, v]) => [k, [v.lo, v.hi]]));
  // The attribute holds α = 1/6 as float32, so z·hardsigmoid(z)'s least value is −0.375 to 7 digits.
  assert.ok(Math.abs(got.hswish2[0] + 0.375) < 1e-7, `hswish2 ${got.hswish2}`);
  got.hswish2[0] = -0.375;
  assert.deepEqual(got, want);
  assert.deepEqual([...nonNegativeTensors(g)].sort(), Object.keys(want).filter((k) => want[k][0] >= 0).sort());
});

test('closed-form minima of gated activations against dense float64 scans', () => {
  const scanMin = (fn: (z: number) => number, from = -12, to = 12, step = 1e-5) => {
    let m = Infinity;
    for (let z = from; z <= to; z += step) m = Math.min(m, fn(z));
    return m;
  };
  const clip = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
  // (α, β, lo, hi): hard sigmoid (PyTorch, ONNX default), Paddle's clip(z + 3, 0, 6), a vertex outside [L, R]
  // (clip(z + 3, 0, 1): the minimum sits where the gate saturates), a negative lower clip and an unclipped top.
  for (const [a, b, lo, hi] of [[1 / 6, 0.5, 0, 1], [0.2, 0.5, 0, 1], [1, 3, 0, 6], [1, 3, 0, 1], [1, 1, -0.5, 2], [2, 1, 0, INF]]) {
    const got = clippedAffineProductMin(a, b, lo, hi)!;
    const ref = scanMin((z) => z * clip(a * z + b, lo, hi));
    assert.ok(got <= ref + 1e-12 && ref - got < 1e-8, `α ${a} β ${b} [${lo}, ${hi}]: ${got} vs scan ${ref}`);
  }
  // Unbounded below: a positive lower clip (z·lo → −∞ as z → −∞), a negative top, a non-positive slope.
  assert.equal(clippedAffineProductMin(1, 3, 0.1, 6), undefined);
  assert.equal(clippedAffineProductMin(1, 3, -6, -0.1), undefined);
  assert.equal(clippedAffineProductMin(-1, 3, 0, 6), undefined);
  const silu = scanMin((z) => z / (1 + Math.exp(-z)), -3, 0, 1e-7);
  assert.ok(SILU_MIN <= silu && silu - SILU_MIN < 1e-12, `SiLU minimum ${SILU_MIN} vs scan ${silu}`);
  // erf by its Maclaurin series (exact to float64 rounding for |u| ≤ 2).
  const erf = (u: number) => {
    let [sum, term] = [0, u];
    for (let n = 0; n < 200; n++, term *= (-u * u) / n) sum += term / (2 * n + 1);
    return (2 / Math.sqrt(Math.PI)) * sum;
  };
  const erfGate = scanMin((u) => u * (1 + erf(u)), -2, 0, 1e-6);
  assert.ok(ERF_GATE_MIN <= erfGate && erfGate - ERF_GATE_MIN < 1e-6, `u·(1 + erf u) minimum ${ERF_GATE_MIN} vs scan ${erfGate}`);
  // The GELU op's bound covers its erf form and the tanh approximation.
  const gelu = scanMin((z) => 0.5 * z * (1 + erf(z / Math.SQRT2)), -2, 0, 1e-6);
  const geluTanh = scanMin((z) => 0.5 * z * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (z + 0.044715 * z ** 3))), -2, 0, 1e-6);
  assert.ok(-0.17005 <= Math.min(gelu, geluTanh) && Math.min(gelu, geluTanh) + 0.17005 < 1e-4, `GELU minima ${gelu}, ${geluTanh}`);
  const mish = scanMin((z) => z * Math.tanh(Math.log1p(Math.exp(z))), -3, 0, 1e-6);
  assert.ok(-0.30885 <= mish && mish + 0.30885 < 1e-4, `Mish minimum ${mish}`);
});

const models = [...onnxFiles(join(SHARED, 'corpus')), ...onnxFiles(join(SHARED, 'quantzoo/Model')), NPM_MODEL];
test('every tensor stays inside its value range on signed random inputs (real models)', { skip: existsSync(SHARED) ? false : '../shared absent: only hand-built graphs checked' }, async () => {
  let checked = 0;
  let negative = 0;
  for (const file of models) {
    const model = prepareModel(loadModel(file), getRule('onnxquant-int8-perchannel')).model;
    const ranges = valueRanges(model.graph!);
    const names = [...ranges.keys()];
    if (!names.length) continue;
    const opts = feedOptions(file);
    // randomFeeds draws from [0, 1): spread it over [−4, 4) so negative inputs reach every branch.
    const feeds = Object.fromEntries(
      Object.entries({ ...randomFeeds(model, { ...opts, seed: 3 }), ...opts.extra }).map(([k, t]) => [
        k,
        t.type === 'float32' && !opts.extra?.[k] && !opts.values?.[k] ? new ort.Tensor('float32', Float32Array.from(t.data as Float32Array, (v) => (v - 0.5) * 8), t.dims) : t,
      ]),
    );
    const s = await createSession(model, { mode: 'float', extraOutputs: names });
    const out = await s.run(feeds, names);
    await s.release();
    for (const n of names) {
      if (out[n].type !== 'float32') continue;
      const d = out[n].data as Float32Array;
      let [min, max] = [Infinity, -Infinity];
      for (let i = 0; i < d.length; i++) [min, max] = [Math.min(min, d[i]), Math.max(max, d[i])];
      const { lo, hi } = ranges.get(n)!;
      assert.ok(!(min < lo - Math.abs(lo) * BOUND_MARGIN) && !(max > hi + Math.abs(hi) * BOUND_MARGIN), `${file}: '${n}' holds [${min}, ${max}] outside its range [${lo}, ${hi}]`);
      checked++;
      if (lo < 0 && lo > -Infinity) negative++;
    }
  }
  assert.ok(checked > 100, `only ${checked} tensors checked`);
  // The hard-swish and SiLU networks of the shared models (en_number, PP-OCR, yunet…) give bounds below 0.
  assert.ok(negative > 20, `only ${negative} tensors with a bound below 0 checked`);
});
