import fc from "fast-check";
import { describe, it } from "vitest";
import { receiptProperties } from "./receipt_properties.ts";

describe("usage receipt properties (Node)", () => {
  for (const p of receiptProperties) it(p.name, () => p.run(fc), 120_000);
});
