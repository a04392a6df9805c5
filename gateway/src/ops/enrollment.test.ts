import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { enrollCommand } from "./enrollment.ts";

/** The words a POSIX shell makes of `command` (what the owner's shell passes to ./wellspring-agent). */
const words = (command: string) =>
  execFileSync("sh", ["-c", `set -- ${command}; printf '%s\\n' "$@"`], { encoding: "utf8" })
    .trimEnd()
    .split("\n");

describe("the printed enrollment command", () => {
  const base = { agentUrl: "https://hub.example.com:8788", pin: "sha256/q1+/ZmFrZS1waW4tZm9yLXRlc3RzLW9ubHktMDAwMDA=", token: "wse_abc123" };

  it("is the launcher script with plain words when nothing needs quoting", () => {
    expect(enrollCommand({ ...base, name: "office-agent" })).toBe(
      `./wellspring-agent enroll --hub https://hub.example.com:8788 --pin ${base.pin} --token wse_abc123 --name office-agent`,
    );
    expect(enrollCommand(base)).toBe(`./wellspring-agent enroll --hub https://hub.example.com:8788 --pin ${base.pin} --token wse_abc123`);
  });

  it("quotes a name so the shell passes it as one word and expands nothing in it", () => {
    for (const name of ["Bob's agent", "$(touch /tmp/pwned) `id`", "a;b|c&d", "x'\"y"]) {
      const w = words(enrollCommand({ ...base, name }));
      expect(w.slice(0, 2)).toEqual(["./wellspring-agent", "enroll"]);
      expect(w.at(-1)).toBe(name);
      expect(w).toHaveLength(10);
    }
  });
});
