/**
 * Which address a portal request is counted under: the socket peer, or (only behind a trusted proxy) the
 * X-Forwarded-For entry of the first untrusted hop, read from the right.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  addressKey,
  CLIENT_ADDRESS_HEADER,
  clientAddressOf,
  markClientAddressServer,
  parseTrustedProxies,
  resolveClientAddress,
  TrustedProxiesError,
  UNKNOWN_ADDRESS,
} from "./client-address.ts";

describe("resolveClientAddress", () => {
  const none = parseTrustedProxies(undefined);
  const lb = parseTrustedProxies("10.0.0.0/8, 192.0.2.7");

  it("without trusted proxies, the socket peer is the client whatever X-Forwarded-For says", () => {
    expect(resolveClientAddress("203.0.113.9", "1.2.3.4", none)).toBe("203.0.113.9");
    expect(resolveClientAddress("203.0.113.9", "1.2.3.4, 5.6.7.8", none)).toBe("203.0.113.9");
    expect(resolveClientAddress("::ffff:127.0.0.1", "9.9.9.9", none)).toBe("127.0.0.1");
  });

  it("a peer that is not a trusted proxy is the client even when others are trusted", () => {
    expect(resolveClientAddress("203.0.113.9", "10.1.1.1", lb)).toBe("203.0.113.9");
  });

  it("behind trusted proxies, walks right to left past them to the first untrusted entry", () => {
    expect(resolveClientAddress("10.0.0.5", "198.51.100.20", lb)).toBe("198.51.100.20");
    // The client forged the leftmost entry; the proxies appended the real one.
    expect(resolveClientAddress("10.0.0.5", "6.6.6.6, 198.51.100.20, 192.0.2.7", lb)).toBe("198.51.100.20");
    // Two header lines arrive joined, as Node joins them.
    expect(resolveClientAddress("10.0.0.5", ["6.6.6.6", "198.51.100.20"], lb)).toBe("198.51.100.20");
    expect(resolveClientAddress("::ffff:10.0.0.5", "2001:DB8::1", lb)).toBe("2001:db8::1");
  });

  it("when every hop is trusted, the farthest one is the client; with no header, the peer", () => {
    expect(resolveClientAddress("10.0.0.5", "10.9.9.9, 192.0.2.7", lb)).toBe("10.9.9.9");
    expect(resolveClientAddress("10.0.0.5", undefined, lb)).toBe("10.0.0.5");
  });

  it("an entry that is not an address stops the walk at the trusted hop that sent it", () => {
    expect(resolveClientAddress("10.0.0.5", "198.51.100.20, not-an-ip", lb)).toBe("10.0.0.5");
    expect(resolveClientAddress(undefined, "1.2.3.4", none)).toBe(UNKNOWN_ADDRESS);
  });
});

describe("parseTrustedProxies", () => {
  it("accepts addresses, CIDRs and proxy-addr's names, separated by commas or spaces", () => {
    const trust = parseTrustedProxies("loopback 172.16.0.0/12,2001:db8::/32");
    expect(trust("127.0.0.1", 0)).toBe(true);
    expect(trust("172.20.1.1", 0)).toBe(true);
    expect(trust("2001:db8::5", 0)).toBe(true);
    expect(trust("8.8.8.8", 0)).toBe(false);
  });

  it("refuses a bad entry with a clear error naming it", () => {
    expect(() => parseTrustedProxies("10.0.0.0/8, proxy.internal")).toThrow(TrustedProxiesError);
    expect(() => parseTrustedProxies("10.0.0.0/33")).toThrow('TRUSTED_PROXIES: "10.0.0.0/33" is not an IP address');
  });
});

describe("addressKey", () => {
  it("counts IPv4 per address and IPv6 per /64", () => {
    expect(addressKey("198.51.100.20")).toBe("198.51.100.20");
    expect(addressKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:db8:1:2:bbbb:cccc:dddd:eeee")).toBe("2001:db8:1:2::/64");
    expect(addressKey(UNKNOWN_ADDRESS)).toBe(UNKNOWN_ADDRESS);
  });
});

describe("clientAddressOf", () => {
  const mark = Symbol.for("wellspring.portal.clientAddressServer");
  afterEach(() => {
    delete (globalThis as Record<symbol, unknown>)[mark];
  });

  it("believes the header only when web/server.ts runs the app in this process", () => {
    const headers = { [CLIENT_ADDRESS_HEADER]: "198.51.100.20" };
    expect(clientAddressOf(headers)).toBe(UNKNOWN_ADDRESS);
    markClientAddressServer();
    expect(clientAddressOf(headers)).toBe("198.51.100.20");
    expect(clientAddressOf(new Headers(headers))).toBe("198.51.100.20");
    expect(clientAddressOf({})).toBe(UNKNOWN_ADDRESS);
  });
});
