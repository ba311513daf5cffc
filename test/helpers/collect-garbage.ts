/**
 * A full garbage collection on request, for tests that check what a structure stops holding (a WeakRef's target
 * is gone after a collection only if nothing reaches it). `gc` is V8's `--expose-gc` function: the flag is set at run
 * time and the function taken from a fresh context, as test runners do to look for leaks.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

export function collectGarbage(): void {
  gc();
}
