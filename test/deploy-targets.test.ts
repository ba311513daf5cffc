/**
 * Deployment targets (src/quant/targets.ts), the target planner (src/quant/plan-target.ts) and the deploy check
 * (src/export/deploy-check.ts), on the small Conv/Concat/MaxPool/Add/GlobalAveragePool/Gemm net built in
 * deploy-fixtures.test.ts. The ../shared part (squeezenet_cifar10 plan) is skipped when ../shared is absent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { calibrate } from '../src/calibrate/calibrate.ts';
import { deployCheck } from '../src/export/deploy-check.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { roundHalfEven } from '../src/quant/numerics.ts';
import { alignParams, inferElemTypes, planTarget, quantizeForTarget } from '../src/quant/plan-target.ts';
import { getTarget, TARGET_NAMES, TARGETS } from '../src/quant/targets.ts';
import { prepareModel } from '../src/quantize.ts';
import { iter, randomBatches, smallNet } from './deploy-fixtures.test.ts';

const SHARED = new URL('../../shared/quantzoo/Model/cifar10/squeezenet_cifar10.onnx', import.meta.url).pathname;

test('targets are valid data', () => {
  assert.deepEqual(TARGET_NAMES.sort(), ['ncnn', 'ort-cpu', 'ort-cpu-vnni', 'ort-web', 'tensorrt']);
  for (const [key, t] of Object.entries(TARGETS)) {
    assert.equal(t.name, key);
    for (const cfg of [t.activation, t.weight]) {
      assert.equal(cfg.format, 'int');
      assert.ok(cfg.qmin < 0 || !cfg.symmetric, `${key}: symmetric configs are signed`);
      assert.ok(cfg.qmin < cfg.qmax && cfg.qmax - cfg.qmin <= 255, `${key}: 8-bit range`);
    }
    assert.equal(t.activation.perChannel, false);
    assert.equal(t.weight.perChannel, true, `${key}: per-channel weights`);
    assert.equal(t.matmulWeightAxis, 'output', `${key}: per-channel axis is the output channel`);
    const ops = t.extraOps.map((e) => e.op);
    assert.equal(new Set(ops).size, ops.length, `${key}: extra ops listed once`);
    for (const e of t.extraOps) assert.ok(['compute', 'passthrough', 'concat'].includes(e.kind));
    assert.doesNotThrow(() => JSON.parse(JSON.stringify(t)));
  }
  // onnxruntime x86: u8 activations (asymmetric) × s8 weights; TensorRT and ncnn: s8 symmetric.
  assert.equal(TARGETS['ort-cpu'].activation.qmin, 0);
  assert.equal(TARGETS['ort-cpu'].activation.symmetric, false);
  assert.equal(TARGETS.tensorrt.activation.qmin, -128);
  assert.ok(TARGETS.tensorrt.extraOps.some((e) => e.op === 'Add'), 'TensorRT: residual Add inputs quantized');
  assert.throws(() => getTarget('nope'), /unknown target/);
});

test('dtype propagation keeps int64 shape arithmetic out of plans', async () => {
  const { buildModel, vi } = await import('./deploy-fixtures.test.ts');
  const { makeNode } = await import('../src/ir/graph.ts');
  const { makeTensor } = await import('../src/onnx/tensor-codec.ts');
  const { TensorProto_DataType: DT } = await import('onnx-buf');
  const m = buildModel(
    [makeNode('Shape', ['x'], ['s'], 'shape'), makeNode('Add', ['s', 's'], ['s2'], 'add_int'), makeNode('Add', ['x', 'x'], ['y'], 'add_float')],
    [vi('x', DT.FLOAT, [1, 4])],
    [vi('y', DT.FLOAT, [1, 4]), vi('s2', DT.INT64, [2])],
    [makeTensor('unused', DT.FLOAT, [1], [0])],
  );
  const types = inferElemTypes(m);
  assert.equal(types.get('s'), DT.INT64);
  assert.equal(types.get('s2'), DT.INT64);
  const plan = planTarget(m, getTarget('ort-cpu'));
  assert.deepEqual(plan.tensors.map((t) => t.tensor), ['x']);
  assert.deepEqual(plan.layers.map((l) => l.node), ['add_float']);
});

test('ort-cpu plan: Q/DQ on Conv outputs (after the fused Relu), Concat/MaxPool share one scale, int32 biases', () => {
  const plan = planTarget(smallNet(), getTarget('ort-cpu'));
  const act = new Map(plan.tensors.filter((t) => t.role === 'activation').map((t) => [t.tensor, t]));
  // Conv outputs are quantized after their Relu: r0 (conv0), ra/rb (concat inputs), c2/c3 (Add inputs), rs (Add+Relu).
  for (const t of ['x', 'r0', 'ra', 'rb', 'cat', 'mp', 'c2', 'c3', 'rs', 'gap', 'flat']) assert.ok(act.has(t), `${t} planned`);
  // Nothing between a Conv and its Relu (ORT's ReluQuantFusion needs Conv → Relu → Q).
  for (const t of ['c0', 'ca', 'cb', 'sum']) assert.ok(!act.has(t), `${t} not planned`);
  // Every consumer reads the DequantizeLinear.
  assert.deepEqual(act.get('r0')!.uses.map((u) => u.node).sort(), ['conva', 'convb']);
  assert.deepEqual(act.get('mp')!.uses.map((u) => u.node).sort(), ['conv2', 'conv3']);
  const groups = plan.groups.map((g) => [...g].sort());
  assert.deepEqual(groups.find((g) => g.includes('activation:cat')), ['activation:cat', 'activation:mp', 'activation:ra', 'activation:rb']);
  assert.deepEqual(groups.find((g) => g.includes('activation:gap')), ['activation:flat', 'activation:gap']);
  assert.equal(plan.biases.length, 6);
  const w0 = plan.tensors.find((t) => t.tensor === 'w0')!;
  assert.equal(w0.axis, 0);
  const wf = plan.tensors.find((t) => t.tensor === 'wf')!;
  assert.equal(wf.axis, 0, 'Gemm transB=1: output channel is axis 0');
  // TensorRT: inputs only (no Q/DQ on Conv outputs except where an Add or a layer reads them).
  const trt = planTarget(smallNet(), getTarget('tensorrt'));
  const trtActs = new Set(trt.tensors.filter((t) => t.role === 'activation').map((t) => t.tensor));
  assert.ok(trtActs.has('c2') && trtActs.has('c3'), 'residual Add inputs');
  assert.ok(trtActs.has('rs'), 'GlobalAveragePool input');
  assert.ok(!trtActs.has('gap') && !trtActs.has('sum') && !trtActs.has('c0'), 'no output quantization');
});

test('Concat alignment: one shared scale = the union of the members’ calibrated ranges (hand check)', async () => {
  const target = getTarget('ort-cpu');
  const { model } = prepareModel(smallNet(), target);
  const plan = planTarget(model, target);
  const { params } = await calibrate(model, plan, iter(randomBatches(3, 4)), { intraOpThreads: 1 });
  const group = plan.groups.find((g) => g.includes('activation:cat'))!;
  const before = group.map((k) => ({ k, min: params.get(k)!.min[0], max: params.get(k)!.max[0], scale: params.get(k)!.scale[0] }));
  assert.ok(new Set(before.map((b) => b.scale)).size > 1, 'members calibrate to different scales on their own');
  const lo = Math.min(0, ...before.map((b) => b.min));
  const hi = Math.max(0, ...before.map((b) => b.max));
  alignParams(plan, params);
  const expectScale = Math.fround((hi - lo) / 255);
  const expectZp = roundHalfEven(0 - lo / expectScale);
  for (const k of group) {
    assert.equal(params.get(k)!.scale[0], expectScale, k);
    assert.equal(params.get(k)!.zeroPoint[0], expectZp, k);
  }
  assert.equal(expectZp, 0, 'Relu outputs: range starts at 0, zero point 0');
  assert.ok(Math.abs(expectScale - Math.max(...before.map((b) => b.max)) / 255) < 1e-9);
});

test('deploy-check: ort-cpu model runs as integer kernels (QLinearConv) and agrees with the simulation', async () => {
  const res = await quantizeForTarget(smallNet(), iter(randomBatches(4, 4)), { target: getTarget('ort-cpu'), intraOpThreads: 1 });
  const report = await deployCheck(res.model, {
    floatModel: res.floatModel,
    batches: randomBatches(3, 8, 42),
    latencyBatches: [1, 8],
    runs: 3,
    warmup: 1,
    intraOpThreads: 1,
  });
  assert.equal(report.kernels.integer.QLinearConv, 5, JSON.stringify(report.kernels));
  assert.ok(report.kernels.integer.QLinearConcat === 1 && report.kernels.integer.QLinearAdd === 1 && report.kernels.integer.QGemm === 1);
  assert.equal(report.kernels.dequantizeLinear, 0, 'no DequantizeLinear left');
  assert.equal(report.kernels.quantizeLinear, 1, 'only the input is quantized at run time');
  const [out] = report.simulateVsDeploy;
  assert.equal(out.output, 'logits');
  assert.ok(out.maxAbsDiff < 1e-5, `simulate vs deploy ${out.maxAbsDiff}`);
  assert.equal(out.top1Agreement, 1);
  assert.equal(out.positions, 24);
  assert.ok(report.floatVsDeploy![0].relError < 0.2);
  assert.deepEqual(report.latency.map((l) => l.batch), [1, 8]);
  for (const l of report.latency) assert.ok(l.quantMs.median > 0 && l.floatMs!.median > 0 && l.speedup! > 0);
});

test('squeezenet_cifar10 (../shared): ort-cpu plan covers every Conv and aligns the Fire Concats', { skip: !existsSync(SHARED) && 'needs ../shared/quantzoo (absent)' }, () => {
  const target = getTarget('ort-cpu');
  const { model } = prepareModel(loadModel(SHARED), target);
  const plan = planTarget(model, target);
  const convs = model.graph!.node.filter((n) => n.opType === 'Conv').length;
  assert.equal(plan.layers.filter((l) => l.op === 'Conv').length, convs);
  const concats = model.graph!.node.filter((n) => n.opType === 'Concat').length;
  assert.ok(concats > 0 && plan.groups.length >= concats);
});
