import { readFileSync } from 'node:fs';

/**
 * The one error type the CLI prints as a single line ("onnxquant: <file>: <problem>") with exit code 2.
 * Anything else is a bug and gets a stack trace.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly file?: string,
  ) {
    super(file ? `${file}: ${message}` : message);
    this.name = 'UserError';
  }
}

/** The bytes of a file the user named; a missing, unreadable or folder path is a UserError naming it. */
export function readUserFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a folder, expected a file' : `cannot read (${fsErrorReason(e)})`, path);
  }
}

/** A file-system error in words for a one-line message (its code when there are no better words). */
export function fsErrorReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EEXIST' || code === 'ENOTDIR') return 'a file of that name is in the way';
  if (code === 'ENOSPC') return 'no space left on the device';
  return code ?? String(e);
}
