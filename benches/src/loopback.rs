//! Whether an endpoint URL points at this machine: the benchmark and the compatibility
//! suite refuse other addresses unless told otherwise.

use std::net::IpAddr;

/// Whether `url`'s host is a literal loopback address or `localhost`. Names are not
/// resolved, so that checking never sends a DNS query.
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_recognised() {
        assert!(is_loopback_url("http://127.0.0.1:9000"));
        assert!(is_loopback_url("http://127.1.2.3:9000/"));
        assert!(is_loopback_url("https://localhost:3900"));
        assert!(is_loopback_url("http://[::1]:9000"));
        assert!(!is_loopback_url("http://10.0.0.1:9000"));
        assert!(!is_loopback_url("https://s3.example.com"));
        assert!(!is_loopback_url("http://127.0.0.1.example.com:80"));
    }
}
