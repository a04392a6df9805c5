/** Public face of the Wellspring tunnel protocol (runtime-neutral: Node and Deno). */
export * from "./constants.ts";
export * from "./bytes.ts";
export * from "./frame.ts";
export * from "./messages.ts";
export * from "./flow.ts";
export * from "./handshake.ts";
export { SchemaError } from "./schema.ts";
export * from "./batch.ts";
export * from "./fields.ts";
export * from "./message_batch_body.ts";
export * from "./query.ts";
export * from "./session.ts";
export * from "./release.ts";
export * from "./receipt.ts";
export * from "./pricing.ts";
