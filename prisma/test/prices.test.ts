/** Price versions increase, stay immutable, and are read back exactly (integers, no rounding). */
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../e2e/stack/harness.ts";
import { currentPriceTable, DEFAULT_PRICE_TABLE, publishPriceVersion } from "../src/mod.ts";

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
}, 60_000);
afterAll(async () => {
  await database?.drop();
});

it("publishes increasing versions, concurrently too, and reads the newest back exactly", async () => {
  expect(await currentPriceTable(database.db)).toBeNull();
  const versions = await Promise.all([1, 2, 3].map((i) => publishPriceVersion(database.db, DEFAULT_PRICE_TABLE, `seed ${i}`)));
  expect([...versions].sort()).toEqual([1, 2, 3]);
  const current = await currentPriceTable(database.db);
  expect(current!.ver).toBe(3);
  const mini = current!.prices.find((p) => p.model === "gpt-4o-mini")!;
  expect(mini).toMatchObject({ inputMicrosPerMTok: 150_000n, outputMicrosPerMTok: 600_000n, cachedInputMicrosPerMTok: 75_000n });
  expect(current!.prices).toHaveLength(DEFAULT_PRICE_TABLE.length);
});

it("refuses to change or delete a published price", async () => {
  await expect(database.db.modelPrice.updateMany({ where: { ver: 1 }, data: { inputMicrosPerMTok: 1n } })).rejects.toThrow(/immutable/);
  await expect(database.db.modelPrice.deleteMany({ where: { ver: 1 } })).rejects.toThrow(/immutable/);
  await expect(database.db.priceVersion.delete({ where: { ver: 1 } })).rejects.toThrow(/immutable/);
  await expect(publishPriceVersion(database.db, [])).rejects.toThrow(/empty/);
});
