import { currentActor } from "../../../../lib/data/actor";
import { usagePage, type UsageFilter } from "../../../../lib/data/usage";
import { parseUtcDate } from "../../../../lib/format";

/** Rows in one CSV export at most. */
const EXPORT_ROWS_MAX = 100_000;
const BATCH = 5_000;

const csv = (v: string | number | boolean | null) => {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

export async function GET(req: Request): Promise<Response> {
  const actor = await currentActor();
  if (!actor) return new Response("Sign in first.", { status: 401 });
  const sp = new URL(req.url).searchParams;
  const date = (k: string) => parseUtcDate(sp.get(k)) ?? undefined;
  const filter: UsageFilter = { keyId: sp.get("key") || undefined, model: sp.get("model") || undefined, from: date("from"), to: date("to") };
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(
        encoder.encode("request_id,started_at_utc,key,model,route,http_status,end_cause,input_tokens,output_tokens,estimated,charge_usd,duration_ms\n"),
      );
      let before: { startedAt: Date; id: string } | undefined;
      for (let sent = 0; sent < EXPORT_ROWS_MAX;) {
        const rows = await usagePage(actor, filter, before, BATCH);
        for (const r of rows) {
          const charge = r.chargeMicros === null ? "" : `${r.chargeMicros / 1_000_000n}.${(r.chargeMicros % 1_000_000n).toString().padStart(6, "0")}`;
          controller.enqueue(
            encoder.encode(
              [
                r.id,
                r.startedAt.toISOString(),
                r.keyName,
                r.model,
                r.route,
                r.httpStatus,
                r.endCause,
                r.inputTokens,
                r.outputTokens,
                r.estimated,
                charge,
                r.durationMs,
              ]
                .map(csv)
                .join(",") + "\n",
            ),
          );
        }
        sent += rows.length;
        if (rows.length < BATCH) break;
        const last = rows.at(-1)!;
        before = { startedAt: last.startedAt, id: last.id };
      }
      controller.close();
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "text/csv; charset=utf-8",
      "content-disposition": `attachment; filename="wellspring-usage-${new Date().toISOString().slice(0, 10)}.csv"`,
    },
  });
}
