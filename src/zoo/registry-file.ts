/**
 * Zoo entries from a JSON file (`onnxquant zoo --registry my-models.json`): the user's own models benchmarked like
 * the built-in ones, with no code to write. The file holds an array of entries (or `{ "models": [...] }`) of the
 * same shape as the registry's ZooEntry, checked field by field so that a mistake fails before any work with the
 * file and the field named. Relative paths (the model, data folders and files, an OCR dictionary) are taken from
 * the registry file's own folder, as for most config files, and stored absolute, so `--root` is not needed.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { readUserFile, UserError } from '../errors.ts';
import { isJsonObject, jsonFields } from '../json-fields.ts';
import { parsePreprocessSpec, type PreprocessSpec } from './data/preprocess.ts';
import { PREPROCESS_PRESETS } from './data/presets.ts';
import { RULE_NAMES } from '../quant/rules.ts';
import type { DataSource, PublishedRow, RuleName, TaskSettings, ZooEntry } from './registry.ts';

/** The rules a `published` row may be filed under: the OnnxQuant rules, as in the built-in registry. */
const RULES = RULE_NAMES as readonly RuleName[];

/** One entry's checks; `at` is its position in the file for messages ("models[2] ('x').task.kind …"). */
function entryChecker(source: string, at: string, base: string) {
  const fail = (field: string, why: string): never => {
    throw new UserError(`${at}${field ? `.${field}` : ''} ${why}`, source);
  };
  const fields = jsonFields(fail);
  const path = (v: unknown, field: string): string => {
    const p = fields.str(v, field);
    return isAbsolute(p) ? p : resolve(base, p);
  };
  return { fail, path, ...fields };
}

type Checker = ReturnType<typeof entryChecker>;

function parseDataSource(v: unknown, field: string, c: Checker): DataSource {
  const kinds = ['image-folder', 'paddle-ocr', 'mnist', 'div2k', 'coco', 'cityscapes', 'images', 'synthetic-text'] as const;
  if (isJsonObject(v) && v.kind === 'provided') c.fail(`${field}.kind`, "'provided' is for datasets supplied in code (ZooOptions.datasets), not in a registry file");
  const kind = c.oneOf(isJsonObject(v) ? v.kind : undefined, `${field}.kind`, kinds);
  const fields: Record<(typeof kinds)[number], { required: string[]; optional: string[] }> = {
    'image-folder': { required: ['dir'], optional: ['classesFile', 'limitPerClass'] },
    'paddle-ocr': { required: ['labels', 'imageRoot'], optional: [] },
    mnist: { required: ['images', 'labels'], optional: [] },
    div2k: { required: ['dir', 'split', 'scale'], optional: ['patch'] },
    coco: { required: ['dir', 'split'], optional: [] },
    cityscapes: { required: ['dir', 'split'], optional: [] },
    images: { required: ['dir'], optional: [] },
    'synthetic-text': { required: ['split', 'count', 'seed'], optional: [] },
  };
  const { required, optional } = fields[kind];
  const o = c.obj(v, field, ['kind', ...required, ...optional, 'skip', 'limit'], required);
  const cut = { ...(o.skip !== undefined ? { skip: c.int(o.skip, `${field}.skip`, 0) } : {}), ...(o.limit !== undefined ? { limit: c.int(o.limit, `${field}.limit`, 1) } : {}) };
  switch (kind) {
    case 'image-folder':
      return {
        kind,
        dir: c.path(o.dir, `${field}.dir`),
        ...(o.classesFile !== undefined ? { classesFile: c.path(o.classesFile, `${field}.classesFile`) } : {}),
        ...(o.limitPerClass !== undefined ? { limitPerClass: c.int(o.limitPerClass, `${field}.limitPerClass`, 1) } : {}),
        ...cut,
      };
    case 'paddle-ocr':
      return { kind, labels: c.path(o.labels, `${field}.labels`), imageRoot: c.path(o.imageRoot, `${field}.imageRoot`), ...cut };
    case 'mnist':
      return { kind, images: c.path(o.images, `${field}.images`), labels: c.path(o.labels, `${field}.labels`), ...cut };
    case 'div2k':
      return {
        kind,
        dir: c.path(o.dir, `${field}.dir`),
        split: c.oneOf(o.split, `${field}.split`, ['train', 'valid'] as const),
        scale: c.oneOf(o.scale, `${field}.scale`, [3, 4] as const),
        ...(o.patch !== undefined ? { patch: c.int(o.patch, `${field}.patch`, 1) } : {}),
        ...cut,
      };
    case 'coco':
    case 'cityscapes':
      return { kind, dir: c.path(o.dir, `${field}.dir`), split: c.str(o.split, `${field}.split`), ...cut };
    case 'images':
      return { kind, dir: c.path(o.dir, `${field}.dir`), ...cut };
    case 'synthetic-text':
      return { kind, split: c.oneOf(o.split, `${field}.split`, ['calib', 'test'] as const), count: c.int(o.count, `${field}.count`, 1), seed: c.int(o.seed, `${field}.seed`, 0), ...cut };
  }
}

