/** Exact-length reads from a byte stream, so fixed-size records can be pulled one at a time. */
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
export class ByteReader {
  private readonly it: AsyncIterator<Buffer>;
  private buf: Buffer = Buffer.alloc(0);

  constructor(source: AsyncIterable<Buffer>, private readonly name: string) {
    this.it = source[Symbol.asyncIterator]();
  }

  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      const r = await this.it.next();
      if (r.done) throw new Error(`${this.name}: unexpected end of data (wanted ${n} bytes, have ${this.buf.length})`);
      this.buf = this.buf.length === 0 ? r.value : Buffer.concat([this.buf, r.value]);
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  async skip(n: number): Promise<void> {
    while (n > 0) {
      const k = Math.min(n, 1 << 20);
      await this.read(k);
      n -= k;
    }
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

/** A gunzipped file stream whose file handle is released when the consumer stops early. */
export function gunzipFile(file: string): NodeJS.ReadableStream & AsyncIterable<Buffer> {
  const src = createReadStream(file);
  const gz = createGunzip();
  src.on('error', (e) => gz.destroy(e));
  gz.on('close', () => src.destroy());
  return src.pipe(gz);
}
