import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { crc32, deflateRawSync } from 'node:zlib';
import { npyDataset, parseNpy, parseNpz, type Sample } from '../src/zoo/data/index.ts';
import { UserError } from '../src/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'onnxquant-npy-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A .npy file byte by byte: magic, version, header length, space-padded dict ending in '\n' (64-byte aligned). */
function npy(descr: string, shape: number[], data: Buffer, version = 1, fortran = false): Buffer {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let dict = `{'descr': '${descr}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': ${shapeText}, }`;
  const pre = version === 1 ? 10 : 12;
  dict += ' '.repeat(64 - ((pre + dict.length + 1) % 64)) + '\n';
  const head = Buffer.alloc(pre);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = version;
  head[7] = 0;
  if (version === 1) head.writeUInt16LE(dict.length, 8);
  else head.writeUInt32LE(dict.length, 8);
  return Buffer.concat([head, Buffer.from(dict, version === 3 ? 'utf8' : 'latin1'), data]);
}

const f32 = (...v: number[]): Buffer => Buffer.from(new Float32Array(v).buffer);

test('npy dtypes: f4 f8 f2 i1 u1 i4 i8 b1', () => {
  assert.deepEqual(parseNpy(npy('<f4', [2, 2], f32(1, -2, 0.5, 3))), { dims: [2, 2], data: new Float32Array([1, -2, 0.5, 3]) });
  assert.deepEqual([...parseNpy(npy('<f8', [2], Buffer.from(new Float64Array([0.25, -1e10]).buffer))).data], [0.25, Math.fround(-1e10)]);
  const half = Buffer.alloc(8);
  [0x3c00, 0xc000, 0x3800, 0x0001].forEach((h, i) => half.writeUInt16LE(h, i * 2)); // 1, −2, 0.5, smallest subnormal
  assert.deepEqual([...parseNpy(npy('<f2', [4], half)).data], [1, -2, 0.5, Math.fround(2 ** -24)]);
  assert.deepEqual([...parseNpy(npy('|i1', [3], Buffer.from([0xff, 0x7f, 0x80]))).data], [-1, 127, -128]);
  assert.deepEqual([...parseNpy(npy('|u1', [2], Buffer.from([255, 7]))).data], [255, 7]);
  assert.deepEqual([...parseNpy(npy('<i4', [2], Buffer.from(new Int32Array([-5, 1 << 20]).buffer))).data], [-5, 1 << 20]);
  assert.deepEqual([...parseNpy(npy('<i8', [2], Buffer.from(new BigInt64Array([-3n, 1n << 40n]).buffer))).data], [-3, 2 ** 40]);
  assert.deepEqual([...parseNpy(npy('|b1', [3], Buffer.from([1, 0, 1]))).data], [1, 0, 1]);
  assert.deepEqual(parseNpy(npy('<f4', [], f32(7))).dims, []);
});

test('npy header versions 2 and 3', () => {
  assert.deepEqual(parseNpy(npy('<f4', [1, 2], f32(1, 2), 2)), { dims: [1, 2], data: new Float32Array([1, 2]) });
  assert.deepEqual(parseNpy(npy('<f4', [3], f32(4, 5, 6), 3)).dims, [3]);
});

test('npy rejects fortran order, big-endian, structured dtypes and bad magic', () => {
  assert.throws(() => parseNpy(npy('<f4', [2, 2], f32(1, 2, 3, 4), 1, true), 'a.npy'), /a\.npy: fortran_order arrays are not supported/);
  assert.throws(() => parseNpy(npy('>f4', [1], f32(1)), 'b.npy'), /big-endian/);
  assert.throws(() => parseNpy(npy('<c8', [1], f32(1, 1)), 'c.npy'), /unsupported dtype '<c8'/);
  assert.throws(() => parseNpy(Buffer.from('PK\x03\x04 nope'), 'd.npy'), /not a \.npy file/);
  assert.throws(() => parseNpy(npy('<f4', [4], f32(1))), /data truncated/);
});

