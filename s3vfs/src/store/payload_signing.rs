//! Whether the body of an upload (PutObject, UploadPart) is covered by the SigV4 signature.
//!
//! A signed payload costs one SHA-256 pass over every uploaded byte in the client (and one
//! more in the server that checks it): on a 2-core machine that is a third of the mount's
//! CPU while writing. What it buys is integrity of the body in transit. A TLS connection
//! already gives that, and so does a loopback connection (the bytes never leave the
//! machine), so by default only plain HTTP to another host signs the payload. Either way
//! the SDK still sends a CRC32 checksum of the body (when request checksums are on), which
//! the server verifies against accidental corruption.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// When upload bodies are signed (`x-amz-content-sha256` = the body's SHA-256) rather than
/// sent as `UNSIGNED-PAYLOAD`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PayloadSigning {
    /// Sign unless the connection protects the body already: HTTPS (AWS's default
    /// endpoints included) or a loopback address.
    #[default]
    Auto,
    /// Always sign (one SHA-256 pass over every uploaded byte).
    Always,
    /// Never sign; rely on TLS and the CRC32 checksum.
    Never,
}

impl PayloadSigning {
    /// Whether uploads to `endpoint_url` (`None`: AWS's own HTTPS endpoints) sign their
    /// bodies under this setting.
    pub fn signs_uploads_to(self, endpoint_url: Option<&str>) -> bool {
        match self {
            PayloadSigning::Always => true,
            PayloadSigning::Never => false,
            PayloadSigning::Auto => endpoint_url.is_some_and(|url| !protects_bodies(url)),
        }
    }
}

/// Whether a connection to `url` keeps bodies intact without a signature: an `https` URL,
/// or an `http` one whose host is a loopback address. Anything unparsable is not trusted.
fn protects_bodies(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if scheme.eq_ignore_ascii_case("https") {
        return true;
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split_once(']').map_or("", |(h, _)| h)
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || IpAddr::from_str(host).is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Display for PayloadSigning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PayloadSigning::Auto => "auto",
            PayloadSigning::Always => "always",
            PayloadSigning::Never => "never",
        })
    }
}

impl FromStr for PayloadSigning {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(PayloadSigning::Auto),
            "always" => Ok(PayloadSigning::Always),
            "never" => Ok(PayloadSigning::Never),
            other => Err(format!(
                "payload signing must be auto, always or never, not {other:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_signs_only_plain_http_to_another_host() {
        let auto = PayloadSigning::Auto;
        assert!(!auto.signs_uploads_to(None), "AWS endpoints are HTTPS");
        assert!(!auto.signs_uploads_to(Some("https://s3.example.com")));
        assert!(!auto.signs_uploads_to(Some("HTTPS://minio.lan:9000/")));
        assert!(!auto.signs_uploads_to(Some("http://127.0.0.1:9000")));
        assert!(!auto.signs_uploads_to(Some("http://127.8.9.10")));
        assert!(!auto.signs_uploads_to(Some("http://localhost:4566/")));
        assert!(!auto.signs_uploads_to(Some("http://[::1]:9000")));
        assert!(auto.signs_uploads_to(Some("http://192.168.1.5:9000")));
        assert!(auto.signs_uploads_to(Some("http://minio.lan:9000")));
        assert!(auto.signs_uploads_to(Some("http://127.0.0.1.evil.com")));
        assert!(auto.signs_uploads_to(Some("http://localhost.evil.com")));
        assert!(auto.signs_uploads_to(Some("http://user@10.0.0.1/")));
        assert!(auto.signs_uploads_to(Some("http://127.0.0.1@10.0.0.1/")));
        assert!(auto.signs_uploads_to(Some("http://[::2]:9000")));
        assert!(auto.signs_uploads_to(Some("127.0.0.1:9000")), "no scheme");
        assert!(auto.signs_uploads_to(Some("ftp://127.0.0.1")));
    }

    #[test]
    fn always_and_never_ignore_the_endpoint() {
        for url in [
            None,
            Some("https://s3.example.com"),
            Some("http://10.0.0.1"),
        ] {
            assert!(PayloadSigning::Always.signs_uploads_to(url));
            assert!(!PayloadSigning::Never.signs_uploads_to(url));
        }
    }

    #[test]
    fn parses_what_it_prints() {
        for setting in [
            PayloadSigning::Auto,
            PayloadSigning::Always,
            PayloadSigning::Never,
        ] {
            assert_eq!(setting.to_string().parse::<PayloadSigning>(), Ok(setting));
        }
        assert!("sometimes".parse::<PayloadSigning>().is_err());
    }
}
