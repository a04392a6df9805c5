"use client";
import { signIn } from "next-auth/react";
import { useRouter } from "next/navigation";
import { useEffect, useState } from "react";
import { formText } from "../../lib/form";
import { waitText } from "../../lib/format";
import { buttonClass, FieldError, inputClass } from "../ui";

const MESSAGES: Record<string, string> = {
  invalid: "Wrong email or password.",
  suspended: "This account is suspended.",
};

export function SignInForm() {
  const router = useRouter();
  const [error, setError] = useState<string | undefined>();
  const [pending, setPending] = useState(false);
  // A throttled answer (`throttled:<account|network>:<seconds>`): the form counts down and waits.
  const [wait, setWait] = useState<{ scope: string; until: number } | null>(null);
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!wait) return;
    const timer = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(timer);
  }, [wait]);
  const left = wait ? Math.max(0, Math.ceil((wait.until - now) / 1000)) : 0;

  const submit = async (form: FormData) => {
    setPending(true);
    setError(undefined);
    setWait(null);
    const res = await signIn("credentials", { email: formText(form, "email"), password: formText(form, "password"), redirect: false });
    setPending(false);
    if (res?.ok) {
      router.push("/app");
      router.refresh();
      return;
    }
    const throttled = /^throttled:(account|network):(\d+)$/.exec(res?.error ?? "");
    if (throttled) {
      setNow(Date.now());
      setWait({ scope: throttled[1]!, until: Date.now() + Number(throttled[2]) * 1000 });
    } else setError(MESSAGES[res?.error ?? ""] ?? "Sign-in failed. Try again.");
  };
  const waitMessage =
    wait &&
    (left > 0
      ? `Too many failed sign-ins ${wait.scope === "network" ? "from your network" : "for this account"}. Try again in ${waitText(left * 1000)}.`
      : "You can try again now.");
  return (
    <form
      className="mt-6 space-y-4"
      onSubmit={(e) => {
        e.preventDefault();
        void submit(new FormData(e.currentTarget));
      }}
    >
      <label className="block text-sm font-medium text-slate-700">
        Email
        <input name="email" type="email" autoComplete="email" required className={inputClass} />
      </label>
      <label className="block text-sm font-medium text-slate-700">
        Password
        <input
          name="password"
          type="password"
          autoComplete="current-password"
          required
          className={inputClass}
          aria-invalid={Boolean(error)}
          aria-describedby="signin-error"
        />
      </label>
      <FieldError id="signin-error" message={error ?? waitMessage ?? undefined} />
      <button type="submit" className={`${buttonClass} w-full`} disabled={pending || left > 0}>
        {pending ? "Signing in…" : left > 0 ? `Wait ${left} s` : "Sign in"}
      </button>
    </form>
  );
}
