import { startTransition, type FormEvent } from "react";

/**
 * An onSubmit handler that runs a `useActionState` action with the form's data and keeps what the user
 * typed (passing the action as `<form action>` makes React reset the fields after every submission, which
 * would clear a form the server just sent back with an error).
 */
export function submitTo(formAction: (data: FormData) => void) {
  return (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const data = new FormData(e.currentTarget);
    const submitter = (e.nativeEvent as SubmitEvent).submitter;
    if (submitter instanceof HTMLButtonElement && submitter.name) data.set(submitter.name, submitter.value);
    startTransition(() => formAction(data));
  };
}
