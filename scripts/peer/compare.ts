/**
 * onnxquant beside onnxruntime's quantize_static, on the tensors scripts/peer/export.ts wrote:
 *   node --import tsx scripts/peer/compare.ts [--data /tmp/onnxquant-peer] [--reps 1]
 * Quantizes each model with onnxquant (the PPQ int8 per-channel rule with percentile activations, and the same
 * rule with min/max activations, to pair with ORT's MinMax), each in a child process (onnxquant-one.ts) that
 * times quantize() over the same calibration .npy batches and reports its own peak RSS, as ort_quantize.py does
 * for onnxruntime. Then evaluates, with one onnxruntime-node code path ('simulate' mode: optimisations off, Q/DQ run as
 * written) and one metric: the float model, onnxquant's models, and the ORT models listed in
 * <data>/ort-results.json when scripts/peer/ort_quantize.py has run. Prints one table; writes <data>/compare.json.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import type { ModelProto } from 'onnx-buf';
import { benchModels } from '../../bench/models.ts';
import { median } from '../../bench/util.ts';
import { loadModel } from '../../src/onnx/model-io.ts';
import { createSession, type RunMode } from '../../src/runtime/session.ts';
import { parseNpy } from '../../src/zoo/data/npy.ts';

const { values: a } = parseArgs({ options: { data: { type: 'string', default: '/tmp/onnxquant-peer' }, reps: { type: 'string', default: '1' } } });
const dataDir = a.data!;
const reps = Math.max(1, Number(a.reps));
if (!existsSync(dataDir)) throw new Error(`${dataDir} does not exist: run scripts/peer/export.ts first`);

interface OrtRow { id: string; method: string; model: string; seconds: number; ok: boolean; error?: string; note?: string; onnxruntime?: string; peak_rss_mb?: number }
const ortRows: OrtRow[] = existsSync(join(dataDir, 'ort-results.json')) ? JSON.parse(readFileSync(join(dataDir, 'ort-results.json'), 'utf8')) : [];
if (!ortRows.length) console.log(`no ${join(dataDir, 'ort-results.json')}: onnxruntime's side has not run (python3 scripts/peer/ort_quantize.py --data ${dataDir}); showing onnxquant only.`);

const loadDir = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.npy'))
    .sort()
    .map((f) => parseNpy(readFileSync(join(dir, f)), f));

const rules = [
  { label: 'onnxquant percentile', calibration: 'percentile', rule: 'onnxquant-int8-perchannel' },
  { label: 'onnxquant minmax', calibration: 'minmax', rule: 'onnxquant-int8-perchannel, min/max activations' },
];
const here = dirname(fileURLToPath(import.meta.url));
/** One quantization in a child process: its wall time and its own peak RSS. */
function quantizeInChild(dir: string, calibration: string, out: string): { seconds: number; peakRssMb: number } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'onnxquant-one.ts'), dir, calibration, out], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`onnxquant-one.ts failed on ${dir} (${calibration}): ${r.stderr.trim().split('\n').pop()}`);
  return JSON.parse(line.slice(7));
}
const rowsOut: Record<string, unknown>[] = [];
const table = new Table({ head: ['model', 'tool / calibration', 'quantize time', 'peak RSS', 'accuracy (simulate)', 'note'], style: { head: [], border: [] } });
const mb = (v: number | undefined) => (v === undefined ? '—' : `${Math.round(v)} MB`);

for (const id of readdirSync(dataDir).filter((d) => existsSync(join(dataDir, d, 'meta.json'))).sort()) {
  const meta = JSON.parse(readFileSync(join(dataDir, id, 'meta.json'), 'utf8'));
  const bm = benchModels().find((m) => m.id === id);
  if (!bm) continue;
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
  table.push([id, 'float', '—', '—', pct(fa), `${meta.calibBatches}×${meta.calibBatch} calib, ${meta.testSamples} test`]);
  rowsOut.push({ id, tool: 'float', accuracy: fa });
  for (const { label, calibration, rule } of rules) {
    const out = join(dataDir, id, `onnxquant-${calibration}.onnx`);
    const runs = Array.from({ length: reps }, () => quantizeInChild(join(dataDir, id), calibration, out));
    const seconds = median(runs.map((r) => r.seconds));
    const peakRssMb = median(runs.map((r) => r.peakRssMb));
    const acc = await evaluate(new Uint8Array(readFileSync(out)), 'simulate');
    table.push([id, label, `${seconds.toFixed(2)} s`, mb(peakRssMb), pct(acc), rule]);
    rowsOut.push({ id, tool: label, seconds, peakRssMb, accuracy: acc });
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
    } else note = `quantize_static failed: ${o.error?.slice(0, 90)}`;
    table.push([id, `onnxruntime ${o.method}`, `${o.seconds.toFixed(2)} s${o.ok ? '' : ' (failed)'}`, mb(o.peak_rss_mb), Number.isNaN(acc) ? '—' : pct(acc), `${note} (python onnxruntime ${o.onnxruntime ?? '?'})`]);
    rowsOut.push({ id, tool: `onnxruntime ${o.method}`, seconds: o.seconds, peakRssMb: o.peak_rss_mb, accuracy: acc, note });
  }
}
console.log(table.toString());
console.log('Times: onnxquant = quantize() wall time in a child Node process (median of --reps), peak RSS that process\'s; onnxruntime = the quantize_static call in Python (calibration included), one run. Both read the same .npy tensors from memory/disk; they ran at different moments, so compare on an idle machine.');
writeFileSync(join(dataDir, 'compare.json'), JSON.stringify(rowsOut, null, 2));
