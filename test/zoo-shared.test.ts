/**
 * The registry's settings reproduce ../shared/README.md float accuracies (the preprocessing proof), through the
 * same path the runner takes (openSource → evaluator → session). Skipped when ../shared is absent.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { type TestContext, test } from 'node:test';
import { createSession } from '../src/runtime/session.ts';
import { cacheSplit, missingPaths, modelPath, openSource } from '../src/zoo/datasets.ts';
import { findEntries } from '../src/zoo/registry.ts';
import { evaluate, makeEvaluator } from '../src/zoo/tasks/index.ts';

const ROOT = new URL('../../shared/quantzoo/', import.meta.url).pathname;
const skip = existsSync(ROOT) ? false : '../shared absent: no QuantZoo workspace to check the registry against';

async function floatMetric(id: string, batch: number): Promise<{ value: number; samples: number }> {
  const entry = findEntries([id])[0];
  const s = await createSession(new Uint8Array(readFileSync(modelPath(ROOT, entry))), { mode: 'float' });
  try {
    const test = cacheSplit(openSource(ROOT, entry, entry.data.test));
    return await evaluate(s, test, makeEvaluator(entry, ROOT), { input: entry.input.name, batchSize: Math.min(batch, entry.maxBatch ?? batch) });
  } finally {
    await s.release();
  }
}

function near(t: TestContext, actual: number, expected: number, what: string): void {
  t.diagnostic(`${what}: ${actual.toFixed(2)} (README ${expected})`);
  assert.ok(Math.abs(actual - expected) <= 0.5, `${what}: ${actual.toFixed(2)} vs ${expected} ± 0.5`);
}

test('every available shared entry resolves its files', { skip }, () => {
  for (const id of ['squeezenet_cifar10', 'resnet20_cifar10', 'mobilenetv2-7', 'squeezenet1.1', 'mnist-8', 'srcnn_x3_256', 'espcn_x3_y224', 'version-RFB-320', 'en_number_mobile_v2.0_rec_infer']) {
    assert.deepEqual(missingPaths(ROOT, findEntries([id])[0]), [], id);
  }
});

test('squeezenet_cifar10 through the registry: 75.8% on 2000 test images', { skip }, async (t) => {
  const r = await floatMetric('squeezenet_cifar10', 100);
  assert.equal(r.samples, 2000);
  near(t, r.value, 75.8, 'squeezenet_cifar10');
});

test('mnist-8 through the registry: 98.9% on images 1000..9999', { skip }, async (t) => {
  const r = await floatMetric('mnist-8', 1);
  assert.equal(r.samples, 9000);
  near(t, r.value, 98.9, 'mnist-8');
});
