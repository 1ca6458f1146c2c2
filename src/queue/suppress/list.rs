//! [`SuppressionList`]: the live set loaded from the journal, kept up to
//! date by [`SuppressionList::refresh`], and changed durably.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::compact::{self, Compacted};
use super::entry::{self, lookup_key, normalize_address, Entry, Scope};
use super::journal::{Journal, Start};
use super::line;
use super::set::LiveSet;
use super::{Notice, SuppressError};

/// Journal lines beyond twice the live entries that a writer lets stand
/// before it compacts.
pub const COMPACT_SLACK: u64 = 10_000;

/// Notices kept between two [`SuppressionList::take_notices`].
const MAX_NOTICES: usize = 1000;

/// One change for [`SuppressionList::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Suppress this entry's address in its scope.
    Add(Entry),
    /// Remove the entry for `address` in `scope`.
    Remove {
        /// The address (any case).
        address: String,
        /// The scope.
        scope: Scope,
    },
}

/// What a change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Added.
    Added,
    /// The address was suppressed in that scope already: this entry,
    /// unchanged (nothing was written).
    AlreadyPresent(Entry),
    /// Removed.
    Removed,
    /// There was no such entry (nothing was written).
    NotPresent,
}

/// What a refresh did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refresh {
    /// The journal was read from the start (it was created, replaced by
    /// a compaction, or removed).
    pub reloaded: bool,
    /// Journal lines read.
    pub lines: u64,
    /// Entries now.
    pub entries: usize,
}

/// The suppression list of a spool: `<spool_dir>/suppress/journal`.
///
/// Reads (`is_suppressed`, `list`) use the set in memory; `refresh` reads
/// what other processes appended. Every change locks the journal, reads
/// what is new, appends and fdatasyncs before it returns, so a change that
/// returned `Ok` survives a crash of the process and the machine.
pub struct SuppressionList {
    journal: Journal,
    set: Arc<RwLock<LiveSet>>,
    notices: Vec<Notice>,
    dropped_notices: u64,
    compact_slack: u64,
}

impl SuppressionList {
    /// Loads the list of the spool at `spool_dir`. No journal is an empty
    /// list; nothing is created until the first change. Damaged lines
    /// are skipped (see [`SuppressionList::take_notices`]).
    pub fn open(spool_dir: &Path) -> Result<SuppressionList, SuppressError> {
        let mut list = SuppressionList {
            journal: Journal::new(&crate::spool::Spool::new(spool_dir).suppress()),
            set: Arc::default(),
            notices: Vec::new(),
            dropped_notices: 0,
            compact_slack: COMPACT_SLACK,
        };
        list.refresh()?;
        Ok(list)
    }

    /// The journal's path.
    pub fn journal_path(&self) -> &Path {
        self.journal.path()
    }

