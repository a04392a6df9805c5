/**
 * A very small validator for JSON heads and control bodies (runtime-neutral, no dependencies).
 * Each validator returns the typed value or throws a SchemaError naming the path.
 */
export class SchemaError extends Error {
  constructor(
    readonly path: string,
    problem: string,
  ) {
    super(`${path || "value"}: ${problem}`);
    this.name = "SchemaError";
  }
}

export type Validator<T> = (value: unknown, path: string) => T;
export type Infer<V> = V extends Validator<infer T> ? T : never;

export const str =
  (maxLength: number, pattern?: RegExp): Validator<string> =>
  (v, p) => {
    if (typeof v !== "string") throw new SchemaError(p, "must be a string");
    if (v.length > maxLength) throw new SchemaError(p, `must be at most ${maxLength} characters`);
    if (pattern && !pattern.test(v)) throw new SchemaError(p, "has an invalid format");
    return v;
  };

export const int =
  (min: number, max: number): Validator<number> =>
  (v, p) => {
    if (typeof v !== "number" || !Number.isSafeInteger(v)) throw new SchemaError(p, "must be an integer");
    if (v < min || v > max) throw new SchemaError(p, `must be between ${min} and ${max}`);
    return v;
  };

export const bool: Validator<boolean> = (v, p) => {
  if (typeof v !== "boolean") throw new SchemaError(p, "must be a boolean");
  return v;
};

export const oneOf =
  <T extends string>(values: readonly T[]): Validator<T> =>
  (v, p) => {
    if (typeof v !== "string" || !(values as readonly string[]).includes(v)) {
      throw new SchemaError(p, `must be one of ${values.join(", ")}`);
    }
    return v as T;
  };

export const nullable =
  <T>(inner: Validator<T>): Validator<T | null> =>
  (v, p) =>
    v === null || v === undefined ? null : inner(v, p);

export const optional =
  <T>(inner: Validator<T>): Validator<T | undefined> =>
  (v, p) =>
    v === undefined ? undefined : inner(v, p);

export const arrayOf =
  <T>(inner: Validator<T>, maxItems: number): Validator<T[]> =>
  (v, p) => {
    if (!Array.isArray(v)) throw new SchemaError(p, "must be an array");
    if (v.length > maxItems) throw new SchemaError(p, `must have at most ${maxItems} items`);
    return v.map((item, i) => inner(item, `${p}[${i}]`));
  };

export const tuple2 =
  <A, B>(a: Validator<A>, b: Validator<B>): Validator<[A, B]> =>
  (v, p) => {
    if (!Array.isArray(v) || v.length !== 2) throw new SchemaError(p, "must be a pair");
    return [a(v[0], `${p}[0]`), b(v[1], `${p}[1]`)];
  };

/** An object's type: a key whose validator accepts `undefined` (`optional`) may be left out. */
type ObjectOf<S extends Record<string, Validator<unknown>>> = {
  [K in keyof S as undefined extends Infer<S[K]> ? never : K]: Infer<S[K]>;
} & {
  [K in keyof S as undefined extends Infer<S[K]> ? K : never]?: Infer<S[K]>;
};

export const object =
  <S extends Record<string, Validator<unknown>>>(shape: S): Validator<ObjectOf<S>> =>
  (v, p) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new SchemaError(p, "must be an object");
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(shape)) {
      out[key] = shape[key]!((v as Record<string, unknown>)[key], p ? `${p}.${key}` : key);
    }
    return out as ObjectOf<S>;
  };
