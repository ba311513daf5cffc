/**
 * Simulation sessions dequantize constant weights once (src/runtime/fold-dequantize.ts): the outputs must be
 * bit-identical to onnxruntime running every DequantizeLinear itself, for every rule's weight format (int8 per
 * channel, int8 power-of-two per tensor, FP8 E4M3 per channel) on the npm-shipped PP-OCRv4 recognizer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { loadModel } from '../src/onnx/model-io.ts';
import { getRule } from '../src/quant/rules.ts';
import { quantize } from '../src/quantize.ts';
import { createSession } from '../src/runtime/session.ts';
import { randomFeeds } from '../src/runtime/inputs.ts';
import { foldConstantDequantize } from '../src/runtime/fold-dequantize.ts';
import { NPM_MODEL } from './helpers/models.ts';

test('folding constant DequantizeLinear nodes leaves simulation bit-identical (int8 per-channel, power-of-two, FP8)', { skip: !existsSync(NPM_MODEL) && `${NPM_MODEL} missing (npm install)` }, async () => {
  const model = loadModel(NPM_MODEL);
  for (const rule of ['onnxquant-int8-perchannel', 'onnxquant-int8-pot', 'onnxquant-fp8']) {
    const feeds = randomFeeds(model, { seed: 3, shapes: { x: [2, 3, 48, 160] } });
    const { model: q } = await quantize(model, (async function* () { yield feeds; })(), { rule: getRule(rule) });
    const { folded } = foldConstantDequantize(q);
    assert.ok(folded > 30, `${rule}: ${folded} weight DequantizeLinear nodes folded`);
    const out: Float32Array[] = [];
    for (const fold of [false, true]) {
      const s = await createSession(q, { mode: 'simulate', foldConstantDequantize: fold });
      const r = await s.run(feeds);
      out.push(r[s.outputNames[0]].data as Float32Array);
      await s.release();
    }
    assert.equal(out[0].length, out[1].length);
    let diff = 0;
    for (let i = 0; i < out[0].length; i++) if (!Object.is(out[0][i], out[1][i])) diff++;
    assert.equal(diff, 0, `${rule}: ${diff} of ${out[0].length} outputs differ`);
  }
});
