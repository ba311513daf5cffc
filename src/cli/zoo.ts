/**
 * `onnxquant zoo`: the OnnxQuant/QuantZoo benchmark. With --root, every registry model found under
 * <root>/Model and <root>/Data (the others are listed as missing); with --registry, the user's entries from a JSON
 * file (alone, or beside the built-in ones with --root); with neither, the embedded mini zoo (PP-OCRv4 rec on
 * rendered text lines). Writes results.{json,csv,md}, index.html and one folder per cell into
 * --out; prints the table (--format) on stdout and progress on stderr.
 */
import type { Command } from 'commander';
import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UserError } from '../errors.ts';
import { writeFileAtomic } from '../onnx/model-io.ts';
import { ensureOutputDir } from './output-paths.ts';
import { checkMeasureBatches, keepTestHelp, parseKeepTest, posInt } from './option-parsers.ts';
import { RULE_NAMES, type QuantRule } from '../quant/rules.ts';
import { resolveRule } from './quantize.ts';
import { getRecipe, RECIPES } from '../optimise/recipes.ts';
import { EMBEDDED_DEFAULTS, embeddedEntries } from '../zoo/embedded.ts';
import { findEntries, REGISTRY, type ZooEntry } from '../zoo/registry.ts';
import { loadModel } from '../onnx/model-io.ts';
import { entryInputs } from '../zoo/entry-feeds.ts';
import { loadZooEntries } from '../zoo/registry-file.ts';
import { missingPaths } from '../zoo/datasets.ts';
import { renderCsv, renderHtmlIndex, renderJson, renderMarkdown, renderTerminal, type ZooRow } from '../zoo/results.ts';
import { crossRecipes, splitRuleRecipe } from '../zoo/rule-recipe.ts';
import { parseShard, runZoo } from '../zoo/runner.ts';

const list = (v: string): string[] => v.split(',').map((s) => s.trim()).filter(Boolean);

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** A registry-file entry's inputs, their feeds and monitored outputs must suit its model: checked before any work. */
function checkEntryTensors(e: ZooEntry, registry: string): void {
  const model = loadModel(e.file);
  entryInputs(e, model, e.file, registry);
  const tensors = new Set([...model.graph!.output.map((v) => v.name), ...model.graph!.node.flatMap((n) => n.output)]);
  const unknown = (e.outputs ?? []).filter((t) => !tensors.has(t));
  if (unknown.length) throw new UserError(`model '${e.id}': outputs ${unknown.map((t) => `'${t}'`).join(', ')} not computed by ${e.file}`, registry);
}

export function writeZooOutputs(out: string, rows: readonly ZooRow[], title: string): void {
  ensureOutputDir(out);
  writeFileAtomic(join(out, 'results.json'), renderJson(rows));
  writeFileAtomic(join(out, 'results.csv'), renderCsv(rows));
  writeFileAtomic(join(out, 'results.md'), renderMarkdown(rows, { title }));
  writeFileAtomic(join(out, 'index.html'), renderHtmlIndex(rows, { title, generated: new Date().toISOString() }));
}

