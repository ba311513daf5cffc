/**
 * Times `analyse` and writes its report, to check that a performance change leaves results identical:
 *   node --import tsx bench/analyse-check.ts <model-id> <out.json> [isolated: none|both|all] [testSamples]
 * then `cmp` two outputs (the report has no timestamps).
 */
import { writeFileSync } from 'node:fs';
import { analyse } from '../src/analyse/analyse.ts';
import type { Feeds } from '../src/calibrate/calibrate.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { getRule } from '../src/quant/rules.ts';
import { quantize } from '../src/quantize.ts';
import { benchModels } from './models.ts';

const [id = 'squeezenet_cifar10', out = '/tmp/analyse.json', iso = 'all', nTest = '128'] = process.argv.slice(2);
const m = benchModels().find((x) => x.id === id)!;
const calib = await m.loadCalib(4, 16);
const test = await m.loadTest(Number(nTest), 32);
const model = loadModel(m.file);
const q = await quantize(model, (async function* () { yield* calib; })(), { rule: getRule('onnxquant-int8-perchannel') });
const data = async function* (): AsyncIterable<Feeds> {
  for (const b of test) yield b.feeds;
};
const t = performance.now();
const rep = await analyse(q.floatModel, q.model, data, { isolated: iso as 'none' | 'both' | 'all', isolatedBatches: 2, groupSize: Number(process.env.GROUP ?? 64) }, { plan: q.plan, params: q.params });
const ms = performance.now() - t;
writeFileSync(out, JSON.stringify(rep, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 1));
console.log(JSON.stringify({ id, iso, ms: Math.round(ms), layers: rep.layers.length, out }));
