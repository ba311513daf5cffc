/**
 * Each formatter pass (src/ir/passes) and the opset upgrade on small graphs built here: the structural change is
 * asserted, and the original and rewritten models run in onnxruntime on the same random input must agree.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clone, create } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  FunctionProtoSchema,
  ModelProtoSchema,
  OperatorSetIdProtoSchema,
  type AttributeProto,
  type GraphProto,
  TensorProto_DataType as DT,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from 'onnx-buf';
import type * as ort from 'onnxruntime-node';
import { Tensor as OrtTensor } from 'onnxruntime-node';
import { bfloat16ToFloat32, float32ToBfloat16, float32ToFloat16 } from '../src/onnx/float-formats.ts';
import { decodeTensor, makeTensor, tensorToFloat32 } from '../src/onnx/tensor-codec.ts';
import { attr, makeNode, tensorValueInfo } from '../src/ir/graph.ts';
import { formatModel } from '../src/ir/format.ts';
import type { Pass } from '../src/ir/passes/pass.ts';
import { constantToInitializer } from '../src/ir/passes/constant-to-initializer.ts';
import { initializersNotInputs } from '../src/ir/passes/initializers-not-inputs.ts';
import { removeIdentity } from '../src/ir/passes/remove-identity.ts';
import { foldWeightChains } from '../src/ir/passes/fold-weight-chains.ts';
import { foldBatchNorm } from '../src/ir/passes/fold-batchnorm.ts';
import { fuseBiasAdd } from '../src/ir/passes/fuse-bias-add.ts';
import { computesInFloat16, float16Interface } from '../src/ir/passes/upcast-float16.ts';
import { inlineFunctions } from '../src/ir/passes/inline-functions.ts';
import { planModel } from '../src/quant/plan.ts';
import { getRule } from '../src/quant/rules.ts';
import { upgradeOpset } from '../src/ir/opset-upgrade.ts';
import { createSession } from '../src/runtime/session.ts';
import { randomFeeds, seededRandom } from '../src/runtime/inputs.ts';

// ---- building and running small models --------------------------------------------------------------------------

const vi = tensorValueInfo;

interface Spec {
  nodes: NodeProto[];
  inputs: ValueInfoProto[];
  outputs: ValueInfoProto[];
  initializer?: TensorProto[];
  opset?: number;
  ir?: number;
}

function model(s: Spec): ModelProto {
  return create(ModelProtoSchema, {
    irVersion: BigInt(s.ir ?? 8),
    producerName: 'ir-passes.test',
    opsetImport: [{ domain: '', version: BigInt(s.opset ?? 13) }],
    graph: { name: 'g', node: s.nodes, input: s.inputs, output: s.outputs, initializer: s.initializer ?? [] },
  });
}

const rnd = seededRandom(42);
const randn = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * scale);
const positive = (n: number) => Float32Array.from({ length: n }, () => 0.5 + rnd());

async function run(m: ModelProto, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const s = await createSession(m);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

/** Runs both models on the same random feeds; every output of `a` must exist in `b` and agree within tol. */
async function assertSameOutputs(a: ModelProto, b: ModelProto, tol = 1e-5): Promise<number> {
  const feeds = randomFeeds(a, { seed: 7 });
  const [ra, rb] = [await run(a, feeds), await run(b, feeds)];
  let worst = 0;
  for (const o of a.graph!.output) {
    assert.ok(rb[o.name], `output ${o.name} missing after the rewrite`);
    const x = ra[o.name].data as ArrayLike<number | bigint>;
    const y = rb[o.name].data as ArrayLike<number | bigint>;
    assert.deepEqual(rb[o.name].dims, ra[o.name].dims, `${o.name} dims`);
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(Number(x[i]) - Number(y[i])));
  }
  assert.ok(worst <= tol, `max |a−b| = ${worst} > ${tol}`);
  return worst;
}

function applyPass(p: Pass, m: ModelProto): { out: ModelProto; changed: boolean } {
  const out = clone(ModelProtoSchema, m);
  return { out, changed: p.run(out) };
}

const ops = (m: ModelProto) => m.graph!.node.map((n) => n.opType);
const init = (m: ModelProto, name: string) => m.graph!.initializer.find((t) => t.name === name);

// ---- passes --------------------------------------------------------------------------------------------------