function parseTask(v: unknown, c: Checker): TaskSettings {
  const kinds = ['classification', 'ocr', 'super-resolution', 'detection', 'segmentation', 'pose', 'agreement'] as const;
  const kind = c.oneOf(isJsonObject(v) ? v.kind : undefined, 'task.kind', kinds);
  const required: Record<(typeof kinds)[number], string[]> = {
    classification: ['numClasses'],
    ocr: ['dictionary', 'useSpaceChar', 'height', 'maxWidth', 'pad'],
    'super-resolution': ['scale', 'channel', 'crop', 'outputScale'],
    detection: ['size', 'numClasses', 'format'],
    segmentation: ['numClasses', 'ignoreIndex'],
    pose: ['keypoints'],
    agreement: ['compare'],
  };
  const o = c.obj(v, 'task', ['kind', ...required[kind]], required[kind]);
  switch (kind) {
    case 'classification':
      return { kind, numClasses: c.int(o.numClasses, 'task.numClasses', 2) };
    case 'ocr':
      return {
        kind,
        dictionary: c.path(o.dictionary, 'task.dictionary'),
        useSpaceChar: c.bool(o.useSpaceChar, 'task.useSpaceChar'),
        height: c.int(o.height, 'task.height', 1),
        maxWidth: c.int(o.maxWidth, 'task.maxWidth', 1),
        pad: c.bool(o.pad, 'task.pad'),
      };
    case 'super-resolution': {
      const outputScale = c.num(o.outputScale, 'task.outputScale');
      if (outputScale <= 0) c.fail('task.outputScale', `must be > 0, got ${outputScale}`);
      return {
        kind,
        scale: c.int(o.scale, 'task.scale', 1),
        channel: c.oneOf(o.channel, 'task.channel', ['y', 'rgb', 'gray'] as const),
        crop: c.int(o.crop, 'task.crop', 0),
        outputScale,
      };
    }
    case 'detection':
      return { kind, size: c.int(o.size, 'task.size', 1), numClasses: c.int(o.numClasses, 'task.numClasses', 1), format: c.oneOf(o.format, 'task.format', ['mmyolo-end2end'] as const) };
    case 'segmentation':
      return { kind, numClasses: c.int(o.numClasses, 'task.numClasses', 2), ignoreIndex: c.int(o.ignoreIndex, 'task.ignoreIndex', -1) };
    case 'pose':
      return { kind, keypoints: c.int(o.keypoints, 'task.keypoints', 1) };
    case 'agreement':
      return { kind, compare: c.oneOf(o.compare, 'task.compare', ['top1', 'ultraface', 'cosine'] as const) };
  }
}

function parsePreprocess(v: unknown, c: Checker, source: string, at: string): PreprocessSpec {
  if (typeof v === 'string') return PREPROCESS_PRESETS[v] ?? c.fail('preprocess', `is not a preset (${Object.keys(PREPROCESS_PRESETS).join(', ')}), got ${JSON.stringify(v)}`);
  try {
    return parsePreprocessSpec(v, source);
  } catch (e) {
    // parsePreprocessSpec names the field as 'preprocess.x'; say which entry it is in.
    throw new UserError((e as Error).message.replace(`${source}: preprocess`, `${at}.preprocess`), source);
  }
}

/** `feeds`: per input name, a number (fills it) or `{ dims, values }` with as many values as the dims hold. */
function parseFeeds(v: unknown, c: Checker): NonNullable<ZooEntry['feeds']> {
  const o = c.obj(v, 'feeds', Object.keys(isJsonObject(v) ? v : {}));
  return Object.fromEntries(
    Object.entries(o).map(([name, x]) => {
      const field = `feeds.${name}`;
      if (typeof x === 'number') return [name, c.num(x, field)];
      if (!isJsonObject(x)) return c.fail(field, `must be a number (fills the input) or { "dims": [...], "values": [...] }, got ${JSON.stringify(x)}`);
      const a = c.obj(x, field, ['dims', 'values'], ['dims', 'values']);
      const dims = Array.isArray(a.dims) ? a.dims.map((d, j) => c.int(d, `${field}.dims[${j}]`, 0)) : c.fail(`${field}.dims`, 'must be an array of non-negative integers');
      const values = Array.isArray(a.values) ? a.values.map((d, j) => c.num(d, `${field}.values[${j}]`)) : c.fail(`${field}.values`, 'must be an array of numbers');
      const n = dims.reduce((p, d) => p * d, 1);
      if (values.length !== n) c.fail(`${field}.values`, `holds ${values.length} numbers; dims [${dims.join(', ')}] need ${n}`);
      return [name, { dims, values }];
    }),
  );
}