    /// Lines in the journal as last read.
    pub fn journal_lines(&self) -> u64 {
        self.journal.lines()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        read(&self.set).len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// About how many bytes of memory the entries take.
    pub fn approx_heap_bytes(&self) -> usize {
        read(&self.set).heap_bytes()
    }

    /// The entry that suppresses mail to `address` from `sender_domain`
    /// (an empty domain checks the global scope only): the global entry
    /// if any, else that domain's. Both compared lower-cased.
    pub fn is_suppressed(&self, address: &str, sender_domain: &str) -> Option<Entry> {
        check(&read(&self.set), address, sender_domain)
    }

    /// Reads the lines appended since the last read, by this or another
    /// process, or the whole journal again when it was replaced.
    pub fn refresh(&mut self) -> Result<Refresh, SuppressError> {
        let start = self.journal.poll()?;
        self.catch_up(start)
    }

    /// Suppresses `entry.address` in `entry.scope`; nothing is written when
    /// it is already (the entry there is returned).
    pub fn add(&mut self, entry: Entry) -> Result<Outcome, SuppressError> {
        let mut out = self.apply(&[Change::Add(entry)])?;
        Ok(out.pop().unwrap_or(Outcome::NotPresent))
    }

    /// Removes the entry for `address` in `scope`; returns whether there
    /// was one.
    pub fn remove(&mut self, address: &str, scope: &Scope) -> Result<bool, SuppressError> {
        let change = Change::Remove {
            address: address.to_string(),
            scope: scope.clone(),
        };
        Ok(self.apply(&[change])? == [Outcome::Removed])
    }

    /// Makes `changes` in order with one lock and one fdatasync, and
    /// returns their outcomes. Every address and scope is checked first:
    /// one bad address changes nothing.
    pub fn apply(&mut self, changes: &[Change]) -> Result<Vec<Outcome>, SuppressError> {
        let changes = changes
            .iter()
            .map(checked)
            .collect::<Result<Vec<Change>, SuppressError>>()?;
        let only_removes = changes.iter().all(|c| matches!(c, Change::Remove { .. }));
        if only_removes && !self.journal.path().exists() {
            // Nothing to remove from, and no file to create for it.
            return Ok(vec![Outcome::NotPresent; changes.len()]);
        }
        let start = self.journal.lock()?;
        let result = self.apply_locked(start, &changes);
        self.journal.unlock();
        self.trim_notices();
        result
    }

    /// Rewrites the journal as the live set (see `compact.rs`).
    pub fn compact(&mut self) -> Result<Compacted, SuppressError> {
        let start = self.journal.lock()?;
        let result = self.catch_up(start).and_then(|_| {
            let set = read(&self.set);
            compact::compact(&mut self.journal, &set)
        });
        self.journal.unlock();
        result
    }

    /// Every entry, ordered by address. The set is read-locked until the
    /// listing is dropped.
    pub fn list(&self) -> Listing<'_> {
        let set = read(&self.set);
        let order = set.sorted();
        Listing { set, order }
    }

    /// The notices since the last call: damaged lines, torn tails,
    /// compactions.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        let mut out = std::mem::take(&mut self.notices);
        if self.dropped_notices > 0 {
            out.push(Notice::More(std::mem::take(&mut self.dropped_notices)));
        }
        out
    }

    /// Sets how many journal lines beyond twice the live entries are let
    /// stand before a writer compacts (default [`COMPACT_SLACK`]).
    pub fn set_compact_slack(&mut self, lines: u64) {
        self.compact_slack = lines;
    }

    /// The set, for [`super::SharedSuppressions`].
    pub(crate) fn shared_set(&self) -> Arc<RwLock<LiveSet>> {
        Arc::clone(&self.set)
    }

    fn catch_up(&mut self, start: Start) -> Result<Refresh, SuppressError> {
        let before = match start {
            Start::Fresh => 0,
            Start::Continue => self.journal.lines(),
        };
        match start {
            Start::Fresh => {
                let mut fresh = LiveSet::default();
                let read = self.journal.read(&mut self.notices, |l| {
                    fresh.apply(l);
                });
                if let Err(e) = read {
                    // Keep the old set; read the file from the start next time.
                    self.journal.invalidate();
                    return Err(e);
                }
                *write(&self.set) = fresh;
            }
            Start::Continue if self.journal.has_more()? => {
                let mut set = write(&self.set);
                let read = self.journal.read(&mut self.notices, |l| {
                    set.apply(l);
                });
                if let Err(e) = read {
                    // Read the whole file again next time, into a new set.
                    self.journal.invalidate();
                    return Err(e);
                }
            }
            Start::Continue => {}
        }
        self.trim_notices();
        Ok(Refresh {
            reloaded: start == Start::Fresh,
            lines: self.journal.lines() - before,
            entries: self.len(),
        })
    }

    fn apply_locked(
        &mut self,
        start: Start,
        changes: &[Change],
    ) -> Result<Vec<Outcome>, SuppressError> {
        self.catch_up(start)?;
        let now = entry::unix_now();
        let mut buf = Vec::new();
        let mut lines = 0u64;
        let mut outcomes = Vec::with_capacity(changes.len());
        {
            let set = read(&self.set);
            // The state after the earlier changes of this batch.
            let mut pending: HashMap<(&Scope, &str), Option<&Entry>> = HashMap::new();
            for change in changes {
                let (scope, address) = match change {
                    Change::Add(e) => (&e.scope, e.address.as_str()),
                    Change::Remove { address, scope } => (scope, address.as_str()),
                };
                let current = match pending.get(&(scope, address)) {
                    Some(state) => state.cloned(),
                    None => set.get(scope.domain(), address),
                };
                let outcome = match (change, current) {
                    (Change::Add(_), Some(existing)) => Outcome::AlreadyPresent(existing),
                    (Change::Add(e), None) => {
                        line::encode_add(e, &mut buf);
                        pending.insert((scope, address), Some(e));
                        Outcome::Added
                    }
                    (Change::Remove { .. }, None) => Outcome::NotPresent,
                    (Change::Remove { .. }, Some(_)) => {
                        line::encode_remove(scope, address, now, &mut buf);
                        pending.insert((scope, address), None);
                        Outcome::Removed
                    }
                };
                if matches!(outcome, Outcome::Added | Outcome::Removed) {
                    lines += 1;
                }
                outcomes.push(outcome);
            }
        }
        if !buf.is_empty() {
            self.journal.append(&buf, lines, &mut self.notices)?;
            // Applied from the lines just written, as a reload would.
            let mut set = write(&self.set);
            for l in buf.split(|&b| b == b'\n') {
                if let Ok(l) = line::decode(l) {
                    set.apply(&l);
                }
            }
        }
        self.maybe_compact();
        Ok(outcomes)
    }

    /// Compacts when the journal has grown past its slack (lock held).
    fn maybe_compact(&mut self) {
        let live = self.len() as u64;
        if self.journal.lines() <= live.saturating_mul(2).saturating_add(self.compact_slack) {
            return;
        }
        let set = read(&self.set);
        let notice = match compact::compact(&mut self.journal, &set) {
            Ok(c) => Notice::Compacted(c),
            Err(e) => Notice::CompactFailed(e.to_string()),
        };
        drop(set);
        self.notices.push(notice);
    }

    fn trim_notices(&mut self) {
        if self.notices.len() > MAX_NOTICES {
            self.dropped_notices += (self.notices.len() - MAX_NOTICES) as u64;
            self.notices.truncate(MAX_NOTICES);
        }
    }
}