interface Member {
  name: string;
  data: Buffer;
  deflate: boolean;
}

/** A zip with local headers, central directory and end record, as numpy's np.savez(_compressed) writes. */
function zip(members: Member[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const m of members) {
    const body = m.deflate ? deflateRawSync(m.data) : m.data;
    const name = Buffer.from(m.name);
    const crc = crc32(m.data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(m.deflate ? 8 : 0, 8);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(body.length, 18);
    lh.writeUInt32LE(m.data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(m.deflate ? 8 : 0, 10);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(body.length, 20);
    ch.writeUInt32LE(m.data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(offset, 42);
    locals.push(lh, name, body);
    centrals.push(ch, name);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

test('npz: stored and deflated members, keyed without .npy', () => {
  const z = zip([
    { name: 'w.npy', data: npy('<f4', [2], f32(1, 2)), deflate: false },
    { name: 'b.npy', data: npy('<f8', [1, 3], Buffer.from(new Float64Array([3, 4, 5]).buffer)), deflate: true },
  ]);
  const m = parseNpz(z, 't.npz');
  assert.deepEqual([...m.keys()], ['b', 'w']);
  assert.deepEqual(m.get('b'), { dims: [1, 3], data: new Float32Array([3, 4, 5]) });
  assert.deepEqual(m.get('w'), { dims: [2], data: new Float32Array([1, 2]) });
  assert.throws(() => parseNpz(Buffer.from('not a zip at all, really not a zip'), 'x.npz'), /x\.npz: not a zip file/);
});

test('npyDataset: rows of every array become [1, ...] samples, files and members in code-unit order', async () => {
  const d = join(dir, 'calib');
  mkdirSync(d);
  writeFileSync(join(d, 'a.npy'), npy('<f4', [2, 1, 2], f32(1, 2, 3, 4)));
  writeFileSync(join(d, 'B.npz'), zip([{ name: 'x.npy', data: npy('|u1', [1, 3], Buffer.from([7, 8, 9])), deflate: true }]));
  writeFileSync(join(d, 'notes.txt'), 'ignored');
  const ds = npyDataset(d);
  assert.equal(ds.size, 3);
  const got: Sample<null>[] = [];
  for await (const s of ds.samples()) got.push(s);
  assert.deepEqual(got.map((s) => s.id), ['B.npz:x#0', 'a.npy#0', 'a.npy#1']); // 'B' < 'a' in code units
  assert.deepEqual(got.map((s) => s.input.dims), [[1, 3], [1, 1, 2], [1, 1, 2]]);
  assert.deepEqual([...got[2].input.data], [3, 4]);
  const single = npyDataset(join(d, 'a.npy'));
  assert.equal(single.size, 2);
  writeFileSync(join(dir, 'scalar.npy'), npy('<f4', [], f32(1)));
  assert.throws(() => npyDataset(join(dir, 'scalar.npy')), /0-d array cannot be a sample/);
});

test('npyDataset: a .npy or .npz member shorter than its header announces is refused, naming it, not read as zeros', async () => {
  const short = join(dir, 'short.npy');
  writeFileSync(short, npy('<f4', [2, 3], f32(1, 2, 3, 4)));
  assert.throws(() => npyDataset(short), (e: Error) => e instanceof UserError && /short\.npy: truncated: its header announces \[2, 3\] f4/.test(e.message));
  const shortZ = join(dir, 'short.npz');
  writeFileSync(shortZ, zip([{ name: 'x.npy', data: npy('<f4', [2, 3], f32(1, 2, 3, 4)), deflate: true }]));
  const ds = npyDataset(shortZ);
  await assert.rejects(async () => {
    for await (const s of ds.samples()) void s;
  }, (e: Error) => e instanceof UserError && /short\.npz:x\.npy: truncated/.test(e.message));
  assert.throws(() => npyDataset(join(dir, 'scalar.npy')), UserError);
});
