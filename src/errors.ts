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
