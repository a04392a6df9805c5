import Link from "next/link";
import type { ReactNode } from "react";
import { requireActor } from "../../lib/data/actor";
import { SignOutButton } from "./sign-out";

export const dynamic = "force-dynamic";

const NAV = [
  { href: "/app", label: "Dashboard" },
  { href: "/app/keys", label: "API keys" },
  { href: "/app/usage", label: "Usage" },
  { href: "/app/billing", label: "Billing" },
  { href: "/app/prices", label: "Prices" },
];
const ADMIN_NAV = [
  { href: "/app/admin/system", label: "System" },
  { href: "/app/admin/accounts", label: "Users & agents" },
  { href: "/app/admin/prices", label: "Price tables" },
  { href: "/app/admin/risk", label: "Risk review" },
  { href: "/app/admin/content", label: "Content rules" },
  { href: "/app/admin/payouts", label: "Payouts" },
  { href: "/app/admin/codes", label: "Codes" },
  { href: "/app/admin/outbox", label: "Outbox" },
];
const OWNER_NAV = [
  { href: "/app/agents", label: "Agents" },
  { href: "/app/earnings", label: "Earnings" },
];

export default async function AppLayout({ children }: { children: ReactNode }) {
  const actor = await requireActor();
  return (
    <div className="min-h-screen">
      <header className="border-b border-slate-200 bg-white">
        <div className="mx-auto flex max-w-6xl flex-wrap items-center justify-between gap-x-4 gap-y-2 px-4 pt-3 sm:px-6">
          <Link href="/app" className="text-sm font-semibold text-indigo-600">
            Wellspring
          </Link>
          <div className="flex min-w-0 flex-wrap items-center justify-end gap-2 text-sm text-slate-600 sm:gap-3">
            <span data-testid="signed-in-as" className="min-w-0 max-w-[18rem] truncate">
              {actor.email}
            </span>
            {actor.isOwner && <span className="rounded bg-emerald-50 px-2 py-0.5 text-xs font-medium text-emerald-700">owner</span>}
            {actor.isAdmin && <span className="rounded bg-amber-50 px-2 py-0.5 text-xs font-medium text-amber-700">admin</span>}
            <SignOutButton />
          </div>
        </div>
        <nav aria-label="Main" className="mx-auto flex max-w-6xl flex-wrap gap-1 px-2 pb-2 pt-2 sm:px-4">
          {[...NAV, ...(actor.isOwner ? OWNER_NAV : []), ...(actor.isAdmin ? ADMIN_NAV : []), { href: "/app/account", label: "Account" }].map((n) => (
            <Link
              key={n.href}
              href={n.href}
              className="whitespace-nowrap rounded-md px-2.5 py-1.5 text-sm font-medium text-slate-600 hover:bg-slate-100 hover:text-slate-900"
            >
              {n.label}
            </Link>
          ))}
        </nav>
      </header>
      <main className="mx-auto max-w-6xl px-4 py-6 sm:px-6 sm:py-8">{children}</main>
      <footer className="mx-auto max-w-6xl px-4 pb-8 text-xs text-slate-400 sm:px-6">All times are UTC. Amounts in US dollars.</footer>
    </div>
  );
}