function parsePublished(v: unknown, c: Checker): ZooEntry['published'] {
  const o = c.obj(v, 'published', RULES);
  const out: Partial<Record<RuleName, PublishedRow[]>> = {};
  for (const rule of RULES) {
    const rows = o[rule];
    if (rows === undefined) continue;
    if (!Array.isArray(rows)) return c.fail(`published.${rule}`, 'must be an array of {source, float, quant, aqe?, mqe?, oqe?}');
    out[rule] = rows.map((r, i) => {
      const f = `published.${rule}[${i}]`;
      const row = c.obj(r, f, ['source', 'float', 'quant', 'aqe', 'mqe', 'oqe'], ['source', 'float', 'quant']);
      const p: PublishedRow = { source: c.str(row.source, `${f}.source`), float: c.num(row.float, `${f}.float`), quant: c.num(row.quant, `${f}.quant`) };
      for (const k of ['aqe', 'mqe', 'oqe'] as const) if (row[k] !== undefined) p[k] = c.num(row[k], `${f}.${k}`);
      return p;
    });
  }
  return out;
}

const ENTRY_FIELDS = ['id', 'file', 'input', 'feeds', 'maxBatch', 'preprocess', 'outputs', 'data', 'task', 'published', 'skip', 'notes'];

/** Validates a registry file's JSON into zoo entries (suite 'user'); errors name the file and the field. */
export function parseZooEntries(json: unknown, source: string): ZooEntry[] {
  const list = isJsonObject(json) && Object.keys(json).length === 1 && Array.isArray(json.models) ? json.models : json;
  if (!Array.isArray(list)) throw new UserError('must hold an array of zoo entries, or {"models": [...]}', source);
  if (list.length === 0) throw new UserError('holds no zoo entry', source);
  const base = dirname(resolve(source));
  const seen = new Set<string>();
  return list.map((v, i) => {
    const at = `models[${i}]${isJsonObject(v) && typeof v.id === 'string' ? ` ('${v.id}')` : ''}`;
    const c = entryChecker(source, at, base);
    const e = c.obj(v, '', ENTRY_FIELDS, ['id', 'file', 'input', 'preprocess', 'data', 'task']);
    const id = c.str(e.id, 'id');
    // The id names the results' folders and the table rows.
    if (!/^[\w.@-]+$/.test(id)) c.fail('id', `'${id}' becomes a folder name: use letters, digits, '.', '_', '@' and '-'`);
    if (seen.has(id)) c.fail('id', `'${id}' is used by an earlier entry`);
    seen.add(id);
    const input = c.obj(e.input, 'input', ['name', 'shape'], ['name']);
    const shape = input.shape === undefined ? [] : Array.isArray(input.shape) ? input.shape.map((d, j) => c.int(d, `input.shape[${j}]`, 1)) : c.fail('input.shape', 'must be an array of positive integers');
    const data = c.obj(e.data, 'data', ['calibration', 'test'], ['calibration', 'test']);
    const outputs = e.outputs === undefined ? undefined : Array.isArray(e.outputs) && e.outputs.length > 0 ? e.outputs.map((x, j) => c.str(x, `outputs[${j}]`)) : c.fail('outputs', 'must be a non-empty array of tensor names');
    const entry: ZooEntry = {
      id,
      suite: 'user',
      file: c.path(e.file, 'file'),
      input: { name: c.str(input.name, 'input.name'), shape },
      preprocess: parsePreprocess(e.preprocess, c, source, at),
      data: { calibration: parseDataSource(data.calibration, 'data.calibration', c), test: parseDataSource(data.test, 'data.test', c) },
      task: parseTask(e.task, c),
    };
    if (e.feeds !== undefined) entry.feeds = parseFeeds(e.feeds, c);
    if (e.maxBatch !== undefined) entry.maxBatch = c.int(e.maxBatch, 'maxBatch', 1);
    if (outputs) entry.outputs = outputs;
    if (e.published !== undefined) entry.published = parsePublished(e.published, c);
    if (e.skip !== undefined) entry.skip = c.str(e.skip, 'skip');
    if (e.notes !== undefined) entry.notes = c.str(e.notes, 'notes');
    return entry;
  });
}

/** Reads and validates a registry file (`zoo --registry`). */
export function loadZooEntries(file: string): ZooEntry[] {
  const text = readUserFile(file).toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`is not valid JSON: ${(e as Error).message}`, file);
  }
  return parseZooEntries(json, file);
}
