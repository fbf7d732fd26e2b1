// Evaluates a PAC file the way a browser would, for the integration tests.
//
// stdin: {"pac": "<PAC text>", "resolve": {"name": "1.2.3.4", ...}, "my_ip": "10.0.0.2",
//         "queries": [{"url": "https://host/", "host": "host"}, ...]}
// stdout: a JSON array with FindProxyForURL's answer for each query, in order.
//
// The helpers are the standard PAC functions (Netscape's original list), written here from
// their documented meaning. Name resolution uses only the "resolve" table, so a test decides
// what every name resolves to and nothing leaves the machine.
"use strict";

const vm = require("vm");

function readStdin() {
  return require("fs").readFileSync(0, "utf8");
}

function ipv4ToNumber(text) {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return null;
  return ((parts[0] << 24) >>> 0) + (parts[1] << 16) + (parts[2] << 8) + parts[3];
}

function makeHelpers(resolveTable, myIp) {
  const dnsResolve = (host) => {
    if (ipv4ToNumber(host) !== null) return host;
    const key = String(host).toLowerCase();
    return Object.prototype.hasOwnProperty.call(resolveTable, key) ? resolveTable[key] : null;
  };
  // A shell glob: * any run, ? one character, everything else literal.
  const shExpMatch = (str, pattern) => {
    const re = String(pattern)
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replace(/\*/g, ".*")
      .replace(/\?/g, ".");
    return new RegExp("^" + re + "$").test(String(str));
  };
  const isInNet = (host, pattern, mask) => {
    const address = dnsResolve(host);
    if (address === null) return false;
    const a = ipv4ToNumber(address);
    const p = ipv4ToNumber(pattern);
    const m = ipv4ToNumber(mask);
    if (a === null || p === null || m === null) return false;
    return ((a & m) >>> 0) === ((p & m) >>> 0);
  };
  return {
    isPlainHostName: (host) => String(host).indexOf(".") === -1,
    dnsDomainIs: (host, domain) => {
      const h = String(host);
      const d = String(domain);
      return h.length >= d.length && h.substring(h.length - d.length) === d;
    },
    localHostOrDomainIs: (host, hostdom) =>
      host === hostdom ||
      (String(host).indexOf(".") === -1 && String(hostdom).startsWith(host + ".")),
    isResolvable: (host) => dnsResolve(host) !== null,
    isInNet,
    dnsResolve,
    myIpAddress: () => myIp,
    dnsDomainLevels: (host) => String(host).split(".").length - 1,
    shExpMatch,
    convert_addr: (ip) => ipv4ToNumber(ip),
    alert: () => {},
  };
}

function main() {
  const input = JSON.parse(readStdin());
  const resolveTable = {};
  for (const [name, address] of Object.entries(input.resolve || {}))
    resolveTable[name.toLowerCase()] = address;
  const context = vm.createContext(makeHelpers(resolveTable, input.my_ip || "127.0.0.1"));
  vm.runInContext(input.pac, context, { filename: "proxy.pac", timeout: 2000 });
  if (typeof context.FindProxyForURL !== "function") {
    process.stderr.write("the PAC file defines no FindProxyForURL function\n");
    process.exit(3);
  }
  const answers = (input.queries || []).map((q) => context.FindProxyForURL(q.url, q.host));
  process.stdout.write(JSON.stringify(answers) + "\n");
}

main();