/// Every entry of a list, ordered by address (then global first).
pub struct Listing<'a> {
    set: RwLockReadGuard<'a, LiveSet>,
    order: Vec<u32>,
}

impl Listing<'_> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        self.order.iter().map(|&i| self.set.entry(i))
    }
}

/// The check shared by [`SuppressionList`] and [`super::SharedSuppressions`].
pub(crate) fn check(set: &LiveSet, address: &str, sender_domain: &str) -> Option<Entry> {
    let key = lookup_key(address);
    set.get(None, &key).or_else(|| {
        let domain = sender_domain.trim();
        let domain = entry::lower(domain.strip_prefix('@').unwrap_or(domain));
        if domain.is_empty() {
            None
        } else {
            set.get(Some(&domain), &key)
        }
    })
}

/// The read guard. The set changes only by whole journal lines
/// ([`LiveSet::apply`] does not panic), so a lock poisoned by a panic
/// elsewhere still guards a usable set.
pub(crate) fn read(set: &RwLock<LiveSet>) -> RwLockReadGuard<'_, LiveSet> {
    set.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(set: &RwLock<LiveSet>) -> RwLockWriteGuard<'_, LiveSet> {
    set.write().unwrap_or_else(PoisonError::into_inner)
}

/// `change` with its address checked and lower-cased, and its scope's
/// domain checked.
fn checked(change: &Change) -> Result<Change, SuppressError> {
    let scope = |s: &Scope| match s {
        Scope::Global => Ok(Scope::Global),
        Scope::SenderDomain(d) if d.trim().is_empty() => Err(SuppressError::BadScope {
            scope: d.clone(),
            reason: "empty",
        }),
        Scope::SenderDomain(d) => Scope::parse(d),
    };
    Ok(match change {
        Change::Add(e) => Change::Add(Entry {
            address: normalize_address(&e.address)?,
            scope: scope(&e.scope)?,
            ..e.clone()
        }),
        Change::Remove { address, scope: s } => Change::Remove {
            address: lookup_key(address).into_owned(),
            scope: scope(s)?,
        },
    })
}
