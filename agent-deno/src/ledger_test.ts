import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  decodeLogRecords,
  decodeReceipt,
  generateAgentKeyPair,
  importReceiptVerifyKey,
  logEntries,
  RECEIPT_GENESIS_HASH,
  signReceipt,
  toBase64Url,
  verifyChain,
} from "../../protocol/src/mod.ts";
import { AgentLedger, LEDGER_SERVED_FLUSH_MS, LedgerCorruptError, SERVED_KEEP_MS, SERVED_PRUNE_INTERVAL_MS } from "./ledger.ts";
import { testReceiptInput } from "./testdata/receipt_input.ts";

const AGENT = "agt_ledger_test";

async function setup() {
  const dir = await Deno.makeTempDir({ prefix: "ws-ledger-" });
  const { pair, privatePkcs8 } = await generateAgentKeyPair();
  const key = (await importReceiptVerifyKey(pair.publicKey))!;
  return { dir, pair, privatePkcs8, key };
}

async function logChain(dir: string) {
  return await logEntries(decodeLogRecords(await Deno.readFile(`${dir}/receipts.log`)).records);
}

Deno.test("ledger: concurrent appends make one gapless chain, the same in the database and the log; a request gets one receipt", async () => {
  const { dir, pair, key } = await setup();
  const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  const signed = await Promise.all(Array.from({ length: 600 }, (_, i) => ledger.append(testReceiptInput(`req_${i % 500}`))));
  assert.equal(ledger.tail.seq, 500);
  // A repeated request id got the receipt it already had, not a new one.
  assert.deepEqual(signed[512]!.receipt.seq, signed[12]!.receipt.seq);
  const again = await ledger.append(testReceiptInput("req_7", 999n));
  assert.equal(again.receipt.chargeMicros, 150n);
  assert.equal(ledger.tail.seq, 500);
  const fromDb = ledger.range(1, 10_000);
  const verdict = await verifyChain(fromDb, { agentId: AGENT, key, expectedTail: ledger.tail });
  assert.ok(verdict.ok, verdict.ok ? "" : `${verdict.fault} at ${verdict.firstBadSeq}: ${verdict.detail}`);
  const fromLog = await logChain(dir);
  assert.ok((await verifyChain(fromLog, { agentId: AGENT, key, expectedTail: ledger.tail })).ok);
  assert.equal(fromLog.length, 500);
  await ledger.close();
});

Deno.test("ledger: receipts signed in the writer's worker are byte for byte what WebCrypto's signReceipt gives, linked in order across batches", async () => {
  const { dir, pair, key } = await setup();
  const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  const inputs = Array.from({ length: 90 }, (_, i) => ({
    ...testReceiptInput(`req_sig_${i}`, BigInt(100 + i * 37)),
    model: i % 2 ? "gpt-4o-mini" : "claude-sonnet-4-5 ✓",
    ...(i % 5 === 0 ? { hubRecord: new Uint8Array(i + 1).fill(i) } : {}),
    ...(i % 7 === 0 ? { witness: "dispatched" as const } : {}),
  }));
  // Three bursts (each shared by few batches) and single appends: chains cross batch boundaries.
  const returned = [
    ...(await Promise.all(inputs.slice(0, 40).map((x) => ledger.append(x)))),
    ...(await Promise.all(inputs.slice(40, 80).map((x) => ledger.append(x)))),
  ];
  for (const x of inputs.slice(80)) returned.push(await ledger.append(x));
  let prevHash = RECEIPT_GENESIS_HASH;
  for (let i = 0; i < inputs.length; i++) {
    const expected = await signReceipt(pair.privateKey, { ...inputs[i]!, seq: i + 1, prevHash, agentId: AGENT });
    const got = returned[i]!;
    assert.deepEqual(got.body, expected.body, `receipt ${i + 1}'s body`);
    assert.deepEqual(got.hash, expected.hash, `receipt ${i + 1}'s hash`);
    assert.deepEqual(got.signature, expected.signature, `receipt ${i + 1}'s signature`);
    assert.deepEqual(got.receipt, decodeReceipt(expected.body));
    const kept = ledger.range(i + 1, 1)[0]!;
    assert.deepEqual([kept.body, kept.hash, kept.signature], [expected.body, expected.hash, expected.signature]);
    prevHash = expected.hash;
  }
  assert.deepEqual(ledger.tail, { seq: inputs.length, hash: prevHash });
  assert.ok((await verifyChain(await logChain(dir), { agentId: AGENT, key, expectedTail: ledger.tail })).ok);
  await ledger.close();
});

