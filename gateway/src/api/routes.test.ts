/**
 * The public paths of the Files API and the retired Assistants API: which calls are stored-object calls (routed
 * by the object's id), which methods they take, and which paths get the retirement or the Anthropic-files answer.
 */
import { describe, expect, it } from "vitest";
import { findStoredObjectCall, isAnthropicFilesCall, isAssistantsPath } from "./routes.ts";

describe("file routes", () => {
  it("retrieve, delete and content of one file are calls on a stored file, by its id", () => {
    expect(findStoredObjectCall("GET", "/v1/files/file-abc")).toMatchObject({
      kind: "file",
      objectId: "file-abc",
      deletes: false,
      route: { path: "/v1/files/{id}" },
    });
    expect(findStoredObjectCall("DELETE", "/v1/files/file-abc/")).toMatchObject({ kind: "file", upstreamPath: "/v1/files/file-abc", deletes: true });
    expect(findStoredObjectCall("GET", "/v1/files/file-abc/content")).toMatchObject({
      kind: "file",
      route: { path: "/v1/files/{id}/content", billing: "free" },
    });
    expect(findStoredObjectCall("POST", "/v1/files/file-abc")).toEqual({ allowed: ["GET", "DELETE"] });
    expect(findStoredObjectCall("GET", "/v1/files/resp_abc")).toBeNull();
    expect(findStoredObjectCall("GET", "/v1/files/file-a/b")).toBeNull();
    expect(findStoredObjectCall("GET", "/v1/responses/resp_abc")).toMatchObject({ kind: "response" });
  });

  it("tells Anthropic's client on /v1/files by its headers, and the Assistants API by its paths", () => {
    expect(isAnthropicFilesCall("/v1/files", { "anthropic-version": "2023-06-01" })).toBe(true);
    expect(isAnthropicFilesCall("/v1/files/file_011", { "anthropic-beta": "files-api-2025-04-14" })).toBe(true);
    expect(isAnthropicFilesCall("/v1/files", { authorization: "Bearer x" })).toBe(false);
    expect(isAnthropicFilesCall("/v1/messages", { "anthropic-version": "2023-06-01" })).toBe(false);
    for (const p of ["/v1/assistants", "/v1/assistants/asst_1", "/v1/threads", "/v1/threads/thread_1/runs"]) expect(isAssistantsPath(p)).toBe(true);
    for (const p of ["/v1/threadsx", "/v1/responses", "/v1/files"]) expect(isAssistantsPath(p)).toBe(false);
  });
});

describe("message batch routes (Anthropic)", () => {
  it("retrieve, cancel, results and delete of one batch are calls on a stored batch, answered in Anthropic's shape", () => {
    const id = "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d";
    expect(findStoredObjectCall("GET", `/v1/messages/batches/${id}`)).toMatchObject({
      kind: "message_batch",
      objectId: id,
      deletes: false,
      route: { path: "/v1/messages/batches/{id}", api: "anthropic", billing: "free" },
    });
    expect(findStoredObjectCall("DELETE", `/v1/messages/batches/${id}`)).toMatchObject({ kind: "message_batch", deletes: true });
    expect(findStoredObjectCall("POST", `/v1/messages/batches/${id}/cancel`)).toMatchObject({ route: { path: "/v1/messages/batches/{id}/cancel" } });
    expect(findStoredObjectCall("GET", `/v1/messages/batches/${id}/results`)).toMatchObject({ upstreamPath: `/v1/messages/batches/${id}/results` });
    expect(findStoredObjectCall("POST", `/v1/messages/batches/${id}`)).toEqual({ allowed: ["GET", "DELETE"] });
    expect(findStoredObjectCall("GET", "/v1/messages/batches/batch_abc")).toBeNull();
    expect(findStoredObjectCall("GET", "/v1/messages/batches")).toBeNull();
  });
});
