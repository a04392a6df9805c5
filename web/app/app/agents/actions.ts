"use server";
import { revalidatePath } from "next/cache";
import { requireActor } from "../../../lib/data/actor";
import { createEnrollment, setAgentRate, updateAgent, type AgentRateErrors } from "../../../lib/data/owner";
import { formText } from "../../../lib/form";

export type EnrollState = { steps?: { enroll: string; configure: string; start: string }; expiresAt?: string; error?: string } | null;

export async function enrollAction(_prev: EnrollState, form: FormData): Promise<EnrollState> {
  const actor = await requireActor();
  try {
    const e = await createEnrollment(actor, formText(form, "label"));
    return { steps: e.steps, expiresAt: e.expiresAt.toISOString() };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

export async function agentSwitchAction(form: FormData): Promise<void> {
  const actor = await requireActor();
  const agentId = formText(form, "agentId");
  const what = formText(form, "what");
  const on = form.get("on") === "true";
  await updateAgent(actor, agentId, what === "pause" ? { paused: on } : { discountLane: on });
  revalidatePath("/app/agents");
}

export type AgentRateState = { saved?: boolean; errors?: AgentRateErrors } | null;

export async function agentRateAction(_prev: AgentRateState, form: FormData): Promise<AgentRateState> {
  const actor = await requireActor();
  const result = await setAgentRate(actor, formText(form, "agentId"), {
    rateMode: formText(form, "rateMode"),
    rpm: formText(form, "rpm"),
    tpm: formText(form, "tpm"),
    concurrency: formText(form, "concurrency"),
  });
  if (!result.ok) return { errors: result.errors };
  revalidatePath("/app/agents");
  return { saved: true };
}