Deno.test("ledger: acknowledgements are kept; unacknowledged receipts are listed oldest first", async () => {
  const { dir, pair } = await setup();
  const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  const s = await Promise.all([1, 2, 3].map((i) => ledger.append(testReceiptInput(`req_${i}`))));
  assert.equal(ledger.acknowledge(2, s[1]!.hash, new Uint8Array(64).fill(7), Date.now()), true);
  assert.equal(ledger.acknowledge(3, s[0]!.hash, new Uint8Array(64), Date.now()), false, "a hash that is not receipt 3's");
  assert.equal(ledger.acknowledge(9, s[0]!.hash, new Uint8Array(64), Date.now()), false, "no receipt 9");
  assert.deepEqual(
    ledger.unacknowledged(10).map((r) => r.seq),
    [1, 3],
  );
  await ledger.close();
  const reopened = await AgentLedger.open(dir, AGENT, pair.privateKey);
  assert.deepEqual(reopened.byRequest("req_2")?.countersignature, new Uint8Array(64).fill(7));
  await reopened.close();
});

Deno.test("ledger: a burst of acknowledgements and disputes (most queued while a commit runs) is kept, each in effect after a reopen", async () => {
  const { dir, pair } = await setup();
  const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  const s = await Promise.all(Array.from({ length: 40 }, (_, i) => ledger.append(testReceiptInput(`req_${i}`))));
  // All in one turn: the first starts a commit, the rest wait for it and share the next.
  for (const r of s.slice(0, 30)) assert.equal(ledger.acknowledge(r.receipt.seq, r.hash, new Uint8Array(64).fill(r.receipt.seq), Date.now()), true);
  for (const r of s.slice(30, 35)) assert.equal(ledger.markRefused(r.receipt.seq, r.hash, "mismatch"), true);
  // Shown as kept before the writer commits.
  assert.deepEqual(
    ledger.unacknowledged(100).map((r) => r.seq),
    [36, 37, 38, 39, 40],
  );
  await ledger.close();
  const reopened = await AgentLedger.open(dir, AGENT, pair.privateKey);
  for (const r of s.slice(0, 30)) assert.deepEqual(reopened.byRequest(r.receipt.requestId)?.countersignature, new Uint8Array(64).fill(r.receipt.seq));
  assert.deepEqual(
    reopened.disputed(100).map((d) => d.seq),
    [31, 32, 33, 34, 35],
  );
  assert.deepEqual(
    reopened.unacknowledged(100).map((r) => r.seq),
    [36, 37, 38, 39, 40],
  );
  await reopened.close();
});

Deno.test("ledger: reopening cuts a torn log tail, re-appends what the log missed, and refuses a log that disagrees", async () => {
  const { dir, pair, key } = await setup();
  let ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  await Promise.all(Array.from({ length: 20 }, (_, i) => ledger.append(testReceiptInput(`req_${i}`))));
  const tail = ledger.tail;
  await ledger.close();
  const log = await Deno.readFile(`${dir}/receipts.log`);
  // A crash after the commit, before the log's write finished: the log holds 12½ receipts.
  const recordBytes = log.length / 20;
  await Deno.writeFile(`${dir}/receipts.log`, log.subarray(0, Math.floor(recordBytes * 12.5)));
  ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  assert.deepEqual(await Deno.readFile(`${dir}/receipts.log`), log);
  assert.deepEqual(ledger.tail, tail);
  await ledger.append(testReceiptInput("req_after"));
  await ledger.close();
  assert.ok((await verifyChain(await logChain(dir), { agentId: AGENT, key })).ok);
  // An edited log is never "repaired" from the database.
  const edited = await Deno.readFile(`${dir}/receipts.log`);
  edited[40]! ^= 1;
  await Deno.writeFile(`${dir}/receipts.log`, edited);
  await assert.rejects(AgentLedger.open(dir, AGENT, pair.privateKey), LedgerCorruptError);
});

