import type { Command } from 'commander';
import { basename, dirname, join } from 'node:path';
import { readUserFile, UserError } from '../errors.ts';
import { loadModel, modelBytes, writeFilesAtomic } from '../onnx/model-io.ts';
import { validateModel } from '../onnx/validate.ts';
import { buildRule, getRule, ONNXQUANT_RULES, type QuantRule, type RuleSpec } from '../quant/rules.ts';
import { quantize } from '../quantize.ts';
import { graphInputs } from '../runtime/inputs.ts';
import { checkProvider, EXECUTION_PROVIDERS, type ExecutionProvider } from '../runtime/session.ts';
import { feedBatches, fitToModelInput, modelInput, openDataset, resolvePreprocess } from './data-source.ts';
import { freezeModel, parseFixedFeeds } from './fixed-feeds.ts';
import { ifDecidingInputs } from '../ir/freeze-inputs.ts';
import { makeProgress } from './progress.ts';
import { writeAnalysis } from './analyse.ts';
import { computesInFloat16, float16Interface } from '../ir/passes/upcast-float16.ts';
import { maskedOutputHints } from '../ir/masked-outputs.ts';
import { formatModel } from '../ir/format.ts';
import { checkOutputFile, sameFile } from './output-paths.ts';
import { getRecipe, RECIPES, type PassSpec } from '../optimise/recipes.ts';
import { gib } from '../optimise/context.ts';
import { getTarget, isTarget, TARGETS } from '../quant/targets.ts';
import { quantizeForTarget } from '../quant/plan-target.ts';
import { checkFilter, type Filter } from '../quant/plan.ts';
import { computedNames, hasQdqNodes } from '../ir/graph.ts';
import type { TensorQuantConfig } from '../quant/config.ts';
import { checkMeasureBatches, keepTestHelp, parseKeepTest, posInt } from './option-parsers.ts';

export function resolveRule(name: string): QuantRule {
  if (ONNXQUANT_RULES[name]) return getRule(name);
  if (TARGETS[name]) return getTarget(name);
  if (name.endsWith('.json')) {
    const text = readUserFile(name).toString('utf8');
    let spec: RuleSpec;
    try {
      spec = JSON.parse(text) as RuleSpec;
    } catch (e) {
      throw new UserError(`rule file is not valid JSON (${(e as Error).message})`, name);
    }
    if (typeof spec?.name !== 'string') throw new UserError('rule file needs a "name" string', name);
    return buildRule(spec, name);
  }
  return getRule(name);
}

export function singleInput(model: ReturnType<typeof loadModel>, file: string, wanted?: string): string {
  const inputs = graphInputs(model);
  if (wanted) {
    if (!inputs.some((i) => i.name === wanted)) throw new UserError(`model has no input '${wanted}' (inputs: ${inputs.map((i) => i.name).join(', ')})`, file);
    return wanted;
  }
  if (inputs.length !== 1)
    throw new UserError(`model has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); choose the one the data fill with --input, and give the others with --feed name=value`, file);
  return inputs[0].name;
}

/** Commander's accumulator for a repeatable option. */
export const collect = (v: string, prev: string[]) => [...prev, v];

function parseOverrides(list: string[]): Filter['overrides'] {
  const out: NonNullable<Filter['overrides']> = {};
  for (const item of list) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UserError(`--override '${item}': expected tensor=float or tensor={json}`);
    const [name, spec] = [item.slice(0, eq), item.slice(eq + 1)];
    if (spec === 'float') out[name] = 'float';
    else
      try {
        out[name] = JSON.parse(spec) as Partial<TensorQuantConfig>;
      } catch (e) {
        throw new UserError(`--override '${item}': ${(e as Error).message}`);
      }
  }
  return out;
}

/** The recipe with its fallback pass's budget set: the recipe's own fallback keeps its precision; a recipe without
 * one (`none` included) gets a float fallback — a budget asks for the fallback whatever the recipe. */
function withFallbackBudget(recipe: readonly PassSpec[], raw: string | undefined): PassSpec[] {
  if (raw === undefined) return [...recipe];
  const budget = Number(raw);
  if (!(raw.trim() !== '' && budget >= 0)) throw new UserError(`--fallback-budget must be a ratio ≥ 0, got '${raw}'`);
  const fallback = recipe.find((p) => p.pass === 'fallback');
  return [...recipe.filter((p) => p.pass !== 'fallback'), { pass: 'fallback', budget, precision: fallback?.pass === 'fallback' ? fallback.precision : undefined }];
}

