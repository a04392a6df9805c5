/** The public API surface: which paths exist, their API family, and how their routing fields are read. */
import type { ApiFamily } from "@wellspring/protocol";

import type { BillingUnit } from "../billing/worst_case.ts";

export interface ProxyRoute {
  path: string;
  api: ApiFamily;
  /** Body kind the route takes: JSON (model in the object) or multipart (model as a form field). */
  body: "json" | "multipart";
  /** What the provider bills the call by; `free` routes are never charged (and are rate-limited instead). */
  billing: BillingUnit;
}

const ROUTES: ProxyRoute[] = [
  { path: "/v1/chat/completions", api: "openai", body: "json", billing: "tokens" },
  { path: "/v1/completions", api: "openai", body: "json", billing: "tokens" },
  { path: "/v1/responses", api: "openai", body: "json", billing: "tokens" },
  { path: "/v1/embeddings", api: "openai", body: "json", billing: "input_tokens" },
  // Moderations are free at the provider.
  { path: "/v1/moderations", api: "openai", body: "json", billing: "free" },
  { path: "/v1/images/generations", api: "openai", body: "json", billing: "images" },
  { path: "/v1/images/edits", api: "openai", body: "multipart", billing: "images" },
  { path: "/v1/images/variations", api: "openai", body: "multipart", billing: "images" },
  { path: "/v1/audio/speech", api: "openai", body: "json", billing: "speech" },
  { path: "/v1/audio/transcriptions", api: "openai", body: "multipart", billing: "transcription" },
  { path: "/v1/audio/translations", api: "openai", body: "multipart", billing: "transcription" },
  { path: "/v1/messages", api: "anthropic", body: "json", billing: "tokens" },
  // Token counting is free at the provider.
  { path: "/v1/messages/count_tokens", api: "anthropic", body: "json", billing: "free" },
];

const BY_PATH = new Map(ROUTES.map((r) => [r.path, r]));

export function findRoute(pathname: string): ProxyRoute | undefined {
  return BY_PATH.get(pathname.length > 1 && pathname.endsWith("/") ? pathname.slice(0, -1) : pathname);
}

/** The family whose error shape a path answers in (Anthropic for /v1/messages*, else OpenAI). */
export function familyOfPath(pathname: string): ApiFamily {
  return pathname.startsWith("/v1/messages") ? "anthropic" : "openai";
}

/** Request headers forwarded to the provider. Everything else — credentials above all — stays at the hub. */
export const FORWARDED_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  "content-type",
  "accept",
  "anthropic-version",
  "anthropic-beta",
  "openai-beta",
  "idempotency-key",
]);