Deno.test("ledger: kill -9 while appending loses no committed receipt and duplicates none", async () => {
  const { dir, pair, privatePkcs8, key } = await setup();
  const writer = new URL("./testdata/ledger_writer.ts", import.meta.url).pathname;
  const committed = new Map<number, string>();
  let next = 0;
  for (let round = 0; round < 3; round++) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", writer, dir, toBase64Url(privatePkcs8), String(next), AGENT],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    const target = committed.size + 200 + Math.floor(Math.random() * 300);
    while (committed.size < target) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        const [seq, req] = line.split(" ");
        committed.set(Number(seq), req!);
      }
    }
    child.kill("SIGKILL");
    await child.status;
    await reader.cancel().catch(() => {});
    next = 1_000_000 * (round + 1);
  }
  const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  const all = ledger.range(1, 1_000_000);
  const verdict = await verifyChain(all, { agentId: AGENT, key, expectedTail: ledger.tail });
  assert.ok(verdict.ok, verdict.ok ? "" : `${verdict.fault} at ${verdict.firstBadSeq}: ${verdict.detail}`);
  for (const [seq, req] of committed) assert.equal(ledger.byRequest(req)?.seq, seq, `committed receipt ${seq} (${req}) is lost`);
  assert.equal(new Set(all.map((r) => r.requestId)).size, all.length);
  assert.ok((await verifyChain(await logChain(dir), { agentId: AGENT, key, expectedTail: ledger.tail })).ok, "the log was not brought up to the database");
  await ledger.close();
  const db = new DatabaseSync(`${dir}/receipts.sqlite`);
  assert.equal((db.prepare("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode, "wal");
  db.close();
});

Deno.test("ledger: receipts per second with durable commits (figure for docs/performance.md)", async () => {
  const { dir, pair } = await setup();
  const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  const n = 2000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, (_, i) => ledger.append(testReceiptInput(`req_${i}`))));
  const perSecond = Math.round(n / ((performance.now() - t0) / 1000));
  console.log(`ledger: ${n} receipts, ${perSecond} receipts/s (batched, synchronous=FULL + log fsync)`);
  let serial = 0;
  const t1 = performance.now();
  for (let i = 0; i < 200; i++) serial += (await ledger.append(testReceiptInput(`one_${i}`))).receipt.seq > 0 ? 1 : 0;
  console.log(`ledger: ${Math.round(serial / ((performance.now() - t1) / 1000))} receipts/s one at a time (a commit and an fsync each)`);
  assert.equal(ledger.tail.seq, n + 200);
  await ledger.close();
});

Deno.test("ledger: a stream's record is never committed in the caller's turn; records share a commit soon after", async () => {
  const { dir, pair } = await setup();
  const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  const t = Date.now(); // records older than SERVED_KEEP_MS are pruned
  for (let i = 0; i < 50; i++) ledger.served({ requestId: `req_turn_${i}`, provider: "openai", startedAtMs: t + i, endedAtMs: null });
  // Nothing committed yet: the stream that wrote it goes on without waiting for the disk.
  assert.equal(ledger.servedRecord("req_turn_0"), null);
  await new Promise((r) => setTimeout(r, LEDGER_SERVED_FLUSH_MS * 4));
  // Committed by the flush timer, not by close.
  assert.deepEqual(ledger.servedRecord("req_turn_49"), { requestId: "req_turn_49", provider: "openai", startedAtMs: t + 49, endedAtMs: null });
  await ledger.close();
});

Deno.test("ledger: a served stream is kept across a restart until its receipt is written", async () => {
  const { dir, pair } = await setup();
  let ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  const t = Date.now(); // records older than SERVED_KEEP_MS are pruned
  ledger.served({ requestId: "req_s", provider: "openai", startedAtMs: t, endedAtMs: null });
  ledger.served({ requestId: "req_s", provider: "openai", startedAtMs: t, endedAtMs: t + 15 });
  await ledger.close();
  ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  assert.deepEqual(ledger.servedRecord("req_s"), { requestId: "req_s", provider: "openai", startedAtMs: t, endedAtMs: t + 15 });
  await ledger.append(testReceiptInput("req_s"));
  assert.equal(ledger.servedRecord("req_s"), null);
  await ledger.close();
});

