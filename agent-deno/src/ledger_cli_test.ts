// The owner's commands as they run them: `./wellspring-agent ledger verify|export`, under the launcher's permissions.
import assert from "node:assert/strict";
/// <reference path="./sqlite.d.ts" />
import { DatabaseSync } from "node:sqlite";
import { generateAgentKeyPair } from "../../protocol/src/mod.ts";
import { AgentLedger, ledgerDir } from "./ledger.ts";
import { stateDir } from "./permissions.ts";
import { testReceiptInput } from "./testdata/receipt_input.ts";

const SCRIPT = new URL("../wellspring-agent", import.meta.url).pathname;

async function run(args: string[]): Promise<{ code: number; stdout: Uint8Array; text: string }> {
  const out = await new Deno.Command(SCRIPT, { args, stdout: "piped", stderr: "piped" }).output();
  return { code: out.code, stdout: out.stdout, text: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr) };
}

Deno.test("wellspring-agent ledger verify names the first bad receipt; export writes the chain in the log format", async () => {
  const data = await Deno.makeTempDir({ prefix: "ws-ledger-cli-" });
  const { pair } = await generateAgentKeyPair();
  const agentId = "agt_cli_test";
  await Deno.writeTextFile(
    `${data}/agent.json`,
    JSON.stringify({ agentId, hubId: "hub_x", hubUrl: "https://127.0.0.1:1", pins: ["sha256/x"], publicKey: pair.publicKey }),
  );
  const ledger = await AgentLedger.open(ledgerDir(stateDir(data)), agentId, pair.privateKey);
  await Promise.all(Array.from({ length: 30 }, (_, i) => ledger.append(testReceiptInput(`req_${i}`))));
  await ledger.close();

  const good = await run(["ledger", "verify", "--data", data]);
  assert.equal(good.code, 0, good.text);
  assert.match(good.text, /database: 30 receipts, chain whole \(tail 30\)/);
  assert.match(good.text, /\nOK\n/);

  const exported = await run(["ledger", "export", "--data", data]);
  assert.equal(exported.code, 0, exported.text);
  assert.deepEqual(exported.stdout, await Deno.readFile(`${ledgerDir(stateDir(data))}/receipts.log`));

  // Someone lowers receipt 17's charge in the database.
  const db = new DatabaseSync(`${ledgerDir(stateDir(data))}/receipts.sqlite`);
  const row = db.prepare("SELECT body FROM receipts WHERE seq = 17").get() as { body: Uint8Array };
  const body = new Uint8Array(row.body);
  body[body.length - 40]! ^= 0x10;
  db.prepare("UPDATE receipts SET body = ? WHERE seq = 17").run(body);
  db.close();
  const bad = await run(["ledger", "verify", "--data", data]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.text, /database: BAD at sequence 17 \(bad_hash/);
  assert.match(bad.text, /log and database differ at sequence 17/);
  assert.match(bad.text, /FAILED/);
});
