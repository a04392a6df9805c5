import assert from "node:assert/strict";
import { readStatus, StatusWriter } from "./status.ts";

Deno.test("the status file reports the agent's memory when it was written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const writer = new StatusWriter(dir, { version: "0.0.0", agentId: "agt_1", hubUrl: "wss://hub.test/agent", priceVer: null });
    await writer.close();
    const s = await readStatus(dir);
    assert.ok(s?.memory, "status has memory");
    // A Deno process holds at least its runtime in memory; the heap in use fits in the heap allocated.
    assert.ok(s.memory.rssBytes > 10 * 1024 * 1024, `rss ${s.memory.rssBytes}`);
    assert.ok(s.memory.heapUsedBytes > 0 && s.memory.heapUsedBytes <= s.memory.heapTotalBytes);
    assert.ok(s.memory.externalBytes >= 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
