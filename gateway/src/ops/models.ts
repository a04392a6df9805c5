/**
 * The models a hub knows: every model of the current official price table, and every model an enrolled agent
 * (active or paused) reports. A key's allowed models must be among them; a request for one of them that no
 * connected agent serves right now is "not available right now", for any other name "does not exist".
 */
import type { ApiFamily } from "@wellspring/protocol";
import { currentPriceTable, type Db } from "@wellspring/db/core";

const familyOf = (provider: string | undefined): ApiFamily => (provider === "anthropic" ? "anthropic" : "openai");

/** The known models by the API family that serves them (OpenAI-style or Anthropic-style routes). */
export async function knownModelsByFamily(db: Db): Promise<Map<ApiFamily, Set<string>>> {
  const [table, agents] = await Promise.all([
    currentPriceTable(db),
    db.agent.findMany({ where: { status: { in: ["active", "paused"] } }, select: { models: true } }),
  ]);
  const models = new Map<ApiFamily, Set<string>>([
    ["openai", new Set()],
    ["anthropic", new Set()],
  ]);
  for (const p of table?.prices ?? []) models.get(familyOf(p.provider))!.add(p.model);
  // Agents report `provider:model`.
  for (const a of agents) {
    for (const pm of a.models) {
      const [provider, ...rest] = pm.split(":");
      models.get(familyOf(provider))!.add(rest.join(":"));
    }
  }
  return models;
}

export async function knownModelNames(db: Db): Promise<Set<string>> {
  const byFamily = await knownModelsByFamily(db);
  return new Set([...byFamily.values()].flatMap((s) => [...s]));
}

/** The names in `models` the hub does not know, in the order given. */
export async function unknownModelNames(db: Db, models: readonly string[]): Promise<string[]> {
  if (models.length === 0) return [];
  const known = await knownModelNames(db);
  return models.filter((m) => !known.has(m));
}