Deno.test("ledger: a commit that waits for the disk does not hold the agent's event loop; the receipt lands once it can", async () => {
  const { dir, pair } = await setup();
  const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  // Another connection holds the database's write lock: a commit must wait, as it waits for a slow fsync.
  const holder = new DatabaseSync(`${dir}/receipts.sqlite`);
  holder.exec("BEGIN IMMEDIATE");
  let landed = false;
  const appended = ledger.append(testReceiptInput("req_blocked")).then((s) => {
    landed = true;
    return s;
  });
  // Meanwhile the event loop turns: 20 timers of 10 ms each fire, one after another, while the commit waits.
  const t0 = performance.now();
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 10));
  const turned = performance.now() - t0;
  assert.equal(landed, false, "the commit cannot have landed while the lock is held");
  assert.ok(turned < 1_000, `timers fired late (${turned.toFixed(0)} ms for 200 ms): the event loop was held`);
  holder.exec("COMMIT");
  holder.close();
  const signed = await appended;
  assert.equal(signed.receipt.seq, 1);
  assert.equal(ledger.byRequest("req_blocked")?.seq, 1);
  await ledger.close();
});

Deno.test("ledger: served records past SERVED_KEEP_MS are pruned with a batch; younger ones and every receipt stay", async () => {
  const { dir, pair } = await setup();
  const T = 1_764_000_000_000;
  let clock = T;
  const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey, () => clock);
  ledger.served({ requestId: "req_old", provider: "openai", startedAtMs: T, endedAtMs: T + 10 });
  ledger.served({ requestId: "req_young", provider: "openai", startedAtMs: T + 3_600_000, endedAtMs: null });
  await ledger.append(testReceiptInput("req_r1")); // its batch commits both records
  assert.ok(ledger.servedRecord("req_old"));
  // Just inside the window: kept.
  clock = T + SERVED_KEEP_MS;
  await ledger.append(testReceiptInput("req_r2"));
  assert.ok(ledger.servedRecord("req_old"), "a record exactly SERVED_KEEP_MS old is still in the window");
  // Past it (and past the prune interval): gone; the younger one and the receipts stay.
  clock = T + SERVED_KEEP_MS + SERVED_PRUNE_INTERVAL_MS + 1;
  await ledger.append(testReceiptInput("req_r3"));
  assert.equal(ledger.servedRecord("req_old"), null);
  assert.deepEqual(ledger.servedRecord("req_young"), { requestId: "req_young", provider: "openai", startedAtMs: T + 3_600_000, endedAtMs: null });
  assert.deepEqual(
    ledger.range(1, 10).map((r) => r.requestId),
    ["req_r1", "req_r2", "req_r3"],
  );
  await ledger.close();
});

Deno.test("ledger: a receipt the hub keeps as disputed is marked, listed, and never claimed again", async () => {
  const { dir, pair } = await setup();
  let ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  const [a, b, c] = await Promise.all(["req_d1", "req_d2", "req_d3"].map((r) => ledger.append(testReceiptInput(r))));
  assert.equal(ledger.markRefused(b!.receipt.seq, a!.hash, "mismatch"), false, "another receipt's hash");
  assert.equal(ledger.markRefused(b!.receipt.seq, b!.hash, "mismatch"), true);
  assert.equal(ledger.acknowledge(c!.receipt.seq, c!.hash, new Uint8Array(64), Date.now()), true);
  assert.deepEqual(
    ledger.unacknowledged(10).map((r) => r.seq),
    [a!.receipt.seq],
  );
  await ledger.close();
  ledger = await AgentLedger.open(dir, AGENT, pair.privateKey);
  assert.deepEqual(ledger.disputed(10), [{ seq: b!.receipt.seq, requestId: "req_d2", refused: "mismatch" }]);
  assert.deepEqual(
    ledger.unacknowledged(10).map((r) => r.seq),
    [a!.receipt.seq],
  );
  await ledger.close();
});
