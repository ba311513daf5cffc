/**
 * The embedded default zoo (PP-OCRv4 rec from the npm package on rendered text lines), at a reduced size:
 * a row per rule with finite metrics. The full-size default is timed by hand (see the zoo report).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RULE_NAMES } from '../src/quant/rules.ts';
import { embeddedEntries } from '../src/zoo/embedded.ts';
import { renderMarkdown } from '../src/zoo/results.ts';
import { runZoo } from '../src/zoo/runner.ts';

test('embedded zoo, reduced: one row per rule with finite metrics and errors', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'zoo-embedded-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const entries = embeddedEntries({ calibLines: 4, testLines: 4 });
  assert.equal(entries[0].data.calibration.kind, 'synthetic-text');
  const run = await runZoo({ root: '', entries, rules: RULE_NAMES, out, calibBatches: 1, batch: 4, analyseSamples: 2, log: () => {} });
  assert.deepEqual(run.rows.map((r) => r.rule), RULE_NAMES);
  for (const r of run.rows) {
    assert.equal(r.status, 'ok', r.reason);
    assert.equal(r.metric?.name, 'exact match');
    assert.ok(Number.isFinite(r.float) && Number.isFinite(r.quant), `${r.rule}: ${r.float} → ${r.quant}`);
    assert.ok(r.float! >= 50, `float PP-OCRv4 reads rendered lines: ${r.float}`);
    for (const v of Object.values(r.errors!)) assert.ok(Number.isFinite(v), `${r.rule}: errors`);
    assert.equal(r.provenance!.data.test.samples, 4);
    assert.equal(r.provenance!.data.calibration.samples, 4);
    assert.equal(r.provenance!.seed, entries[0].data.test.kind === 'synthetic-text' ? entries[0].data.test.seed : -1);
  }
  assert.match(renderMarkdown(run.rows), /ch_PP-OCRv4_rec/);
});
