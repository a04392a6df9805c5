/** What other hub processes (the portal) use of the gateway: its operations layer, and its logger. */
export * from "./ops/mod.ts";
export { createLogger, type Logger } from "./log.ts";
