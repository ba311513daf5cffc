/**
 * Export formats against reference samples of each format:
 * - TensorRT calibration cache: the MNIST `CalibrationTable` printed in NVIDIA/TensorRT
 *   samples/opensource/sampleINT8/README.md ("Calibration file", TRT-5100 header; scale = abs(max_dynamic_range)/127).
 * - ncnn int8 table: excerpts of BUG1989/caffe-int8-convert-tools classification-dev/squeezenet_v1_1.table (commit
 *   347a7832; the tool whose format ncnn adopted; Python floats, no trailing space) and lines in the layout
 *   Tencent/ncnn tools/quantize/ncnn2table.cpp QuantNet::save_table writes ("%s_param_0 " then "%f " per value, then
 *   "\n"; the first value here is the conv1 weight scale quoted in ncnn's docs/how-to-use-and-FAQ/quantized-int8-
 *   inference.md, printed with %f).
 * - qparams JSON: the sidecar `onnxquant quantize` writes (src/realise/sidecar.ts).
 * - QOperator ONNX: converted from an ort-cpu QDQ model; onnxruntime runs it (optimizations off, so nothing is fused
 *   for it) and its outputs match the QDQ model deployed by onnxruntime.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NCNN2TABLE_STYLE, ncnnTableFromSidecar, parseNcnnTable, writeNcnnTable } from '../src/export/ncnn-table.ts';
import { parseQParamsJson, sidecarFromModel, writeQParamsJson } from '../src/export/qparams.ts';
import { toQOperator } from '../src/export/qoperator.ts';
import { floatToHex, hexToFloat, parseTrtCache, trtCacheFromSidecar, writeTrtCache } from '../src/export/trt-cache.ts';
import { quantizeForTarget } from '../src/quant/plan-target.ts';
import { getTarget } from '../src/quant/targets.ts';
import { getRule } from '../src/quant/rules.ts';
import { quantize } from '../src/quantize.ts';
import { createSession } from '../src/runtime/session.ts';
import { iter, randomBatches, smallNet } from './deploy-fixtures.test.ts';

// NVIDIA/TensorRT samples/opensource/sampleINT8/README.md, "Calibration file".
const TRT_SAMPLE = `TRT-5100-EntropyCalibration2
data: 3c000889
conv1: 3c8954be
pool1: 3c8954be
conv2: 3dd33169
pool2: 3dd33169
ip1: 3daeff07
ip2: 3e7d50ec
prob: 3c010a14
`;

// BUG1989/caffe-int8-convert-tools classification-dev/squeezenet_v1_1.table (first and last weight lines, first
// activation lines).
const NCNN_SAMPLE_PY = `conv1_param_0 138.066410735
fire2/squeeze1x1_param_0 92.028103407
conv10_param_0 499.107042642
conv1 0.840930858494
fire2/squeeze1x1 0.155449063458
fire2/expand1x1 0.0890687782763
fire2/expand3x3 0.0890687782763
`;

// ncnn2table's own layout (save_table: "%s_param_0 ", "%f " per value, "\\n"); conv1's weight scale from ncnn's
// quantized-int8-inference.md, a depthwise line with one scale per group.
const NCNN_SAMPLE_C = 'conv1_param_0 156.639840 \nconv2_1/dw_param_0 0.000000 72.129143 149.919382 \nconv1 49.466518 \n';

const res = quantizeForTarget(smallNet(), iter(randomBatches(4, 4)), { target: getTarget('ort-cpu'), intraOpThreads: 1 });

test('TensorRT calibration cache: the TensorRT sample round-trips byte for byte and decodes to absmax/127', async () => {
  const cache = parseTrtCache(TRT_SAMPLE);
  assert.equal(cache.header, 'TRT-5100-EntropyCalibration2');
  assert.equal(cache.entries.length, 8);
  assert.equal(writeTrtCache(cache), TRT_SAMPLE);
  const scale = new Map(cache.entries.map((e) => [e.name, e.scale]));
  // prob is a softmax output: absmax 1 (to within one of the entropy calibrator's histogram bins), scale ≈ 1/127.
  assert.ok(Math.abs(scale.get('prob')! * 127 - 1) < 1e-3, String(scale.get('prob')! * 127));
  assert.equal(floatToHex(scale.get('prob')!), '3c010a14');
  // MaxPool keeps its input's scale.
  assert.equal(scale.get('pool1'), scale.get('conv1'));
  // MNIST input is 0..1 pixels scaled by 1/256 or so: absmax of `data` ≈ 1.
  assert.ok(Math.abs(scale.get('data')! * 127 - 0.99) < 0.02, String(scale.get('data')! * 127));
  assert.throws(() => parseTrtCache('data: 3c000889\n'), /header/);
  // Ours, from a sidecar: one line per activation tensor, hex of float32(absmax/127).
  const { sidecar } = await res;
  const ours = trtCacheFromSidecar(sidecar, 'TRT-8601-EntropyCalibration2');
  const text = writeTrtCache(ours);
  assert.ok(text.startsWith('TRT-8601-EntropyCalibration2\n'));
  assert.equal(writeTrtCache(parseTrtCache(text)), text);
  const t = sidecar.tensors.find((x) => x.tensor === 'mp')!;
  const line = text.split('\n').find((l) => l.startsWith('mp: '))!;
  assert.equal(hexToFloat(line.slice(4)), Math.fround(Math.max(Math.abs(t.min[0]), Math.abs(t.max[0])) / 127));
});

test('ncnn int8 table: both samples round-trip byte for byte; values are 127/absmax', async () => {
  const py = parseNcnnTable(NCNN_SAMPLE_PY);
  assert.deepEqual(py.style, { numbers: 'shortest', trailingSpace: false });
  assert.equal(writeNcnnTable(py.entries, py.style), NCNN_SAMPLE_PY);
  const c = parseNcnnTable(NCNN_SAMPLE_C);
  assert.deepEqual(c.style, NCNN2TABLE_STYLE);
  assert.equal(writeNcnnTable(c.entries, c.style), NCNN_SAMPLE_C);
  assert.deepEqual(c.entries[1].values, [0, 72.129143, 149.919382]);
  // Reciprocal convention: q = x · s, s = 127/absmax. conv1's weights of squeezenet reach |w| ≈ 0.92; its input is
  // mean-subtracted 0–255 pixels, threshold ≈ 151.
  const w = py.entries.find((e) => e.name === 'conv1_param_0')!.values[0];
  assert.ok(Math.abs(127 / w - 0.9198) < 1e-3);
  const a = py.entries.find((e) => e.name === 'conv1')!.values[0];
  assert.ok(127 / a > 140 && 127 / a < 160, String(127 / a));
  // Ours: weights first (per output channel), then the layers' input scales, in ncnn2table's layout.
  const { sidecar } = await res;
  const entries = ncnnTableFromSidecar(sidecar);
  const text = writeNcnnTable(entries);
  assert.equal(writeNcnnTable(parseNcnnTable(text).entries), text);
  const names = entries.map((e) => e.name);
  assert.deepEqual(names.slice(0, 6), ['conv0_param_0', 'conva_param_0', 'convb_param_0', 'conv2_param_0', 'conv3_param_0', 'fc_param_0']);
  assert.deepEqual(names.slice(6), ['conv0', 'conva', 'convb', 'conv2', 'conv3', 'fc']);
  const w0 = sidecar.tensors.find((t) => t.tensor === 'w0')!;
  assert.equal(entries[0].values.length, 8);
  assert.equal(entries[0].values[3], 127 / Math.max(Math.abs(w0.min[3]), Math.abs(w0.max[3])));
  const x = sidecar.tensors.find((t) => t.tensor === 'x')!;
  assert.equal(entries[6].values[0], 127 / Math.max(Math.abs(x.min[0]), Math.abs(x.max[0])));
  assert.match(text.split('\n')[6], /^conv0 \d+\.\d{6} $/);
});

test('qparams JSON: the sidecar round-trips; rebuilt from the QDQ model it has the same scales', async () => {
  const { sidecar, model } = await res;
  const text = writeQParamsJson(sidecar);
  assert.equal(writeQParamsJson(parseQParamsJson(text)), text);
  assert.throws(() => parseQParamsJson('{"schema":"other"}'), /sidecar/);
  const rebuilt = sidecarFromModel(model);
  for (const t of sidecar.tensors) {
    const r = rebuilt.tensors.find((x) => x.tensor === t.tensor && x.role === t.role);
    assert.ok(r, `${t.role} ${t.tensor} rebuilt`);
    assert.deepEqual(r.scale, t.scale, t.tensor);
    assert.deepEqual(r.zeroPoint, t.zeroPoint, t.tensor);
    if (t.role === 'weight') assert.equal(r.axis, t.axis);
  }
});

test('qparams rebuilt from an FP8 QDQ model: every tensor, as E4M3 with the rule\'s ±448, the same scales (it rebuilt none, and exports were empty)', async () => {
  const q = await quantize(smallNet(), iter(randomBatches(4, 4)), { rule: getRule('onnxquant-fp8') });
  const rebuilt = sidecarFromModel(q.model);
  assert.equal(rebuilt.tensors.length, q.sidecar.tensors.length);
  for (const t of q.sidecar.tensors) {
    const r = rebuilt.tensors.find((x) => x.tensor === t.tensor && x.role === t.role);
    assert.ok(r, `${t.role} ${t.tensor} rebuilt`);
    assert.deepEqual([r.format, r.bits, r.qmin, r.qmax, r.symmetric], ['fp8e4m3', 8, -448, 448, true], t.tensor);
    assert.deepEqual(r.scale, t.scale, t.tensor);
    // Activations: the representable range ±448·s.
    if (t.role === 'activation') assert.deepEqual(r.max, t.scale.map((s) => Math.fround(448 * s)), t.tensor);
  }
});

test('QOperator: QLinearConv model runs in onnxruntime and matches the QDQ model as deployed', async () => {
  const { model } = await res;
  const { model: qop, converted, left } = toQOperator(model);
  assert.equal(converted.QLinearConv, 5);
  assert.equal(converted.Concat, 1);
  assert.equal(converted.MaxPool, 1);
  assert.deepEqual(left, []);
  const ops = qop.graph!.node.map((n) => n.opType);
  assert.ok(!ops.includes('Conv'));
  assert.equal(ops.filter((o) => o === 'Relu').length, 1, 'only the Relu after the (float) Add is left');
  const conv = qop.graph!.node.find((n) => n.opType === 'QLinearConv' && n.name === 'conv0')!;
  assert.equal(conv.input.length, 9, 'x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias');
  const bias = qop.graph!.initializer.find((t) => t.name === conv.input[8])!;
  assert.equal(bias.dataType, 6, 'int32 bias');
  const feeds = randomBatches(2, 8, 77);
  const plain = await createSession(qop, { mode: 'simulate', intraOpThreads: 1 });
  const deployed = await createSession(model, { mode: 'deploy', intraOpThreads: 1 });
  try {
    for (const f of feeds) {
      const a = (await plain.run(f)).logits.data as Float32Array;
      const b = (await deployed.run(f)).logits.data as Float32Array;
      let max = 0;
      for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
      assert.ok(max < 1e-5, `QOperator vs QDQ deploy: ${max}`);
    }
  } finally {
    await plain.release();
    await deployed.release();
  }
});

test('QOperator: 16-bit Q/DQ pairs (overrides, 16-bit fallback) are left as they are; the model still loads and runs', async () => {
  const data = randomBatches(2, 4, 5);
  const { model, sidecar } = await quantize(smallNet(), iter(data), { rule: getRule('onnxquant-int8-perchannel'), filter: { overrides: { '*': { bits: 16 } } } });
  // The parameters read back from the model say 16 bits for weights and activations alike, as the sidecar does.
  const rebuilt = sidecarFromModel(model);
  assert.equal(rebuilt.tensors.length, sidecar.tensors.length);
  assert.deepEqual([...new Set(rebuilt.tensors.map((t) => `${t.role} ${t.bits}`))].sort(), ['activation 16', 'weight 16']);
  const { model: qop, converted, left } = toQOperator(model);
  assert.equal(converted.QLinearConv, undefined, JSON.stringify(converted));
  assert.ok(left.length > 0 && left.every((l) => /not 8-bit|not quantized/.test(l.reason)), JSON.stringify(left));
  const s = await createSession(qop, { mode: 'deploy', intraOpThreads: 1 });
  await s.run(data[0]);
  await s.release();
});
