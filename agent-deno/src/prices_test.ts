import assert from "node:assert/strict";
import type { PriceTableMessage } from "../../protocol/src/mod.ts";
import { createLog } from "./log.ts";
import { PriceStore } from "./prices.ts";

const table = (ver: number, output: string): PriceTableMessage => ({
  ver,
  publishedAt: "2026-11-29T00:00:00.000Z",
  prices: [
    {
      provider: "openai",
      model: "gpt-4o-mini",
      inputMicrosPerMTok: "150000",
      outputMicrosPerMTok: output,
      cachedInputMicrosPerMTok: "75000",
      audioSecondMicros: "0",
      imageMicros: "0",
      characterMicrosPerM: "0",
    },
  ],
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

Deno.test("price store: a table an older agent kept in the data folder is read once and moved to the state folder", async () => {
  const data = await Deno.makeTempDir();
  const state = `${data}/state`;
  await Deno.mkdir(state);
  try {
    const log = createLog("error");
    await Deno.writeTextFile(`${data}/prices.json`, JSON.stringify(table(4, "800000")));
    const store = new PriceStore(state, log, data);
    await store.load();
    assert.equal(store.ver, 4);
    assert.equal(JSON.parse(await Deno.readTextFile(`${state}/prices.json`)).ver, 4);
    // From now on the state folder's copy wins, whatever the old file says.
    await Deno.writeTextFile(`${data}/prices.json`, JSON.stringify(table(9, "1")));
    const again = new PriceStore(state, log, data);
    await again.load();
    assert.equal(again.ver, 4);
  } finally {
    await Deno.remove(data, { recursive: true });
  }
});
