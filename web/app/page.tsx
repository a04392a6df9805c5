import Link from "next/link";
import { gatewayStatus } from "./gateway-status";
import { CommandBlock } from "./ui";

export const dynamic = "force-dynamic";

const GATEWAY_URL = process.env.WELLSPRING_GATEWAY_URL ?? "http://127.0.0.1:8787";
const PUBLIC_API_URL = process.env.WELLSPRING_PUBLIC_API_URL ?? GATEWAY_URL;

export default async function Home() {
  const status = await gatewayStatus();
  return (
    <main className="mx-auto max-w-4xl px-4 py-10 sm:px-6 sm:py-16">
      <header className="flex flex-wrap items-center justify-between gap-3">
        <div className="flex items-center gap-3">
          <span aria-hidden className="inline-block h-8 w-8 rounded-lg bg-gradient-to-br from-sky-500 to-emerald-500" />
          <span className="text-xl font-semibold tracking-tight">Wellspring</span>
        </div>
        <nav className="flex items-center gap-3 text-sm">
          <Link href="/signin" className="font-medium text-slate-600 hover:text-slate-900">
            Sign in
          </Link>
          <Link href="/signup" className="rounded-md bg-indigo-600 px-3 py-1.5 font-medium text-white hover:bg-indigo-500">
            Create account
          </Link>
        </nav>
      </header>

      <section className="mt-16">
        <h1 className="text-3xl font-semibold tracking-tight sm:text-4xl">One gateway for your organisation&apos;s AI capacity</h1>
        <p className="mt-4 max-w-2xl text-lg text-slate-600">
          OpenAI, Azure OpenAI and Anthropic capacity behind one OpenAI- and Anthropic-compatible API, with metering, limits and routing. Provider keys stay on
          their owners&apos; machines.
        </p>
      </section>

      <section aria-labelledby="status-heading" className="mt-12 rounded-xl border border-slate-200 bg-white p-6 shadow-sm">
        <h2 id="status-heading" className="text-sm font-medium uppercase tracking-wide text-slate-500">
          System status
        </h2>
        <dl className="mt-4 grid grid-cols-1 gap-6 sm:grid-cols-3">
          <div>
            <dt className="text-sm text-slate-500">Gateway</dt>
            <dd className="mt-1 flex items-center gap-2 text-lg font-medium" data-testid="gateway-state">
              <span aria-hidden className={`h-2.5 w-2.5 rounded-full ${status.reachable ? "bg-emerald-500" : "bg-rose-500"}`} />
              {status.reachable ? "Online" : "Unreachable"}
            </dd>
          </div>
          <div>
            <dt className="text-sm text-slate-500">Agents connected</dt>
            <dd className="mt-1 text-lg font-medium tabular-nums" data-testid="agents-connected">
              {status.agentsConnected}
            </dd>
          </div>
          <div>
            <dt className="text-sm text-slate-500">Streams in flight</dt>
            <dd className="mt-1 text-lg font-medium tabular-nums">{status.streamsOpen}</dd>
          </div>
        </dl>
        <p className="mt-4 text-xs text-slate-400">Checked {status.checkedAt.replace("T", " ").slice(0, 19)} UTC</p>
      </section>

      <section className="mt-12">
        <h2 className="text-lg font-semibold">Make a first call</h2>
        <p className="mt-2 text-slate-600">Point the official SDKs at this gateway; only the base URL and the key change.</p>
        <div className="mt-4">
          <CommandBlock
            testId="home-curl"
            text={`curl ${PUBLIC_API_URL}/v1/chat/completions \\
  -H "Authorization: Bearer $WELLSPRING_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'`}
          />
        </div>
      </section>
    </main>
  );
}
