import { requireActor } from "../../../lib/data/actor";
import { Card, PageTitle } from "../../ui";
import { PasswordForm } from "./password-form";
import { SignOutEverywhere } from "./sign-out-everywhere";

export const metadata = { title: "Account — Wellspring" };

export default async function AccountPage() {
  const actor = await requireActor();
  return (
    <>
      <PageTitle title="Account" subtitle={actor.email} />
      <div className="max-w-md space-y-6">
        <Card title="Change password">
          <PasswordForm />
        </Card>
        <Card title="Sessions">
          <p className="mb-3 text-sm text-slate-600">
            Signed in on a computer you no longer use, or think someone else is? This ends every session of your account, on every device and browser, this one
            too.
          </p>
          <SignOutEverywhere />
        </Card>
      </div>
    </>
  );
}
