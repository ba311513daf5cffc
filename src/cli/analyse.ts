import type { Command } from 'commander';
import { join } from 'node:path';
import type { ModelProto } from 'onnx-buf';
import { analyse, type AnalyseOptions } from '../analyse/analyse.ts';
import type { AnalysisReport } from '../analyse/schema.ts';
import { formatModel } from '../ir/format.ts';
import { computedNames, opsetVersion } from '../ir/graph.ts';
import { upgradeOpset } from '../ir/opset-upgrade.ts';
import { loadModel, writeFileAtomic } from '../onnx/model-io.ts';
import { UserError } from '../errors.ts';
import { graphInputs, graphOutputs } from '../runtime/inputs.ts';
import { ensureOutputDir } from './output-paths.ts';
import type { QuantParams } from '../quant/config.ts';
import type { QuantPlan } from '../quant/plan.ts';
import { renderAnalysisHtml } from '../report/html.ts';
import { renderAnalysisTable } from '../report/terminal.ts';
import type { Dataset } from '../zoo/data/types.ts';
import { feedBatches, fitToModelInput, modelInput, openDataset, resolvePreprocess } from './data-source.ts';
import { makeProgress } from './progress.ts';
import { collect, singleInput } from './quantize.ts';
import { freezeModel, parseFixedFeeds } from './fixed-feeds.ts';
import type { FixedFeed } from '../runtime/fixed-feeds.ts';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { maskedOutputHints } from '../ir/masked-outputs.ts';

export interface WriteAnalysisOptions {
  rule?: string;
  floatPath: string;
  quantPath: string;
  /** The data's path as given, named by errors about it. */
  dataPath: string;
  known?: { plan: QuantPlan; params: ReadonlyMap<string, QuantParams> };
  outputs?: string[];
  isolated?: AnalyseOptions['isolated'];
  quiet?: boolean;
  steps?: number;
  /** Values for the model inputs the data do not fill (--feed). */
  fixed?: readonly FixedFeed[];
}

function sha256File(path: string): string {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return '';
  }
}

/** Run the analysis and write report.json + report.html into `dir`; prints the terminal table. */
export async function writeAnalysis(
  floatModel: ModelProto,
  quantModel: ModelProto,
  ds: Dataset<unknown>,
  input: string,
  batch: number,
  dir: string,
  o: WriteAnalysisOptions,
): Promise<AnalysisReport> {
  ensureOutputDir(dir);
  const progress = makeProgress(o.quiet);
  let stage = '';
  const report = await analyse(floatModel, quantModel, () => feedBatches(ds, modelInput(floatModel, input), batch, o.steps, o.dataPath, o.fixed), {
    rule: o.rule,
    outputs: o.outputs,
    isolated: o.isolated ?? 'none',
    floatPath: o.floatPath,
    quantPath: o.quantPath,
    dataSource: ds.name,
    onProgress: (s, done, total) => {
      if (s !== stage) progress.stage(`analyse: ${(stage = s)}`, total);
      progress.tick(done);
    },
  }, o.known);
  progress.stop();
  report.floatModel.sha256 = sha256File(o.floatPath);
  report.quantModel.sha256 = sha256File(o.quantPath);
  writeFileAtomic(join(dir, 'report.json'), JSON.stringify(report, null, 1));
  writeFileAtomic(join(dir, 'report.html'), await renderAnalysisHtml(report));
  process.stdout.write(renderAnalysisTable(report) + '\n');
  process.stdout.write(`wrote ${join(dir, 'report.json')} and ${join(dir, 'report.html')}\n`);
  // A float model, or a QOperator one (QLinearConv…), has no Conv/Gemm/MatMul fed through DequantizeLinear.
  if (report.layers.length === 0)
    process.stderr.write(`warning: ${o.quantPath} has no quantized layer to compare (no Conv/Gemm/MatMul fed by DequantizeLinear): AQE and MQE are undefined (NaN); OQE compares the outputs only\n`);
  return report;
}

/**
 * The float and quantized models must be the same network: the quantized one keeps the float one's inputs and
 * outputs (graphInputs leaves out initializers listed as inputs, i.e. weights). Both are fed the same data and
 * compared output by output.
 */
