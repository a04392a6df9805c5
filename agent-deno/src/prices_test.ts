import assert from "node:assert/strict";
import type { PriceTableMessage } from "../../protocol/src/mod.ts";
import { createLog } from "./log.ts";
import { PriceStore } from "./prices.ts";

const table = (ver: number, output: string): PriceTableMessage => ({
  ver,
  publishedAt: "2026-11-29T00:00:00.000Z",
  prices: [{ provider: "openai", model: "gpt-4o-mini", inputMicrosPerMTok: "150000", outputMicrosPerMTok: output, cachedInputMicrosPerMTok: "75000", audioSecondMicros: "0", imageMicros: "0", characterMicrosPerM: "0" }],
});

Deno.test("price store: keeps newer versions on disk, ignores older ones, reloads after a restart", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const log = createLog("error");
    const store = new PriceStore(dir, log);
    await store.load();
    assert.equal(store.ver, null);
    assert.equal(await store.accept(table(2, "600000")), 2);
    // A reconnect racing a publication may deliver an older table: the held version stays and is acknowledged.
    assert.equal(await store.accept(table(1, "1")), 2);
    assert.equal(store.table?.prices[0]?.outputMicrosPerMTok, "600000");
    assert.equal(await store.accept(table(3, "700000")), 3);
    const again = new PriceStore(dir, log);
    await again.load();
    assert.equal(again.ver, 3);
    assert.equal(again.table?.prices[0]?.outputMicrosPerMTok, "700000");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
