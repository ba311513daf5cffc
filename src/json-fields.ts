/**
 * Checks for untrusted JSON (config files, inline specs): each returns the value in its type or calls `fail(field,
 * why)`, which throws the caller's error naming its source. One set of checks and messages for every parser of a
 * user's JSON (preprocessing specs, zoo registry files).
 */
export type JsonObject = Record<string, unknown>;

export const isJsonObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

export type Fail = (field: string, why: string) => never;

export function jsonFields(fail: Fail) {
  const got = (v: unknown) => `got ${JSON.stringify(v)}`;
  return {
    /** An object with only `known` fields and every `required` one; fields are named `field.key` (or `key` at the top). */
    obj(v: unknown, field: string, known: readonly string[], required: readonly string[] = []): JsonObject {
      if (!isJsonObject(v)) return fail(field, `must be an object, ${got(v)}`);
      const sub = (k: string) => (field ? `${field}.${k}` : k);
      for (const k of Object.keys(v)) if (!known.includes(k)) fail(sub(k), `is not a known field (known: ${known.join(', ')})`);
      for (const k of required) if (v[k] === undefined) fail(sub(k), 'is missing');
      return v;
    },
    str: (v: unknown, field: string): string => (typeof v === 'string' && v.length > 0 ? v : fail(field, `must be a non-empty string, ${got(v)}`)),
    int: (v: unknown, field: string, min: number): number =>
      typeof v === 'number' && Number.isInteger(v) && v >= min
        ? v
        : fail(field, `must be ${min === 1 ? 'a positive integer' : min === 0 ? 'a non-negative integer' : `an integer ≥ ${min}`}, ${got(v)}`),
    num: (v: unknown, field: string): number => (typeof v === 'number' && Number.isFinite(v) ? v : fail(field, `must be a finite number, ${got(v)}`)),
    bool: (v: unknown, field: string): boolean => (typeof v === 'boolean' ? v : fail(field, `must be true or false, ${got(v)}`)),
    oneOf: <T extends string | number>(v: unknown, field: string, opts: readonly T[]): T =>
      (opts as readonly unknown[]).includes(v) ? (v as T) : fail(field, `must be one of ${opts.join('|')}, ${got(v)}`),
  };
}
