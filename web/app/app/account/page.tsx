import { requireActor } from "../../../lib/data/actor";
import { Card, PageTitle } from "../../ui";
import { PasswordForm } from "./password-form";

export const metadata = { title: "Account — Wellspring" };

export default async function AccountPage() {
  const actor = await requireActor();
  return (
    <>
      <PageTitle title="Account" subtitle={actor.email} />
      <div className="max-w-md">
        <Card title="Change password">
          <PasswordForm />
        </Card>
      </div>
    </>
  );
}
