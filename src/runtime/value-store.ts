/**
 * Tensors held for later in memory up to a byte budget and beyond it in files of a temporary folder, read back
 * bit-exactly. The network stepper keeps a network's frontier for every fitting batch; at 1024² outputs that is
 * gigabytes per layer and side (srcnn ×4: 64 × 1024² floats, 268 MB an image, × 16 images × float and quantized
 * sides, plus the layer outputs weight rounding reads), and the whole recipe peaked at 20.5 GB RSS. Spilled values cost
 * a write and a read each (the page cache usually serves the read) instead of resident memory that cannot be
 * reclaimed.
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';

/** A value in the store: the tensor itself, or where its bytes lie. */
export type Stored = { readonly tensor: ort.Tensor; readonly bytes: number } | { readonly file: string; readonly type: ort.Tensor.Type; readonly dims: readonly number[]; readonly bytes: number };

export interface ValueStore {
  put(t: ort.Tensor): Stored;
  /**
   * The value; a spilled one is read into `into` when that has its size (a buffer the caller reuses: first touches of
   * fresh memory, not the read, are what a load costs), else into fresh memory.
   */
  load(s: Stored, into?: ArrayBufferView): ort.Tensor;
  free(s: Stored): void;
  /** Bytes held in memory now. */
  memoryBytes(): number;
  /** Bytes written to files so far (spilled values that were freed included). */
  spilledBytes(): number;
  /** Frees every value and removes the folder. */
  close(): void;
}

/** The element arrays a stored value can be read back into (the stepper's frontier types; strings never cross). */
const ARRAYS: Partial<Record<ort.Tensor.Type, { new (n: number): ArrayBufferView; BYTES_PER_ELEMENT: number }>> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
};

const bytesOf = (d: ArrayBufferView): Uint8Array => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

// Folders of stores not closed (an exception between create and close): removed when the process exits.
const open = new Set<string>();
let exitHook = false;

export function createValueStore(memoryBudgetBytes: number): ValueStore {
  let dir: string | undefined;
  let files = 0;
  let inMemory = 0;
  let spilled = 0;
  const folder = () => {
    if (!dir) {
      dir = mkdtempSync(join(tmpdir(), 'onnxquant-values-'));
      open.add(dir);
      if (!exitHook) {
        exitHook = true;
        process.once('exit', () => open.forEach((d) => rmSync(d, { recursive: true, force: true })));
      }
    }
    return dir;
  };
  return {
    put(t) {
      const bytes = (t.data as ArrayBufferView).byteLength;
      if (inMemory + bytes <= memoryBudgetBytes) {
        inMemory += bytes;
        return { tensor: t, bytes };
      }
      if (!ARRAYS[t.type]) throw new Error(`value store: cannot hold a ${t.type} tensor`);
      const file = join(folder(), `${files++}.bin`);
      writeFileSync(file, bytesOf(t.data as ArrayBufferView));
      spilled += bytes;
      return { file, type: t.type, dims: [...t.dims], bytes };
    },
    load(s, into) {
      if ('tensor' in s) return s.tensor;
      const Array = ARRAYS[s.type]!;
      const reuse = into && into.byteLength === s.bytes && into.constructor === Array;
      const data = reuse ? into : new Array(s.bytes / Array.BYTES_PER_ELEMENT);
      const view = bytesOf(data);
      const fd = openSync(s.file, 'r');
      try {
        for (let at = 0; at < s.bytes; ) {
          const n = readSync(fd, view, at, s.bytes - at, at);
          if (n <= 0) throw new Error(`value store: ${s.file} ended at byte ${at} of ${s.bytes}`);
          at += n;
        }
      } finally {
        closeSync(fd);
      }
      // float16 travels as its bit patterns (onnxruntime-node's float16 tensors take a Uint16Array).
      return new ort.Tensor(s.type as 'float32', data as Float32Array, s.dims);
    },
    free(s) {
      if ('tensor' in s) inMemory -= s.bytes;
      else rmQuiet(s.file);
    },
    memoryBytes: () => inMemory,
    spilledBytes: () => spilled,
    close() {
      inMemory = 0;
      if (dir) {
        rmSync(dir, { recursive: true, force: true });
        open.delete(dir);
        dir = undefined;
      }
    },
  };
}

function rmQuiet(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // Already gone with its folder (close ran first).
  }
}
