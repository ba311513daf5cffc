/**
 * The minimal zip reader .npz needs: the central directory (with zip64 sizes), stored or deflated members.
 * No dependency because numpy's writer only ever uses those two methods.
 */
import { inflateRawSync } from 'node:zlib';
import { UserError } from '../../errors.ts';

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const EOCD = 0x06054b50;
const ZIP64_EOCD_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const MAX32 = 0xffffffff;

export function readZipDirectory(buf: Buffer, source: string): ZipEntry[] {
  // The end record sits in the last 22 + 65535 (max comment) bytes; scan backwards for its signature.
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 0xffff); i--) {
    if (buf.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new UserError(`not a zip file (no end-of-central-directory record)`, source);
  let count = buf.readUInt16LE(eocd + 10);
  let offset = buf.readUInt32LE(eocd + 16);
  if ((count === 0xffff || offset === MAX32) && eocd >= 20 && buf.readUInt32LE(eocd - 20) === ZIP64_EOCD_LOCATOR) {
    const z = Number(buf.readBigUInt64LE(eocd - 20 + 8));
    if (buf.readUInt32LE(z) !== ZIP64_EOCD) throw new UserError(`broken zip64 end record`, source);
    count = Number(buf.readBigUInt64LE(z + 32));
    offset = Number(buf.readBigUInt64LE(z + 48));
  }
  const entries: ZipEntry[] = [];
  let p = offset;
  for (let i = 0; i < count; i++) {
    if (buf.readUInt32LE(p) !== CENTRAL) throw new UserError(`bad central directory entry ${i}`, source);
    const method = buf.readUInt16LE(p + 10);
    let compressedSize = buf.readUInt32LE(p + 20);
    let size = buf.readUInt32LE(p + 24);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    let localHeaderOffset = buf.readUInt32LE(p + 42);
    const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
    // zip64 extra field (id 1): 8-byte values, present only for the fields that overflowed, in this order.
    let e = p + 46 + nameLen;
    const end = e + extraLen;
    while (e + 4 <= end) {
      const id = buf.readUInt16LE(e);
      const len = buf.readUInt16LE(e + 2);
      if (id === 1) {
        let q = e + 4;
        const next = (): number => {
          const v = Number(buf.readBigUInt64LE(q));
          q += 8;
          return v;
        };
        if (size === MAX32) size = next();
        if (compressedSize === MAX32) compressedSize = next();
        if (localHeaderOffset === MAX32) localHeaderOffset = next();
      }
      e += 4 + len;
    }
    entries.push({ name, method, compressedSize, size, localHeaderOffset });
    p = end + commentLen;
  }
  return entries;
}

/** Byte range of an entry's (possibly compressed) data: the local header's own name/extra lengths apply. */
function dataRange(buf: Buffer, entry: ZipEntry, source: string): Buffer {
  const h = entry.localHeaderOffset;
  if (buf.readUInt32LE(h) !== LOCAL) throw new UserError(`bad local header for ${entry.name}`, source);
  const start = h + 30 + buf.readUInt16LE(h + 26) + buf.readUInt16LE(h + 28);
  return buf.subarray(start, start + entry.compressedSize);
}

export function readZipEntry(buf: Buffer, entry: ZipEntry, source: string): Buffer {
  const data = dataRange(buf, entry, source);
  if (entry.method === 0) return data;
  if (entry.method === 8) return inflateRawSync(data);
  throw new UserError(`${entry.name} uses zip compression method ${entry.method}; only stored (0) and deflate (8) are supported`, source);
}
