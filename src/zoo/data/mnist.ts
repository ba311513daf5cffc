/** MNIST idx files (gzipped), streamed record by record. Data/Mnist: first 1000 = calibration, rest = test. */
import { closeSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import { constants, gunzipSync } from 'node:zlib';
import { ByteReader, gunzipFile } from './stream.ts';
import type { Dataset } from './types.ts';
import { UserError } from '../../errors.ts';

export interface MnistOptions {
  /** Index of the first record (0-based). */
  offset?: number;
  /** Number of records (default: all after offset). */
  count?: number;
}

/** Reads the first bytes of a gzip without inflating the whole file: enough for an idx header. */
function gzipHead(file: string, bytes: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const raw = Buffer.alloc(64 * 1024);
    const n = readSync(fd, raw, 0, raw.length, 0);
    const head = gunzipSync(raw.subarray(0, n), { finishFlush: constants.Z_SYNC_FLUSH });
    if (head.length < bytes) throw new UserError(`could not read the ${bytes}-byte idx header`, file);
    return head;
  } finally {
    closeSync(fd);
  }
}

interface IdxHeader {
  dims: number[];
  headerBytes: number;
}

function idxHeader(buf: Buffer, file: string): IdxHeader {
  if (buf[0] !== 0 || buf[1] !== 0 || buf[2] !== 0x08) throw new UserError(`not an unsigned-byte idx file (magic ${buf.subarray(0, 4).toString('hex')})`, file);
  const nd = buf[3];
  const dims: number[] = [];
  for (let i = 0; i < nd; i++) dims.push(buf.readUInt32BE(4 + 4 * i));
  return { dims, headerBytes: 4 + 4 * nd };
}

/** Images as raw 0–255 floats [1,1,28,28] (mnist-8's expected input), labels as numbers. */
export function mnistIdx(imagesGz: string, labelsGz: string, opts: MnistOptions = {}): Dataset<number> {
  const img = idxHeader(gzipHead(imagesGz, 16), imagesGz);
  const lab = idxHeader(gzipHead(labelsGz, 8), labelsGz);
  if (img.dims.length !== 3 || lab.dims.length !== 1 || img.dims[0] !== lab.dims[0]) {
    throw new Error(`mnistIdx: images [${img.dims}] and labels [${lab.dims}] do not match`);
  }
  const total = img.dims[0];
  const offset = opts.offset ?? 0;
  const count = Math.max(0, Math.min(opts.count ?? total - offset, total - offset));
  const [, h, w] = img.dims;
  return {
    name: `${basename(imagesGz).replace(/\.gz$/, '')}[${offset}:${offset + count}]`,
    size: count,
    async *samples() {
      const images = new ByteReader(gunzipFile(imagesGz), imagesGz);
      const labels = new ByteReader(gunzipFile(labelsGz), labelsGz);
      try {
        await images.skip(img.headerBytes + offset * h * w);
        await labels.skip(lab.headerBytes + offset);
        for (let i = 0; i < count; i++) {
          const px = await images.read(h * w);
          const label = (await labels.read(1))[0];
          yield { id: String(offset + i), input: { dims: [1, 1, h, w], data: Float32Array.from(px) }, label };
        }
      } finally {
        await images.close();
        await labels.close();
      }
    },
  };
}
