// The part of node:sqlite the agent uses (Deno implements the module; its bundled Node types do not declare it).
declare module "node:sqlite" {
  type SqlValue = null | number | bigint | string | Uint8Array;

  interface StatementSync {
    run(...params: SqlValue[]): { changes: number | bigint; lastInsertRowid: number | bigint };
    get(...params: SqlValue[]): Record<string, SqlValue> | undefined;
    all(...params: SqlValue[]): Record<string, SqlValue>[];
    iterate(...params: SqlValue[]): IterableIterator<Record<string, SqlValue>>;
  }

  class DatabaseSync {
    constructor(path: string, options?: { readOnly?: boolean });
    exec(sql: string): void;
    prepare(sql: string): StatementSync;
    close(): void;
  }
}