test('constant-to-initializer: value, value_float(s), value_int(s)', async () => {
  const w = makeTensor('', DT.FLOAT, [3], [1, -2, 3]);
  const m = model({
    nodes: [
      makeNode('Constant', [], ['c_value'], 'k1', { value: w }),
      makeNode('Constant', [], ['c_float'], 'k2', { value_float: { float: 0.5 } }),
      makeNode('Constant', [], ['c_floats'], 'k3', { value_floats: { floats: [0.25, 0.5, 0.75] } }),
      makeNode('Constant', [], ['c_int'], 'k4', { value_int: 5 }),
      makeNode('Constant', [], ['c_ints'], 'k5', { value_ints: [3, 2] }),
      makeNode('Add', ['x', 'c_value'], ['a'], 'add'),
      makeNode('Mul', ['a', 'c_float'], ['b'], 'mul'),
      makeNode('Add', ['b', 'c_floats'], ['y'], 'add2'),
      makeNode('Reshape', ['x', 'c_ints'], ['r'], 'reshape'),
      makeNode('Shape', ['x'], ['s'], 'shape'),
      makeNode('Add', ['s', 'c_int'], ['s5'], 'add3'),
    ],
    inputs: [vi('x', DT.FLOAT, [2, 3])],
    outputs: [vi('y', DT.FLOAT, [2, 3]), vi('r', DT.FLOAT, [3, 2]), vi('s5', DT.INT64, [2])],
  });
  const { out, changed } = applyPass(constantToInitializer, m);
  assert.ok(changed);
  assert.ok(!ops(out).includes('Constant'), `Constant nodes left: ${ops(out)}`);
  const get = (n: string) => {
    const t = init(out, n);
    assert.ok(t, `initializer ${n}`);
    return { dt: t.dataType, dims: t.dims.map(Number), data: [...decodeTensor(t).data] };
  };
  assert.deepEqual(get('c_value'), { dt: DT.FLOAT, dims: [3], data: [1, -2, 3] });
  assert.deepEqual(get('c_float'), { dt: DT.FLOAT, dims: [], data: [0.5] });
  assert.deepEqual(get('c_floats'), { dt: DT.FLOAT, dims: [3], data: [0.25, 0.5, 0.75] });
  assert.deepEqual(get('c_int'), { dt: DT.INT64, dims: [], data: [5n] });
  assert.deepEqual(get('c_ints'), { dt: DT.INT64, dims: [2], data: [3n, 2n] });
  await assertSameOutputs(m, out, 0);
});

test('initializers-not-inputs: an IR 3 model listing weights as inputs becomes IR 4 without them', async () => {
  const m = model({
    ir: 3,
    opset: 8,
    nodes: [makeNode('Add', ['x', 'w'], ['y'], 'add')],
    inputs: [vi('x', DT.FLOAT, [2, 3]), vi('w', DT.FLOAT, [3])],
    outputs: [vi('y', DT.FLOAT, [2, 3])],
    initializer: [makeTensor('w', DT.FLOAT, [3], [1, 2, 3])],
  });
  const { out, changed } = applyPass(initializersNotInputs, m);
  assert.ok(changed);
  assert.deepEqual(out.graph!.input.map((v) => v.name), ['x']);
  assert.equal(out.irVersion, 4n);
  assert.ok(init(out, 'w'));
  await assertSameOutputs(m, out, 0);
  assert.equal(applyPass(initializersNotInputs, out).changed, false, 'idempotent');
});

test('remove-identity: inner Identity and Dropout go; an Identity feeding a graph output renames its producer', async () => {
  const m = model({
    nodes: [
      makeNode('Identity', ['x'], ['x1'], 'id1'),
      makeNode('Relu', ['x1'], ['r'], 'relu'),
      makeNode('Dropout', ['r'], ['d'], 'drop'),
      makeNode('Sigmoid', ['d'], ['s'], 'sig'),
      makeNode('Identity', ['s'], ['y'], 'id_out'),
    ],
    inputs: [vi('x', DT.FLOAT, [2, 3])],
    outputs: [vi('y', DT.FLOAT, [2, 3])],
  });
  const { out, changed } = applyPass(removeIdentity, m);
  assert.ok(changed);
  assert.deepEqual(ops(out), ['Relu', 'Sigmoid']);
  assert.deepEqual(out.graph!.node[0].input, ['x']);
  assert.deepEqual(out.graph!.node[1].output, ['y'], 'the Sigmoid now writes the graph output name');
  await assertSameOutputs(m, out, 0);

  // An Identity from a graph input straight to a graph output cannot go (the output needs a producer).
  const passthrough = model({
    nodes: [makeNode('Identity', ['x'], ['y'], 'id'), makeNode('Relu', ['x'], ['z'], 'relu')],
    inputs: [vi('x', DT.FLOAT, [2])],
    outputs: [vi('y', DT.FLOAT, [2]), vi('z', DT.FLOAT, [2])],
  });
  assert.equal(applyPass(removeIdentity, passthrough).changed, false);
  // Nor one whose input is also a graph output.
  const twoOutputs = model({
    nodes: [makeNode('Relu', ['x'], ['r'], 'relu'), makeNode('Identity', ['r'], ['y'], 'id')],
    inputs: [vi('x', DT.FLOAT, [2])],
    outputs: [vi('r', DT.FLOAT, [2]), vi('y', DT.FLOAT, [2])],
  });
  assert.equal(applyPass(removeIdentity, twoOutputs).changed, false);
});

