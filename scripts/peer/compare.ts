/**
 * onnxquant beside onnxruntime's quantize_static, on the tensors scripts/peer/export.ts wrote:
 *   node --import tsx scripts/peer/compare.ts [--data /tmp/onnxquant-peer] [--reps 1]
 * Quantizes each model with onnxquant (the PPQ int8 per-channel rule with percentile activations, and the same
 * rule with min/max activations, to pair with ORT's MinMax), timing quantize() over the same calibration .npy
 * batches. Then evaluates, with one onnxruntime-node code path ('simulate' mode: optimisations off, Q/DQ run as
 * written) and one metric: the float model, onnxquant's models, and the ORT models listed in
 * <data>/ort-results.json when scripts/peer/ort_quantize.py has run. Prints one table; writes <data>/compare.json.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import type { ModelProto } from 'onnx-buf';
import { benchModels } from '../../bench/models.ts';
import { median } from '../../bench/util.ts';
import type { Feeds } from '../../src/calibrate/calibrate.ts';
import { loadModel } from '../../src/onnx/model-io.ts';
import { buildRule, getRule } from '../../src/quant/rules.ts';
import { quantize } from '../../src/quantize.ts';
import { createSession, type RunMode } from '../../src/runtime/session.ts';
import { parseNpy } from '../../src/zoo/data/npy.ts';

const { values: a } = parseArgs({ options: { data: { type: 'string', default: '/tmp/onnxquant-peer' }, reps: { type: 'string', default: '1' } } });
const dataDir = a.data!;
const reps = Math.max(1, Number(a.reps));
if (!existsSync(dataDir)) throw new Error(`${dataDir} does not exist: run scripts/peer/export.ts first`);

interface OrtRow { id: string; method: string; model: string; seconds: number; ok: boolean; error?: string; note?: string; onnxruntime?: string }
const ortRows: OrtRow[] = existsSync(join(dataDir, 'ort-results.json')) ? JSON.parse(readFileSync(join(dataDir, 'ort-results.json'), 'utf8')) : [];
if (!ortRows.length) console.log(`no ${join(dataDir, 'ort-results.json')}: onnxruntime's side has not run (python3 scripts/peer/ort_quantize.py --data ${dataDir}); showing onnxquant only.`);

const loadDir = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.npy'))
    .sort()
    .map((f) => parseNpy(readFileSync(join(dir, f)), f));

const rules = [
  { label: 'onnxquant percentile', rule: getRule('onnxquant-int8-perchannel') },
  { label: 'onnxquant minmax', rule: buildRule({ name: 'int8-perchannel-minmax', activationObserver: 'minmax' }) },
];
const rowsOut: Record<string, unknown>[] = [];
const table = new Table({ head: ['model', 'tool / calibration', 'quantize time', 'accuracy (simulate)', 'note'], style: { head: [], border: [] } });

for (const id of readdirSync(dataDir).filter((d) => existsSync(join(dataDir, d, 'meta.json'))).sort()) {
  const meta = JSON.parse(readFileSync(join(dataDir, id, 'meta.json'), 'utf8'));
  const bm = benchModels().find((m) => m.id === id);
  if (!bm) continue;
  const calib: Feeds[] = loadDir(join(dataDir, id, 'calib')).map((t) => ({ [meta.input]: t }));
  const testX = loadDir(join(dataDir, id, 'test'));
  const labels: unknown[][] = JSON.parse(readFileSync(join(dataDir, id, 'test', 'labels.json'), 'utf8'));
  const evaluate = async (model: ModelProto | Uint8Array, mode: RunMode) => {
    const s = await createSession(model, { mode });
    const sc = bm.scorer();
    for (let i = 0; i < testX.length; i++) {
      const out = (await s.run({ [meta.input]: testX[i] }))[s.outputNames[0]];
      sc.add({ dims: out.dims, data: out.data as Float32Array }, labels[i]);
    }
    await s.release();
    return sc.value();
  };
  const pct = (v: number) => `${(100 * v).toFixed(2)}% ${bm.scorer().name}`;
  const model = loadModel(meta.model);
  const fa = await evaluate(model, 'float');
  table.push([id, 'float', '—', pct(fa), `${meta.calibBatches}×${meta.calibBatch} calib, ${meta.testSamples} test`]);
  rowsOut.push({ id, tool: 'float', accuracy: fa });
  for (const { label, rule } of rules) {
    const times: number[] = [];
    let q: ModelProto | undefined;
    for (let r = 0; r < reps; r++) {
      const t = performance.now();
      const res = await quantize(model, (async function* () { yield* calib; })(), { rule, steps: calib.length });
      times.push(performance.now() - t);
      q = res.model;
    }
    const acc = await evaluate(q!, 'simulate');
    table.push([id, label, `${(median(times) / 1000).toFixed(2)} s`, pct(acc), rule.name]);
    rowsOut.push({ id, tool: label, seconds: median(times) / 1000, accuracy: acc });
  }
  for (const o of ortRows.filter((r) => r.id === id)) {
    let acc = NaN;
    let note = o.note ?? '';
    if (o.ok) {
      try {
        acc = await evaluate(new Uint8Array(readFileSync(o.model)), 'simulate');
      } catch (e) {
        note = `invalid model: ${(e as Error).message.slice(0, 80)}`;
      }
    } else note = `quantize_static failed: ${o.error?.slice(0, 80)}`;
    table.push([id, `onnxruntime ${o.method}`, `${o.seconds.toFixed(2)} s`, Number.isNaN(acc) ? '—' : pct(acc), `${note} (python onnxruntime ${o.onnxruntime ?? '?'})`]);
    rowsOut.push({ id, tool: `onnxruntime ${o.method}`, seconds: o.seconds, accuracy: acc, note });
  }
}
console.log(table.toString());
console.log('Times: onnxquant = quantize() wall time in Node (median of --reps); onnxruntime = the quantize_static call in Python (calibration included), one run. Both read the same .npy tensors from memory/disk; they ran at different moments, so compare on an idle machine.');
writeFileSync(join(dataDir, 'compare.json'), JSON.stringify(rowsOut, null, 2));
