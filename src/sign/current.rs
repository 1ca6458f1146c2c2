//! The keys in use, replaceable while the daemon runs (SIGHUP): readers
//! keep an `Arc` of the keys they last saw and look at one atomic
//! generation number per message, so the hot path takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::signer::Signers;

/// The current signing keys, shared by the signing threads and the shards.
#[derive(Debug, Default)]
pub struct CurrentKeys {
    keys: Mutex<Arc<Signers>>,
    generation: AtomicU64,
}

impl CurrentKeys {
    /// Starts with `keys`.
    pub fn new(keys: Signers) -> CurrentKeys {
        CurrentKeys {
            keys: Mutex::new(Arc::new(keys)),
            generation: AtomicU64::new(1),
        }
    }

    /// Puts `keys` in use for every message signed from now on.
    pub fn replace(&self, keys: Signers) {
        *self.keys.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The keys in use now.
    pub fn get(&self) -> Arc<Signers> {
        Arc::clone(&self.keys.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A reader for one thread.
    pub fn reader(self: &Arc<Self>) -> KeysReader {
        KeysReader {
            seen: self.generation.load(Ordering::Acquire),
            keys: self.get(),
            current: Arc::clone(self),
        }
    }
}

/// One thread's view of [`CurrentKeys`]: refreshed when they change.
#[derive(Debug)]
pub struct KeysReader {
    current: Arc<CurrentKeys>,
    seen: u64,
    keys: Arc<Signers>,
}

impl KeysReader {
    /// The keys in use now (one atomic load when unchanged).
    pub fn keys(&mut self) -> &Signers {
        let now = self.current.generation.load(Ordering::Acquire);
        if now != self.seen {
            self.seen = now;
            self.keys = self.current.get();
        }
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_a_replacement_at_their_next_message() {
        let current = Arc::new(CurrentKeys::new(Signers::default()));
        let mut r = current.reader();
        assert!(r.keys().is_empty());
        let pem =
            crate::sign::keygen::generate(crate::config::DkimAlgorithm::Ed25519Sha256, 0).unwrap();
        let key = crate::sign::PrivateKey::from_pem(pem.as_bytes()).unwrap();
        let cfg =
            toml::from_str("domain = \"a.example\"\nselector = \"s\"\nkey_file = \"k\"\n").unwrap();
        current.replace(Signers::from_keys(vec![(cfg, key)]).unwrap());
        assert!(!r.keys().is_empty());
    }
}