export function registerZoo(program: Command): void {
  program
    .command('zoo')
    .description('benchmark: quantize zoo models under the OnnxQuant rules and score them (float vs quant metric, AQE/MQE/OQE)')
    .option('--root <dir>', 'QuantZoo root with Model/ and Data/ (default: the embedded PP-OCRv4 mini zoo, no files needed)')
    .option('--registry <file.json>', 'your own models: a JSON array of zoo entries (fields as in src/zoo/registry.ts; paths relative to the file); alone it runs those, with --root the built-in ones too')
    .option('--models <a,b>', 'model ids (default: all)')
    .option('--rules <a,b>', `rules or rule files (my-rule.json), each optionally with a recipe as rule+recipe, e.g. onnxquant-int8-pot+best (default: ${RULE_NAMES.join(',')})`)
    .option('--recipes <a,b>', `cross every rule of --rules with these recipes ('none' = the plain rule), e.g. none,best (known: ${Object.keys(RECIPES).join(', ')}; '+' chains them, e.g. activations-float+weight-rounding)`)
    .option('--out <dir>', 'output folder: one folder per cell, results.{json,csv,md}, index.html', './zoo-results')
    .option('--shard <i/n>', 'run every n-th cell, starting with the i-th (1-based)')
    .option('--force', 'recompute cells that already have results')
    .option('--reuse-only', 'compute nothing: tables from the cells already in --out (the others left out)')
    .option('--calib-batches <n>', 'calibration batches (default 32; embedded 4)', posInt('--calib-batches'))
    .option('--batch <n>', 'batch size (default 32; embedded 16)', posInt('--batch'))
    .option('--measure-batches <n>', "calibration batches a recipe judges its passes on, the first n (default 4, or 16 samples' worth when batches are small); the passes fit to the batches after them", posInt('--measure-batches'))
    .option('--keep-test <test>', keepTestHelp("the model's task: mean-or-log for super-resolution, mean for the others"))
    .option('--test-limit <n>', 'score at most n test samples per model, spread evenly over the test split', posInt('--test-limit'))
    .option('--analyse-samples <n>', 'test samples for the error analysis (default: all; embedded 32)', posInt('--analyse-samples'))
    .option('--save-models', 'also write each QDQ model beside its report')
    .option('--format <f>', 'stdout format: table, markdown, json, csv', 'table')
    .action(async (o: Record<string, unknown>) => {
      const format = String(o.format);
      if (!['table', 'markdown', 'json', 'csv'].includes(format)) throw new UserError(`--format must be table, markdown, json or csv, got '${format}'`);
      // A rule file (rule.json or rule.json+recipe) joins the sweep under its "name".
      const customRules = new Map<string, QuantRule>();
      const named = (o.rules ? list(String(o.rules)) : RULE_NAMES).map((r) => {
        const { rule, recipe } = splitRuleRecipe(r);
        if (!rule.endsWith('.json')) return r;
        const custom = resolveRule(rule);
        if (RULE_NAMES.includes(custom.name)) throw new UserError(`rule file names its rule '${custom.name}', which is a built-in name: choose another "name"`, rule);
        if (!/^[\w.-]+$/.test(custom.name)) throw new UserError(`rule name '${custom.name}' becomes a folder name: use letters, digits, '.', '_' and '-'`, rule);
        customRules.set(custom.name, custom);
        return recipe === 'none' ? custom.name : `${custom.name}+${recipe}`;
      });
      const rules = crossRecipes(named, o.recipes ? list(String(o.recipes)) : undefined);
      for (const r of rules) {
        const { rule, recipe } = splitRuleRecipe(r);
        if (!RULE_NAMES.includes(rule) && !customRules.has(rule)) throw new UserError(`unknown rule '${rule}' (known: ${RULE_NAMES.join(', ')}, or a rule file ending in .json)`);
        getRecipe(recipe); // refuses an unknown name (or chained part) before any work
      }
      // A registry file is checked before any work; without --root its entries are the whole zoo.
      const user = o.registry !== undefined ? loadZooEntries(String(o.registry)) : [];
      if (o.root !== undefined)
        for (const e of user)
          if (REGISTRY.some((b) => b.id === e.id)) throw new UserError(`model id '${e.id}' is a built-in zoo model: choose another id`, String(o.registry));
      // Built-in entries whose files are absent are listed as missing; a user's entry names files that should exist.
      for (const e of user) {
        const missing = e.skip ? [] : [...new Set(missingPaths('', e))];
        if (missing.length) throw new UserError(`model '${e.id}': ${missing.length === 1 ? 'path' : 'paths'} not found: ${missing.join(', ')}`, String(o.registry));
        if (!e.skip) checkEntryTensors(e, String(o.registry));
      }
      const embedded = o.root === undefined && o.registry === undefined;
      const batch = (o.batch as number | undefined) ?? (embedded ? EMBEDDED_DEFAULTS.batch : 32);
      const calibBatches = (o.calibBatches as number | undefined) ?? (embedded ? EMBEDDED_DEFAULTS.calibBatches : 32);
      const measureBatches = o.measureBatches as number | undefined;
      const hasRecipe = rules.some((r) => splitRuleRecipe(r).recipe !== 'none');
      const addRecipe = 'a recipe (--recipes or rule+recipe)';
      const keepTest = parseKeepTest(o.keepTest, { hasRecipe, addRecipe });
      checkMeasureBatches(measureBatches, {
        hasRecipe,
        addRecipe,
        batches: calibBatches,
        batchesFlag: '--calib-batches',
      });
      const registry = embedded
        ? embeddedEntries({ calibLines: calibBatches * batch, testLines: (o.testLimit as number | undefined) ?? EMBEDDED_DEFAULTS.testLines })
        : o.root === undefined
          ? user
          : [...REGISTRY, ...user];
      let entries;
      try {
        entries = findEntries(o.models ? list(String(o.models)) : undefined, registry);
      } catch (e) {
        throw new UserError((e as Error).message);
      }
      let shard;
      try {
        shard = o.shard ? parseShard(String(o.shard)) : undefined;
      } catch (e) {
        throw new UserError((e as Error).message);
      }
      // Registry-file entries hold absolute paths, so without --root the root is never read.
      const root = o.root === undefined ? '' : resolve(String(o.root));
      // A mistyped --root would otherwise list every model as missing, exit 0 and write empty tables.
      if (o.root !== undefined && !isDirectory(join(root, 'Model')))
        throw new UserError(isDirectory(root) ? 'not a QuantZoo workspace: it has no Model/ folder (expected Model/… and Data/…)' : 'no such folder', String(o.root));
      const out = resolve(String(o.out));
      // --reuse-only tabulates what a folder holds: a mistyped --out would otherwise write empty tables, exit 0.
      if (o.reuseOnly && !isDirectory(out)) throw new UserError('no such folder (--reuse-only tabulates the cells already there)', String(o.out));
      ensureOutputDir(out);
      const t0 = performance.now();
      const run = await runZoo({
        root,
        entries,
        rules,
        customRules,
        out,
        ...(shard ? { shard } : {}),
        force: Boolean(o.force),
        reuseOnly: Boolean(o.reuseOnly),
        calibBatches,
        batch,
        ...(measureBatches !== undefined ? { measureBatches } : {}),
        ...(keepTest !== undefined ? { keepTest } : {}),
        ...(o.testLimit !== undefined ? { testLimit: o.testLimit as number } : {}),
        ...((o.analyseSamples ?? (embedded ? EMBEDDED_DEFAULTS.analyseSamples : undefined)) !== undefined
          ? { analyseSamples: (o.analyseSamples as number | undefined) ?? EMBEDDED_DEFAULTS.analyseSamples }
          : {}),
        saveModels: Boolean(o.saveModels),
      });
      if (o.reuseOnly && run.skipped === 0)
        throw new UserError(`holds no result for these ${run.notComputed} cell(s) (--reuse-only computes nothing; tables not written)`, String(o.out));
      const title = embedded
        ? 'onnxquant zoo (embedded: PP-OCRv4 rec on rendered text lines)'
        : `onnxquant zoo: ${[o.root !== undefined ? root : '', o.registry !== undefined ? resolve(String(o.registry)) : ''].filter(Boolean).join(' + ')}`;
      writeZooOutputs(out, run.rows, title);
      const text =
        format === 'markdown' ? renderMarkdown(run.rows, { title }) : format === 'json' ? renderJson(run.rows) : format === 'csv' ? renderCsv(run.rows) : renderTerminal(run.rows);
      process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
      // Failed cells are rows of the tables (written above), and the exit status says so: a sweep in a script fails.
      const failed = run.rows.filter((r) => r.status === 'error').length;
      if (failed) process.exitCode = 1;
      process.stderr.write(
        `zoo: ${failed ? `${failed} cell(s) FAILED (see the tables), ` : ''}${run.ran} cell(s) run, ${run.skipped} reused${run.notComputed ? `, ${run.notComputed} without a result left out (--reuse-only)` : ''}, ${((performance.now() - t0) / 1000).toFixed(1)} s; wrote ${join(out, 'results.md')}, results.json, results.csv, index.html\n`,
      );
    });
}
