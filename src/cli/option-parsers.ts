/** Commander argument parsers shared by the subcommands: a bad value is a one-line UserError naming the flag. */
import { UserError } from '../errors.ts';

export const posInt = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UserError(`${name} must be a positive integer, got '${v}'`);
  return n;
};
