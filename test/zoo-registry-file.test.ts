/**
 * `zoo --registry my-models.json`: the user's own models as zoo entries. The parser must turn a file into the same
 * entries the built-in registry holds (paths relative to the file, presets by name) and refuse every mistake with
 * the file and the field named; through the CLI, a user entry that restates the built-in mnist-8 entry must give
 * that entry's cell exactly (../shared), and a bad file must fail before any output is written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cli } from './helpers/cli.ts';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseZooEntries, loadZooEntries } from '../src/zoo/registry-file.ts';
import { PREPROCESS_PRESETS } from '../src/zoo/data/presets.ts';
import { REGISTRY } from '../src/zoo/registry.ts';
import { SHARED } from './helpers/models.ts';

const ZOO = join(SHARED, 'quantzoo');
const skip = existsSync(join(ZOO, 'Model/mnist/mnist-8.onnx')) ? false : `../shared/quantzoo with mnist-8 not found (${ZOO})`;

const tmp = mkdtempSync(join(tmpdir(), 'onnxquant-registry-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));


const absSource = (extra: object) => ({ kind: 'mnist', images: join(ZOO, 'Data/Mnist/t10k-images-idx3-ubyte.gz'), labels: join(ZOO, 'Data/Mnist/t10k-labels-idx1-ubyte.gz'), ...extra });
const absData = { calibration: absSource({ limit: 1000 }), test: absSource({ skip: 1000 }) };
const mnistSource = (extra: object) => ({ kind: 'mnist', images: 'Data/Mnist/t10k-images-idx3-ubyte.gz', labels: 'Data/Mnist/t10k-labels-idx1-ubyte.gz', ...extra });
/** The built-in mnist-8 entry restated as a registry-file entry, paths relative to a file in the QuantZoo root. */
const mnistEntry = (id: string) => ({
  id,
  file: 'Model/mnist/mnist-8.onnx',
  input: { name: 'Input3', shape: [1, 1, 28, 28] },
  maxBatch: 1,
  preprocess: {},
  data: { calibration: mnistSource({ limit: 1000 }), test: mnistSource({ skip: 1000 }) },
  task: { kind: 'classification', numClasses: 10 },
  published: { 'onnxquant-int8-perchannel': [{ source: 'my bench, 2026', float: 98.9, quant: 98.8 }] },
});

test('a registry file becomes zoo entries: paths from its folder, presets by name, suite "user"', () => {
  const file = '/data/zoo/models.json';
  const [e] = parseZooEntries({ models: [{ ...mnistEntry('m'), preprocess: 'cifar10-nchw' }] }, file);
  assert.equal(e.suite, 'user');
  assert.equal(e.file, '/data/zoo/Model/mnist/mnist-8.onnx');
  assert.deepEqual(e.data.calibration, { kind: 'mnist', images: '/data/zoo/Data/Mnist/t10k-images-idx3-ubyte.gz', labels: '/data/zoo/Data/Mnist/t10k-labels-idx1-ubyte.gz', limit: 1000 });
  assert.deepEqual(e.data.test, { kind: 'mnist', images: '/data/zoo/Data/Mnist/t10k-images-idx3-ubyte.gz', labels: '/data/zoo/Data/Mnist/t10k-labels-idx1-ubyte.gz', skip: 1000 });
  assert.deepEqual(e.preprocess, PREPROCESS_PRESETS['cifar10-nchw']);
  assert.deepEqual(e.published, { 'onnxquant-int8-perchannel': [{ source: 'my bench, 2026', float: 98.9, quant: 98.8 }] });
  // Apart from the suite and the resolved paths, the built-in entry it restates.
  const builtIn = REGISTRY.find((b) => b.id === 'mnist-8')!;
  const [same] = parseZooEntries([mnistEntry('mnist-8')], join(ZOO, 'x.json'));
  const { published: _p, ...rest } = same;
  assert.deepEqual({ ...rest, suite: 'shared', file: builtIn.file, data: builtIn.data }, { ...builtIn, data: builtIn.data });
  assert.equal(same.file, join(ZOO, 'Model', builtIn.file));
  // An absolute path is kept; an OCR dictionary is a path too.
  const [ocr] = parseZooEntries(
    [{ ...mnistEntry('o'), file: '/m/rec.onnx', task: { kind: 'ocr', dictionary: 'dict.txt', useSpaceChar: true, height: 32, maxWidth: 320, pad: true } }],
    '/cfg/r.json',
  );
  assert.equal(ocr.file, '/m/rec.onnx');
  assert.equal(ocr.task.kind === 'ocr' && ocr.task.dictionary, '/cfg/dict.txt');
});

