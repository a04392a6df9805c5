/**
 * Generates agent-deno/src/provider_networks_data.ts: the networks (CIDRs) each provider's official API host may
 * resolve to, taken offline from the public IP-to-ASN dataset `@ip-location-db/asn` (CC-BY-4.0; ranges with the
 * announcing ASN). The agent checks every address it resolves for a provider host against this table before it
 * connects (agent-deno/src/endpoint_check.ts; the reasons for each ASN are in docs/ARCHITECTURE.md).
 *
 *   npm i --no-save @ip-location-db/asn@2.3.2026061719   # ~63 MB, not a project dependency
 *   npx tsx scripts/provider_networks.ts [path/to/node_modules/@ip-location-db/asn]
 *
 * Adjacent ranges of one provider are merged before they are cut into CIDRs, so the table stays small.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { isIPv4 } from "node:net";

/** The ASNs whose announced networks a provider's official API host may resolve to. */
export const PROVIDER_ASNS = {
  /** api.openai.com is served through Cloudflare's network. */
  openai: [13335],
  /** api.anthropic.com is announced by Anthropic's own ASNs (IPv4 AS399358, IPv6 AS401551). */
  anthropic: [399358, 401551],
  /** <resource>.openai.azure.com are Azure front ends, announced by Microsoft. */
  azure: [8075],
} as const;
type ProviderName = keyof typeof PROVIDER_ASNS;

const ROOT = resolve(import.meta.dirname, "..");
const OUT = join(ROOT, "agent-deno/src/provider_networks_data.ts");
const DATASET_VERSION_FALLBACK = "unknown";

function v4ToBig(ip: string): bigint {
  return ip.split(".").reduce((n, part) => (n << 8n) | BigInt(Number(part)), 0n);
}

function v6ToBig(ip: string): bigint {
  const [head, tail] = ip.includes("::") ? ip.split("::") : [ip, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g || "0", 16)), 0n);
}

function bigToV4(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join(".");
}

function bigToV6(n: bigint): string {
  const groups = [...Array(8).keys()].map((i) => ((n >> BigInt(112 - 16 * i)) & 0xffffn).toString(16));
  // Shorten the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

/** Cuts [start, end] into the fewest CIDRs. */
function toCidrs(start: bigint, end: bigint, bits: number, format: (n: bigint) => string): string[] {
  const out: string[] = [];
  while (start <= end) {
    let size = 0;
    while (size < bits && (start & ((1n << BigInt(size + 1)) - 1n)) === 0n && start + (1n << BigInt(size + 1)) - 1n <= end) size++;
    out.push(`${format(start)}/${bits - size}`);
    start += 1n << BigInt(size);
  }
  return out;
}

function parseCsvLine(line: string): { start: string; end: string; asn: number } | null {
  const [start, end, asn] = line.split(",", 3);
  if (!start || !end || !asn) return null;
  return { start, end, asn: Number(asn) };
}

async function networksOf(dir: string, file: string, v4: boolean): Promise<Record<ProviderName, string[]>> {
  const text = await readFile(join(dir, file), "utf8");
  const ranges: Record<ProviderName, [bigint, bigint][]> = { openai: [], anthropic: [], azure: [] };
  const owner = new Map<number, ProviderName>();
  for (const [name, asns] of Object.entries(PROVIDER_ASNS) as [ProviderName, readonly number[]][]) for (const a of asns) owner.set(a, name);
  for (const line of text.split("\n")) {
    const row = parseCsvLine(line);
    const name = row && owner.get(row.asn);
    if (!row || !name) continue;
    if (isIPv4(row.start) !== v4) continue;
    const toBig = v4 ? v4ToBig : v6ToBig;
    ranges[name].push([toBig(row.start), toBig(row.end)]);
  }
  const out = { openai: [], anthropic: [], azure: [] } as Record<ProviderName, string[]>;
  for (const name of Object.keys(ranges) as ProviderName[]) {
    const sorted = ranges[name].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const merged: [bigint, bigint][] = [];
    for (const [s, e] of sorted) {
      const last = merged.at(-1);
      if (last && s <= last[1] + 1n) last[1] = e > last[1] ? e : last[1];
      else merged.push([s, e]);
    }
    out[name] = merged.flatMap(([s, e]) => toCidrs(s, e, v4 ? 32 : 128, v4 ? bigToV4 : bigToV6));
  }
  return out;
}

async function main(): Promise<void> {
  const dir = resolve(process.argv[2] ?? join(ROOT, "node_modules/@ip-location-db/asn"));
  let version = DATASET_VERSION_FALLBACK;
  try {
    version = (JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    throw new Error(`Cannot read the dataset in ${dir}: install it with 'npm i --no-save @ip-location-db/asn' or pass its folder`);
  }
  const v4 = await networksOf(dir, "asn-ipv4.csv", true);
  const v6 = await networksOf(dir, "asn-ipv6.csv", false);
  const lines = [
    "// Generated by scripts/provider_networks.ts from @ip-location-db/asn " + version + " (CC-BY-4.0). Do not edit.",
    "// Regenerate: npm i --no-save @ip-location-db/asn && npx tsx scripts/provider_networks.ts",
    "",
    `export const PROVIDER_NETWORKS_DATASET = ${JSON.stringify(`@ip-location-db/asn ${version}`)};`,
    "",
    "/** The ASNs each table below was taken from. */",
    `export const PROVIDER_NETWORK_ASNS = ${JSON.stringify(PROVIDER_ASNS)} as const;`,
    "",
    "/** CIDRs an official provider host may resolve to, by provider. */",
    "export const PROVIDER_NETWORKS: Record<keyof typeof PROVIDER_NETWORK_ASNS, readonly string[]> = {",
    ...(Object.keys(PROVIDER_ASNS) as ProviderName[]).map((name) => `  ${name}: ${JSON.stringify([...v4[name], ...v6[name]])},`),
    "};",
    "",
  ];
  await writeFile(OUT, lines.join("\n"));
  for (const name of Object.keys(PROVIDER_ASNS) as ProviderName[]) console.log(`${name}: ${v4[name].length} IPv4 and ${v6[name].length} IPv6 networks`);
  console.log(`wrote ${OUT}`);
}

await main();
