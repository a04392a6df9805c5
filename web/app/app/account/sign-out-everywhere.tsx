"use client";
import { signOut } from "next-auth/react";
import { useTransition } from "react";
import { quietButtonClass } from "../../ui";
import { signOutEverywhereAction } from "./actions";

export function SignOutEverywhere() {
  const [pending, start] = useTransition();
  return (
    <button
      type="button"
      className={`${quietButtonClass} border-red-300 text-red-700 hover:bg-red-50`}
      disabled={pending}
      onClick={() =>
        start(async () => {
          await signOutEverywhereAction();
          await signOut({ callbackUrl: "/signin?notice=signed-out-everywhere" });
        })
      }
    >
      {pending ? "Signing out…" : "Sign out everywhere"}
    </button>
  );
}
