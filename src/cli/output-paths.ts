/**
 * Output paths are checked before any work starts, so a typo in `-o` or `--out-dir` costs a one-line error at
 * once instead of a stack trace after minutes of calibration or analysis (analyse used to fail only when writing
 * its report into a missing folder).
 */
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { UserError } from '../errors.ts';

function fsReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EEXIST' || code === 'ENOTDIR') return 'a file of that name is in the way';
  return code ?? String(e);
}

/** The folder a file will be written into must exist and be writable; the file itself must not be a folder. */
export function checkOutputFile(file: string): void {
  const dir = dirname(resolve(file));
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new UserError(`cannot write here: folder ${dir} does not exist`, file);
  }
  if (!isDir) throw new UserError(`cannot write here: ${dir} is not a folder`, file);
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new UserError(`cannot write here: ${fsReason(e)}`, file);
  }
  try {
    if (statSync(file).isDirectory()) throw new UserError('is a folder, expected a file name', file);
  } catch (e) {
    if (e instanceof UserError) throw e;
  }
}

/** Create an output folder (and its parents) up front, or fail naming it. */
export function ensureOutputDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new UserError(`cannot create the output folder: ${fsReason(e)}`, dir);
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new UserError(`cannot write into the output folder: ${fsReason(e)}`, dir);
  }
}
