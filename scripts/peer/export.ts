/**
 * Exports identical calibration and test tensors for both tools:
 *   node --import tsx scripts/peer/export.ts [--out /tmp/onnxquant-peer] [--models a,b] [--calib-batches N]
 *        [--calib-batch B] [--test N]
 * Layout per model: <out>/<id>/meta.json, calib/batch_000.npy … (float32, [B,…], the model input),
 * test/batch_000.npy … and test/labels.json (one array per test batch). The model file is referenced by
 * absolute path in meta.json (it is not copied).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchModels, sharedAvailable } from '../../bench/models.ts';
import { writeNpy } from '../../bench/util.ts';
import type { FloatTensor } from '../../src/tensor.ts';

const { values: a } = parseArgs({
  options: {
    out: { type: 'string', default: '/tmp/onnxquant-peer' },
    models: { type: 'string', default: 'en_number_rec,squeezenet_cifar10,resnet20_cifar10,ppocrv4_rec' },
    'calib-batches': { type: 'string' },
    'calib-batch': { type: 'string' },
    test: { type: 'string' },
  },
});
const want = a.models!.split(',');
for (const m of benchModels().filter((x) => want.includes(x.id))) {
  if (m.shared && !sharedAvailable()) {
    console.log(`${m.id}: ../shared is absent, skipped`);
    continue;
  }
  const nb = Number(a['calib-batches'] ?? m.defaults.calibBatches);
  const bs = Number(a['calib-batch'] ?? m.defaults.calibBatch);
  const nt = Number(a.test ?? m.defaults.testSamples);
  const dir = join(a.out!, m.id);
  // Start clean: stale batch files from an earlier export would be read by both tools.
  rmSync(join(dir, 'calib'), { recursive: true, force: true });
  rmSync(join(dir, 'test'), { recursive: true, force: true });
  mkdirSync(join(dir, 'calib'), { recursive: true });
  mkdirSync(join(dir, 'test'), { recursive: true });
  // A ragged last batch is dropped: onnxruntime's histogram collectors (Percentile, Entropy) stack every batch of
  // a tensor with np.asarray and fail on unequal shapes ("inhomogeneous shape"), so both tools get full batches only.
  const loaded = await m.loadCalib(nb, bs);
  const calib = loaded.filter((f) => (f[m.inputName] as FloatTensor).dims[0] === bs);
  if (calib.length < loaded.length) console.log(`${m.id}: dropped a last calibration batch of ${(loaded.at(-1)![m.inputName] as FloatTensor).dims[0]} (not ${bs})`);
  calib.forEach((f, i) => writeNpy(join(dir, 'calib', `batch_${String(i).padStart(3, '0')}.npy`), f[m.inputName] as FloatTensor));
  const test = await m.loadTest(nt, m.defaults.testBatch);
  test.forEach((b, i) => writeNpy(join(dir, 'test', `batch_${String(i).padStart(3, '0')}.npy`), b.feeds[m.inputName] as FloatTensor));
  writeFileSync(join(dir, 'test', 'labels.json'), JSON.stringify(test.map((b) => b.labels)));
  writeFileSync(
    join(dir, 'meta.json'),
    JSON.stringify({ id: m.id, model: m.file, input: m.inputName, calibBatches: calib.length, calibBatch: bs, testBatches: test.length, testSamples: test.reduce((n, b) => n + b.labels.length, 0) }, null, 2),
  );
  console.log(`${m.id}: ${calib.length}×${bs} calibration, ${test.length} test batches → ${dir}`);
}
