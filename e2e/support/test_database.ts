/** A migrated test database for one test file: made before its tests, dropped after them. */
import { afterAll, beforeAll } from "vitest";
import { createTestDatabase, type TestDatabase } from "../stack/harness.ts";

/** Registers the file's hooks; call the returned function inside a test for the database. */
export function useTestDatabase(): () => TestDatabase {
  let database: TestDatabase | undefined;
  beforeAll(async () => {
    database = await createTestDatabase();
  }, 60_000);
  afterAll(async () => {
    await database?.drop();
  });
  return () => {
    if (!database) throw new Error("the test database is made in beforeAll: use it inside a test");
    return database;
  };
}
