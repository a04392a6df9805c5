/**
 * A key owner's machine, for tests of the owner's path: a clean folder holding only what the agent image holds
 * (docker/agent.Dockerfile: its COPY lines, and the npm packages its RUN line installs), and an environment with
 * no Deno on PATH and no node_modules/.bin of this repository.
 */
import { cp, mkdir, mkdtemp, readFile, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { ROOT } from "./harness.ts";

const DOCKERFILE = join(ROOT, "docker/agent.Dockerfile");

/** The image's build steps, read from the Dockerfile: where files are copied, the working folder, the command, the health check. */
export interface Image {
  copies: [from: string, to: string][];
  workdir: string;
  cmd: string[];
  healthcheck: string[];
}

export async function readImage(): Promise<Image> {
  const image: Image = { copies: [], workdir: "/", cmd: [], healthcheck: [] };
  for (const line of (await readFile(DOCKERFILE, "utf8")).split("\n")) {
    const [instruction, ...rest] = line.trim().split(/\s+/);
    const args = rest.join(" ");
    if (instruction === "WORKDIR") image.workdir = args.startsWith("/") ? args : join(image.workdir, args);
    // Copies from the build context; a later stage's `COPY --from=build` brings the same paths over unchanged.
    if (instruction === "COPY" && !rest[0]?.startsWith("--from=")) {
      const [from, to] = rest;
      image.copies.push([from!, to!.startsWith("/") ? to! : join(image.workdir, to!)]);
    }
    if (instruction === "CMD") image.cmd = JSON.parse(args) as string[];
    if (instruction === "HEALTHCHECK") image.healthcheck = JSON.parse(/CMD (\[.*\])$/.exec(args)![1]!) as string[];
  }
  return image;
}

/**
 * The image's file system, under a fresh temporary root: the COPY lines as written, then what
 * `npm install --omit=dev` in agent-deno/ puts in node_modules (ws, and the deno package with its binary),
 * linked from the repository's install instead of downloaded again.
 */
export async function ownerFolder(image: Image): Promise<{ root: string; agentDir: string }> {
  const root = await mkdtemp(join(tmpdir(), "ws-owner-"));
  for (const [from, to] of image.copies) await cp(join(ROOT, from), join(root, to), { recursive: true, filter: (src) => !src.includes("node_modules") });
  const agentDir = join(root, image.workdir);
  await mkdir(join(agentDir, "node_modules"), { recursive: true });
  await cp(join(ROOT, "node_modules/ws"), join(agentDir, "node_modules/ws"), { recursive: true });
  await symlink(join(ROOT, "node_modules/deno"), join(agentDir, "node_modules/deno"));
  return { root, agentDir };
}

/** The owner's environment: no Deno on PATH, and no node_modules/.bin of this repository either. */
export function ownerEnv(extraPath: string[] = []): Record<string, string> {
  const path = (process.env.PATH ?? "").split(delimiter).filter((d) => d && !d.includes("node_modules"));
  return { PATH: [...extraPath, ...path].join(delimiter), OPENAI_API_KEY: "sk-owner-production-key-0001" };
}
