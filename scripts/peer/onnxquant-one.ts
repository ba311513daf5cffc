/**
 * One onnxquant quantization in its own process, so its peak RSS is its own (the parent, compare.ts, reads it):
 *   node --import tsx scripts/peer/onnxquant-one.ts <data>/<id> <percentile|minmax> <out.onnx>
 * Prints one line `RESULT {"seconds":…,"peakRssMb":…}`. Reads the same calib/*.npy that ort_quantize.py reads.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Feeds } from '../../src/calibrate/calibrate.ts';
import { loadModel, saveModel } from '../../src/onnx/model-io.ts';
import { buildRule, getRule } from '../../src/quant/rules.ts';
import { quantize } from '../../src/quantize.ts';
import { parseNpy } from '../../src/zoo/data/npy.ts';

const [dir, calibration, out] = process.argv.slice(2);
const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as { model: string; input: string };
const calibDir = join(dir, 'calib');
const files = readdirSync(calibDir).filter((f) => f.endsWith('.npy')).sort();
const rule = calibration === 'minmax' ? buildRule({ name: 'int8-perchannel-minmax', activationObserver: 'minmax' }) : getRule('onnxquant-int8-perchannel');
const model = loadModel(meta.model);
// Batches are read from disk as calibration asks for them, as ORT's CalibrationDataReader does.
async function* feeds(): AsyncGenerator<Feeds> {
  for (const f of files) yield { [meta.input]: parseNpy(readFileSync(join(calibDir, f)), f) };
}
const t = performance.now();
const res = await quantize(model, feeds(), { rule, steps: files.length });
const seconds = (performance.now() - t) / 1000;
saveModel(res.model, out);
console.log('RESULT ' + JSON.stringify({ seconds, peakRssMb: process.resourceUsage().maxRSS / 1024 }));
