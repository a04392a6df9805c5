/**
 * The hub's update offer, handed from the serving agent to its launcher: the agent (which may write only its
 * state folder) keeps the last CONTROL UPDATE_AVAILABLE in `<data>/state/update-offer.json`; the launcher reads
 * it and, when it names a newer release, downloads and verifies that release itself. The file is only a hint:
 * nothing in it is trusted beyond "look for this version".
 */
import { parseJson, updateAvailable, utf8, type UpdateAvailable } from "../../protocol/src/mod.ts";

export const offerPath = (stateDir: string) => `${stateDir}/update-offer.json`;

export async function writeOffer(stateDir: string, offer: UpdateAvailable): Promise<void> {
  const path = offerPath(stateDir);
  await Deno.writeTextFile(`${path}.tmp`, JSON.stringify({ ...offer, receivedAt: new Date().toISOString() }) + "\n");
  await Deno.rename(`${path}.tmp`, path);
}

/** The last offer, or null when there is none or it is not one. */
export async function readOffer(stateDir: string): Promise<UpdateAvailable | null> {
  try {
    return parseJson(updateAvailable, utf8(await Deno.readTextFile(offerPath(stateDir))));
  } catch {
    return null;
  }
}
