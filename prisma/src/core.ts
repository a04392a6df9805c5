/**
 * The database package without its operator tools (migrations, embedded server): what request-serving code
 * (the gateway's services, the portal) imports, so bundlers never see the Wasm schema engine.
 */
export * from "./client.ts";
export * from "./ids.ts";
export * from "./prices.ts";
export * from "./events.ts";
export * from "./password.ts";
export * from "./hub_endpoint.ts";
