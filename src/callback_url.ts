/**
 * Where completion callbacks may go (PROTOCOL.md 4): never with credentials in the URL, and,
 * unless `TETHER_CALLBACK_PRIVATE=allow`, never to a loopback, private, link-local or
 * unspecified address or `localhost`: checked on the URL at creation, and on the addresses a
 * name resolves to right before each try.
 *
 * Addresses are compared numerically after parsing, so every spelling the URL parser
 * normalizes (`2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]`) is caught as what it is.
 *
 * @module
 */

/**
 * Why a callback URL is refused at creation, or `undefined` when it is acceptable. Only the
 * URL is looked at here: a host name is checked when it is resolved, before each try
 * ({@link callbackTargetProblem}).
 *
 * @example
 * ```ts
 * callbackUrlProblem("https://u:pw@example.com/cb", false); // "… must not contain credentials"
 * callbackUrlProblem("https://example.com/cb", false); // undefined
 * ```
 */
export function callbackUrlProblem(raw: string, allowPrivate: boolean): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "callbackUrl is not a valid URL";
  }
  if (url.username || url.password) return "callbackUrl must not contain credentials";
  if (!allowPrivate && isPrivateHost(url.hostname)) {
    return "callbackUrl must not point at a loopback, private, link-local or unspecified address";
  }
  return undefined;
}

/**
 * Whether a URL host (as `URL.hostname` gives it: IPv6 in brackets) is `localhost` or a
 * loopback, private, link-local or unspecified address literal.
 *
 * @example
 * ```ts
 * isPrivateHost(new URL("http://2130706433/").hostname); // true (127.0.0.1)
 * isPrivateHost("[::ffff:7f00:1]"); // true
 * isPrivateHost("example.com"); // false (a name: checked when resolved)
 * ```
 */
export function isPrivateHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, "");
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  if (host.startsWith("[") && host.endsWith("]")) return isPrivateAddress(host.slice(1, -1));
  return parseIpv4(host) !== undefined && isPrivateAddress(host);
}

/**
 * Whether an IP address (v4 dotted, or v6 without brackets) may not be called. IPv4-mapped
 * IPv6 addresses are judged by their IPv4 address.
 *
 * @example
 * ```ts
 * isPrivateAddress("10.1.2.3"); // true
 * isPrivateAddress("::ffff:127.0.0.1"); // true
 * isPrivateAddress("2001:db8::1"); // false
 * ```
 */
export function isPrivateAddress(address: string): boolean {
  const v4 = parseIpv4(address);
  if (v4 !== undefined) return isPrivateIpv4(v4);
  const v6 = parseIpv6(address);
  if (v6 === undefined) return false;
  // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) forms carry an IPv4 address.
  const high = v6.slice(0, 5).every((g) => g === 0);
  if (high && (v6[5] === 0xffff || v6[5] === 0)) {
    const v4Mapped = (v6[6] << 16 | v6[7]) >>> 0;
    if (v6[5] === 0xffff || v4Mapped > 1) return isPrivateIpv4(v4Mapped);
  }
  if (v6.every((g) => g === 0)) return true; // ::
  if (v6.slice(0, 7).every((g) => g === 0) && v6[7] === 1) return true; // ::1
  if ((v6[0] & 0xfe00) === 0xfc00) return true; // fc00::/7 unique local
  if ((v6[0] & 0xffc0) === 0xfe80) return true; // fe80::/10 link-local
  return false;
}

/** IPv4 ranges refused: [network, prefix length]. */
const PRIVATE_V4: [number, number][] = [
  [0x00000000, 8], // 0.0.0.0/8 "this network", including the unspecified 0.0.0.0
  [0x0a000000, 8], // 10/8
  [0x7f000000, 8], // 127/8 loopback
  [0xa9fe0000, 16], // 169.254/16 link-local (cloud metadata)
  [0xac100000, 12], // 172.16/12
  [0xc0a80000, 16], // 192.168/16
];

function isPrivateIpv4(address: number): boolean {
  return PRIVATE_V4.some(([net, bits]) => (address >>> (32 - bits)) === (net >>> (32 - bits)));
}

/** A dotted-quad IPv4 address as a 32-bit number (the form `URL` normalizes hosts to). */
function parseIpv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p))) return undefined;
  const bytes = parts.map(Number);
  if (bytes.some((b) => b > 255)) return undefined;
  return ((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0;
}

/** An IPv6 address as eight 16-bit groups (`::` and a trailing dotted IPv4 accepted). */
function parseIpv6(text: string): number[] | undefined {
  let head = text.replace(/%.*$/, ""); // a zone index does not change the address
  const tail: number[] = [];
  const dotted = head.match(/^(.*:)(\d+\.\d+\.\d+\.\d+)$/);
  if (dotted) {
    const v4 = parseIpv4(dotted[2]);
    if (v4 === undefined) return undefined;
    tail.push(v4 >>> 16, v4 & 0xffff);
    head = dotted[1].endsWith("::") ? dotted[1] : dotted[1].slice(0, -1);
  }
  const halves = head.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string) => s === "" ? [] : s.split(":");
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  if (![...left, ...right].every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  const missing = 8 - tail.length - left.length - right.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  return [
    ...left.map((g) => parseInt(g, 16)),
    ...Array(halves.length === 2 ? missing : 0).fill(0),
    ...right.map((g) => parseInt(g, 16)),
    ...tail,
  ];
}

/** Resolves a host name to its addresses (A and AAAA). */
export type ResolveHost = (hostname: string) => Promise<string[]>;

/** {@link ResolveHost} through the system resolver (`Deno.resolveDns`). */
export const resolveWithDns: ResolveHost = async (hostname) => {
  const lookups = await Promise.allSettled([
    Deno.resolveDns(hostname, "A"),
    Deno.resolveDns(hostname, "AAAA"),
  ]);
  return lookups.flatMap((l) => l.status === "fulfilled" ? l.value : []);
};

/**
 * Why a callback may not be sent to `url` right now (a name resolving to a refused
 * address, or not resolving at all), or `undefined` when it may. Address literals were
 * checked at creation and are checked again here.
 *
 * @example
 * ```ts
 * const url = new URL("https://hooks.internal.example/done");
 * await callbackTargetProblem(url, async () => ["10.0.0.5"]);
 * // "name resolves to a private address"
 * ```
 */
export async function callbackTargetProblem(
  url: URL,
  resolve: ResolveHost,
): Promise<string | undefined> {
  if (isPrivateHost(url.hostname)) return "private address";
  const host = url.hostname.replace(/\.$/, "");
  if (host.startsWith("[") || parseIpv4(host) !== undefined) return undefined;
  const addresses = await resolve(host);
  if (addresses.length === 0) return "name does not resolve";
  if (addresses.some(isPrivateAddress)) return "name resolves to a private address";
  return undefined;
}
