/**
 * The onnxquant CLI: a thin commander layer over the library. A UserError prints as one line
 * ("onnxquant: <file>: <problem>") and exits 2; --debug shows the stack. Other errors are bugs: stack, exit 1.
 */
import { Command } from 'commander';
import { UserError } from '../errors.ts';
import { registerInspect } from './inspect.ts';
import { registerQuantize } from './quantize.ts';
import { registerZoo } from './zoo.ts';
import { registerAnalyse } from './analyse.ts';
import { registerDeployCheck } from './deploy-check.ts';
import { registerExport } from './export.ts';

export const VERSION = '0.1.0';

const program = new Command();
program.name('onnxquant').description('Post-training quantization of ONNX models, PPQ-exact, simulated in onnxruntime').version(VERSION);
program.option('--debug', 'show stack traces');
registerInspect(program);
registerQuantize(program);
registerAnalyse(program);
registerZoo(program);
registerDeployCheck(program);
registerExport(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  const debug = process.argv.includes('--debug');
  if (e instanceof UserError && !debug) {
    process.stderr.write(`onnxquant: ${e.message.split('\n')[0]}\n`);
    process.exit(2);
  }
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(e instanceof UserError ? 2 : 1);
}
