/** The README's code blocks, read as a reader sees them: by section heading and language. */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ROOT } from "./harness.ts";

export interface CodeBlock {
  /** The nearest heading above the block. */
  section: string;
  /** The fence's info string: its language and any words after it (`sh readme-run`). */
  info: string;
  text: string;
}

export async function readmeBlocks(): Promise<CodeBlock[]> {
  const lines = (await readFile(join(ROOT, "README.md"), "utf8")).split("\n");
  const blocks: CodeBlock[] = [];
  let section = "";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const heading = /^#+\s+(.*)$/.exec(line);
    if (heading) section = heading[1]!.trim();
    const fence = /^```(.*)$/.exec(line);
    if (!fence) continue;
    const body: string[] = [];
    for (i++; i < lines.length && !lines[i]!.startsWith("```"); i++) body.push(lines[i]!);
    blocks.push({ section, info: fence[1]!.trim(), text: body.join("\n") });
  }
  return blocks;
}