test('every mistake in a registry file is refused naming the file, the entry and the field', () => {
  const bad = (json: unknown, message: RegExp) => assert.throws(() => parseZooEntries(json, 'r.json'), (e: Error) => e.name === 'UserError' && e.message.startsWith('r.json: ') && message.test(e.message));
  const m = mnistEntry('m');
  bad({ entries: [] }, /must hold an array of zoo entries, or \{"models": \[\.\.\.\]\}/);
  bad([], /holds no zoo entry/);
  bad([{ ...m, modelFile: 'x' }], /models\[0\] \('m'\)\.modelFile is not a known field/);
  bad([{ ...m, task: undefined }], /models\[0\] \('m'\)\.task is missing/);
  bad([{ ...m, task: { kind: 'classify', numClasses: 10 } }], /task\.kind must be one of classification\|ocr\|/);
  bad([{ ...m, task: { kind: 'classification', numClasses: 10.5 } }], /task\.numClasses must be an integer ≥ 2, got 10\.5/);
  bad([{ ...m, task: { kind: 'classification' } }], /task\.numClasses is missing/);
  bad([{ ...m, task: { kind: 'super-resolution', scale: 3, channel: 'y', crop: 3, outputScale: 0 } }], /task\.outputScale must be > 0/);
  bad([{ ...m, data: { calibration: m.data.calibration } }], /data\.test is missing/);
  bad([{ ...m, data: { ...m.data, test: { kind: 'provided', name: 'x' } } }], /data\.test\.kind 'provided' is for datasets supplied in code/);
  bad([{ ...m, data: { ...m.data, test: { kind: 'image-folder' } } }], /data\.test\.dir is missing/);
  bad([{ ...m, data: { ...m.data, test: { kind: 'div2k', dir: 'd', split: 'val', scale: 3 } } }], /data\.test\.split must be one of train\|valid, got "val"/);
  bad([{ ...m, data: { ...m.data, test: { ...m.data.test, skip: -1 } } }], /data\.test\.skip must be a non-negative integer, got -1/);
  bad([{ ...m, preprocess: 'imagenette' }], /preprocess is not a preset \(imagenet, /);
  bad([{ ...m, preprocess: { layout: 'chw' } }], /models\[0\] \('m'\)\.preprocess\.layout must be one of nchw\|nhwc/);
  bad([{ ...m, input: { name: 'x', shape: [1, 0] } }], /input\.shape\[1\] must be a positive integer, got 0/);
  bad([{ ...m, maxBatch: '1' }], /maxBatch must be a positive integer, got "1"/);
  bad([{ ...m, outputs: [] }], /outputs must be a non-empty array of tensor names/);
  bad([{ ...m, id: 'my model' }], /id 'my model' becomes a folder name/);
  bad([m, { ...m }], /models\[1\] \('m'\)\.id 'm' is used by an earlier entry/);
  bad([{ ...m, published: { 'onnxquant-int8': [] } }], /published\.onnxquant-int8 is not a known field/);
  bad([{ ...m, published: { 'onnxquant-fp8': [{ source: 's', float: 1 }] } }], /published\.onnxquant-fp8\[0\]\.quant is missing/);
  bad([{ ...m, feeds: [4] }], /feeds must be an object, got \[4\]/);
  bad([{ ...m, feeds: { factor: '4' } }], /feeds\.factor must be a number \(fills the input\) or \{ "dims": \[\.\.\.\], "values": \[\.\.\.\] \}, got "4"/);
  bad([{ ...m, feeds: { factor: { dims: [4], values: [1, 1, 3] } } }], /feeds\.factor\.values holds 3 numbers; dims \[4\] need 4/);
  bad([{ ...m, feeds: { factor: { dims: [4] } } }], /feeds\.factor\.values is missing/);
  bad([{ ...m, feeds: { factor: { dims: [4], values: [1, 1, 'x', 3] } } }], /feeds\.factor\.values\[2\] must be a finite number, got "x"/);
  const notJson = join(tmp, 'broken.json');
  writeFileSync(notJson, '{ "models": [ ');
  assert.throws(() => loadZooEntries(notJson), (e: Error) => e.message.startsWith(`${notJson}: is not valid JSON`));
  assert.throws(() => loadZooEntries(join(tmp, 'none.json')), (e: Error) => e.message === `${join(tmp, 'none.json')}: file not found`);
});

test('zoo --registry: a user entry restating mnist-8 gives the built-in entry\'s cell exactly; its own published row is shown', { skip }, async () => {
  // The registry file sits in a folder of its own; its relative paths lead from there into the QuantZoo root.
  mkdirSync(join(tmp, 'elsewhere'));
  const file = join(tmp, 'elsewhere', 'models.json');
  const rel = (p: string) => relative(dirname(file), join(ZOO, p));
  const e = mnistEntry('my-mnist');
  const src = (d: typeof e.data.test) => ({ ...d, images: rel(d.images), labels: rel(d.labels) });
  writeFileSync(file, JSON.stringify({ models: [{ ...e, file: rel(e.file), data: { calibration: src(e.data.calibration), test: src(e.data.test) } }] }));
  const opts = ['--rules', 'onnxquant-int8-perchannel', '--calib-batches', '8', '--test-limit', '300', '--analyse-samples', '16', '--format', 'json'];
  const user = await cli('zoo', '--registry', file, '--out', join(tmp, 'user-out'), ...opts);
  assert.equal(user.code, 0, user.stderr);
  const builtIn = await cli('zoo', '--root', ZOO, '--models', 'mnist-8', '--out', join(tmp, 'builtin-out'), ...opts);
  assert.equal(builtIn.code, 0, builtIn.stderr);
  type Row = { model: string; suite: string; float: number; quant: number; errors: { aqe: number; oqe: number }; published?: { source: string }[] };
  const [u] = (JSON.parse(user.stdout) as { rows: Row[] }).rows;
  const [b] = (JSON.parse(builtIn.stdout) as { rows: Row[] }).rows;
  assert.equal(u.model, 'my-mnist');
  assert.equal(u.suite, 'user');
  assert.deepEqual([u.float, u.quant, u.errors.aqe, u.errors.oqe], [b.float, b.quant, b.errors.aqe, b.errors.oqe]);
  assert.ok(u.float > 95 && u.float <= 100, `mnist-8 float top-1 on 300 test digits: ${u.float}`);
  assert.deepEqual(u.published?.map((p) => p.source), ['my bench, 2026']);
  assert.match(readFileSync(join(tmp, 'user-out', 'results.md'), 'utf8'), /my-mnist/);
});

const SRCNN_X3 = join(ZOO, 'Model/mmedit/srcnn_x3_256.onnx');
const skipSr = existsSync(join(ZOO, 'Model/mmedit/srcnn_scale_input.onnx')) && existsSync(SRCNN_X3) ? false : `../shared/quantzoo srcnn models not found (${ZOO})`;

test('zoo --registry: feeds give a model its other inputs — srcnn_scale_input fed ×3 gives srcnn_x3_256\'s cell exactly', { skip: skipSr }, async () => {
  // The two files hold the same network; one has its Resize scales as an input ([N, C, 3, 3] here, checked equal
  // output for output when this test was written), so fed [1, 1, 3, 3] on the ×3 data it must score exactly as the
  // built-in entry. Without the feed, the entry is refused before any work, naming the input to feed.
  const builtIn = REGISTRY.find((b) => b.id === 'srcnn_x3_256')!;
  const div2k = (split: string) => ({ kind: 'div2k', dir: join(ZOO, 'Data/DIV2K'), split, scale: 3, patch: 256 });
  const entry = { ...builtIn, id: 'my-srcnn', suite: undefined, file: join(ZOO, 'Model/mmedit/srcnn_scale_input.onnx'), data: { calibration: div2k('train'), test: div2k('valid') } };
  const file = join(tmp, 'sr.json');
  writeFileSync(file, JSON.stringify([{ ...entry, feeds: { factor: { dims: [4], values: [1, 1, 3, 3] } } }]));
  const opts = ['--rules', 'onnxquant-int8-perchannel', '--calib-batches', '2', '--test-limit', '2', '--analyse-samples', '1', '--format', 'json'];
  const user = await cli('zoo', '--registry', file, '--out', join(tmp, 'sr-user'), ...opts);
  assert.equal(user.code, 0, user.stderr);
  const ref = await cli('zoo', '--root', ZOO, '--models', 'srcnn_x3_256', '--out', join(tmp, 'sr-builtin'), ...opts);
  assert.equal(ref.code, 0, ref.stderr);
  type Row = { float: number; quant: number; errors: { aqe: number; oqe: number } };
  const [u] = (JSON.parse(user.stdout) as { rows: Row[] }).rows;
  const [b] = (JSON.parse(ref.stdout) as { rows: Row[] }).rows;
  assert.deepEqual([u.float, u.quant, u.errors.aqe, u.errors.oqe], [b.float, b.quant, b.errors.aqe, b.errors.oqe]);
  assert.ok(u.float > 20 && u.float < 40, `PSNR ${u.float}`);

  writeFileSync(file, JSON.stringify([entry]));
  const r = await cli('zoo', '--registry', file, '--out', join(tmp, 'sr-none'));
  assert.deepEqual([r.code, r.stderr.trim().split('\n')], [2, [`onnxquant: ${file}: model 'my-srcnn': inputs of ${entry.file} besides 'input' need values: factor float32 [4]; give each in the entry's feeds, e.g. "feeds": { "factor": 0 }`]]);
  writeFileSync(file, JSON.stringify([{ ...entry, feeds: { scale: 3 } }]));
  const unknown = await cli('zoo', '--registry', file, '--out', join(tmp, 'sr-none'));
  assert.deepEqual([unknown.code, unknown.stderr.trim().split('\n')], [2, [`onnxquant: ${file}: model 'my-srcnn': feeds.scale: ${entry.file} has no input 'scale' (inputs: input, factor)`]]);
  writeFileSync(file, JSON.stringify([{ ...entry, feeds: { factor: { dims: [2, 2], values: [1, 1, 3, 3] } } }]));
  const wrong = await cli('zoo', '--registry', file, '--out', join(tmp, 'sr-none'));
  assert.deepEqual([wrong.code, wrong.stderr.trim().split('\n')], [2, [`onnxquant: ${file}: model 'my-srcnn': feeds.factor: array of shape [2, 2] does not fit input 'factor' [4]`]]);
  assert.equal(existsSync(join(tmp, 'sr-none')), false);
});

test('zoo --registry with a mistake, a path that does not exist, or an id that is a built-in model under --root: one line naming the file, exit 2, nothing written', { skip }, async () => {
  const out = join(tmp, 'bad-out');
  const file = join(tmp, 'bad.json');
  writeFileSync(file, JSON.stringify([{ ...mnistEntry('x'), task: { kind: 'classification', numClasses: 'ten' } }]));
  let r = await cli('zoo', '--registry', file, '--out', out);
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(r.stderr.trim().split('\n'), [`onnxquant: ${file}: models[0] ('x').task.numClasses must be an integer ≥ 2, got "ten"`]);
  writeFileSync(file, JSON.stringify([{ ...mnistEntry('x'), file: 'models/x.onnx' }]));
  r = await cli('zoo', '--registry', file, '--out', out);
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(r.stderr.trim().split('\n'), [`onnxquant: ${file}: model 'x': paths not found: ${join(tmp, 'models/x.onnx')}, ${join(tmp, 'Data/Mnist/t10k-images-idx3-ubyte.gz')}, ${join(tmp, 'Data/Mnist/t10k-labels-idx1-ubyte.gz')}`]);
  writeFileSync(file, JSON.stringify([{ ...mnistEntry('x'), file: join(ZOO, 'Model/mnist/mnist-8.onnx'), input: { name: 'image' }, data: absData }]));
  r = await cli('zoo', '--registry', file, '--out', out);
  assert.deepEqual([r.code, r.stderr.trim().split('\n')], [2, [`onnxquant: ${file}: model 'x': input.name 'image' is not an input of ${join(ZOO, 'Model/mnist/mnist-8.onnx')} (inputs: Input3)`]]);
  const clash = join(tmp, 'clash.json');
  writeFileSync(clash, JSON.stringify([mnistEntry('mnist-8')]));
  r = await cli('zoo', '--registry', clash, '--root', ZOO, '--out', out);
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(r.stderr.trim().split('\n'), [`onnxquant: ${clash}: model id 'mnist-8' is a built-in zoo model: choose another id`]);
  assert.equal(existsSync(out), false);
});

test('zoo: a cell that fails is an error row in the tables, and the exit status is 1', { skip }, async () => {
  // The model gives 10 logits; 1000 classes cannot be scored: the cell fails after the checks, at evaluation.
  const file = join(tmp, 'fails.json');
  writeFileSync(file, JSON.stringify([{ ...mnistEntry('wrong-classes'), file: join(ZOO, 'Model/mnist/mnist-8.onnx'), data: absData, task: { kind: 'classification', numClasses: 1000 } }]));
  const out = join(tmp, 'fails-out');
  const r = await cli('zoo', '--registry', file, '--rules', 'onnxquant-int8-perchannel', '--calib-batches', '2', '--test-limit', '20', '--out', out);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /zoo: 1 cell\(s\) FAILED \(see the tables\)/);
  const rows = (JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { rows: { model: string; status: string; reason?: string }[] }).rows;
  assert.deepEqual(rows.map((x) => [x.model, x.status, x.reason]), [['wrong-classes', 'error', 'logits length 10 is not a multiple of numClasses 1000']]);
});

