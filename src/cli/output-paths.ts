/**
 * Output paths are checked before any work starts, so a typo in `-o` or `--out-dir` costs a one-line error at
 * once instead of a stack trace after minutes of calibration or analysis (analyse used to fail only when writing
 * its report into a missing folder).
 */
import { accessSync, constants, mkdirSync, realpathSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fsErrorReason, UserError } from '../errors.ts';

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
    throw new UserError(`cannot write here: ${fsErrorReason(e)}`, file);
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
    throw new UserError(`cannot create the output folder: ${fsErrorReason(e)}`, dir);
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new UserError(`cannot write into the output folder: ${fsErrorReason(e)}`, dir);
  }
}

/** Do two paths name one file (through links and relative parts)? False when either does not exist. */
export function sameFile(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}
