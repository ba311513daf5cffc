/**
 * Child process for the memory test:
 *   node --import tsx bench/rss-child.ts <model-id> <batches> <batchSize> [rule] [npyDir]
 * Reads 32 distinct calibration batches (from `npyDir`, .npy files the parent exported, so no image decoder or
 * text renderer runs in this process and its peak is the calibration's; without npyDir it loads them itself),
 * then calibrates over `batches` of them (cycled, so the data held in memory is the same whatever the count) and
 * prints JSON: process.resourceUsage().maxRSS (KiB) before and after quantize, and the largest
 * process.memoryUsage().rss sampled after every calibration batch.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Feeds } from '../src/calibrate/calibrate.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { getRule } from '../src/quant/rules.ts';
import { quantize } from '../src/quantize.ts';
import { parseNpy } from '../src/zoo/data/npy.ts';
import { benchModels } from './models.ts';

const [id, nStr, bStr, ruleName = 'onnxquant-int8-perchannel', npyDir] = process.argv.slice(2);
const m = benchModels().find((x) => x.id === id);
if (!m) throw new Error(`unknown model ${id}`);
const n = Number(nStr);
const distinct: Feeds[] = npyDir
  ? readdirSync(npyDir)
      .filter((f) => f.endsWith('.npy'))
      .sort()
      .map((f) => ({ [m.inputName]: parseNpy(readFileSync(join(npyDir, f)), f) }))
  : await m.loadCalib(32, Number(bStr));
const model = loadModel(m.file);
const before = process.resourceUsage().maxRSS;
let sampledPeak = 0;
async function* cycle(): AsyncIterable<Feeds> {
  for (let i = 0; i < n; i++) yield distinct[i % distinct.length];
}
const t = performance.now();
const q = await quantize(model, cycle(), {
  rule: getRule(ruleName),
  steps: n,
  onBatch: () => {
    sampledPeak = Math.max(sampledPeak, process.memoryUsage.rss());
  },
});
const ms = performance.now() - t;
const after = process.resourceUsage().maxRSS;
process.stdout.write(
  JSON.stringify({ id, batches: q.batches, batchSize: Number(bStr), maxRssBeforeKiB: before, maxRssKiB: after, sampledRssPeakKiB: Math.round(sampledPeak / 1024), quantizeMs: Math.round(ms) }) + '\n',
);
