/** Deterministic directory listing shared by the loaders. */
import { readdirSync } from 'node:fs';
import { extname, join } from 'node:path';

export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'];

/** Plain UTF-16 code-unit order: locale-independent, so every machine sees the same sample order. */
export function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function listDirs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort(byCodeUnit);
}

/** Files of `dir` whose extension (case-insensitive) is in `extensions`, sorted. */
export function listFiles(dir: string, extensions: readonly string[] = IMAGE_EXTENSIONS): string[] {
  const exts = extensions.map((e) => (e.startsWith('.') ? e : `.${e}`).toLowerCase());
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && exts.includes(extname(e.name).toLowerCase()))
    .map((e) => e.name)
    .sort(byCodeUnit);
}

/** Relative paths of matching files under `dir`, recursively, sorted as whole paths. */
export function walkFiles(dir: string, accept: (name: string) => boolean, prefix = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...walkFiles(dir, accept, rel));
    else if (e.isFile() && accept(e.name)) out.push(rel);
  }
  return out.sort(byCodeUnit);
}
