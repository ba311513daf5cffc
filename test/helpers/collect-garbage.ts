/**
 * A full garbage collection on request, for tests that check what a structure stops holding (a WeakRef's target
 * is gone after a collection only if nothing reaches it). `gc` is V8's `--expose-gc` function: the flag is set at run
 * time and the function taken from a fresh context, as test runners do to look for leaks.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | null | undefined;

function gcFunction(): (() => void) | null {
  if (gc !== undefined) return gc;
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return (gc = existing);
  try {
    setFlagsFromString('--expose-gc');
    const f: unknown = runInNewContext('gc');
    gc = typeof f === 'function' ? (f as () => void) : null;
  } catch {
    gc = null;
  }
  return gc;
}

/** Collects now; returns false where the runtime offers no way to. */
export function collectGarbage(): boolean {
  const f = gcFunction();
  if (!f) return false;
  f();
  return true;
}
