/**
 * Reading and writing ModelProto with onnx-buf. External data is resolved relative to the model's folder and
 * pulled into raw_data (the model then stands alone); unknown fields are preserved by protobuf-es, so an
 * unmodified model writes back proto-equal. Saving goes through a temp file and a rename, so a failed save never
 * leaves a partial file behind.
 */
import { create, fromBinary, isFieldSet, toBinary, type DescField, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { GraphProtoSchema, ModelProtoSchema, TensorProto_DataLocation, TensorProtoSchema, type GraphProto, type ModelProto, type TensorProto } from 'onnx-buf';
import { closeSync, openSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize, relative } from 'node:path';
import { fsErrorReason, readUserFile, UserError } from '../errors.ts';
import { dtypeInfo } from './dtype.ts';
import { tensorSize } from './tensor-codec.ts';

export interface LoadOptions {
  /** Folder external-data paths are relative to; defaults to the model file's folder. */
  baseDir?: string;
  /** Name used in error messages when loading from bytes. */
  source?: string;
}

export function parseModel(bytes: Uint8Array, source = '<buffer>'): ModelProto {
  let model: ModelProto;
  try {
    model = fromBinary(ModelProtoSchema, bytes);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new UserError(`not a valid ONNX protobuf (${why}; truncated or not an .onnx file?)`, source);
  }
  if (!model.graph) throw new UserError('not an ONNX model: no graph (is this an .onnx file?)', source);
  if (model.opsetImport.length === 0 && model.irVersion === 0n)
    throw new UserError('not an ONNX model: no ir_version and no opset_import', source);
  return model;
}

export function loadModel(pathOrBytes: string | Uint8Array, opts: LoadOptions = {}): ModelProto {
  const source = typeof pathOrBytes === 'string' ? pathOrBytes : (opts.source ?? '<buffer>');
  let bytes: Uint8Array;
  if (typeof pathOrBytes === 'string') bytes = readUserFile(pathOrBytes);
  else bytes = pathOrBytes;
  const model = parseModel(bytes, source);
  const baseDir = opts.baseDir ?? (typeof pathOrBytes === 'string' ? dirname(pathOrBytes) : undefined);
  loadExternalData(model, baseDir, source);
  return model;
}

function* allGraphs(g: GraphProto): Generator<GraphProto> {
  yield g;
  for (const n of g.node)
    for (const a of n.attribute) {
      if (a.g) yield* allGraphs(a.g);
      for (const sg of a.graphs) yield* allGraphs(sg);
    }
}

export function* allInitializers(model: ModelProto): Generator<TensorProto> {
  if (!model.graph) return;
  for (const g of allGraphs(model.graph)) yield* g.initializer;
}

/** Read every external tensor into raw_data. One file handle per data file; reads only the needed byte ranges. */
function loadExternalData(model: ModelProto, baseDir: string | undefined, source: string): void {
  const handles = new Map<string, number>();
  try {
    for (const t of allInitializers(model)) {
      if (t.dataLocation !== TensorProto_DataLocation.EXTERNAL) continue;
      if (!baseDir) throw new UserError(`tensor '${t.name}' uses external data but the model was loaded from bytes without baseDir`, source);
      const kv = Object.fromEntries(t.externalData.map((e) => [e.key, e.value]));
      const loc = kv.location;
      if (!loc) throw new UserError(`tensor '${t.name}' has external data without a location`, source);
      if (isAbsolute(loc) || normalize(loc).startsWith('..'))
        throw new UserError(`tensor '${t.name}': external data location '${loc}' escapes the model folder`, source);
      const file = join(baseDir, loc);
      let fd = handles.get(file);
      if (fd === undefined) {
        try {
          fd = openSync(file, 'r');
        } catch {
          throw new UserError(`external data file '${relative(process.cwd(), file) || file}' for tensor '${t.name}' is missing`, source);
        }
        handles.set(file, fd);
      }
      const offset = Number(kv.offset ?? 0);
      const info = dtypeInfo(t.dataType);
      const expected = Math.ceil((tensorSize(t) * info.bits) / 8);
      const length = kv.length !== undefined ? Number(kv.length) : expected;
      const size = statSync(file).size;
      if (offset + length > size)
        throw new UserError(`external data for tensor '${t.name}' runs past the end of '${loc}' (${offset}+${length} > ${size} bytes)`, source);
      const buf = new Uint8Array(length);
      readSync(fd, buf, 0, length, offset);
      t.rawData = buf;
      t.dataLocation = TensorProto_DataLocation.DEFAULT;
      t.externalData = [];
    }
  } finally {
    for (const fd of handles.values()) closeSync(fd);
  }
}

/** Raw data at least this large is spliced into the output (copied once) rather than written by protobuf-es. */
const SPLICE_BYTES = 1 << 16;

/**
 * toBinary(ModelProtoSchema, model), byte for byte, with the large raw_data of the graph's initializers copied once.
 * protobuf-es's writer grows its buffer by doubling and moves a nested message's bytes when it writes its length
 * prefix, so every weight byte was copied several times: PP-OCRv4 rec's 10.8 MB statistics model took 264 ms,
 * against ~1 ms for the same model without its raw data and ~6 ms to copy that data (busy 2-core VM). Every
 * session creation serializes its model. Tested equal to toBinary on the shared models and the corpus.
 */
export function serializeModel(model: ModelProto): Uint8Array {
  const g = model.graph;
  // rawData may be absent on tensors built as plain objects (toBinary treats them as unset).
  const large = (t: TensorProto) => (t.rawData?.length ?? 0) >= SPLICE_BYTES;
  if (!g?.initializer.some(large)) return toBinary(ModelProtoSchema, model);
  const tensor = (t: TensorProto): Uint8Array[] => (large(t) ? around(TensorProtoSchema, t, 'rawData', [...lengthPrefix(9, t.rawData.length), t.rawData]) : [toBinary(TensorProtoSchema, t)]);
  const graph = around(GraphProtoSchema, g, 'initializer', g.initializer.flatMap((t) => prefixed(5, tensor(t))));
  return Buffer.concat(around(ModelProtoSchema, model, 'graph', prefixed(7, graph)));
}

/**
 * A message as toBinary writes it — its set fields by field number, then its unknown fields — with one field's
 * encoding supplied: the fields numbered below it, `field`, the fields numbered above it (and the unknown fields).
 */
function around<Desc extends DescMessage>(schema: Desc, msg: MessageShape<Desc>, localName: string, field: Uint8Array[]): Uint8Array[] {
  const split = schema.fields.find((f) => f.localName === localName);
  if (!split || schema.oneofs.length) throw new Error(`serializeModel: cannot split ${schema.typeName} at '${localName}'`);
  const part = (fields: readonly DescField[], unknown: boolean) => {
    const m = create(schema) as Record<string, unknown>;
    const src = msg as Record<string, unknown>;
    for (const f of fields) if (isFieldSet(msg, f)) m[f.localName] = src[f.localName];
    if (unknown && src.$unknown) m.$unknown = src.$unknown;
    return toBinary(schema, m as MessageShape<Desc>);
  };
  return [part(schema.fields.filter((f) => f.number < split.number), false), ...field, part(schema.fields.filter((f) => f.number > split.number), true)];
}

/** A length-delimited field: its tag and length, then the content. */
function prefixed(fieldNumber: number, content: Uint8Array[]): Uint8Array[] {
  return [...lengthPrefix(fieldNumber, content.reduce((n, c) => n + c.length, 0)), ...content];
}

function lengthPrefix(fieldNumber: number, length: number): Uint8Array[] {
  const varint = (v: number) => {
    const b: number[] = [];
    for (; v > 0x7f; v = Math.floor(v / 128)) b.push((v % 128) | 0x80);
    b.push(v);
    return b;
  };
  return [Uint8Array.from([...varint(fieldNumber * 8 + 2), ...varint(length)])];
}

/** Write atomically: temp file beside the target, then rename. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  writeFilesAtomic([{ path, data }]);
}

/**
 * Write files that belong together (a model and its sidecar): every temp file first, renamed only once all are
 * written, so a failed write (disk full, no permission) leaves none of them behind — and is a UserError naming the
 * file. (The renames stay in one folder and need no space; only they could still part the pair.)
 */
export function writeFilesAtomic(files: readonly { path: string; data: Uint8Array | string }[]): void {
  const stamp = `${process.pid}-${Date.now()}`;
  const tmps = files.map((f) => `${f.path}.tmp-${stamp}`);
  let current = files[0]?.path;
  try {
    files.forEach((f, i) => {
      current = f.path;
      writeFileSync(tmps[i], f.data);
    });
    files.forEach((f, i) => {
      current = f.path;
      renameSync(tmps[i], f.path);
    });
  } catch (e) {
    for (const t of tmps) rmSync(t, { force: true });
    const code = (e as NodeJS.ErrnoException).code;
    throw code ? new UserError(`cannot write: ${fsErrorReason(e)}`, current) : e;
  }
}

/** A model's bytes, refusing what protobuf cannot hold. */
export function modelBytes(model: ModelProto, path: string): Uint8Array {
  const bytes = serializeModel(model);
  if (bytes.length > 2 ** 31 - 1) throw new UserError('model exceeds the 2 GiB protobuf limit; external-data saving is not implemented', path);
  return bytes;
}

export function saveModel(model: ModelProto, path: string): void {
  writeFileAtomic(path, modelBytes(model, path));
}
