/**
 * Models with more than one input through the CLI: `--feed name=value` holds the inputs the data do not fill (a
 * recurrent state, a sample rate, a scale factor). Without it such a model could not be quantized from the CLI at
 * all (onnxruntime's "missing model input(s): state", naming no file). Real models: Silero VAD (fp16 weights,
 * input + state [2, batch, 128]) from ../shared/corpus, srcnn with a scale-factor input from ../shared/quantzoo.
 * The quantized VAD must agree with the float one run by onnxruntime directly on the same feeds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cli } from './helpers/cli.ts';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { TensorProto_DataType as DT } from 'onnx-buf';
import { fixedFeedTensors, type FixedFeed } from '../src/runtime/fixed-feeds.ts';
import { SHARED } from './helpers/models.ts';
import { writeNpy } from '../bench/util.ts';

const VAD = join(SHARED, 'corpus/silero_vad_half_fp16.onnx');
const VAD_SR = join(SHARED, 'corpus/silero_vad_op18_ifless.onnx');
const SRCNN = join(SHARED, 'quantzoo/Model/mmedit/srcnn_scale_input.onnx');
const skipVad = existsSync(VAD) && existsSync(VAD_SR) ? false : `../shared/corpus Silero VAD models not found (${VAD})`;
const skipSrcnn = existsSync(SRCNN) ? false : `../shared/quantzoo srcnn_scale_input not found (${SRCNN})`;

const tmp = mkdtempSync(join(tmpdir(), 'onnxquant-feeds-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));


function oneLine(r: { code: number; stderr: string }, expected: string): void {
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(r.stderr.trim().split('\n'), [expected]);
}

// Five 512-sample chunks of a chirp with noise: batches of 2 leave a ragged last batch of 1.
const AUDIO = join(tmp, 'audio.npy');
const audio = Float32Array.from({ length: 5 * 512 }, (_, i) => 0.3 * Math.sin(0.0005 * i * i) + 0.05 * Math.sin(i * 1.7));
writeNpy(AUDIO, { dims: [5, 512], data: audio });

test('a fill follows the data batch on a shared symbolic dimension; other dimensions as declared', () => {
  const data = { name: 'input', dataType: DT.FLOAT, dims: ['batch', 'sequence'] };
  const feeds: FixedFeed[] = [
    { input: { name: 'state', dataType: DT.FLOAT, dims: [2, 'batch', 128] }, value: 0.5, given: 'state=0.5' },
    { input: { name: 'sr', dataType: DT.INT64, dims: [] }, value: 16000, given: 'sr=16000' },
    { input: { name: 'on', dataType: DT.BOOL, dims: [1] }, value: 3, given: 'on=3' },
  ];
  const t = fixedFeedTensors(feeds, data, [3, 512]);
  assert.deepEqual(t.state.dims, [2, 3, 128]);
  assert.equal(t.state.type, 'float32');
  assert.ok((t.state.data as Float32Array).every((v) => v === 0.5));
  assert.equal(t.state.data.length, 768);
  assert.deepEqual([t.sr.type, t.sr.dims, t.sr.data[0]], ['int64', [], 16000n]);
  assert.deepEqual([t.on.type, [...t.on.data]], ['bool', [1]]);
});

test('quantize/analyse/deploy-check a two-input model: --feed state=0 quantizes it; without it one line names what is missing', { skip: skipVad }, async () => {
  const out = join(tmp, 'vad.onnx');
  const data = ['--calib', AUDIO, '--batch', '2', '--quiet', '-o', out];
  oneLine(await cli('quantize', VAD, ...data), `onnxquant: ${VAD}: model has 2 inputs (input, state); choose the one the data fill with --input, and give the others with --feed name=value`);
  oneLine(
    await cli('quantize', VAD, ...data, '--input', 'input'),
    `onnxquant: ${VAD}: model inputs besides 'input' need values: state float32 [2, batch, 128]; give each with --feed name=number (fills it) or --feed name=file.npy, e.g. --feed state=0`,
  );
  assert.equal(existsSync(out), false);
  const r = await cli('quantize', VAD, ...data, '--input', 'input', '--feed', 'state=0');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /quantized 6 layers .* with 3 batches of 2/);
  // The QDQ model against the float one, both run here by onnxruntime on the same feeds (the ragged last chunk too).
  const [f, q] = await Promise.all([VAD, out].map((m) => ort.InferenceSession.create(m, { graphOptimizationLevel: 'disabled' })));
  for (const n of [2, 1]) {
    const feeds = { input: new ort.Tensor('float32', audio.slice(0, n * 512), [n, 512]), state: new ort.Tensor('float32', new Float32Array(2 * n * 128), [2, n, 128]) };
    const [a, b] = [(await f.run(feeds)).output.data as Float32Array, (await q.run(feeds)).output.data as Float32Array];
    const err = Math.max(...a.map((v, i) => Math.abs(v - b[i])));
    assert.ok(err < 0.05, `speech probability differs by ${err} (float ${[...a]}, quantized ${[...b]})`);
  }
  // analyse takes the same feeds; the float model held against itself is exact, so the QDQ model's error is its own.
  const a = await cli('analyse', VAD, out, '--data', AUDIO, '--input', 'input', '--feed', 'state=0', '--batch', '2', '--quiet', '--out-dir', join(tmp, 'vad-report'));
  assert.equal(a.code, 0, a.stderr);
  const report = JSON.parse(readFileSync(join(tmp, 'vad-report', 'report.json'), 'utf8')) as { layers: unknown[]; summary: { oqe: number } };
  assert.equal(report.layers.length, 6);
  assert.ok(report.summary.oqe > 0 && report.summary.oqe < 0.2, `OQE ${report.summary.oqe}`);
  // deploy-check too, latency included: the state's batch is its second dimension, so it is made per batch size.
  const d = await cli('deploy-check', out, '--data', AUDIO, '--input', 'input', '--feed', 'state=0', '--float', VAD, '--batch', '2', '--steps', '2', '--runs', '2', '--warmup', '0');
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /latency batch 1 \(median/);
  assert.match(d.stdout, /latency batch 8 \(median/);
});

test('--feed mistakes are refused before any work, naming the input and the problem', { skip: skipVad }, async () => {
  const out = join(tmp, 'never.onnx');
  const q = (...feed: string[]) => cli('quantize', VAD_SR, '--calib', AUDIO, '--input', 'input', '--batch', '2', '--quiet', '-o', out, ...feed.flatMap((f) => ['--feed', f]));
  oneLine(await q('state=0', 'sr=16000', 'rate=8000'), `onnxquant: ${VAD_SR}: --feed 'rate=8000': the model has no input 'rate' (inputs: input, sr, state)`);
  oneLine(await q('state=0', 'sr=16000', 'input=0'), `onnxquant: ${VAD_SR}: --feed 'input=0': 'input' is the input the data fill (--input); feed the others`);
  oneLine(await q('state=zero', 'sr=16000'), `onnxquant: --feed 'state=zero': 'zero' is neither a number nor a .npy file`);
  oneLine(await q('state=0', 'sr=16000.5'), `onnxquant: ${VAD_SR}: --feed 'sr=16000.5': input 'sr' takes integers (int64)`);
  oneLine(await q('state=0', 'sr=16000', 'sr=8000'), `onnxquant: --feed: input 'sr' is given twice`);
  oneLine(await q('sr=16000'), `onnxquant: ${VAD_SR}: model inputs besides 'input' need values: state float32 [2, batch, 128]; give each with --feed name=number (fills it) or --feed name=file.npy, e.g. --feed state=0`);
  const wrong = join(tmp, 'state.npy');
  writeNpy(wrong, { dims: [2, 2, 64], data: new Float32Array(256) });
  oneLine(await q(`state=${wrong}`, 'sr=16000'), `onnxquant: ${wrong}: array of shape [2, 2, 64] does not fit input 'state' [2, batch, 128]`);
  assert.equal(existsSync(out), false);
});

test('a scale-factor input fed from a .npy: srcnn_scale_input quantizes and its QDQ model upscales like the float one', { skip: skipSrcnn }, async () => {
  const images = join(tmp, 'images');
  mkdirSync(images);
  for (let i = 0; i < 3; i++) {
    const px = Buffer.from(Uint8Array.from({ length: 64 * 64 * 3 }, (_, j) => (j * (7 + i) + ((j >> 7) * 13)) % 256));
    await sharp(px, { raw: { width: 64, height: 64, channels: 3 } }).png().toFile(join(images, `p${i}.png`));
  }
  const factor = join(tmp, 'factor.npy');
  writeNpy(factor, { dims: [4], data: Float32Array.from([1, 1, 3, 3]) });
  const out = join(tmp, 'srcnn.onnx');
  const r = await cli('quantize', SRCNN, '--calib', images, '--preprocess', 'raw-rgb', '--input', 'input', '--feed', `factor=${factor}`, '--batch', '1', '--quiet', '-o', out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /quantized 3 layers/);
  const feeds = { input: new ort.Tensor('float32', Float32Array.from({ length: 3 * 256 * 256 }, (_, j) => (j * 7) % 256), [1, 3, 256, 256]), factor: new ort.Tensor('float32', Float32Array.from([1, 1, 3, 3]), [4]) };
  const [a, b] = await Promise.all([SRCNN, out].map(async (m) => (await (await ort.InferenceSession.create(m, { graphOptimizationLevel: 'disabled' })).run(feeds)).output));
  assert.deepEqual(b.dims, a.dims);
  assert.deepEqual(a.dims, [1, 3, 768, 768]);
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  let num = 0;
  let den = 0;
  for (let i = 0; i < x.length; i++) {
    num += (x[i] - y[i]) ** 2;
    den += x[i] ** 2;
  }
  assert.ok(num / den < 1e-2, `power ratio ${num / den} (float vs QDQ output)`);
});