test('bench/cifar10-full-test.json restates the built-in CIFAR-10 entries with the whole test split', () => {
  // Its paths are relative to bench/ (../../shared is the checkout's ../shared); parsing reads no model or image, so
  // this runs without ../shared.
  const file = fileURLToPath(new URL('../bench/cifar10-full-test.json', import.meta.url));
  const entries = loadZooEntries(file);
  const root = join(dirname(file), '../../shared/quantzoo');
  assert.deepEqual(entries.map((e) => e.id), ['resnet20_cifar10', 'mobilenet_v2_cifar10', 'mobilenet_v3_small_cifar10', 'vit_tiny_cifar10_opset17'].map((id) => `${id}-full-test`));
  for (const e of entries) {
    const builtIn = REGISTRY.find((b) => `${b.id}-full-test` === e.id)!;
    assert.equal(e.file, join(root, 'Model', builtIn.file), `${e.id}: the built-in model file`);
    assert.deepEqual([e.input, e.preprocess, e.task, e.outputs], [builtIn.input, builtIn.preprocess, builtIn.task, builtIn.outputs], `${e.id}: input, preprocessing and task as built in`);
    const dir = (s: typeof e.data.test) => (s.kind === 'image-folder' ? relative(join(root, 'Data'), s.dir) : s.kind);
    assert.deepEqual({ ...e.data.calibration, dir: dir(e.data.calibration) }, builtIn.data.calibration, `${e.id}: the built-in calibration split`);
    const { limitPerClass, ...wholeTest } = builtIn.data.test as Extract<typeof builtIn.data.test, { kind: 'image-folder' }>;
    assert.equal(limitPerClass, 300, `${e.id}: the built-in test split is the first 300 images per class`);
    assert.deepEqual({ ...e.data.test, dir: dir(e.data.test) }, wholeTest, `${e.id}: the same test folder, every image`);
  }
});
