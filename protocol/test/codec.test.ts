import fc from "fast-check";
import { describe, it } from "vitest";
import { properties } from "./properties.ts";

describe("tunnel protocol properties (Node)", () => {
  for (const p of properties) it(p.name, () => p.run(fc), 60_000);
});
