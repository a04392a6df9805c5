/**
 * The models a hub knows: every model of the current official price table, and every model an enrolled agent
 * (active or paused) reports. A key's allowed models must be among them; a request for one of them that no
 * connected agent serves right now is "not available right now", for any other name "does not exist".
 */
import { currentPriceTable, type Db } from "@wellspring/db/core";

export async function knownModelNames(db: Db): Promise<Set<string>> {
  const [table, agents] = await Promise.all([
    currentPriceTable(db),
    db.agent.findMany({ where: { status: { in: ["active", "paused"] } }, select: { models: true } }),
  ]);
  const names = new Set<string>(table?.prices.map((p) => p.model) ?? []);
  // Agents report `provider:model`.
  for (const a of agents) for (const pm of a.models) names.add(pm.split(":").slice(1).join(":"));
  return names;
}

/** The names in `models` the hub does not know, in the order given. */
export async function unknownModelNames(db: Db, models: readonly string[]): Promise<string[]> {
  if (models.length === 0) return [];
  const known = await knownModelNames(db);
  return models.filter((m) => !known.has(m));
}
