/**
 * Prototype for a proposed change (not used by the library): compute the activation statistics INSIDE
 * onnxruntime instead of fetching whole activation tensors into JS.
 *   node --import tsx bench/ort-stats.ts <model-id> [batches] [batchSize]
 * For every planned activation x of the weights-quantized stats model the graph gets
 *   n = Size(x); kMin = max(0, floor(n·(1−p))) + 1; kMax = n − min(floor(n·p), n−1)   (double arithmetic, as PPQ)
 *   TopK(Reshape(x,[-1]), kMin, largest=0)[-1] and TopK(…, kMax, largest=1)[-1]        (PPQ's kthvalue pair)
 * and only these small outputs are fetched. It times this against the library's path (fetch + JS percentile
 * observers) and checks that the per-tensor ranges are identical.
 */
import { create } from '@bufbuild/protobuf';
import { TensorProto_DataType as DT, ValueInfoProtoSchema, type ModelProto } from 'onnx-buf';
import { calibrate, calibrateWeights, type Feeds } from '../src/calibrate/calibrate.ts';
import { makeNode } from '../src/ir/graph.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { makeTensor } from '../src/onnx/tensor-codec.ts';
import { planModel } from '../src/quant/plan.ts';
import { getRule } from '../src/quant/rules.ts';
import { prepareModel } from '../src/quantize.ts';
import { realiseQdq } from '../src/realise/qdq.ts';
import { createSession } from '../src/runtime/session.ts';
import { benchModels } from './models.ts';
import { median } from './util.ts';

const [id = 'squeezenet_cifar10', nStr = '32', bStr = '32'] = process.argv.slice(2);
const m = benchModels().find((x) => x.id === id)!;
const calib = await m.loadCalib(Number(nStr), Number(bStr));
const rule = getRule('onnxquant-int8-perchannel');
const prepared = prepareModel(loadModel(m.file), rule);
const plan = planModel(prepared.model, rule);
const params = calibrateWeights(prepared.model, plan);
const stats = realiseQdq(prepared.model, plan, params, { keys: new Set(params.keys()) });
const acts = plan.tensors.filter((t) => t.role === 'activation');
const graphInputs = new Set(prepared.model.graph!.input.map((v) => v.name));
const names = [...new Set(acts.map((t) => t.tensor))];
const p = rule.activation.percentile ?? 0.9999;

function withTopK(model: ModelProto): { model: ModelProto; outs: Map<string, [string, string]> } {
  const g = model.graph!;
  const c = (name: string, dt: number, dims: number[], v: number[]) => g.initializer.push(makeTensor(name, dt, dims, v));
  c('__st_m1', DT.INT64, [1], [-1]);
  c('__st_one', DT.INT64, [], [1]);
  c('__st_zero', DT.INT64, [], [0]);
  c('__st_p', DT.DOUBLE, [], [p]);
  c('__st_1mp', DT.DOUBLE, [], [1 - p]);
  const outs = new Map<string, [string, string]>();
  names.forEach((x, i) => {
    const s = (k: string) => `__st${i}_${k}`;
    const add = (op: string, ins: string[], out: string, attrs = {}) => g.node.push(makeNode(op, ins, [out], s(`n_${out}`), attrs));
    add('Reshape', [x, '__st_m1'], s('flat'));
    add('Size', [x], s('n'));
    add('Cast', [s('n')], s('nd'), { to: DT.DOUBLE });
    add('Mul', [s('nd'), '__st_1mp'], s('a'));
    add('Floor', [s('a')], s('af'));
    add('Cast', [s('af')], s('ai'), { to: DT.INT64 });
    add('Max', [s('ai'), '__st_zero'], s('minIdx'));
    add('Add', [s('minIdx'), '__st_one'], s('kmin0'));
    add('Reshape', [s('kmin0'), '__st_m1'], s('kmin'));
    add('Mul', [s('nd'), '__st_p'], s('b'));
    add('Floor', [s('b')], s('bf'));
    add('Cast', [s('bf')], s('bi'), { to: DT.INT64 });
    add('Sub', [s('n'), '__st_one'], s('nm1'));
    add('Min', [s('bi'), s('nm1')], s('maxIdx'));
    add('Sub', [s('n'), s('maxIdx')], s('kmax0'));
    add('Reshape', [s('kmax0'), '__st_m1'], s('kmax'));
    g.node.push(makeNode('TopK', [s('flat'), s('kmin')], [s('lo'), s('loi')], s('topk_lo'), { largest: 0, sorted: 1 }));
    g.node.push(makeNode('TopK', [s('flat'), s('kmax')], [s('hi'), s('hii')], s('topk_hi'), { largest: 1, sorted: 1 }));
    for (const o of [s('lo'), s('hi')]) g.output.push(create(ValueInfoProtoSchema, { name: o }));
    outs.set(x, [s('lo'), s('hi')]);
  });
  return { model, outs };
}

const { model: topk, outs } = withTopK(structuredClone(stats) as ModelProto);
const it = () => (async function* (): AsyncIterable<Feeds> { yield* calib; })();
const lib: number[] = [];
const inOrt: number[] = [];
let libParams: Awaited<ReturnType<typeof calibrate>>['params'] | undefined;
const sums = new Map<string, [number, number]>();
for (let r = 0; r < 3; r++) {
  let t = performance.now();
  libParams = (await calibrate(prepared.model, plan, it(), {})).params;
  lib.push(performance.now() - t);
  t = performance.now();
  const s = await createSession(topk, { mode: (process.env.STATS_MODE ?? 'simulate') as 'simulate' | 'float' });
  sums.clear();
  const fetch = [...outs.values()].flat();
  for (const f of calib) {
    const res = await s.run(f, fetch);
    for (const [x, [lo, hi]] of outs) {
      if (graphInputs.has(x)) continue;
      const a = res[lo].data as Float32Array;
      const b = res[hi].data as Float32Array;
      const cur = sums.get(x) ?? [0, 0];
      sums.set(x, [cur[0] + a[a.length - 1], cur[1] + b[b.length - 1]]);
    }
  }
  await s.release();
  inOrt.push(performance.now() - t);
}
let same = 0;
let diff = 0;
for (const t of acts) {
  const sm = sums.get(t.tensor);
  if (!sm) continue;
  const q = libParams!.get(t.key)!;
  const ok = Math.fround(sm[0] / calib.length) === q.min[0] && Math.fround(sm[1] / calib.length) === q.max[0];
  if (ok) same++;
  else {
    diff++;
    if (diff <= 3) console.log(`differs ${t.tensor}: ort ${sm[0] / calib.length}, ${sm[1] / calib.length} vs lib ${q.min[0]}, ${q.max[0]}`);
  }
}
console.log(JSON.stringify({ id, statsSession: process.env.STATS_MODE ?? "simulate", batches: calib.length, batchSize: Number(bStr), libraryCalibrateMs: Math.round(median(lib)), topkInOrtMs: Math.round(median(inOrt)), ratio: +(median(inOrt) / median(lib)).toFixed(2), rangesIdentical: same, rangesDifferent: diff }));