test('fold-weight-chains: fp16 HWIO weight → Cast → Transpose into a Conv; flat weight → Reshape into a MatMul', async () => {
  const [kh, kw, cin, cout] = [3, 3, 2, 4];
  const hwio = randn(kh * kw * cin * cout, 0.5);
  const m = model({
    nodes: [
      makeNode('Cast', ['w16'], ['w32'], 'cast', { to: DT.FLOAT }),
      makeNode('Transpose', ['w32'], ['w_oihw'], 'tr', { perm: [3, 2, 0, 1] }),
      makeNode('Conv', ['x', 'w_oihw'], ['c'], 'conv', { pads: [1, 1, 1, 1] }),
      makeNode('Reshape', ['c', 'act_shape'], ['c2'], 'flatten_act'),
      makeNode('Reshape', ['mflat', 'mshape'], ['m2'], 'reshape_w'),
      makeNode('MatMul', ['c2', 'm2'], ['y'], 'matmul'),
    ],
    inputs: [vi('x', DT.FLOAT, [1, cin, 5, 5])],
    outputs: [vi('y', DT.FLOAT, [1, 3])],
    initializer: [
      makeTensor('w16', DT.FLOAT16, [kh, kw, cin, cout], Uint16Array.from(hwio, float32ToFloat16)),
      makeTensor('act_shape', DT.INT64, [2], [1, cout * 25]),
      makeTensor('mflat', DT.FLOAT, [cout * 25 * 3], randn(cout * 25 * 3, 0.1)),
      makeTensor('mshape', DT.INT64, [2], [cout * 25, 3]),
    ],
  });
  assert.equal(computesInFloat16(m), false, 'float16 weights a Cast widens are not float16 compute');
  const { out, changed } = applyPass(foldWeightChains, m);
  assert.ok(changed);
  assert.deepEqual(ops(out), ['Conv', 'Reshape', 'MatMul'], 'Cast, Transpose and the weight Reshape are gone; the activation Reshape stays');
  const conv = out.graph!.node[0];
  const w = init(out, conv.input[1]);
  assert.ok(w, 'Conv weight is an initializer');
  assert.equal(w.dataType, DT.FLOAT);
  assert.deepEqual(w.dims.map(Number), [cout, cin, kh, kw]);
  // Spot-check the transpose: W'[o][i][y][x] = fp16(HWIO[y][x][i][o]).
  const wv = tensorToFloat32(w);
  const src = tensorToFloat32(init(m, 'w16')!);
  for (const [o, i, y, x] of [[0, 0, 0, 0], [3, 1, 2, 0], [1, 0, 1, 2]])
    assert.equal(wv[((o * cin + i) * kh + y) * kw + x], src[((y * kw + x) * cin + i) * cout + o]);
  const mm = out.graph!.node[2];
  assert.deepEqual(init(out, mm.input[1])!.dims.map(Number), [cout * 25, 3]);
  assert.ok(!init(out, 'w16') && !init(out, 'mflat'), 'the unused sources are pruned');
  await assertSameOutputs(m, out, 1e-5);
});