export function checkQuantizedFrom(floatModel: ModelProto, floatFile: string, quant: ModelProto, quantFile: string): void {
  const names = (m: ModelProto, part: 'input' | 'output') => new Set((part === 'input' ? graphInputs(m) : graphOutputs(m)).map((v) => v.name));
  for (const part of ['input', 'output'] as const) {
    const missing = [...names(floatModel, part)].filter((n) => !names(quant, part).has(n));
    if (missing.length) throw new UserError(`is not a quantized ${floatFile}: that model's ${part} '${missing[0]}' is not among its ${part}s`, quantFile);
  }
}

export function registerAnalyse(program: Command): void {
  program
    .command('analyse')
    .alias('analyze')
    .description('per-layer and output error of a QDQ model against its float model (AQE/MQE/OQE), terminal + JSON + HTML')
    .argument('<float>', 'float ONNX model')
    .argument('<quant>', 'QDQ ONNX model made from it')
    .requiredOption('--data <path>', 'test data: image folder, PaddleOCR label .txt, .npy/.npz')
    .option('--preprocess <preset|file|json>', 'image preprocessing (see quantize --help)', 'imagenet')
    .option('--batch <n>', 'batch size', (v) => parseInt(v, 10), 32)
    .option('--steps <n>', 'number of batches (default: all)', (v) => parseInt(v, 10))
    .option('--input <name>', 'model input fed with the data')
    .option('--freeze <name=value>', 'make a float-model input a constant, as quantize --freeze did (repeatable)', collect, [])
    .option('--feed <name=value>', 'a value for another model input: a number (fills it) or a .npy file (repeatable)', collect, [])
    .option('--outputs <a,b>', 'output tensors for OQE (default: the graph outputs)')
    .option('--isolated <mode>', "isolated per-layer error: none, both, all (weight-only and activation-only too)", 'none')
    .option('--out-dir <dir>', 'where report.json and report.html go', '.')
    .option('--quiet', 'no progress output')
    .action(async (floatFile: string, quantFile: string, o: Record<string, unknown>) => {
      const quant = loadModel(quantFile);
      const floatModel = formatModel(await freezeModel(loadModel(floatFile), o.freeze as string[], floatFile, Boolean(o.quiet))).model;
      checkQuantizedFrom(floatModel, floatFile, quant, quantFile);
      const batch = o.batch as number;
      const steps = o.steps as number | undefined;
      if (!(batch > 0) || (steps !== undefined && !(steps > 0))) throw new UserError('--batch and --steps must be positive integers');
      const isolated = String(o.isolated);
      if (!['none', 'both', 'all'].includes(isolated)) throw new UserError(`--isolated must be none, both or all, got '${isolated}'`);
      const outputs = o.outputs ? String(o.outputs).split(',') : undefined;
      for (const [m, file] of [[floatModel, floatFile], [quant, quantFile]] as const) {
        const computed = computedNames(m);
        const absent = outputs?.find((t) => !computed.has(t));
        if (absent !== undefined) throw new UserError(`--outputs '${absent}': no node of this model computes it`, file);
      }
      if (!outputs && !o.quiet) {
        for (const h of maskedOutputHints(floatModel)) process.stderr.write(`hint: ${h}\n`);
      }
      upgradeOpset(floatModel, Math.max(opsetVersion(floatModel), opsetVersion(quant)));
      const input = singleInput(floatModel, floatFile, o.input as string | undefined);
      const fixed = parseFixedFeeds(o.feed as string[], floatModel, modelInput(floatModel, input), floatFile);
      const ds = openDataset(String(o.data), fitToModelInput(resolvePreprocess(o.preprocess as string), floatModel, input));
      await writeAnalysis(floatModel, quant, ds, input, batch, String(o.outDir), {
        floatPath: floatFile,
        quantPath: quantFile,
        dataPath: String(o.data),
        outputs,
        isolated: isolated as AnalyseOptions['isolated'],
        quiet: Boolean(o.quiet),
        steps,
        fixed,
      });
    });
}
