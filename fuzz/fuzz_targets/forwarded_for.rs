//! `x-forwarded-for` as auth-service reads it to find the client behind a trusted proxy:
//! the input is the metadata values, one per line.
#![no_main]

use std::{net::IpAddr, sync::LazyLock};

use auth_service::client::{TrustedProxies, parse_trusted_proxy};
use libfuzzer_sys::fuzz_target;

static PROXIES: LazyLock<TrustedProxies> = LazyLock::new(|| {
    TrustedProxies::new(
        ["10.0.0.0/8", "fd00::/8", "127.0.0.1"]
            .iter()
            .map(|e| parse_trusted_proxy(e).expect("range"))
            .collect(),
    )
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let values: Vec<&str> = text.split('\n').collect();
    for peer in ["10.0.0.1", "192.0.2.1", "::ffff:10.0.0.2"] {
        let peer: IpAddr = peer.parse().expect("ip");
        let client = PROXIES
            .client_address(Some(peer), &values)
            .expect("a peer gives a client");
        // The client is the peer or an address the metadata names.
        assert!(
            client == peer.to_canonical()
                || text
                    .split([',', '\n'])
                    .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
                    .any(|hop| hop.to_canonical() == client),
            "{client} from {text:?}"
        );
    }
    let _ = parse_trusted_proxy(text);
});
