/**
 * The HTTP router every listener of the gateway uses: exact `METHOD /path` routes and path prefixes, each a
 * handler; errors are answered once, here, in the shape of the route's API family — a GatewayError as it says,
 * an unreachable database as 503 with retry-after, anything else as a logged 500 (never its detail). The
 * wrappers add what many routes need: `withPrincipal` (the caller's virtual key) and `withAdmin` (the admin
 * token).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ApiFamily } from "@wellspring/protocol";
import { GatewayError, sendError } from "../errors.ts";
import { isUnavailable } from "../billing/health.ts";
import type { Logger } from "../log.ts";
import type { KeyVerifier, Principal } from "./keys.ts";
import { authenticate } from "./proxy.ts";

/** Retry-After sent with 503 when the database cannot be reached, seconds. */
export const DATABASE_UNAVAILABLE_RETRY_AFTER_SECONDS = 5;

export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
}

export type Handler = (x: Exchange) => Promise<void> | void;

interface Prefix {
  prefix: string;
  handler: Handler;
}

export class Router {
  readonly #exact = new Map<string, Handler>();
  readonly #prefixes: Prefix[] = [];
  #fallback: Handler;

  /**
   * `family(path)`: whose error shape a path answers in. `name`: the listener, for logs.
   */
  constructor(
    private readonly name: string,
    private readonly log: Logger,
    private readonly family: (path: string) => ApiFamily,
  ) {
    this.#fallback = ({ req, url }) => {
      throw new GatewayError("route_not_found", `Unknown request URL: ${req.method} ${url.pathname}.`);
    };
  }

  /** An exact route: `"GET /v1/models"`. */
  on(route: string, handler: Handler): this {
    this.#exact.set(route, handler);
    return this;
  }

  /** Every method and path under `prefix` (checked in the order added, after the exact routes). */
  under(prefix: string, handler: Handler): this {
    this.#prefixes.push({ prefix, handler });
    return this;
  }

  /** What answers when nothing else matches (default: 404 route_not_found). */
  otherwise(handler: Handler): this {
    this.#fallback = handler;
    return this;
  }

  /** The node:http request listener. */
  readonly listener = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? "/", "http://gateway");
    const path = url.pathname;
    const handler = this.#exact.get(`${req.method} ${path}`) ?? this.#prefixes.find((p) => path.startsWith(p.prefix))?.handler ?? this.#fallback;
    let done: Promise<void> | void;
    try {
      done = handler({ req, res, url });
    } catch (error) {
      this.#fail(req, res, path, error);
      return;
    }
    if (done) done.catch((error: unknown) => this.#fail(req, res, path, error));
  };

  #fail(req: IncomingMessage, res: ServerResponse, path: string, error: unknown): void {
    let answer: GatewayError;
    if (error instanceof GatewayError) answer = error;
    else if (isUnavailable(error)) {
      this.log.warn(`${this.name}.database_unavailable`, { path, error });
      answer = new GatewayError("service_unavailable", "The service is briefly unavailable; retry shortly.", {
        retryAfterSeconds: DATABASE_UNAVAILABLE_RETRY_AFTER_SECONDS,
      });
    } else {
      this.log.error(`${this.name}.unhandled`, { path, error });
      answer = new GatewayError("internal_error", "Internal error.");
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendError(res, this.family(path), answer);
    req.resume();
  }
}

/** The route needs the caller's virtual key: the handler gets the principal it names. */
export function withPrincipal(keys: KeyVerifier, handler: (x: Exchange, principal: Principal) => Promise<void>): Handler {
  return async (x) => handler(x, await authenticate(x.req, keys));
}

/** The route needs the admin token: `authorize` throws a GatewayError when it is missing or wrong. */
export function withAdmin(authorize: (req: IncomingMessage) => void, handler: Handler): Handler {
  return (x) => {
    authorize(x.req);
    return handler(x);
  };
}

/** A JSON answer. */
export function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}
