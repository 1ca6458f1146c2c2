//! `ringmail dkim keygen|record`: make a signing key and show the DNS
//! records to publish (see docs/AUTHENTICATION.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ringmail::config::DkimAlgorithm;
use ringmail::sign::{keygen, PrivateKey};

/// Which algorithm `keygen` makes a key for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// RSA (rsa-sha256): what every receiver verifies.
    Rsa,
    /// Ed25519 (ed25519-sha256, RFC 8463): small and fast; sign with RSA
    /// too (dual signing), as not every receiver verifies it yet.
    Ed25519,
}

/// DKIM key commands.
#[derive(Debug, clap::Subcommand)]
pub enum DkimAction {
    /// Write a new private key (mode 0600) and print its TXT record and the
    /// `[[dkim]]` entry to add.
    Keygen {
        /// The signing domain (`d=`).
        #[arg(long)]
        domain: String,
        /// The selector (`s=`), e.g. s2026.
        #[arg(long)]
        selector: String,
        /// The algorithm.
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: KeyAlgorithm,
        /// RSA key size in bits (2048 to 4096).
        #[arg(long, default_value_t = 2048)]
        bits: usize,
        /// Where to write the key (default: SELECTOR.DOMAIN.pem here); an
        /// existing file is never replaced.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the TXT record of every configured key.
    Record {
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

/// Runs the action: exit 0, or 1 with a message.
pub fn run(action: DkimAction) -> ExitCode {
    match run_action(action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmail: fatal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_action(action: DkimAction) -> anyhow::Result<()> {
    match action {
        DkimAction::Keygen {
            domain,
            selector,
            algorithm,
            bits,
            out,
        } => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            let alg = match algorithm {
                KeyAlgorithm::Rsa => DkimAlgorithm::RsaSha256,
                KeyAlgorithm::Ed25519 => DkimAlgorithm::Ed25519Sha256,
            };
            // Checked like a configuration entry before any key is made.
            let entry = ringmail::config::DkimKeyConfig {
                domain: domain.clone(),
                selector: selector.clone(),
                key_file: out
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(format!("{selector}.{domain}.pem"))),
                algorithm: Some(alg),
                headers: None,
                oversign_headers: None,
                canonicalization: Default::default(),
                from_domains: None,
                expire: 0,
            };
            entry.check().map_err(|e| anyhow::anyhow!(e))?;
            let pem = keygen::generate(alg, bits)?;
            let key = keygen::write_key(&entry.key_file, &pem)?;
            let path = std::fs::canonicalize(&entry.key_file).unwrap_or(entry.key_file.clone());
            println!("wrote {} (mode 0600)", path.display());
            println!();
            println!("publish this TXT record:");
            println!(
                "{}",
                keygen::zone_line(&domain, &selector, &key.dns_record())
            );
            println!();
            println!("and add to ringmail.toml:");
            println!("[[dkim]]");
            println!("domain = \"{domain}\"");
            println!("selector = \"{selector}\"");
            println!("key_file = \"{}\"", path.display());
            println!("algorithm = \"{}\"", alg.as_str());
            Ok(())
        }
        DkimAction::Record { config } => {
            let config = super::load(config)?;
            if config.dkim.is_empty() {
                anyhow::bail!("no [[dkim]] key is configured");
            }
            for d in &config.dkim {
                let key = PrivateKey::load(&d.key_file)
                    .with_context(|| format!("{}/{}", d.domain, d.selector))?;
                println!(
                    "{}",
                    keygen::zone_line(&d.domain, &d.selector, &key.dns_record())
                );
            }
            Ok(())
        }
    }
}
