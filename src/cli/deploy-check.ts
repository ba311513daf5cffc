/** `onnxquant deploy-check`: simulate vs deploy agreement, onnxruntime's integer kernels, float vs int8 latency. */
import type { Command } from 'commander';
import { UserError } from '../errors.ts';
import type { Feeds } from '../calibrate/calibrate.ts';
import { deployCheck, formatDeployReport, tileFeeds } from '../export/deploy-check.ts';
import { loadModel, writeFilesAtomic } from '../onnx/model-io.ts';
import { checkOutputFile } from './output-paths.ts';
import { checkQuantizedFrom } from './analyse.ts';
import { hasQdqNodes } from '../ir/graph.ts';
import { feedBatches, fitToModelInput, modelInput, openDataset, resolvePreprocess } from './data-source.ts';
import { collect, singleInput } from './quantize.ts';
import { freezeModel, parseFixedFeeds } from './fixed-feeds.ts';
import { fixedFeedTensors } from '../runtime/fixed-feeds.ts';

const int = (v: string) => parseInt(v, 10);

export function registerDeployCheck(program: Command): void {
  program
    .command('deploy-check')
    .description('run a QDQ model simulated (optimizations off) and deployed (onnxruntime fuses integer kernels): agreement, kernels used, latency vs float')
    .argument('<quant>', 'quantized QDQ ONNX model')
    .requiredOption('--data <path>', 'data: image folder, PaddleOCR label .txt, .npy/.npz file or folder')
    .option('--preprocess <preset|file|json>', 'image preprocessing (as for quantize)', 'imagenet')
    .option('--float <model>', 'the float model, for latency and float-vs-deploy agreement')
    .option('--input <name>', 'model input fed with the data (default: the only input)')
    .option('--freeze <name=value>', 'make a --float model input a constant, as quantize --freeze did (repeatable)', collect, [])
    .option('--feed <name=value>', "a value for another model input: a number (fills it) or a .npy file (repeatable)", collect, [])
    .option('--batch <n>', 'batch size of the agreement check', int, 8)
    .option('--steps <n>', 'number of batches for the agreement check', int, 8)
    .option('--task <kind>', "'auto' (argmax agreement for rank-2/3 outputs), 'classify' or 'regress'", 'auto')
    .option('--latency-batch <list>', 'comma-separated batch sizes for latency ("" to skip)', '1,8')
    .option('--runs <n>', 'timed runs per batch size (median reported)', int, 20)
    .option('--warmup <n>', 'untimed runs first', int, 3)
    .option('--threads <n>', 'onnxruntime intra-op threads (0: onnxruntime default)', int, 0)
    .option('--json <file>', 'also write the report as JSON')
    .action(async (file: string, o: Record<string, unknown>) => {
      const quant = loadModel(file);
      const floatModel = o.float ? await freezeModel(loadModel(String(o.float)), o.freeze as string[], String(o.float)) : undefined;
      const input = singleInput(quant, file, o.input as string | undefined);
      const fixed = parseFixedFeeds(o.feed as string[], quant, modelInput(quant, input), file);
      if (o.json) checkOutputFile(String(o.json));
      if (floatModel) checkQuantizedFrom(floatModel, String(o.float), quant, file);
      const ds = openDataset(String(o.data), fitToModelInput(resolvePreprocess(o.preprocess as string), quant, input));
      const batch = o.batch as number;
      const steps = o.steps as number;
      if (!(batch > 0) || !(steps > 0) || !((o.runs as number) > 0)) throw new UserError('--batch, --steps and --runs must be positive integers');
      if (!((o.warmup as number) >= 0) || !((o.threads as number) >= 0)) throw new UserError('--warmup and --threads must be integers ≥ 0');
      const task = String(o.task);
      if (!['auto', 'classify', 'regress'].includes(task)) throw new UserError(`--task must be auto, classify or regress, got '${task}'`);
      const batches: Feeds[] = [];
      for await (const b of feedBatches(ds, modelInput(quant, input), batch, steps, String(o.data), fixed)) batches.push(b);
      const latencyBatches = String(o.latencyBatch)
        .split(',')
        .filter((s) => s.trim())
        .map((s) => {
          const n = parseInt(s, 10);
          if (!(n > 0)) throw new UserError(`--latency-batch: '${s}' is not a positive integer`);
          return n;
        });
      if (!hasQdqNodes(quant)) process.stderr.write(`warning: ${file} has no QuantizeLinear/DequantizeLinear nodes: it is not a QDQ model, so simulate and deploy run the same float graph\n`);
      const report = await deployCheck(quant, {
        floatModel,
        batches,
        task: task as 'auto',
        latencyBatches,
        ...(fixed.length
          ? {
              batchInputs: [input],
              latencyFeeds: (n: number) => {
                const data = tileFeeds({ [input]: batches[0][input] }, n);
                return { ...data, ...fixedFeedTensors(fixed, modelInput(quant, input), data[input].dims) };
              },
            }
          : {}),
        runs: o.runs as number,
        warmup: o.warmup as number,
        intraOpThreads: (o.threads as number) || undefined,
      });
      process.stdout.write(formatDeployReport(report));
      if (o.json) writeFilesAtomic([{ path: String(o.json), data: JSON.stringify(report, null, 1) }]);
    });
}
