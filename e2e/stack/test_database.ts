/** A test file's own database, for vitest files: made before the file's tests, dropped after them. */
import { afterAll, beforeAll } from "vitest";
import { createTestDatabase, type TestDatabase } from "./harness.ts";

/** Registers the file's database hooks; read `.current` inside tests (it is set once `beforeAll` ran). */
export function databaseForFile(): { readonly current: TestDatabase } {
  const holder = {} as { current: TestDatabase };
  beforeAll(async () => {
    holder.current = await createTestDatabase();
  }, 60_000);
  afterAll(async () => {
    await holder.current?.drop();
  });
  return holder;
}
