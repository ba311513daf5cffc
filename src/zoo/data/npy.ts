/**
 * NumPy .npy / .npz reading (the format PPQ and onnxruntime tools use for calibration dumps), converted to
 * float32. Supports header versions 1–3, little-endian f2/f4/f8/i1/u1/i4/i8/b1, C order.
 */
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { constants, inflateRawSync } from 'node:zlib';
import { type FloatTensor, numel } from '../../tensor.ts';
import { listFiles } from './files.ts';
import type { Dataset, Sample } from './types.ts';
import { readZipDirectory, readZipEntry, type ZipEntry } from './zip.ts';
import { UserError } from '../../errors.ts';

export type NpyDtype = 'f2' | 'f4' | 'f8' | 'i1' | 'u1' | 'i4' | 'i8' | 'b1';

export interface NpyHeader {
  dtype: NpyDtype;
  itemSize: number;
  shape: number[];
  /** Byte offset of the data from the start of the file. */
  dataOffset: number;
}

const ITEM_SIZE: Record<NpyDtype, number> = { f2: 2, f4: 4, f8: 8, i1: 1, u1: 1, i4: 4, i8: 8, b1: 1 };
const MAGIC = '\x93NUMPY';

/** Parses the magic, version and Python-dict header; needs only the first bytes of the file. */
export function parseNpyHeader(buf: Buffer, source: string): NpyHeader {
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== MAGIC) throw new UserError(`not a .npy file (bad magic)`, source);
  const major = buf[6];
  let len: number;
  let start: number;
  if (major === 1) [len, start] = [buf.readUInt16LE(8), 10];
  else if (major === 2 || major === 3) {
    if (buf.length < 12) throw new UserError(`truncated .npy header`, source);
    [len, start] = [buf.readUInt32LE(8), 12];
  } else throw new UserError(`unsupported .npy format version ${major}.${buf[7]}`, source);
  if (buf.length < start + len) throw new UserError(`truncated .npy header (${len} bytes announced)`, source);
  const text = buf.toString(major === 3 ? 'utf8' : 'latin1', start, start + len);
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new UserError(`malformed .npy header ${JSON.stringify(text.trim())}`, source);
  }
  if (fortran === 'True') throw new UserError(`fortran_order arrays are not supported; save with np.ascontiguousarray(a)`, source);
  const m = /^([<>|=])([fiub])(\d+)$/.exec(descr);
  if (!m) throw new UserError(`unsupported dtype '${descr}' (structured or non-numeric)`, source);
  const dtype = `${m[2]}${m[3]}` as NpyDtype;
  if (!(dtype in ITEM_SIZE)) throw new UserError(`unsupported dtype '${descr}' (supported: f2 f4 f8 i1 u1 i4 i8 b1)`, source);
  if (m[1] === '>' && ITEM_SIZE[dtype] > 1) throw new UserError(`big-endian dtype '${descr}' is not supported`, source);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      const v = Number(s.replace(/L$/, ''));
      if (!Number.isInteger(v) || v < 0) throw new UserError(`bad shape entry '${s}'`, source);
      return v;
    });
  return { dtype, itemSize: ITEM_SIZE[dtype], shape, dataOffset: start + len };
}

/** IEEE 754 half → number. */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Converts `count` little-endian elements at `bytes` to float32 (DataView: the data need not be aligned). */
export function toFloat32(bytes: Buffer, dtype: NpyDtype, count: number): Float32Array {
  const out = new Float32Array(count);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = ITEM_SIZE[dtype];
  if (bytes.length < count * n) throw new Error(`npy: data truncated (${bytes.length} bytes for ${count} ${dtype} values)`);
  for (let i = 0; i < count; i++) {
    const o = i * n;
    switch (dtype) {
      case 'f4': out[i] = dv.getFloat32(o, true); break;
      case 'f8': out[i] = dv.getFloat64(o, true); break;
      case 'f2': out[i] = halfToFloat(dv.getUint16(o, true)); break;
      case 'i1': out[i] = dv.getInt8(o); break;
      case 'u1': out[i] = dv.getUint8(o); break;
      case 'b1': out[i] = dv.getUint8(o) ? 1 : 0; break;
      case 'i4': out[i] = dv.getInt32(o, true); break;
      case 'i8': out[i] = Number(dv.getBigInt64(o, true)); break;
    }
  }
  return out;
}

export function parseNpy(buf: Buffer, source = '.npy'): FloatTensor {
  const h = parseNpyHeader(buf, source);
  const count = numel(h.shape);
  return { dims: h.shape, data: toFloat32(buf.subarray(h.dataOffset), h.dtype, count) };
}

/** All arrays of an .npz, keyed by member name without '.npy', in code-unit order of the names. */
export function parseNpz(buf: Buffer, source = '.npz'): Map<string, FloatTensor> {
  const out = new Map<string, FloatTensor>();
  for (const e of npyMembers(buf, source)) out.set(memberKey(e), parseNpy(readZipEntry(buf, e, source), `${source}:${e.name}`));
  return out;
}

