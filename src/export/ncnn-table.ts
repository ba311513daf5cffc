/**
 * ncnn INT8 calibration table (`.table`, read by ncnn2int8): one line per entry, `<name> <v> <v> …`.
 * - `<layer>_param_0 s_0 … s_{C−1}`: weight scales per output channel (per group for ConvolutionDepthWise),
 *   s = 127 / absmax(weights of that channel);
 * - `<layer> s`: the scale of the layer's input (bottom) blob, s = 127 / threshold.
 * ncnn scales are reciprocal to ONNX's (q = round(x · s)). ncnn2table (Tencent/ncnn tools/quantize/ncnn2table.cpp,
 * QuantNet::save_table) writes all weight lines first, then the bottom-blob lines, each value as "%f " (six
 * decimals and a trailing space). Older tables (BUG1989/caffe-int8-convert-tools, the origin of the format) print
 * Python floats without a trailing space; the parser accepts both and the writer can reproduce either.
 * Differences from ncnn2table: it quantizes 3×3 stride-1 convolutions' weights to 6 bits (31/absmax) for its
 * winograd kernels; the values exported here are always 127/absmax. Layer names are the ONNX node names (what
 * onnx2ncnn uses for layer names).
 */
import { UserError } from '../errors.ts';
import type { Sidecar } from '../realise/sidecar.ts';
import { absmax } from './qparams.ts';

export interface NcnnTableEntry {
  name: string;
  values: number[];
}

export interface NcnnTableStyle {
  /** 'fixed6': C's "%f"; 'shortest': the shortest decimal that reads back to the same double. */
  numbers: 'fixed6' | 'shortest';
  trailingSpace: boolean;
}

export const NCNN2TABLE_STYLE: NcnnTableStyle = { numbers: 'fixed6', trailingSpace: true };

export function parseNcnnTable(text: string, source = 'ncnn table'): { entries: NcnnTableEntry[]; style: NcnnTableStyle } {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  let fixed = true;
  let trailing = lines.length > 0;
  const entries = lines.map((line, i) => {
    if (!line.endsWith(' ')) trailing = false;
    const parts = line.trim().split(/\s+/);
    if (parts.length < 2) throw new UserError(`line ${i + 1} has no values`, source);
    const [name, ...vals] = parts;
    for (const v of vals) {
      if (!/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v) && !/^-?(inf|nan)$/i.test(v)) throw new UserError(`line ${i + 1}: '${v}' is not a number`, source);
      if (!/^-?\d+\.\d{6}$/.test(v)) fixed = false;
    }
    return { name, values: vals.map(Number) };
  });
  return { entries, style: { numbers: fixed ? 'fixed6' : 'shortest', trailingSpace: trailing } };
}

export function writeNcnnTable(entries: NcnnTableEntry[], style: NcnnTableStyle = NCNN2TABLE_STYLE): string {
  const fmt = (v: number) => (style.numbers === 'fixed6' ? v.toFixed(6) : String(v));
  return entries.map((e) => `${e.name} ${e.values.map(fmt).join(' ')}${style.trailingSpace ? ' ' : ''}\n`).join('');
}

const LAYER_OPS = new Set(['Conv', 'Gemm', 'MatMul', 'ConvTranspose']);

/**
 * From a sidecar: for every quantized Conv/Gemm/MatMul node (by its weight's uses), `<node>_param_0` with
 * 127/absmax per channel, then `<node>` with 127/absmax of its input-0 activation. A zero range gives scale 1
 * (as ncnn2table does for empty embeddings) instead of infinity.
 */
export function ncnnTableFromSidecar(s: Sidecar): NcnnTableEntry[] {
  const recip = (a: number) => (a > 0 ? 127 / a : 1);
  const weights: NcnnTableEntry[] = [];
  const acts: NcnnTableEntry[] = [];
  const inputOf = new Map<string, number>();
  for (const t of s.tensors)
    if (t.role === 'activation') for (const u of t.uses) if (LAYER_OPS.has(u.op) && u.input === 0) inputOf.set(u.node, absmax(t));
  for (const t of s.tensors) {
    if (t.role !== 'weight') continue;
    for (const u of t.uses) {
      if (!LAYER_OPS.has(u.op)) continue;
      weights.push({ name: `${u.node}_param_0`, values: t.min.map((_, c) => recip(absmax(t, c))) });
      const a = inputOf.get(u.node);
      if (a !== undefined) acts.push({ name: u.node, values: [recip(a)] });
    }
  }
  return [...weights, ...acts];
}
