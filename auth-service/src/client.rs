//! Which client a call comes from, for the per-address limits. Behind a load balancer or
//! the HTTP gateway the direct peer is the proxy, which names the client in
//! `x-forwarded-for`. That metadata is believed only when the direct peer is one of the
//! configured trusted proxies; anyone else could write any address there.

use std::net::IpAddr;

use ipnet::IpNet;

/// The peers whose `x-forwarded-for` is believed (`AUTH_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// One `AUTH_TRUSTED_PROXIES` entry: an address (`10.0.0.7`) or a CIDR range
/// (`10.0.0.0/8`, `fd00::/8`).
pub fn parse_trusted_proxy(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{entry}` is neither an IP address nor a CIDR range"))
}

impl TrustedProxies {
    pub fn new(ranges: Vec<IpNet>) -> Self {
        Self(ranges)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|range| range.contains(&ip))
    }

    /// The client of a call from `peer` carrying `forwarded` (the `x-forwarded-for`
    /// values, in order). From a trusted peer: the rightmost forwarded address that is
    /// not itself a trusted proxy (the ones left of it were written by the client and
    /// prove nothing), or the leftmost when all are trusted. From any other peer, or
    /// when the part that matters is malformed: the peer itself.
    pub fn client_address(&self, peer: Option<IpAddr>, forwarded: &[&str]) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for entry in forwarded.iter().rev().flat_map(|value| value.rsplit(',')) {
            let Ok(hop) = entry.trim().parse::<IpAddr>() else {
                tracing::debug!("malformed x-forwarded-for from a trusted proxy: ignored");
                return Some(peer);
            };
            client = hop.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        Some(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            entries
                .iter()
                .map(|e| parse_trusted_proxy(e).unwrap())
                .collect(),
        )
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_address(ip("192.0.2.1"), &["203.0.113.9"]),
            ip("192.0.2.1")
        );
        let some = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            some.client_address(ip("192.0.2.1"), &["203.0.113.9"]),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn a_trusted_peer_names_the_rightmost_untrusted_address() {
        let p = proxies(&["10.0.0.0/8", "127.0.0.1"]);
        assert_eq!(
            p.client_address(ip("127.0.0.1"), &["203.0.113.9"]),
            ip("203.0.113.9")
        );
        // The client wrote the first entry itself; the proxies appended the rest.
        assert_eq!(
            p.client_address(ip("10.1.1.1"), &["6.6.6.6, 203.0.113.9, 10.2.2.2"]),
            ip("203.0.113.9")
        );
        // Several header values are one list, in order.
        assert_eq!(
            p.client_address(ip("10.1.1.1"), &["6.6.6.6", "198.51.100.4, 10.2.2.2"]),
            ip("198.51.100.4")
        );
        // Every hop trusted: the leftmost is as far as we can see.
        assert_eq!(
            p.client_address(ip("10.1.1.1"), &["10.3.3.3, 10.2.2.2"]),
            ip("10.3.3.3")
        );
        // Nothing forwarded: the proxy itself.
        assert_eq!(p.client_address(ip("10.1.1.1"), &[]), ip("10.1.1.1"));
    }

    #[test]
    fn malformed_forwarding_from_a_trusted_peer_counts_the_peer() {
        let p = proxies(&["127.0.0.1"]);
        for bad in [
            "",
            "not an address",
            "203.0.113.9:443",
            "1.2.3.4.5",
            ",",
            "203.0.113.9,",
        ] {
            assert_eq!(
                p.client_address(ip("127.0.0.1"), &[bad]),
                ip("127.0.0.1"),
                "{bad:?}"
            );
        }
        // Garbage the client put left of a good hop does not matter.
        assert_eq!(
            p.client_address(ip("127.0.0.1"), &["junk, 203.0.113.9"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn ipv4_mapped_peers_and_hops_are_matched_as_ipv4() {
        let p = proxies(&["127.0.0.1"]);
        assert_eq!(
            p.client_address(ip("::ffff:127.0.0.1"), &["::ffff:203.0.113.9"]),
            ip("203.0.113.9")
        );
        assert_eq!(p.client_address(None, &["203.0.113.9"]), None);
    }

    #[test]
    fn entries_are_addresses_or_ranges_and_nothing_else() {
        assert!(parse_trusted_proxy("10.0.0.7").is_ok());
        assert!(parse_trusted_proxy(" 10.0.0.0/8 ").is_ok());
        assert!(parse_trusted_proxy("fd00::/8").is_ok());
        assert!(parse_trusted_proxy("::1").is_ok());
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0.0/8/8", "*"] {
            let error = parse_trusted_proxy(bad).unwrap_err();
            assert!(error.contains(bad.trim()), "{error}");
        }
    }
}