const memberKey = (e: ZipEntry): string => e.name.replace(/\.npy$/, '');

function npyMembers(buf: Buffer, source: string): ZipEntry[] {
  return readZipDirectory(buf, source)
    .filter((e) => e.name.endsWith('.npy'))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Header of an npz member without inflating all of it (a sync-flushed partial inflate of its first bytes). */
function npzMemberHeader(buf: Buffer, e: ZipEntry, source: string): NpyHeader {
  const name = `${source}:${e.name}`;
  if (e.method !== 8) return parseNpyHeader(readZipEntry(buf, e, source), name);
  const h = e.localHeaderOffset;
  const start = h + 30 + buf.readUInt16LE(h + 26) + buf.readUInt16LE(h + 28);
  const head = inflateRawSync(buf.subarray(start, start + Math.min(e.compressedSize, 64 * 1024)), { finishFlush: constants.Z_SYNC_FLUSH });
  return parseNpyHeader(head, name);
}

function readNpyFileHeader(file: string): NpyHeader {
  const fd = openSync(file, 'r');
  try {
    let head = Buffer.alloc(Math.min(64 * 1024, statSync(file).size));
    readSync(fd, head, 0, head.length, 0);
    if (head.length >= 12 && head[6] > 1) {
      const need = 12 + head.readUInt32LE(8);
      if (need > head.length) {
        head = Buffer.alloc(need);
        readSync(fd, head, 0, need, 0);
      }
    }
    return parseNpyHeader(head, file);
  } finally {
    closeSync(fd);
  }
}

/** A short file would otherwise read as zeros past its end (readSync fills what it can). */
function checkDataLength(h: NpyHeader, bytes: number, source: string): void {
  const need = h.dataOffset + numel(h.shape) * h.itemSize;
  if (bytes < need) throw new UserError(`truncated: its header announces [${h.shape.join(', ')}] ${h.dtype} (${need} bytes in all), it holds ${bytes}`, source);
}

interface ArraySource {
  file: string;
  member?: ZipEntry;
  header: NpyHeader;
}

function rowsOf(h: NpyHeader, source: string): number {
  if (h.shape.length === 0) throw new UserError(`a 0-d array cannot be a sample; give it a leading batch dim`, source);
  return h.shape[0];
}

/**
 * Calibration data from a .npy, a .npz, or a directory of them (files in code-unit order, npz members by name).
 * Every array of shape [N, ...] yields N samples of shape [1, ...]. A .npy is read row by row from disk; an .npz
 * member is inflated whole when reached (zip gives no random access into a deflated stream).
 */
export function npyDataset(pathOrDir: string): Dataset<null> {
  const files = statSync(pathOrDir).isDirectory()
    ? listFiles(pathOrDir, ['.npy', '.npz']).map((f) => join(pathOrDir, f))
    : [pathOrDir];
  const sources: ArraySource[] = [];
  for (const file of files) {
    if (extname(file).toLowerCase() === '.npz') {
      const buf = readFileSync(file);
      for (const member of npyMembers(buf, file)) sources.push({ file, member, header: npzMemberHeader(buf, member, file) });
    } else {
      const header = readNpyFileHeader(file);
      checkDataLength(header, statSync(file).size, file);
      sources.push({ file, header });
    }
  }
  const size = sources.reduce((n, s) => n + rowsOf(s.header, s.member ? `${s.file}:${s.member.name}` : s.file), 0);
  return {
    name: basename(pathOrDir),
    size,
    async *samples(): AsyncIterable<Sample<null>> {
      let npz: { file: string; buf: Buffer } | undefined;
      for (const src of sources) {
        const { header: h } = src;
        const inner = h.shape.slice(1);
        const rowElems = numel(inner);
        const rowBytes = rowElems * h.itemSize;
        if (src.member) {
          if (npz?.file !== src.file) npz = { file: src.file, buf: readFileSync(src.file) };
          const arr = readZipEntry(npz.buf, src.member, src.file);
          checkDataLength(h, arr.length, `${src.file}:${src.member.name}`);
          for (let r = 0; r < h.shape[0]; r++) {
            const bytes = arr.subarray(h.dataOffset + r * rowBytes, h.dataOffset + (r + 1) * rowBytes);
            yield { id: `${basename(src.file)}:${memberKey(src.member)}#${r}`, input: { dims: [1, ...inner], data: toFloat32(bytes, h.dtype, rowElems) }, label: null };
          }
        } else {
          const fd = openSync(src.file, 'r');
          try {
            for (let r = 0; r < h.shape[0]; r++) {
              const bytes = Buffer.alloc(rowBytes);
              readSync(fd, bytes, 0, rowBytes, h.dataOffset + r * rowBytes);
              yield { id: `${basename(src.file)}#${r}`, input: { dims: [1, ...inner], data: toFloat32(bytes, h.dtype, rowElems) }, label: null };
            }
          } finally {
            closeSync(fd);
          }
        }
      }
    },
  };
}
