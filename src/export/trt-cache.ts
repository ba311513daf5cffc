/**
 * TensorRT INT8 calibration cache (the file an IInt8Calibrator's writeCalibrationCache() receives and trtexec
 * --calib reads): a header line `TRT-<version>-<algorithm>` (e.g. `TRT-8601-EntropyCalibration2`), then one line
 * per tensor, `<tensor name>: <scale>`, the scale being the float32 bit pattern in hexadecimal (big-endian digit
 * order, i.e. the uint32 value printed in hex) and equal to abs(max_dynamic_range) / 127.
 * Format reference: NVIDIA/TensorRT samples/opensource/sampleINT8/README.md ("Calibration file"); onnxruntime's
 * TensorRT provider reads the same text (ReadDynamicRange in tensorrt_execution_provider_utils.h).
 */
import { UserError } from '../errors.ts';
import type { Sidecar } from '../realise/sidecar.ts';
import { absmax } from './qparams.ts';

export interface TrtCacheEntry {
  name: string;
  /** The float32 scale (absmax / 127). */
  scale: number;
}

export interface TrtCache {
  header: string;
  entries: TrtCacheEntry[];
}

export const DEFAULT_TRT_HEADER = 'TRT-8601-EntropyCalibration2';

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

export function floatToHex(x: number): string {
  F32[0] = x;
  return U32[0].toString(16);
}

export function hexToFloat(hex: string): number {
  U32[0] = parseInt(hex, 16) >>> 0;
  return F32[0];
}

export function parseTrtCache(text: string, source = 'calibration cache'): TrtCache {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const header = lines.shift() ?? '';
  if (!/^TRT-\d+-\w+$/.test(header)) throw new UserError(`first line '${header}' is not a TRT-<version>-<calibrator> header`, source);
  const entries = lines.map((line, i) => {
    const m = /^(.*): ([0-9a-fA-F]{1,8})$/.exec(line);
    if (!m) throw new UserError(`line ${i + 2} is not '<tensor>: <hex>'`, source);
    return { name: m[1], scale: hexToFloat(m[2]) };
  });
  return { header, entries };
}

export function writeTrtCache(cache: TrtCache): string {
  return [cache.header, ...cache.entries.map((e) => `${e.name}: ${floatToHex(e.scale)}`)].join('\n') + '\n';
}

/** Per-tensor activation scales absmax/127 from a sidecar (weights are not part of a TensorRT cache). */
export function trtCacheFromSidecar(s: Sidecar, header = DEFAULT_TRT_HEADER): TrtCache {
  const seen = new Set<string>();
  const entries: TrtCacheEntry[] = [];
  for (const t of s.tensors) {
    if (t.role !== 'activation' || seen.has(t.tensor)) continue;
    seen.add(t.tensor);
    entries.push({ name: t.tensor, scale: Math.fround(absmax(t) / 127) });
  }
  return { header, entries };
}
