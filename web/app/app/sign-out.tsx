"use client";
import { signOut } from "next-auth/react";
import { quietButtonClass } from "../ui";

export function SignOutButton() {
  return (
    <button type="button" className={quietButtonClass} onClick={() => void signOut({ callbackUrl: "/signin" })}>
      Sign out
    </button>
  );
}
