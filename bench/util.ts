/** Small helpers shared by the benchmark and the peer scripts. */
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { execFileSync } from 'node:child_process';
import type { FloatTensor } from '../src/tensor.ts';

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export async function timed<T>(f: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await f();
  return { ms: performance.now() - t, value };
}

/** A float32 C-order .npy (format 1.0), readable by numpy.load and by src/zoo/data/npy.ts. */
export function writeNpy(path: string, t: FloatTensor): void {
  const shape = t.dims.length === 1 ? `(${t.dims[0]},)` : `(${t.dims.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const data = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  writeFileSync(path, Buffer.concat([head, Buffer.from(header, 'latin1'), data]));
}

export function machine(): { nproc: number; cpu: string; loadavg: number[]; node: string; ort: string } {
  let ort = '?';
  try {
    ort = execFileSync(process.execPath, ['-p', "require('onnxruntime-node/package.json').version"], { encoding: 'utf8' }).trim();
  } catch {
    /* version unknown */
  }
  return { nproc: cpus().length, cpu: cpus()[0]?.model ?? '?', loadavg: loadavg().map((x) => Math.round(x * 100) / 100), node: process.version, ort };
}

export function busyProcesses(): string {
  try {
    return execFileSync('ps', ['-eo', 'pcpu,etime,args', '--sort=-pcpu'], { encoding: 'utf8' })
      .split('\n')
      .slice(1, 6)
      .filter((l) => parseFloat(l) >= 10)
      .map((l) => l.trim().slice(0, 110))
      .join('\n');
  } catch {
    return '';
  }
}