/** Hand computation of BN folding in float64: W'[c] = W[c]·s[c], b' = (b − mean)·s + β, s = γ/√(var+ε). */
function foldByHand(w: Float32Array, channelOf: (i: number) => number, b: Float32Array | undefined, bn: Float32Array[], eps: number, C: number) {
  const [g, beta, mean, v] = bn;
  const s = Array.from({ length: C }, (_, c) => g[c] / Math.sqrt(v[c] + eps));
  return {
    w: Array.from(w, (x, i) => x * s[channelOf(i)]),
    b: Array.from({ length: C }, (_, c) => ((b ? b[c] : 0) - mean[c]) * s[c] + beta[c]),
  };
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number, what: string) {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < expected.length; i++)
    assert.ok(Math.abs(actual[i] - expected[i]) <= rel * Math.max(1, Math.abs(expected[i])), `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
}

const bnParams = (C: number) => [randn(C).map((x) => x + 1.5), randn(C), randn(C), positive(C)];
const bnInits = (p: Float32Array[]) => ['gamma', 'beta', 'mean', 'var'].map((n, i) => makeTensor(n, DT.FLOAT, [p[i].length], p[i]));

test('fold-batchnorm: Conv + BatchNormalization folds into the Conv weight and bias', async () => {
  const [C, cin] = [4, 3];
  const w = randn(C * cin * 9, 0.5);
  const b = randn(C);
  const p = bnParams(C);
  const eps = 1e-3;
  const m = model({
    nodes: [
      makeNode('Conv', ['x', 'w', 'b'], ['c'], 'conv', { pads: [1, 1, 1, 1] }),
      makeNode('BatchNormalization', ['c', 'gamma', 'beta', 'mean', 'var'], ['y'], 'bn', { epsilon: { float: eps } }),
    ],
    inputs: [vi('x', DT.FLOAT, [2, cin, 6, 6])],
    outputs: [vi('y', DT.FLOAT, [2, C, 6, 6])],
    initializer: [makeTensor('w', DT.FLOAT, [C, cin, 3, 3], w), makeTensor('b', DT.FLOAT, [C], b), ...bnInits(p)],
  });
  const { out, changed } = applyPass(foldBatchNorm, m);
  assert.ok(changed);
  assert.deepEqual(ops(out), ['Conv']);
  const conv = out.graph!.node[0];
  assert.deepEqual(conv.output, ['y']);
  const want = foldByHand(w, (i) => Math.floor(i / (cin * 9)), b, p, Math.fround(eps), C);
  assertClose(tensorToFloat32(init(out, conv.input[1])!), want.w, 1e-6, 'W');
  assertClose(tensorToFloat32(init(out, conv.input[2])!), want.b, 1e-6, 'b');
  assert.ok(!init(out, 'gamma'), 'BN parameters pruned');
  await assertSameOutputs(m, out, 1e-4);
});

for (const transB of [0, 1]) {
  test(`fold-batchnorm: Gemm (transB=${transB}) + BatchNormalization`, async () => {
    const [K, C] = [5, 3];
    const w = randn(K * C, 0.5); // [K,C] or [C,K]
    const b = randn(C);
    const p = bnParams(C);
    const m = model({
      nodes: [
        makeNode('Gemm', ['x', 'w', 'b'], ['g'], 'gemm', { transB, beta: { float: 0.5 } }),
        makeNode('BatchNormalization', ['g', 'gamma', 'beta', 'mean', 'var'], ['y'], 'bn'),
      ],
      inputs: [vi('x', DT.FLOAT, [4, K])],
      outputs: [vi('y', DT.FLOAT, [4, C])],
      initializer: [makeTensor('w', DT.FLOAT, transB ? [C, K] : [K, C], w), makeTensor('b', DT.FLOAT, [C], b), ...bnInits(p)],
    });
    const { out, changed } = applyPass(foldBatchNorm, m);
    assert.ok(changed);
    assert.deepEqual(ops(out), ['Gemm']);
    const gemm = out.graph!.node[0];
    assert.equal(attr(gemm, 'beta')?.f, 1, 'beta folded into the bias');
    const want = foldByHand(w, transB ? (i) => Math.floor(i / K) : (i) => i % C, b.map((x) => x * 0.5), p, Math.fround(1e-5), C);
    assertClose(tensorToFloat32(init(out, gemm.input[1])!), want.w, 1e-6, 'W');
    assertClose(tensorToFloat32(init(out, gemm.input[2])!), want.b, 1e-6, 'b');
    await assertSameOutputs(m, out, 1e-4);
  });
}

test('fuse-bias-add: Conv + [1,C,1,1] constant and Gemm + [C] constant fuse; other shapes do not', async () => {
  const [C, cin] = [3, 2];
  const m = model({
    nodes: [
      makeNode('Conv', ['x', 'w'], ['c'], 'conv'),
      makeNode('Add', ['k_conv', 'c'], ['y'], 'add_conv'), // constant on the left
      makeNode('Gemm', ['x2', 'wg', 'bg'], ['g'], 'gemm', { transB: 1 }),
      makeNode('Add', ['g', 'k_gemm'], ['y2'], 'add_gemm'),
    ],
    inputs: [vi('x', DT.FLOAT, [1, cin, 4, 4]), vi('x2', DT.FLOAT, [2, 4])],
    outputs: [vi('y', DT.FLOAT, [1, C, 4, 4]), vi('y2', DT.FLOAT, [2, C])],
    initializer: [
      makeTensor('w', DT.FLOAT, [C, cin, 1, 1], randn(C * cin)),
      makeTensor('k_conv', DT.FLOAT, [1, C, 1, 1], [0.5, -1, 2]),
      makeTensor('wg', DT.FLOAT, [C, 4], randn(C * 4)),
      makeTensor('bg', DT.FLOAT, [C], [1, 2, 3]),
      makeTensor('k_gemm', DT.FLOAT, [C], [10, 20, 30]),
    ],
  });
  const { out, changed } = applyPass(fuseBiasAdd, m);
  assert.ok(changed);
  assert.deepEqual(ops(out), ['Conv', 'Gemm']);
  const [conv, gemm] = out.graph!.node;
  assert.deepEqual(conv.output, ['y']);
  assert.deepEqual([...tensorToFloat32(init(out, conv.input[2])!)], [0.5, -1, 2]);
  assert.deepEqual([...tensorToFloat32(init(out, gemm.input[2])!)], [11, 22, 33]);
  await assertSameOutputs(m, out, 1e-5);

  // Not a per-channel bias: a full [1,C,H,W] constant, and a bare [C] (broadcasts along the last spatial axis, W = C).
  for (const [dims, n] of [[[1, C, 3, 3], C * 9], [[C], C]] as const) {
    const nm = model({
      nodes: [makeNode('Conv', ['x', 'w'], ['c'], 'conv'), makeNode('Add', ['c', 'k'], ['y'], 'add')],
      inputs: [vi('x', DT.FLOAT, [1, cin, 3, 3])],
      outputs: [vi('y', DT.FLOAT, [1, C, 3, 3])],
      initializer: [makeTensor('w', DT.FLOAT, [C, cin, 1, 1], randn(C * cin)), makeTensor('k', DT.FLOAT, [...dims], randn(n))],
    });
    const r = applyPass(fuseBiasAdd, nm);
    assert.equal(r.changed, false, `Add of a [${dims}] constant must not be fused`);
    assert.deepEqual(ops(r.out), ['Conv', 'Add']);
  }
});

test('formatModel runs all passes to a fixed point on a graph needing several of them', async () => {
  const C = 2;
  const m = model({
    ir: 3,
    opset: 11,
    nodes: [
      makeNode('Constant', [], ['wc'], 'k', { value: makeTensor('', DT.FLOAT, [C, 1, 1, 1], [0.5, 2]) }),
      makeNode('Identity', ['wc'], ['wi'], 'id'),
      makeNode('Conv', ['x', 'wi'], ['c'], 'conv'),
      makeNode('BatchNormalization', ['c', 'gamma', 'beta', 'mean', 'var'], ['bn'], 'bn'),
      makeNode('Add', ['bn', 'kb'], ['y'], 'add'),
    ],
    inputs: [vi('x', DT.FLOAT, [1, 1, 3, 3]), vi('gamma', DT.FLOAT, [C])],
    outputs: [vi('y', DT.FLOAT, [1, C, 3, 3])],
    initializer: [...bnInits(bnParams(C)), makeTensor('kb', DT.FLOAT, [C, 1, 1], [1, -1])],
  });
  const { model: out, applied } = formatModel(m);
  assert.deepEqual(ops(out), ['Conv']);
  for (const p of ['constant-to-initializer', 'initializers-not-inputs', 'remove-identity', 'fold-batchnorm', 'fuse-bias-add'])
    assert.ok(applied.includes(p), `${p} applied (${applied})`);
  assert.equal(ops(m).length, 5, 'formatModel leaves its input alone');
  await assertSameOutputs(m, out, 1e-5);
});

test('inline-functions: nested model-local functions with attribute references and defaults become their bodies; the float function is unchanged', async () => {
  const fn = (name: string, input: string[], output: string[], node: NodeProto[], attribute: string[] = [], attributeProto: AttributeProto[] = []) =>
    create(FunctionProtoSchema, { name, domain: 'local', input, output, node, attribute, attributeProto, opsetImport: [{ domain: '', version: 13n }, { domain: 'local', version: 1n }] });
  const ref = (name: string, refAttrName: string) => create(AttributeProtoSchema, { name, refAttrName, type: AttributeProto_AttributeType.FLOAT });
  const withAttrs = (n: NodeProto, attrs: AttributeProto[]) => Object.assign(n, { attribute: attrs });
  const call = (name: string, inputs: string[], outputs: string[], attrs: Record<string, number> = {}) =>
    makeNode(name.replace(/\d+$/, ''), inputs, outputs, name, Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, { float: v }])), 'local');
  // Block(x, w) → (y, aux): Conv → LeakyRelu(alpha = the call's) → Elu(alpha = the call's beta, default 0.5); aux = 2·conv.
  const block = fn('Block', ['x', 'w'], ['y', 'aux'], [
    makeNode('Conv', ['x', 'w'], ['c'], 'conv', { pads: [1, 1, 1, 1] }),
    withAttrs(makeNode('LeakyRelu', ['c'], ['l'], 'leaky'), [ref('alpha', 'alpha')]),
    withAttrs(makeNode('Elu', ['l'], ['y'], 'elu'), [ref('alpha', 'beta')]),
    makeNode('Constant', [], ['two'], 'two', { value: makeTensor('', DT.FLOAT, [], [2]) }),
    makeNode('Mul', ['c', 'two'], ['aux'], 'mul'),
  ], ['alpha', 'beta'], [create(AttributeProtoSchema, { name: 'beta', type: AttributeProto_AttributeType.FLOAT, f: 0.5 })]);
  // Outer(x, w1, w2) → z: two Blocks (the first's aux not taken: an empty output name) and their sum.
  const outer = fn('Outer', ['x', 'w1', 'w2'], ['z'], [
    call('Block1', ['x', 'w1'], ['a', '']),
    call('Block2', ['a', 'w2'], ['b', 'aux2'], { alpha: 0.2, beta: 1.5 }),
    makeNode('Add', ['b', 'aux2'], ['z'], 'add'),
  ]);
  const m = model({
    nodes: [
      call('Outer0', ['x', 'w1', 'w2'], ['z1']),
      makeNode('Relu', ['z1'], ['Block3/c'], 'clash'), // a name the third call's body would take: it gets another prefix
      call('Block3', ['Block3/c', 'w3'], ['y', 'aux'], { alpha: 0.3 }),
    ],
    inputs: [vi('x', DT.FLOAT, [1, 2, 5, 5])],
    outputs: [vi('y', DT.FLOAT, [1, 2, 5, 5]), vi('aux', DT.FLOAT, [1, 2, 5, 5])],
    initializer: ['w1', 'w2', 'w3'].map((n) => makeTensor(n, DT.FLOAT, [2, 2, 3, 3], randn(36, 0.4))),
  });
  m.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: 'local', version: 1n }));
  m.functions = [block, outer];
  const { out, changed } = applyPass(inlineFunctions, m);
  assert.ok(changed);
  assert.equal(out.functions.length, 0, 'no function is called any more');
  assert.deepEqual(out.graph!.node.filter((n) => n.domain === 'local'), [], 'no call is left');
  assert.equal(out.graph!.node.filter((n) => n.opType === 'Conv').length, 3, 'the three Convs are in the graph');
  const leaky = out.graph!.node.filter((n) => n.opType === 'LeakyRelu').map((n) => attr(n, 'alpha')?.f);
  assert.deepEqual(leaky.map((f) => Math.fround(f ?? NaN)), [undefined, 0.2, 0.3].map((v) => Math.fround(v ?? NaN)), "each call's alpha; unset where the call has none");
  assert.deepEqual(out.graph!.node.filter((n) => n.opType === 'Elu').map((n) => attr(n, 'alpha')!.f), [0.5, 1.5, 0.5], "the call's beta, else the function's default");
  assert.equal(new Set(out.graph!.node.flatMap((n) => n.output)).size, out.graph!.node.flatMap((n) => n.output).length, 'every value is defined once');
  await assertSameOutputs(m, out, 0);
  assert.equal(planModel(formatModel(m).model, getRule('onnxquant-int8-perchannel')).layers.length, 3, 'the planner sees the three Convs');
});

test("inline-functions: a body's If reads the function's values under their inlined names", async () => {
  const branch = (name: string, node: NodeProto[]) =>
    create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.GRAPH, g: { name, node, output: [vi(`${name}_y`, DT.FLOAT, [2, 3])] } });
  const ifNode = makeNode('If', ['flag'], ['g'], 'if');
  ifNode.attribute = [
    branch('then_branch', [makeNode('Constant', [], ['k'], 'k', { value: makeTensor('', DT.FLOAT, [], [3]) }), makeNode('Mul', ['r', 'k'], ['then_branch_y'], 'mul')]),
    branch('else_branch', [makeNode('Neg', ['x'], ['else_branch_y'], 'neg')]),
  ];
  const gate = create(FunctionProtoSchema, { name: 'Gate', domain: 'local', input: ['x', 'flag'], output: ['g'], node: [makeNode('Relu', ['x'], ['r'], 'relu'), ifNode], opsetImport: [{ domain: '', version: 13n }] });
  const m = model({
    nodes: [makeNode('Gate', ['a', 'f1'], ['r'], 'gate1', {}, 'local'), makeNode('Gate', ['r', 'f2'], ['y'], 'gate2', {}, 'local')],
    inputs: [vi('a', DT.FLOAT, [2, 3]), vi('f1', DT.BOOL, []), vi('f2', DT.BOOL, [])],
    outputs: [vi('y', DT.FLOAT, [2, 3])],
  });
  m.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: 'local', version: 1n }));
  m.functions = [gate];
  const { out } = applyPass(inlineFunctions, m);
  assert.deepEqual(out.graph!.node.map((n) => n.opType), ['Relu', 'If', 'Relu', 'If']);
  const a = new OrtTensor('float32', randn(6), [2, 3]);
  const flag = (v: boolean) => new OrtTensor('bool', Uint8Array.of(v ? 1 : 0), []);
  for (const [f1, f2] of [[true, true], [true, false], [false, true], [false, false]]) {
    const feeds = { a, f1: flag(f1), f2: flag(f2) };
    assert.deepEqual([...((await run(out, feeds)).y.data as Float32Array)], [...((await run(m, feeds)).y.data as Float32Array)], `flags ${f1}, ${f2}`);
  }
});

/** Every element type a model states — initializers, tensor attributes, value infos, graph and subgraph inputs and
 * outputs, Cast's `to` — anywhere in it. */
function statedTypes(m: ModelProto): Set<number> {
  const types = new Set<number>();
  const walk = (g: GraphProto) => {
    for (const t of g.initializer) types.add(t.dataType);
    for (const v of [...g.input, ...g.output, ...g.valueInfo]) if (v.type?.value.case === 'tensorType') types.add(v.type.value.value.elemType);
    for (const n of g.node)
      for (const a of n.attribute) {
        if (a.t) types.add(a.t.dataType);
        if (n.opType === 'Cast' && a.name === 'to') types.add(Number(a.i));
        if (a.g) walk(a.g);
      }
  };
  walk(m.graph!);
  return types;
}

test('upcast-float16: a float16 or bfloat16 graph (weights, Constant, ConstantOfShape, Cast, an If branch) computes the float32 graph with its weights, bit for bit', async () => {
  // One builder for the three element types: the low-precision models and their float32 twin hold the same values
  // (bfloat16's, which float16 holds exactly at these magnitudes).
  const half = (a: Float32Array) => a.map((x) => bfloat16ToFloat32(float32ToBfloat16(x)));
  const [w, b, k, t] = [half(randn(3 * 2 * 9, 0.4)), half(randn(3)), half(positive(3)), half(randn(1).map((x) => x + 2))];
  const build = (dt: DT) => {
    const encode = dt === DT.FLOAT16 ? float32ToFloat16 : float32ToBfloat16;
    const tensor = (name: string, dims: number[], v: Float32Array) => (dt === DT.FLOAT ? makeTensor(name, dt, dims, v) : makeTensor(name, dt, dims, Uint16Array.from(v, encode)));
    const branch = (name: string, nodes: NodeProto[], initializer: TensorProto[] = []) =>
      create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.GRAPH, g: { name, node: nodes, output: [vi(`${name}_y`, dt, [1, 3, 5, 5])], initializer } });
    const ifNode = makeNode('If', ['cond'], ['y'], 'if');
    ifNode.attribute = [
      branch('then_branch', [makeNode('Mul', ['a2', 'tk'], ['then_branch_y'], 'then_mul')], [tensor('tk', [1], t)]),
      branch('else_branch', [makeNode('Relu', ['a2'], ['else_branch_y'], 'else_relu')]),
    ];
    return model({
      nodes: [
        makeNode('Conv', ['x', 'w', 'b'], ['c'], 'conv', { pads: [1, 1, 1, 1] }),
        makeNode('Constant', [], ['k'], 'k', { value: tensor('', [1, 3, 1, 1], k) }),
        makeNode('Mul', ['c', 'k'], ['m'], 'mul'),
        makeNode('Shape', ['m'], ['s'], 'shape'),
        makeNode('ConstantOfShape', ['s'], ['z'], 'fill', { value: tensor('', [1], half(Float32Array.of(-0.3))) }),
        makeNode('Add', ['m', 'z'], ['a'], 'add'),
        makeNode('Cast', ['a'], ['a2'], 'cast', { to: dt }),
        ifNode,
      ],
      inputs: [vi('x', dt, [1, 2, 5, 5]), vi('cond', DT.BOOL, [])],
      outputs: [vi('y', dt, [1, 3, 5, 5])],
      initializer: [tensor('w', [3, 2, 3, 3], w), tensor('b', [3], b)],
    });
  };
  const m16 = build(DT.FLOAT16);
  const twin = build(DT.FLOAT);
  const x = randn(50);
  const feeds = (cond: boolean) => ({ x: new OrtTensor('float32', x, [1, 2, 5, 5]), cond: new OrtTensor('bool', Uint8Array.of(cond ? 1 : 0), []) });
  for (const dt of [DT.FLOAT16, DT.BFLOAT16]) {
    const low = build(dt);
    const { model: out, applied } = formatModel(low);
    assert.ok(applied.includes('upcast-float16'), `${DT[dt]}: upcast-float16 applied (${applied})`);
    assert.ok(statedTypes(low).has(dt) && !statedTypes(out).has(dt), `${DT[dt]}: the fixture states it, the upcast model nowhere`);
    for (const cond of [true, false]) {
      const [got, want] = [await run(out, feeds(cond)), await run(twin, feeds(cond))];
      assert.deepEqual([...(got.y.data as Float32Array)], [...(want.y.data as Float32Array)], `${DT[dt]}, cond=${cond}: the upcast model computes the float32 twin exactly`);
    }
  }
  const out = formatModel(m16).model;
  for (const cond of [true, false]) {
    const feeds32 = feeds(cond);
    const got = await run(out, feeds32);
    // The float16 model itself is valid and runs (onnxruntime casts each float16 node to float32 and back): within
    // float16 rounding of the upcast model.
    const r16 = await run(m16, { x: new OrtTensor('float16', Uint16Array.from(x, float32ToFloat16), [1, 2, 5, 5]), cond: feeds32.cond });
    const y16 = [...(r16.y.data as Float32Array)]; // the session hands float16 outputs back as float32
    const y32 = got.y.data as Float32Array;
    const scale = Math.max(...y32.map(Math.abs));
    const worst = Math.max(...y16.map((v, i) => Math.abs(v - y32[i])));
    assert.ok(worst <= 4e-3 * scale && worst > 0, `cond=${cond}: float16 model within float16 rounding of the upcast one (max |Δ| ${worst}, scale ${scale})`);
  }
  assert.equal(formatModel(twin).applied.includes('upcast-float16'), false, 'a float32 model is left alone');
  // What the CLI's note says: this model computes in float16 and its interface changes; the twin does neither.
  assert.deepEqual([computesInFloat16(m16), float16Interface(m16)], [true, ['x', 'y']]);
  assert.deepEqual([computesInFloat16(twin), float16Interface(twin)], [false, []]);
});

// ---- opset upgrade --------------------------------------------------------------------------------------------

async function upgradeAndCompare(m: ModelProto, target: number, tol = 1e-6): Promise<ModelProto> {
  const up = clone(ModelProtoSchema, m);
  assert.ok(upgradeOpset(up, target));
  assert.equal(up.opsetImport.find((o) => o.domain === '')!.version, BigInt(target));
  await assertSameOutputs(m, up, tol);
  return up;
}

test('opset upgrade: Clip min/max attributes (opset 6) become inputs (13)', async () => {
  const m = model({
    opset: 6,
    ir: 3,
    nodes: [makeNode('Clip', ['x'], ['y'], 'clip', { min: { float: 0.2 }, max: { float: 0.7 } }), makeNode('Clip', ['x'], ['z'], 'clip_lo', { min: { float: 0.5 } })],
    inputs: [vi('x', DT.FLOAT, [4, 8])],
    outputs: [vi('y', DT.FLOAT, [4, 8]), vi('z', DT.FLOAT, [4, 8])],
  });
  const up = await upgradeAndCompare(m, 13);
  const [clip, lo] = up.graph!.node;
  assert.equal(clip.attribute.length, 0);
  assert.equal(clip.input.length, 3);
  assert.deepEqual([...tensorToFloat32(init(up, clip.input[1])!)], [Math.fround(0.2)]);
  assert.deepEqual([...tensorToFloat32(init(up, clip.input[2])!)], [Math.fround(0.7)]);
  assert.equal(lo.input.length, 2, 'min only: no empty max input');
});

test('opset upgrade: Squeeze/Unsqueeze axes attribute (11) becomes an input (13)', async () => {
  const m = model({
    opset: 11,
    nodes: [makeNode('Unsqueeze', ['x'], ['u'], 'unsq', { axes: [0, 3] }), makeNode('Squeeze', ['u'], ['y'], 'sq', { axes: [0] })],
    inputs: [vi('x', DT.FLOAT, [2, 3])],
    outputs: [vi('y', DT.FLOAT, [2, 3, 1])],
  });
  const up = await upgradeAndCompare(m, 13);
  for (const [n, axes] of [[up.graph!.node[0], [0n, 3n]], [up.graph!.node[1], [0n]]] as const) {
    assert.equal(n.attribute.length, 0);
    assert.deepEqual([...decodeTensor(init(up, n.input[1])!).data], axes);
  }
});

test('opset upgrade: Softmax axis=1 on a rank-3 input keeps the opset-11 (flatten to 2-D) semantics at 13', async () => {
  const m = model({
    opset: 11,
    nodes: [makeNode('Softmax', ['x'], ['y'], 'sm', { axis: 1 })],
    inputs: [vi('x', DT.FLOAT, [2, 3, 4])],
    outputs: [vi('y', DT.FLOAT, [2, 3, 4])],
  });
  await upgradeAndCompare(m, 13);
  // The rewrite matters: a plain Softmax(axis=1) at opset 13 normalises over one axis only and differs.
  const naive = clone(ModelProtoSchema, m);
  naive.opsetImport[0].version = 13n;
  await assert.rejects(assertSameOutputs(m, naive, 1e-3), /max \|a−b\|/);
});

test('opset upgrade: Slice-9 starts/ends/axes attributes become inputs at 10', async () => {
  const m = model({
    opset: 9,
    nodes: [makeNode('Slice', ['x'], ['y'], 'slice', { starts: [1, 0], ends: [3, 1000], axes: [0, 2] })],
    inputs: [vi('x', DT.FLOAT, [4, 3, 5])],
    outputs: [vi('y', DT.FLOAT, [2, 3, 5])],
  });
  const up = await upgradeAndCompare(m, 10);
  const s = up.graph!.node[0];
  assert.equal(s.attribute.length, 0);
  assert.deepEqual(s.input.slice(1).map((n) => [...decodeTensor(init(up, n)!).data]), [[1n, 0n], [3n, 1000n], [0n, 2n]]);
});
