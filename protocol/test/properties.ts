/**
 * Property tests of the codec, shared by Node (vitest) and Deno (`deno test`): the same properties
 * must hold on both runtimes. Each case takes the fast-check module so each runtime brings its own copy.
 */
import type fcModule from "fast-check";
import {
  bytesEqual,
  CloseCode,
  ControlKind,
  DATA_PAYLOAD_BYTES_MAX,
  BATCHED_FRAME_BYTES_MAX,
  decodeFrame,
  decodeMessage,
  encodeControl,
  encodeData,
  encodeEnd,
  encodeGoAway,
  encodeOpen,
  encodePing,
  encodePong,
  encodeReset,
  encodeResponse,
  encodeWindow,
  FRAME_BYTES_MAX,
  FRAME_HEADER_BYTES,
  FrameBatcher,
  FrameType,
  fromBase64Url,
  generateAgentKeyPair,
  RecvWindow,
  ResetCode,
  SendWindow,
  signAuth,
  toBase64Url,
  verifyAuth,
  type Frame,
} from "../src/mod.ts";

type Fc = typeof fcModule;
export interface PropertyCase {
  name: string;
  run(fc: Fc): void | Promise<void>;
}

function check(cond: boolean, message: string): void {
  if (!cond) throw new Error(message);
}

const DOCUMENTED_CLOSE = new Set<number>(Object.values(CloseCode));
const DOCUMENTED_RESET = new Set<number>(Object.values(ResetCode));

