// Proxy auto-configuration for a site running Skype for Business / Lync, written by hand.
// (handoff can also generate one from its [pac] section and serves either at /proxy.pac and
// /wpad.dat; this file is what to put in [pac] file = when the generated one is too simple.)
//
// Internal servers (front ends, mediation, Exchange, file shares) are reached directly; the
// Internet, Office 365 and the federation/Edge traffic go through two handoff instances. The
// browser or SfB client tries handoff1 first and fails over to handoff2 when it does not answer.
//
// Replace contoso.com / contoso.local and the networks with your own.

function FindProxyForURL(url, host) {
    // Single-label names (fileserver, intranet) only exist inside.
    if (isPlainHostName(host))
        return "DIRECT";

    // Internal DNS zones, matched by name first so that no DNS lookup is needed for them.
    if (shExpMatch(host, "*.local") ||
        dnsDomainIs(host, ".contoso.local") ||
        host == "sip.contoso.com" ||
        host == "lyncdiscoverinternal.contoso.com")
        return "DIRECT";

    // Anything that resolves into a private or loopback network is internal too: the SfB pool
    // (sip.contoso.com, lyncdiscover.contoso.com when published inside), SharePoint, partners
    // reached over a VPN. Names that do not resolve here go to the proxy, which resolves them.
    var address = dnsResolve(host);
    if (address &&
        (isInNet(address, "10.0.0.0", "255.0.0.0") ||
         isInNet(address, "172.16.0.0", "255.240.0.0") ||
         isInNet(address, "192.168.0.0", "255.255.0.0") ||
         isInNet(address, "127.0.0.0", "255.0.0.0")))
        return "DIRECT";

    return "PROXY handoff1.example.net:3128; PROXY handoff2.example.net:3128";
}
