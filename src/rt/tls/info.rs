//! What is known about an established TLS session, in Postfix's words.

use std::fmt;

use rustls::{CipherSuite, ProtocolVersion};

/// How far the server's certificate was verified, as Postfix reports it
/// at the start of its `TLS connection established` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The chain does not lead to a trusted root (self-signed, unknown CA,
    /// expired, ...).
    Untrusted,
    /// The chain leads to a trusted root, but the certificate is not valid
    /// for the name asked for.
    Trusted,
    /// Chain and name verified.
    Verified,
}

impl Trust {
    /// `Untrusted`, `Trusted` or `Verified`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Untrusted => "Untrusted",
            Trust::Trusted => "Trusted",
            Trust::Verified => "Verified",
        }
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An established TLS session: what Postfix logs about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// The protocol version as Postfix writes it: `TLSv1.3`, `TLSv1.2`.
    pub version: &'static str,
    /// The cipher suite's IANA name, e.g. `TLS_AES_256_GCM_SHA384` or
    /// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`.
    pub cipher: String,
    /// The symmetric key size in bits (128 or 256), when known.
    pub bits: Option<u16>,
    /// How far the server's certificate was verified.
    pub trust: Trust,
    /// A `Verified` certificate was verified for the name of the host
    /// connected to. False where DANE or a certificate name list decided
    /// (they check other names, or none): such a connection does not
    /// prove the host's name to another destination that reuses it.
    pub host_name_verified: bool,
}

impl TlsInfo {
    /// Builds the description from what rustls negotiated.
    pub(crate) fn new(
        version: Option<ProtocolVersion>,
        suite: Option<CipherSuite>,
        trust: Trust,
    ) -> TlsInfo {
        let version = match version {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            Some(ProtocolVersion::TLSv1_1) => "TLSv1.1",
            Some(ProtocolVersion::TLSv1_0) => "TLSv1",
            _ => "TLS",
        };
        let cipher = match suite {
            Some(s) => match s.as_str() {
                // rustls names the TLS 1.3 suites TLS13_*; IANA (and
                // OpenSSL, so Postfix) say TLS_*.
                Some(name) => match name.strip_prefix("TLS13_") {
                    Some(rest) => format!("TLS_{rest}"),
                    None => name.to_string(),
                },
                None => format!("0x{:04x}", u16::from(s)),
            },
            None => "unknown".to_string(),
        };
        let bits = key_bits(&cipher);
        TlsInfo {
            host_name_verified: false,
            version,
            cipher,
            bits,
            trust,
        }
    }

    /// Postfix's line, e.g. `Untrusted TLS connection established to
    /// mx.example.com[192.0.2.1]:25: TLSv1.3 with cipher
    /// TLS_AES_256_GCM_SHA384 (256/256 bits)`. `peer` is the
    /// `host[address]:port` part.
    pub fn log_line(&self, peer: &str) -> String {
        let mut line = format!(
            "{} TLS connection established to {peer}: {} with cipher {}",
            self.trust, self.version, self.cipher
        );
        if let Some(bits) = self.bits {
            line.push_str(&format!(" ({bits}/{bits} bits)"));
        }
        line
    }
}

/// The symmetric key size of a suite, from its name.
fn key_bits(cipher: &str) -> Option<u16> {
    if cipher.contains("AES_128") {
        Some(128)
    } else if cipher.contains("AES_256") || cipher.contains("CHACHA20") {
        Some(256)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_line_and_names() {
        let i = TlsInfo::new(
            Some(ProtocolVersion::TLSv1_3),
            Some(CipherSuite::TLS13_AES_256_GCM_SHA384),
            Trust::Untrusted,
        );
        assert_eq!(
            i.log_line("mx.test[127.0.0.1]:25"),
            "Untrusted TLS connection established to mx.test[127.0.0.1]:25: \
             TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
        );
        let i = TlsInfo::new(
            Some(ProtocolVersion::TLSv1_2),
            Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            Trust::Verified,
        );
        assert_eq!(i.version, "TLSv1.2");
        assert_eq!(i.cipher, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(i.bits, Some(128));
        let i = TlsInfo::new(
            Some(ProtocolVersion::TLSv1_3),
            Some(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
            Trust::Trusted,
        );
        assert_eq!(i.cipher, "TLS_CHACHA20_POLY1305_SHA256");
        assert_eq!(i.bits, Some(256));
        let i = TlsInfo::new(None, Some(CipherSuite::Unknown(0xabcd)), Trust::Trusted);
        assert_eq!(i.bits, None);
        assert_eq!(
            i.log_line("h[::1]:25"),
            "Trusted TLS connection established to h[::1]:25: TLS with cipher 0xabcd"
        );
    }
}
