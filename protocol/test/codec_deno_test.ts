// Run by `deno test` from agent-deno: the same properties as the Node suite, on the Deno runtime.
import fc from "npm:fast-check@4";
import { properties } from "./properties.ts";
import { receiptProperties } from "./receipt_properties.ts";

for (const p of properties) Deno.test(`tunnel protocol properties (Deno): ${p.name}`, () => p.run(fc));
for (const p of receiptProperties) Deno.test(`usage receipt properties (Deno): ${p.name}`, () => p.run(fc));
