/**
 * Output paths, as users type them: `quantize -o` and `export -o` into a folder that does not exist fail at once
 * (exit 2, one stderr line naming the path, nothing written), `analyse --out-dir` creates a missing folder (it used
 * to fail with a stack trace when writing the report, after the whole analysis), an output folder that is really a
 * file is refused before any work, and a successful quantize leaves its model and sidecar and no temp file.
 * Also: options a deployment target would ignore are refused up front, undecodable calibration images fail with
 * one line naming the image, and a zoo --root that is not a QuantZoo workspace fails before writing any table.
 * Model: the npm PP-OCRv4 recogniser; data: one generated image.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cli } from './helpers/cli.ts';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { NPM_MODEL, npmModelWithInput } from './helpers/models.ts';
import { saveModel } from '../src/onnx/model-io.ts';



function oneLineError(r: { code: number; stdout: string; stderr: string }, path: string, problem: RegExp): void {
  assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.split('\n').filter((l) => l);
  assert.equal(lines.length, 1, `one stderr line, got:\n${r.stderr}`);
  assert.ok(lines[0].startsWith(`onnxquant: ${path}: `), lines[0]);
  assert.match(lines[0], problem);
}

const tmp = mkdtempSync(join(tmpdir(), 'onnxquant-outputs-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
const images = join(tmp, 'images');
mkdirSync(images);
await sharp({ create: { width: 192, height: 48, channels: 3, background: { r: 240, g: 230, b: 200 } } })
  .composite([{ input: { create: { width: 60, height: 20, channels: 3, background: { r: 20, g: 20, b: 20 } } }, left: 30, top: 14 }])
  .png()
  .toFile(join(images, 'line.png'));
const data = ['--calib', images, '--preprocess', 'ocr-48x320', '--batch', '1', '--calib-steps', '1', '--quiet'];

test('quantize -o into a missing folder: one line naming the path, nothing written', async () => {
  const out = join(tmp, 'missing', 'q.onnx');
  oneLineError(await cli('quantize', NPM_MODEL, ...data, '-o', out), out, /folder .*missing does not exist/);
  assert.equal(existsSync(join(tmp, 'missing')), false);
});

test('quantize writes the model and its sidecar and leaves no temp file; export -o into a missing folder fails at once', async () => {
  const dir = join(tmp, 'q');
  mkdirSync(dir);
  const r = await cli('quantize', NPM_MODEL, ...data, '-o', join(dir, 'q.onnx'));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readdirSync(dir).sort(), ['q.onnx', 'q.qparams.json']);
  const out = join(tmp, 'nope', 'model.cache');
  oneLineError(await cli('export', join(dir, 'q.qparams.json'), '--format', 'trt-cache', '-o', out), out, /does not exist/);
  const noSidecar = join(dir, 'nope.qparams.json');
  oneLineError(await cli('export', noSidecar, '--format', 'trt-cache', '-o', join(dir, 'x.cache')), noSidecar, /file not found/);
});

test('analyse --out-dir: a missing folder is created; a file in its place is refused before the analysis', async () => {
  const q = join(tmp, 'q2.onnx');
  assert.equal((await cli('quantize', NPM_MODEL, ...data, '-o', q)).code, 0);
  const analyse = (outDir: string) => cli('analyse', NPM_MODEL, q, '--data', images, '--preprocess', 'ocr-48x320', '--batch', '1', '--quiet', '--out-dir', outDir);
  const nested = join(tmp, 'reports', 'a', 'b');
  const r = await analyse(nested);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readdirSync(nested).sort(), ['report.html', 'report.json']);
  oneLineError(await analyse(q), q, /cannot create the output folder: a file of that name is in the way/);
});

test('options a deployment target would ignore are refused before any work: --override, --exclude-region, --recipe', async () => {
  const dir = join(tmp, 'target');
  mkdirSync(dir);
  for (const [flag, value, what] of [
    ['--override', 'x={"bits":16}', '--override applies to the OnnxQuant rules'],
    ['--exclude-region', 'x:y', '--exclude-region applies to the OnnxQuant rules'],
    ['--recipe', 'best', '--recipe applies to the OnnxQuant rules'],
  ]) {
    const r = await cli('quantize', NPM_MODEL, ...data, '--rule', 'ort-cpu', flag, value, '-o', join(dir, 'q.onnx'));
    assert.equal(r.code, 2, `${flag}: exit code (stderr: ${r.stderr})`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.ok(r.stderr.includes(what) && r.stderr.includes("deployment target 'ort-cpu'"), r.stderr);
  }
  assert.deepEqual(readdirSync(dir), [], 'nothing written');
});

test('calibration data that cannot be decoded: one line naming the image (a corrupt file, a label file pointing nowhere)', async () => {
  const bad = join(tmp, 'bad-images');
  mkdirSync(bad);
  writeFileSync(join(bad, 'a.png'), 'not a png');
  const out = join(tmp, 'bad.onnx');
  oneLineError(await cli('quantize', NPM_MODEL, '--calib', bad, '--preprocess', 'ocr-48x320', '--quiet', '-o', out), join(bad, 'a.png'), /cannot decode image/);
  const labels = join(tmp, 'labels.txt');
  writeFileSync(labels, 'missing.png\tabc\n');
  oneLineError(await cli('quantize', NPM_MODEL, '--calib', labels, '--preprocess', 'ocr-48x320', '--quiet', '-o', out), join(tmp, 'missing.png'), /cannot decode image \(file not found\)/);
  assert.equal(existsSync(out), false, 'nothing written');
});

test('data of the wrong shape and an analysis of two unrelated models: one line each that says what does not match', async () => {
  const out = join(tmp, 'shape.onnx');
  const r = await cli('quantize', NPM_MODEL, '--calib', images, '--preprocess', 'imagenet', '--batch', '1', '--calib-steps', '1', '--quiet', '-o', out);
  // Checked before onnxruntime runs: its own message named neither the data nor the shape after preprocessing.
  oneLineError(r, images, /samples of shape \[3, 224, 224\] \(after preprocessing\) do not fit input 'x' of shape \[\S+, 3, 48, \S+\]$/);
  assert.equal(existsSync(out), false);
  // Channels-first images for a channels-last input: the message says which layout the model takes.
  const nhwcFile = join(tmp, 'nhwc.onnx');
  saveModel(npmModelWithInput(['N', 48, 320, 3]), nhwcFile);
  oneLineError(
    await cli('quantize', nhwcFile, '--calib', images, '--preprocess', 'ocr-48x320', '--batch', '1', '--quiet', '-o', out),
    images,
    /samples of shape \[3, 48, 320\] \(after preprocessing\) do not fit input 'x' of shape \[N, 48, 320, 3\]: the model takes channels last — use a preprocessing with "layout": "nhwc"/,
  );
  const det = NPM_MODEL.replace('ch_PP-OCRv4_rec_infer', 'ch_ppocr_mobile_v2.0_cls_infer');
  const dir = join(tmp, 'q');
  oneLineError(await cli('analyse', det, join(dir, 'q.onnx'), '--data', images, '--preprocess', 'ocr-48x320', '--quiet', '--out-dir', join(tmp, 'an-mismatch')), join(dir, 'q.onnx'), /is not a quantized .*cls_infer.onnx: that model's output '.*' is not among its outputs/);
});

test('zoo --root that is not a QuantZoo workspace, --measure-batches with no recipe or no batch left to fit, --keep-test with no recipe or unknown, or --reuse-only on a folder without cells: one line naming it, exit 2, no tables', async () => {
  const out = join(tmp, 'zoo-out');
  const missing = join(tmp, 'no-such-zoo');
  oneLineError(await cli('zoo', '--root', missing, '--out', out), missing, /^onnxquant: \S+: no such folder$/);
  const empty = join(tmp, 'empty-zoo');
  mkdirSync(join(empty, 'Data'), { recursive: true });
  oneLineError(await cli('zoo', '--root', empty, '--out', out), empty, /not a QuantZoo workspace: it has no Model\/ folder/);
  // --measure-batches judges a recipe's passes: refused without one, or when it leaves nothing to fit on.
  const measureAlone = await cli('zoo', '--measure-batches', '2', '--out', out);
  assert.equal(measureAlone.stderr.trim(), 'onnxquant: --measure-batches sets how a recipe judges its passes: add a recipe (--recipes or rule+recipe), or leave it out');
  const measureAll = await cli('zoo', '--recipes', 'best', '--calib-batches', '4', '--measure-batches', '4', '--out', out);
  assert.equal(measureAll.stderr.trim(), 'onnxquant: --measure-batches 4 leaves no calibration batch to fit on (--calib-batches 4)');
  // --keep-test likewise (the zoo had none: its keep test came from the task alone).
  const keepAlone = await cli('zoo', '--keep-test', 'mean-or-log', '--out', out);
  assert.equal(keepAlone.stderr.trim(), 'onnxquant: --keep-test judges the passes of a recipe: add a recipe (--recipes or rule+recipe), or leave --keep-test out');
  const keepUnknown = await cli('zoo', '--recipes', 'best', '--keep-test', 'log', '--out', out);
  assert.equal(keepUnknown.stderr.trim(), "onnxquant: --keep-test must be mean, mean-or-log or lower, got 'log'");
  assert.equal(existsSync(out), false);
  // --reuse-only on a folder that is not there, or holds no cell: one line, no tables (they were written empty, exit 0).
  oneLineError(await cli('zoo', '--reuse-only', '--out', out), out, /no such folder \(--reuse-only tabulates the cells already there\)/);
  assert.equal(existsSync(out), false);
  mkdirSync(out);
  oneLineError(await cli('zoo', '--reuse-only', '--out', out), out, /holds no result for these 3 cell\(s\) \(--reuse-only computes nothing; tables not written\)/);
  assert.deepEqual(readdirSync(out), []);
});

test('an empty data folder is one line naming it (quantize used to end in a stack trace, analyse in an empty report)', async () => {
  const empty = join(tmp, 'empty-data');
  mkdirSync(empty);
  writeFileSync(join(empty, 'notes.md'), 'no images here');
  const q = await cli('quantize', NPM_MODEL, '--calib', empty, '--quiet', '-o', join(tmp, 'never.onnx'));
  oneLineError(q, empty, /no samples in it/);
  assert.equal(existsSync(join(tmp, 'never.onnx')), false);
  const reports = join(tmp, 'never-reports');
  oneLineError(await cli('analyse', NPM_MODEL, NPM_MODEL, '--data', empty, '--quiet', '--out-dir', reports), empty, /no samples in it/);
  assert.equal(existsSync(reports), false);
});

test('quantize -o onto the input model (by another spelling of its path) is refused; the model is left as it was', async () => {
  const dir = join(tmp, 'self');
  mkdirSync(dir);
  const model = join(dir, 'm.onnx');
  copyFileSync(NPM_MODEL, model);
  const before = readFileSync(model);
  const out = `${dir}/./m.onnx`; // not normalised: path.join would make it the same string
  oneLineError(await cli('quantize', model, ...data, '-o', out), out, /is the model being quantized: writing there would replace it/);
  assert.ok(readFileSync(model).equals(before));
  assert.deepEqual(readdirSync(dir), ['m.onnx']);
});

test('a filter or option that names nothing in the model is a one-line error before calibration, not silently ignored', async () => {
  const out = join(tmp, 'filtered.onnx');
  for (const [flag, value, problem] of [
    ['--exclude-node', 'p2o.Conv.999', /--exclude-node 'p2o\.Conv\.999' matches no node of the model/],
    ['--override', 'no_such_tensor=16', /--override 'no_such_tensor' matches no tensor of the model/],
    ['--exclude-region', 'x:no_such_tensor', /--exclude-region 'no_such_tensor' matches no tensor of the model/],
    ['--exclude-op', 'Matmul', /--exclude-op 'Matmul' is not an op type the rule quantizes \(Conv, ConvTranspose, Gemm, MatMul/],
  ] as const)
    oneLineError(await cli('quantize', NPM_MODEL, ...data, flag, value, '-o', out), NPM_MODEL, problem);
  const provider = await cli('quantize', NPM_MODEL, ...data, '--provider', 'cuda', '-o', out);
  assert.equal(provider.stderr.trim(), "onnxquant: --provider must be cpu or webgpu, got 'cuda'");
  // WebGPU needs a GPU with a Vulkan driver: where there is none (CI), a one-line error and no output; where there
  // is one, the model is written.
  const gpu = await cli('quantize', NPM_MODEL, ...data, '--provider', 'webgpu', '-o', out);
  if (gpu.code === 0) rmSync(out);
  else assert.match(gpu.stderr.trim(), /^onnxquant: the WebGPU provider is not available here \(it needs a GPU with a Vulkan driver and libvulkan\.so\.1\): [^\n]*$/);
  const stats = await cli('quantize', NPM_MODEL, ...data, '--stats-on', 'floats', '-o', out);
  assert.equal(stats.stderr.trim(), "onnxquant: --stats-on must be quantized-weights or float, got 'floats'"); // was read as quantized-weights
  assert.equal(existsSync(out), false);
  // A glob that matches is accepted (and an op type the rule quantizes), so the check is not a blanket refusal.
  const ok = await cli('quantize', NPM_MODEL, ...data, '--exclude-node', 'p2o.Conv.3?', '--exclude-op', 'Gemm', '-o', out);
  assert.equal(ok.code, 0, ok.stderr);
  const analyse = (...extra: string[]) => cli('analyse', NPM_MODEL, out, '--data', images, '--preprocess', 'ocr-48x320', '--batch', '1', '--quiet', '--out-dir', join(tmp, 'an-opts'), ...extra);
  oneLineError(await analyse('--outputs', 'no_such_tensor'), NPM_MODEL, /--outputs 'no_such_tensor': no node of this model computes it/);
  const bad = await analyse('--isolated', 'sometimes');
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr.trim(), "onnxquant: --isolated must be none, both or all, got 'sometimes'");
  assert.equal(existsSync(join(tmp, 'an-opts')), false);
});

test('deploy-check: a --json path that cannot be written, or a --float model with another interface, is refused before the check; a model without Q/DQ is warned about', async () => {
  const dir = join(tmp, 'dc');
  mkdirSync(dir);
  const q = join(dir, 'q.onnx');
  assert.equal((await cli('quantize', NPM_MODEL, ...data, '-o', q)).code, 0);
  const check = (...extra: string[]) => cli('deploy-check', q, '--data', images, '--preprocess', 'ocr-48x320', '--batch', '1', '--steps', '1', '--latency-batch', '', ...extra);
  const json = join(tmp, 'no-such-folder', 'r.json');
  oneLineError(await check('--json', json), json, /cannot write here: folder .*no-such-folder does not exist/); // was a stack trace after the whole check
  // The PP-OCRv4 detector takes the same input name 'x' but computes other outputs: it cannot be the float model.
  const det = NPM_MODEL.replace('ch_PP-OCRv4_rec_infer', 'ch_PP-OCRv4_det_infer');
  oneLineError(await check('--float', det), q, /is not a quantized .*ch_PP-OCRv4_det_infer\.onnx: that model's output 'sigmoid_0\.tmp_0' is not among its outputs/);
  const ok = await check('--float', NPM_MODEL, '--json', join(dir, 'r.json'));
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')).floatVsDeploy.length > 0);
  // A float model passed as the quantized one runs, with a warning that there is nothing quantized to check.
  const flt = await cli('deploy-check', NPM_MODEL, '--data', images, '--preprocess', 'ocr-48x320', '--batch', '1', '--steps', '1', '--latency-batch', '');
  assert.equal(flt.code, 0, flt.stderr);
  assert.match(flt.stderr, /warning: .*ch_PP-OCRv4_rec_infer\.onnx has no QuantizeLinear\/DequantizeLinear nodes: it is not a QDQ model, so simulate and deploy run the same float graph/);
  // analyse of a float model against itself: the report is written, and the warning says why AQE and MQE are NaN.
  const an = await cli('analyse', NPM_MODEL, NPM_MODEL, '--data', images, '--preprocess', 'ocr-48x320', '--batch', '1', '--quiet', '--out-dir', join(dir, 'an'));
  assert.equal(an.code, 0, an.stderr);
  assert.match(an.stderr, /has no quantized layer to compare \(no Conv\/Gemm\/MatMul fed by DequantizeLinear\): AQE and MQE are undefined \(NaN\); OQE compares the outputs only/);
});

test('export of a float model is refused in one line, with nothing written (it wrote empty caches and an unchanged model); an FP8 model exports its parameters but no QOperator model', async () => {
  for (const format of ['trt-cache', 'ncnn-table', 'qparams-json', 'qoperator']) {
    const out = join(tmp, `float.${format}`);
    oneLineError(await cli('export', NPM_MODEL, '--format', format, '-o', out), NPM_MODEL, format === 'qoperator' ? /has no QuantizeLinear\/DequantizeLinear nodes: nothing to convert/ : /holds no quantization parameters/);
    assert.equal(existsSync(out), false, format);
  }
  // An FP8 model: its parameters export (they were rebuilt as none), but it has no QOperator kernels.
  const f8 = join(tmp, 'f8.onnx');
  assert.equal((await cli('quantize', NPM_MODEL, ...data, '--rule', 'onnxquant-fp8', '-o', f8)).code, 0);
  const cache = await cli('export', f8, '--format', 'trt-cache', '-o', join(tmp, 'f8.cache'));
  assert.match(cache.stdout, /wrote .*f8\.cache \(trt-cache, 107 tensors in the source\)/);
  // Quantizing the quantized model again would put a second quantizer on every activation.
  const again = join(tmp, 'f8-again.onnx');
  oneLineError(await cli('quantize', f8, ...data, '-o', again), f8, /already has QuantizeLinear\/DequantizeLinear nodes \(is it a quantized model\?\): quantize the float model/);
  assert.equal(existsSync(again), false);
  const qop = join(tmp, 'f8.qop.onnx');
  oneLineError(await cli('export', f8, '--format', 'qoperator', '-o', qop), f8, /no layer converts to a QOperator kernel \(e\.g\. p2o\.Conv\.0: not 8-bit/);
  assert.equal(existsSync(qop), false);
});

test('quantize: --test without --analyse, a --test path that does not exist, a --fallback-budget that is not a number, a --keep-test without a recipe or unknown, a --measure-batches without a recipe, of 0 or of every batch, --outputs naming no tensor or with nothing to measure them: refused before any work', async () => {
  const out = join(tmp, 'test-opts.onnx');
  const bare = await cli('quantize', NPM_MODEL, ...data, '--test', images, '-o', out); // --test was silently ignored
  assert.equal(bare.code, 2);
  assert.equal(bare.stderr.trim(), 'onnxquant: --test is the data for --analyse: add --analyse, or leave --test out');
  const nowhere = join(tmp, 'no-test-data');
  oneLineError(await cli('quantize', NPM_MODEL, ...data, '--analyse', '--test', nowhere, '-o', out), nowhere, /data not found/); // the model used to be written first
  const budget = await cli('quantize', NPM_MODEL, ...data, '--recipe', 'fallback', '--fallback-budget', 'abc', '-o', out);
  assert.equal(budget.stderr.trim(), "onnxquant: --fallback-budget must be a ratio ≥ 0, got 'abc'"); // said 'got NaN'
  const keep = await cli('quantize', NPM_MODEL, ...data, '--recipe', 'best', '--keep-test', 'median', '-o', out);
  assert.equal(keep.stderr.trim(), "onnxquant: --keep-test must be mean, mean-or-log or lower, got 'median'");
  const keepAlone = await cli('quantize', NPM_MODEL, ...data, '--keep-test', 'mean-or-log', '-o', out); // no recipe: nothing to judge
  assert.equal(keepAlone.stderr.trim(), 'onnxquant: --keep-test judges the passes of a recipe: add --recipe, or leave --keep-test out');
  oneLineError(await cli('quantize', NPM_MODEL, ...data, '--recipe', 'best', '--outputs', 'no_such_tensor', '-o', out), NPM_MODEL, /--outputs 'no_such_tensor': no node of this model computes it/);
  // A Conv output that formatting folds into the BatchNormalization after it: the recipe would never see it.
  oneLineError(await cli('quantize', NPM_MODEL, ...data, '--recipe', 'best', '--outputs', 'conv2d_185.tmp_0', '-o', out), NPM_MODEL, /--outputs 'conv2d_185\.tmp_0': formatting folds it away/);
  const measureAlone = await cli('quantize', NPM_MODEL, ...data, '--measure-batches', '2', '-o', out); // no recipe: nothing to judge
  assert.equal(measureAlone.stderr.trim(), 'onnxquant: --measure-batches sets how a recipe judges its passes: add --recipe, or leave it out');
  const measureZero = await cli('quantize', NPM_MODEL, ...data, '--recipe', 'best', '--measure-batches', '0', '-o', out);
  assert.equal(measureZero.stderr.trim(), "onnxquant: --measure-batches must be a positive integer, got '0'");
  const measureAll = await cli('quantize', NPM_MODEL, ...data, '--recipe', 'best', '--calib-steps', '4', '--measure-batches', '4', '-o', out);
  assert.equal(measureAll.stderr.trim(), 'onnxquant: --measure-batches 4 leaves no calibration batch to fit on (--calib-steps 4)');
  const outputsAlone = await cli('quantize', NPM_MODEL, ...data, '--outputs', 'p2o.Add.277', '-o', out); // nothing measures them
  assert.equal(outputsAlone.stderr.trim(), 'onnxquant: --outputs names what a recipe or --analyse measures: add --recipe or --analyse, or leave --outputs out');
  assert.equal(existsSync(out), false);
});

test('analyse --steps 0 / --batch 0 and deploy-check --runs 0 / --threads -1 are refused (an empty report, a stack trace, NaN latencies, onnxruntime\'s message)', async () => {
  const dir = join(tmp, 'counts');
  for (const flag of ['--steps', '--batch']) {
    const r = await cli('analyse', NPM_MODEL, NPM_MODEL, '--data', images, '--preprocess', 'ocr-48x320', '--quiet', '--out-dir', dir, flag, '0');
    assert.equal(r.stderr.trim(), 'onnxquant: --batch and --steps must be positive integers', flag);
  }
  assert.equal(existsSync(dir), false);
  const dc = (...extra: string[]) => cli('deploy-check', NPM_MODEL, '--data', images, '--preprocess', 'ocr-48x320', '--batch', '1', '--steps', '1', ...extra);
  assert.equal((await dc('--runs', '0')).stderr.trim(), 'onnxquant: --batch, --steps and --runs must be positive integers');
  assert.equal((await dc('--threads', '-1')).stderr.trim(), 'onnxquant: --warmup and --threads must be integers ≥ 0');
});

test('a --batch the model cannot take (its batch dimension is fixed) is one line saying which batch size it takes', async () => {
  const file = join(tmp, 'batch1.onnx');
  saveModel(npmModelWithInput([1, 3, 48, 'W']), file);
  const out = join(tmp, 'batch1.q.onnx');
  const two = join(tmp, 'two-lines');
  mkdirSync(two);
  for (const f of ['a.png', 'b.png']) copyFileSync(join(images, 'line.png'), join(two, f));
  const r = await cli('quantize', file, '--calib', two, '--preprocess', 'ocr-48x320', '--batch', '2', '--quiet', '-o', out);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim(), "onnxquant: input 'x' takes batches of exactly 1 (fixed in the model), got a batch of 2: use --batch 1");
  assert.equal(existsSync(out), false);
  assert.equal((await cli('quantize', file, '--calib', two, '--preprocess', 'ocr-48x320', '--batch', '1', '--quiet', '-o', out)).code, 0);
});

test('quantize with every layer excluded is refused, nothing written (it wrote a copy of the float model with exit 0)', async () => {
  const out = join(tmp, 'nothing.onnx');
  const r = await cli('quantize', NPM_MODEL, ...data, '--exclude-op', 'Conv', '--exclude-op', 'MatMul', '--exclude-op', 'LayerNormalization', '-o', out);
  oneLineError(r, NPM_MODEL, /no layer to quantize under onnxquant-int8-perchannel \(e\.g\. p2o\.Conv\.0: excluded by filter\); nothing written/);
  assert.equal(existsSync(out), false);
});