export function registerQuantize(program: Command): void {
  program
    .command('quantize')
    .description('quantize a model under a rule with calibration data; writes a QDQ model and a .qparams.json sidecar')
    .argument('<model>', 'float ONNX model')
    .requiredOption('--calib <path>', 'calibration data: image folder, PaddleOCR label .txt, .npy/.npz file or folder')
    .option('--rule <name|file.json>', `rule: ${Object.keys(ONNXQUANT_RULES).join(', ')}; deployment target: ${Object.keys(TARGETS).join(', ')}; or a rule JSON file`, 'onnxquant-int8-perchannel')
    .option('--preprocess <preset|file|json>', 'image preprocessing: a preset (imagenet, cifar10-nchw, rgb01-nhwc, ocr-32x320, ocr-48x320, raw-rgb), a JSON file or inline JSON', 'imagenet')
    .option('--batch <n>', 'batch size', (v) => parseInt(v, 10), 32)
    .option('--calib-steps <n>', 'number of calibration batches', (v) => parseInt(v, 10), 32)
    .option('--input <name>', 'model input fed with the data (default: the only input)')
    .option('--freeze <name=value>', 'make a model input a constant (a setting such as a sample rate): Ifs it decides are replaced by their branch, so the layers in them can be quantized; the output model no longer takes it (repeatable)', collect, [])
    .option('--feed <name=value>', 'a value for another model input, held for every batch: a number (fills it; a dimension shared with the data input follows the batch) or a .npy file (repeatable)', collect, [])
    .option('--stats-on <which>', "collect activation statistics on 'quantized-weights' (PPQ) or 'float'", 'quantized-weights')
    .option('--provider <name>', `execution provider of the calibration runs: ${EXECUTION_PROVIDERS.join(' or ')} (webgpu: Dawn over Vulkan, needs a GPU; simulation and analysis always run on cpu)`, 'cpu')
    .option('--exclude-op <op>', 'leave this op type float (repeatable)', collect, [])
    .option('--exclude-node <pattern>', 'leave matching nodes float: name, glob or /regex/ (repeatable)', collect, [])
    .option('--exclude-region <from:to>', 'leave float the nodes between tensors, e.g. feat1,feat2:boxes,scores (repeatable)', collect, [])
    .option('--override <tensor=spec>', "per-tensor override: 'name=float' or 'name={\"bits\":16}' (fields: format, bits, qmin, qmax, symmetric, perChannel, pow2, observer, percentile; a new width or an FP8 format gets its full range unless qmin/qmax are given; name may be a glob; repeatable)", collect, [])
    .option('-o, --output <file>', 'output model (default: <model>.<rule>.onnx beside the input)')
    .option('--recipe <name>', `accuracy-recovery recipe: ${Object.keys(RECIPES).join(', ')}, or several joined by '+' to chain them (best = ${RECIPES.best.map((p) => p.pass).join(', ')}; each kept only if it lowers the error)`, 'none')
    .option('--fallback-budget <ratio>', 'output power-ratio budget on calibration data of the mixed-precision fallback (default 0.01); adds the fallback (float) to a recipe without one, e.g. --recipe best')
    .option('--keep-test <test>', keepTestHelp('mean'))
    .option('--measure-batches <n>', "calibration batches a recipe judges its passes on, the first n (default 4, or 16 samples' worth when batches are small); the passes fit to the batches after them", posInt('--measure-batches'))
    .option('--outputs <a,b>', "tensors a recipe's passes are judged by and --analyse reports OQE over (default: the graph outputs), e.g. a heat map before its peak mask")
    .option('--analyse', 'also write report.html and report.json beside the output')
    .option('--test <path>', 'data for --analyse (default: the calibration data)')
    .option('--quiet', 'no progress output')
    .action(async (file: string, o: Record<string, unknown>) => {
      const t0 = performance.now();
      const loaded = loadModel(file);
      validateModel(loaded, file);
      const model = await freezeModel(loaded, o.freeze as string[], file, Boolean(o.quiet));
      // Quantizing Q/DQ output again would put a second quantizer on every activation.
      if (hasQdqNodes(model)) throw new UserError('already has QuantizeLinear/DequantizeLinear nodes (is it a quantized model?): quantize the float model', file);
      const rule = resolveRule(String(o.rule));
      const input = singleInput(model, file, o.input as string | undefined);
      const out = (o.output as string | undefined) ?? join(dirname(file), `${basename(file, '.onnx')}.${rule.name}.onnx`);
      checkOutputFile(out);
      if (sameFile(out, file)) throw new UserError('is the model being quantized: writing there would replace it (choose another -o)', out);
      const fixed = parseFixedFeeds(o.feed as string[], model, modelInput(model, input), file);
      const spec = fitToModelInput(resolvePreprocess(o.preprocess as string), model, input);
      const ds = openDataset(String(o.calib), spec);
      const batch = o.batch as number;
      const steps = o.calibSteps as number;
      if (!(batch > 0) || !(steps > 0)) throw new UserError('--batch and --calib-steps must be positive integers');
      const filter: Filter = {
        excludeOps: o.excludeOp as string[],
        excludeNodes: o.excludeNode as string[],
        overrides: parseOverrides(o.override as string[]),
        excludeRegions: (o.excludeRegion as string[]).map((r) => {
          const [from, to] = r.split(':');
          if (!from || !to) throw new UserError(`--exclude-region '${r}': expected from-tensors:to-tensors`);
          return { from: from.split(','), to: to.split(',') };
        }),
      };
      if (isTarget(rule) && o.recipe !== 'none') throw new UserError(`--recipe applies to the OnnxQuant rules, not to deployment target '${rule.name}'`);
      // The target planner places Q/DQ by the runtime's fusion rules and reads only op and node exclusions.
      for (const [flag, given] of [['--override', (o.override as string[]).length], ['--exclude-region', (o.excludeRegion as string[]).length]] as const)
        if (isTarget(rule) && given) throw new UserError(`${flag} applies to the OnnxQuant rules and rule files, not to deployment target '${rule.name}' (use --exclude-op / --exclude-node)`);
      checkFilter(model, filter, [...rule.ops, ...(isTarget(rule) ? rule.extraOps.map((e) => e.op) : [])], file);
      const statsOn = String(o.statsOn);
      if (statsOn !== 'float' && statsOn !== 'quantized-weights') throw new UserError(`--stats-on must be quantized-weights or float, got '${statsOn}'`);
      const provider = String(o.provider) as ExecutionProvider;
      if (!EXECUTION_PROVIDERS.includes(provider)) throw new UserError(`--provider must be ${EXECUTION_PROVIDERS.join(' or ')}, got '${provider}'`);
      checkProvider(provider);
      const recipe = withFallbackBudget(getRecipe(String(o.recipe)), o.fallbackBudget as string | undefined);
      const keepTest = parseKeepTest(o.keepTest, { hasRecipe: recipe.length > 0, addRecipe: '--recipe' }) ?? 'mean';
      const measureBatches = o.measureBatches as number | undefined;
      checkMeasureBatches(measureBatches, { hasRecipe: recipe.length > 0, addRecipe: '--recipe', batches: steps, batchesFlag: '--calib-steps' });
      const outputs = o.outputs ? String(o.outputs).split(',') : undefined;
      if (outputs && !recipe.length && !o.analyse) throw new UserError('--outputs names what a recipe or --analyse measures: add --recipe or --analyse, or leave --outputs out');
      if (outputs) {
        const raw = computedNames(model);
        const missing = outputs.find((t) => !raw.has(t));
        if (missing !== undefined) throw new UserError(`--outputs '${missing}': no node of this model computes it`, file);
        // The recipe and the analysis see the formatted model (formatting removes Identity and folds nodes).
        const formatted = computedNames(formatModel(model).model);
        const folded = outputs.find((t) => !formatted.has(t));
        if (folded !== undefined) throw new UserError(`--outputs '${folded}': formatting folds it away (name a tensor after it)`, file);
      }
      // An output behind a peak mask or a threshold judges a recipe by its flips: say what to measure instead.
      if (!outputs && (recipe.length || o.analyse) && !o.quiet) {
        for (const h of maskedOutputHints(model)) process.stderr.write(`hint: ${h}\n`);
      }
      // The analysis data are opened before any work, so a wrong --test path fails before the model is written.
      if (o.test && !o.analyse) throw new UserError('--test is the data for --analyse: add --analyse, or leave --test out');
      const testDs = o.test ? openDataset(String(o.test), spec) : ds;
      const progress = makeProgress(Boolean(o.quiet));
      const total = Math.min(steps, Math.ceil(ds.size / batch));
      progress.stage(`calibrate ${rule.name}`, total);
      const common = { rule, steps, statsOn, filter, provider, onBatch: (d: number) => progress.tick(d) } as const;
      // A function, so calibration may read the data a second time (calibrate.ts CalibrationData).
      const feeds = () => feedBatches(ds, modelInput(model, input), batch, steps, String(o.calib), fixed);
      const result = isTarget(rule)
        ? await quantizeForTarget(model, feeds, { ...common, target: rule })
        : await quantize(model, feeds, { ...common, recipe, keepTest, measureBatches, outputs, log: o.quiet ? undefined : (line) => process.stderr.write(`${line}\n`) });
      progress.stop();
      // Layers in If bodies stay float; when an input decides those Ifs (a sample rate), --freeze is the way in.
      // Ifs decided by the data themselves (a shape, a value of the input) are not settings to freeze.
      const deciders = result.plan.skipped.some((s) => s.reason.startsWith('inside a If body'))
        ? [...new Set(ifDecidingInputs(model).filter((leaves) => !leaves.includes(input)).flat())]
        : [];
      const freezeHint = deciders.length ? `the Ifs are decided by input ${deciders.map((d) => `'${d}'`).join(', ')}: --freeze ${deciders[0]}=<value> inlines the branch for that value` : '';
      if (result.plan.layers.length === 0) {
        const why = result.plan.skipped[0] ? ` (e.g. ${result.plan.skipped[0].node}: ${result.plan.skipped[0].reason}${freezeHint ? `; ${freezeHint}` : ''})` : '';
        throw new UserError(`no layer to quantize under ${rule.name}${why}; nothing written`, file);
      }
      for (const p of ('passes' in result ? result.passes : undefined) ?? [])
        process.stdout.write(`${p.pass}: calibration output error ${(p.before * 100).toFixed(3)}% → ${(p.after * 100).toFixed(3)}% ${p.kept ? 'kept' : 'rolled back'} (${(p.ms / 1000).toFixed(1)} s${p.peakRss ? `, peak RSS ${gib(p.peakRss)}` : ''})${p.detail ? `; ${p.detail}` : ''}\n`);
      const sidecar = out.replace(/\.onnx$/, '') + '.qparams.json';
      const bytes = modelBytes(result.model, out);
      writeFilesAtomic([{ path: out, data: bytes }, { path: sidecar, data: JSON.stringify(result.sidecar, null, 1) }]);
      const weights = result.plan.tensors.filter((t) => t.role === 'weight').length;
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      const rss = (process.resourceUsage().maxRSS / 1024).toFixed(0);
      process.stdout.write(
        `quantized ${result.plan.layers.length} layers (${weights} weights, ${result.plan.tensors.length - weights} activation tensors) ` +
          `under ${rule.name} with ${result.batches} batches of ${batch} in ${secs} s, peak RSS ${rss} MiB\n` +
          `wrote ${out} (${(bytes.length / 1e6).toFixed(2)} MB) and ${sidecar}\n`,
      );
      // A float16 model is quantized as its float32 graph (ir/passes/upcast-float16.ts): its reference moves, and
      // float16 inputs and outputs become float32.
      if (computesInFloat16(model)) {
        const io = float16Interface(model);
        process.stderr.write(`note: ${file} computes in float16: quantized as its float32 graph (the float16 weights exactly, no float16 rounding between layers)${io.length ? `; ${out} takes and returns float32 (${io.join(', ')})` : ''}\n`);
      }
      for (const s of result.plan.skipped) process.stderr.write(`warning: left float: ${s.node} (${s.reason})\n`);
      if (freezeHint) process.stderr.write(`hint: layers inside If bodies stay float; ${freezeHint}\n`);
      if (o.analyse) {
        await writeAnalysis(result.floatModel, result.model, testDs, input, batch, dirname(out), {
          rule: rule.name,
          floatPath: file,
          quantPath: out,
          dataPath: String(o.test ?? o.calib),
          known: { plan: result.plan, params: result.params },
          outputs,
          fixed,
          quiet: Boolean(o.quiet),
          steps,
        });
      }
    });
}
