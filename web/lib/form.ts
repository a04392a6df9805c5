/**
 * A text field of a submitted form: its value, or "" when it is missing or is a file (a hand-made request can
 * send a file where the page has a text input; it is treated as empty, never stringified).
 */
export function formText(form: FormData, name: string): string {
  const value = form.get(name);
  return typeof value === "string" ? value : "";
}
