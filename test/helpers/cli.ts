/** The CLI as users run it: `node bin/onnxquant.js …` in the project root, with its exit code and both streams. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';

const ROOT = new URL('../..', import.meta.url).pathname;
const BIN = join(ROOT, 'bin/onnxquant.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall time of the whole process. */
  ms: number;
}

export function cli(...args: string[]): Promise<CliResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}
