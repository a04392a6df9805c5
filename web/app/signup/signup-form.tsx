"use client";
import { submitTo } from "../submit";
import { useRouter } from "next/navigation";
import { useActionState, useEffect } from "react";
import { buttonClass, FieldError, inputClass } from "../ui";
import { signUpAction } from "./actions";

export function SignUpForm() {
  const router = useRouter();
  const [errors, action, pending] = useActionState(signUpAction, null);
  useEffect(() => {
    // Done ({} = no errors). The answer is the same whether the address was new or taken, so the next step is
    // too: sign in with what was chosen (an address that already had an account keeps its own password).
    if (errors && Object.keys(errors).length === 0) router.push("/signin?notice=signed-up");
  }, [errors, router]);
  return (
    <form onSubmit={submitTo(action)} className="mt-6 space-y-4" noValidate>
      <label className="block text-sm font-medium text-slate-700">
        Name <span className="font-normal text-slate-400">(optional)</span>
        <input name="name" autoComplete="name" maxLength={80} className={inputClass} aria-invalid={Boolean(errors?.name)} aria-describedby="name-error" />
      </label>
      <FieldError id="name-error" message={errors?.name} />
      <label className="block text-sm font-medium text-slate-700">
        Email
        <input
          name="email"
          type="email"
          autoComplete="email"
          required
          maxLength={255}
          className={inputClass}
          aria-invalid={Boolean(errors?.email)}
          aria-describedby="email-error"
        />
      </label>
      <FieldError id="email-error" message={errors?.email} />
      <label className="block text-sm font-medium text-slate-700">
        Password <span className="font-normal text-slate-400">(at least 10 characters)</span>
        <input
          name="password"
          type="password"
          autoComplete="new-password"
          required
          minLength={10}
          maxLength={200}
          className={inputClass}
          aria-invalid={Boolean(errors?.password)}
          aria-describedby="password-error"
        />
      </label>
      <FieldError id="password-error" message={errors?.password} />
      <label className="flex items-start gap-2 text-sm text-slate-700">
        <input name="owner" type="checkbox" className="mt-0.5 h-4 w-4 rounded border-slate-300" />
        <span>I also want to offer capacity from my own provider keys (key owner)</span>
      </label>
      <FieldError id="signup-error" message={errors?.form} />
      <button type="submit" className={`${buttonClass} w-full`} disabled={pending}>
        {pending ? "Creating…" : "Create account"}
      </button>
    </form>
  );
}