function frameArb(fc: Fc) {
  const sid = fc.integer({ min: 1, max: 0xffffffff });
  const small = fc.uint8Array({ maxLength: 512 });
  const reason = fc.string({ maxLength: 60 });
  const control = fc.constantFrom(...Object.values(ControlKind));
  return fc.oneof(
    fc.record({ t: fc.constant("open" as const), sid, p: small }),
    fc.record({ t: fc.constant("response" as const), sid, p: small }),
    fc.record({ t: fc.constant("data" as const), sid, p: fc.uint8Array({ maxLength: 4096 }) }),
    fc.record({ t: fc.constant("end" as const), sid, p: small }),
    fc.record({ t: fc.constant("reset" as const), sid, code: fc.integer({ min: 0, max: 0xffffffff }), reason }),
    fc.record({ t: fc.constant("window" as const), sid: fc.integer({ min: 0, max: 0xffffffff }), inc: fc.integer({ min: 1, max: 2 ** 31 - 1 }) }),
    fc.record({ t: fc.constant("ping" as const), p: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
    fc.record({ t: fc.constant("pong" as const), p: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
    fc.record({ t: fc.constant("goaway" as const), sid, code: fc.integer({ min: 0, max: 0xffffffff }), reason }),
    fc.record({ t: fc.constant("control" as const), kind: control, p: small }),
  );
}

type Spec = ReturnType<ReturnType<typeof frameArb>["generate"]>["value"];

function encodeSpec(s: Spec): Uint8Array {
  switch (s.t) {
    case "open":
      return encodeOpen(s.sid, s.p);
    case "response":
      return encodeResponse(s.sid, s.p);
    case "data":
      return encodeData(s.sid, s.p);
    case "end":
      return encodeEnd(s.sid, s.p);
    case "reset":
      return encodeReset(s.sid, s.code, s.reason);
    case "window":
      return encodeWindow(s.sid, s.inc);
    case "ping":
      return encodePing(s.p);
    case "pong":
      return encodePong(s.p);
    case "goaway":
      return encodeGoAway(s.sid, s.code, s.reason);
    case "control":
      return encodeControl(s.kind, s.p);
  }
}

function matches(s: Spec, f: Frame): boolean {
  switch (s.t) {
    case "open":
      return f.type === FrameType.OPEN && f.streamId === s.sid && bytesEqual(f.payload, s.p);
    case "response":
      return f.type === FrameType.RESPONSE && f.streamId === s.sid && bytesEqual(f.payload, s.p);
    case "data":
      return f.type === FrameType.DATA && f.streamId === s.sid && bytesEqual(f.payload, s.p);
    case "end":
      return f.type === FrameType.END && f.streamId === s.sid && bytesEqual(f.payload, s.p);
    case "reset":
      return f.type === FrameType.RESET && f.streamId === s.sid && f.code === s.code && f.reason === s.reason;
    case "window":
      return f.type === FrameType.WINDOW && f.streamId === s.sid && f.increment === s.inc;
    case "ping":
      return f.type === FrameType.PING && bytesEqual(f.data, s.p);
    case "pong":
      return f.type === FrameType.PONG && bytesEqual(f.data, s.p);
    case "goaway":
      return f.type === FrameType.GOAWAY && f.lastStreamId === s.sid && f.code === s.code && f.reason === s.reason;
    case "control":
      return f.type === FrameType.CONTROL && f.kind === s.kind && bytesEqual(f.body, s.p);
  }
}

/** decodeFrame must never throw, and every violation must carry a documented code. */
function decodeSafely(bytes: Uint8Array): void {
  const r = decodeFrame(bytes);
  if (r.ok) return;
  if (r.violation.scope === "connection") {
    check(DOCUMENTED_CLOSE.has(r.violation.closeCode), `undocumented close code ${r.violation.closeCode}`);
  } else {
    check(DOCUMENTED_RESET.has(r.violation.resetCode), `undocumented reset code ${r.violation.resetCode}`);
    check(r.violation.streamId > 0, "stream violation on stream 0");
  }
}

export const properties: PropertyCase[] = [
  {
    name: "frames batched into messages arrive whole, in order, each message within FRAME_BYTES_MAX",
    async run(fc) {
      await fc.assert(
        fc.asyncProperty(fc.array(frameArb(fc), { minLength: 1, maxLength: 40 }), async (specs) => {
          const messages: Uint8Array[] = [];
          const batcher = new FrameBatcher((m) => messages.push(m));
          const sent = specs.map(encodeSpec);
          for (const f of sent) batcher.push(f);
          await Promise.resolve(); // the batch leaves once the microtasks queued before it ran
          check(
            messages.every((m) => m.length <= FRAME_BYTES_MAX),
            "a message exceeds FRAME_BYTES_MAX",
          );
          check(messages.length < sent.length || sent.length === 1 || sent.some((f) => f.length >= BATCHED_FRAME_BYTES_MAX), "small frames were not batched");
          const received = messages.flatMap((m) => decodeMessage(m));
          check(received.length === specs.length, `sent ${specs.length} frames, received ${received.length}`);
          received.forEach((r, i) => check(r.ok && matches(specs[i]!, r.frame), `frame ${i} differs or is out of order`));
        }),
        { numRuns: 300 },
      );
    },
  },
  {
    name: "a message that ends inside a frame is a connection error; random messages never crash the splitter",
    run(fc) {
      fc.assert(
        fc.property(fc.array(frameArb(fc), { minLength: 1, maxLength: 5 }), fc.nat(), (specs, cut) => {
          const whole = specs.map(encodeSpec);
          const message = new Uint8Array(whole.reduce((n, f) => n + f.length, 0));
          let at = 0;
          for (const f of whole) {
            message.set(f, at);
            at += f.length;
          }
          const ends = new Set(whole.reduce<number[]>((acc, f) => [...acc, (acc.at(-1) ?? 0) + f.length], []));
          const length = 1 + (cut % message.length);
          const rs = decodeMessage(message.subarray(0, length));
          if (ends.has(length))
            check(
              rs.every((r) => r.ok),
              "a whole prefix of frames was refused",
            );
          else
            check(
              rs.length === 1 && !rs[0]!.ok && rs[0]!.violation.scope === "connection" && rs[0]!.violation.closeCode === CloseCode.PROTOCOL_ERROR,
              "a cut frame was not a connection error",
            );
        }),
        { numRuns: 1000 },
      );
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
          for (const r of decodeMessage(bytes))
            if (!r.ok) check(r.violation.scope === "stream" || DOCUMENTED_CLOSE.has(r.violation.closeCode), "undocumented close code");
        }),
        { numRuns: 3000 },
      );
    },
  },
  {
    name: "every valid frame round-trips through encode and decode",
    run(fc) {
      fc.assert(
        fc.property(frameArb(fc), (spec) => {
          const r = decodeFrame(encodeSpec(spec));
          check(r.ok, `valid frame rejected: ${JSON.stringify(!r.ok && r.violation)}`);
          check(r.ok && matches(spec, r.frame), "decoded frame differs from the encoded one");
        }),
        { numRuns: 2000 },
      );
    },
  },
  {
    name: "random bytes never crash the decoder and violations use documented codes",
    run(fc) {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => decodeSafely(bytes)),
        { numRuns: 5000 },
      );
    },
  },
  {
    name: "mutated valid frames never crash the decoder",
    run(fc) {
      const mutation = fc.oneof(
        fc.record({ m: fc.constant("flip" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
        fc.record({ m: fc.constant("truncate" as const), at: fc.nat() }),
        fc.record({ m: fc.constant("extend" as const), extra: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
        fc.record({ m: fc.constant("header" as const), at: fc.integer({ min: 0, max: FRAME_HEADER_BYTES - 1 }), value: fc.integer({ min: 0, max: 255 }) }),
      );
      fc.assert(
        fc.property(frameArb(fc), fc.array(mutation, { minLength: 1, maxLength: 4 }), (spec, ms) => {
          let bytes = encodeSpec(spec);
          for (const m of ms) {
            if (m.m === "flip" || m.m === "header") {
              if (bytes.length === 0) continue;
              const copy = bytes.slice();
              copy[m.at % copy.length] = m.value;
              bytes = copy;
            } else if (m.m === "truncate") {
              bytes = bytes.slice(0, m.at % (bytes.length + 1));
            } else {
              const copy = new Uint8Array(bytes.length + m.extra.length);
              copy.set(bytes);
              copy.set(m.extra, bytes.length);
              bytes = copy;
            }
          }
          decodeSafely(bytes);
        }),
        { numRuns: 3000 },
      );
    },
  },
  {
    name: "oversized DATA, wrong stream ids and bad versions are refused with their codes",
    run(fc) {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 0xffffffff }), fc.integer({ min: 2, max: 255 }), (sid, version) => {
          const big = new Uint8Array(FRAME_HEADER_BYTES + DATA_PAYLOAD_BYTES_MAX + 1);
          const view = new DataView(big.buffer);
          big[0] = 1;
          big[1] = FrameType.DATA;
          view.setUint32(4, sid);
          view.setUint32(8, DATA_PAYLOAD_BYTES_MAX + 1);
          const r1 = decodeFrame(big);
          check(!r1.ok && r1.violation.scope === "connection" && r1.violation.closeCode === CloseCode.FRAME_TOO_LARGE, "oversized DATA accepted");
          const ping = encodePing(new Uint8Array(8));
          new DataView(ping.buffer).setUint32(4, sid);
          const r2 = decodeFrame(ping);
          check(!r2.ok && r2.violation.scope === "connection" && r2.violation.closeCode === CloseCode.PROTOCOL_ERROR, "PING on a stream accepted");
          const data = encodeData(sid, new Uint8Array(3));
          data[0] = version;
          const r3 = decodeFrame(data);
          check(!r3.ok && r3.violation.scope === "connection" && r3.violation.closeCode === CloseCode.UNSUPPORTED_VERSION, "bad version accepted");
          const open = encodeOpen(sid, new Uint8Array(0));
          new DataView(open.buffer).setUint32(4, 0);
          const r4 = decodeFrame(open);
          check(!r4.ok && r4.violation.scope === "connection", "OPEN on stream 0 accepted");
        }),
        { numRuns: 500 },
      );
    },
  },
  {
    name: "base64url round-trips and rejects non-canonical text",
    run(fc) {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
          const text = toBase64Url(bytes);
          check(bytesEqual(fromBase64Url(text), bytes), "base64url round trip failed");
          check(!/[=+/]/.test(text), "base64url used a non-url character");
        }),
        { numRuns: 2000 },
      );
      let threw = false;
      try {
        fromBase64Url("AB");
        fromBase64Url("A=");
      } catch {
        threw = true;
      }
      check(threw, "padding or non-canonical input accepted");
    },
  },
  {
    name: "flow control: a sender never exceeds the receiver's window, whatever the interleaving",
    run(fc) {
      const op = fc.oneof(
        fc.record({ k: fc.constant("send" as const), n: fc.integer({ min: 1, max: 70_000 }) }),
        fc.record({ k: fc.constant("consume" as const), n: fc.integer({ min: 1, max: 70_000 }) }),
      );
      fc.assert(
        fc.property(fc.integer({ min: 1024, max: 300_000 }), fc.array(op, { maxLength: 200 }), (size, ops) => {
          const send = new SendWindow(size);
          const recv = new RecvWindow(size);
          let unread = 0;
          for (const o of ops) {
            if (o.k === "send") {
              const n = send.take(o.n);
              check(recv.receive(n), "receiver saw more than its window");
              unread += n;
            } else {
              const n = Math.min(o.n, unread);
              unread -= n;
              const inc = recv.consume(n);
              if (inc > 0) check(send.grant(inc), "grant overflowed");
            }
            check(unread <= size, "more bytes in flight than one window");
            check(send.availableBytes + unread <= size, "credit plus unread exceeds the window");
          }
        }),
        { numRuns: 1000 },
      );
    },
  },
  {
    name: "an auth signature verifies only for the exact fields it signed",
    async run(fc) {
      const { pair } = await generateAgentKeyPair();
      const fields = { hubId: "hub_a", sessionId: "ses_1", nonce: "bm9uY2U", timestampMs: 1_700_000_000_000, agentId: "agt_1" };
      const sig = await signAuth(pair.privateKey, fields);
      check(await verifyAuth(pair.publicKey, sig, fields), "valid signature rejected");
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom("hubId", "sessionId", "nonce", "agentId", "timestampMs"),
          fc.string({ minLength: 1, maxLength: 10 }).filter((s) => !s.includes("\n")),
          async (field, value) => {
            const changed = {
              ...fields,
              [field]: field === "timestampMs" ? fields.timestampMs + value.length : `${String(fields[field as keyof typeof fields])}${value}`,
            };
            check(!(await verifyAuth(pair.publicKey, sig, changed)), `signature accepted with ${field} changed`);
          },
        ),
        { numRuns: 100 },
      );
      check(!(await verifyAuth(pair.publicKey, "AAAA", fields)), "short signature accepted");
      check(!(await verifyAuth("not-a-key", sig, fields)), "garbage key accepted");
    },
  },
];
