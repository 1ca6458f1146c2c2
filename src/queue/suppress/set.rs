//! The live set in memory: every entry the journal's lines leave, kept
//! small. Entries sit in one vector (48 bytes each plus the address);
//! a hash table of `u32` indexes finds them by (scope, address). Sender
//! domains and reason details are interned, so a million bounces with the
//! same diagnostic store it once. About 100 bytes an entry in all.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::entry::{Entry, Reason, ReasonKind, Scope};
use super::line::Line;

/// The kind byte's flag for "has a campaign".
const HAS_CAMPAIGN: u8 = 0x80;

/// One entry.
struct Slot {
    address: Box<str>,
    added: u64,
    campaign: u64,
    /// Interned sender domain; 0 is global.
    scope: u32,
    /// Interned detail; 0 is none.
    detail: u32,
    /// Index into [`ReasonKind::ALL`], with [`HAS_CAMPAIGN`].
    kind: u8,
}

/// Strings stored once, numbered from 1 (0 is the empty string).
struct Interner {
    table: HashTable<u32>,
    strings: Vec<Box<str>>,
}

impl Interner {
    fn new() -> Interner {
        Interner {
            table: HashTable::new(),
            strings: vec![Box::from("")],
        }
    }

    fn get(&self, hasher: &RandomState, s: &str) -> Option<u32> {
        if s.is_empty() {
            return Some(0);
        }
        let strings = &self.strings;
        self.table
            .find(hasher.hash_one(s), |&i| &*strings[i as usize] == s)
            .copied()
    }

    fn intern(&mut self, hasher: &RandomState, s: &str) -> u32 {
        if let Some(id) = self.get(hasher, s) {
            return id;
        }
        let id = index(self.strings.len());
        self.strings.push(Box::from(s));
        let strings = &self.strings;
        self.table.insert_unique(hasher.hash_one(s), id, |&i| {
            hasher.hash_one(&*strings[i as usize])
        });
        id
    }

    fn resolve(&self, id: u32) -> &str {
        self.strings.get(id as usize).map_or("", |s| s)
    }

    fn heap_bytes(&self) -> usize {
        self.table.capacity() * 5
            + self.strings.capacity() * std::mem::size_of::<Box<str>>()
            + self.strings.iter().map(|s| s.len()).sum::<usize>()
    }
}

/// The live entries.
pub(crate) struct LiveSet {
    hasher: RandomState,
    table: HashTable<u32>,
    slots: Vec<Slot>,
    scopes: Interner,
    details: Interner,
}

impl Default for LiveSet {
    fn default() -> LiveSet {
        LiveSet {
            hasher: RandomState::new(),
            table: HashTable::new(),
            slots: Vec::new(),
            scopes: Interner::new(),
            details: Interner::new(),
        }
    }
}

impl LiveSet {
    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Applies one journal line: an add inserts or replaces, a remove
    /// removes. Returns whether the set changed.
    pub(crate) fn apply(&mut self, line: &Line<'_>) -> bool {
        match line {
            Line::Add {
                scope,
                address,
                added,
                kind,
                campaign,
                detail,
            } => {
                let scope = match scope {
                    None => 0,
                    Some(d) => self.scopes.intern(&self.hasher, d),
                };
                let detail = self.details.intern(&self.hasher, detail);
                let kind_index = ReasonKind::ALL.iter().position(|k| k == kind).unwrap_or(0);
                let slot = Slot {
                    address: Box::from(&**address),
                    added: *added,
                    campaign: campaign.unwrap_or(0),
                    scope,
                    detail,
                    kind: kind_index as u8 | if campaign.is_some() { HAS_CAMPAIGN } else { 0 },
                };
                self.upsert(slot);
                true
            }
            Line::Remove { scope, address, .. } => {
                let scope = match scope {
                    None => Some(0),
                    Some(d) => self.scopes.get(&self.hasher, d),
                };
                scope.is_some_and(|s| self.remove(s, address))
            }
            Line::Comment(_) => false,
        }
    }

    /// The entry for `address` (lower-cased) in `scope` (a lower-cased
    /// sender domain, or `None` for global).
    pub(crate) fn get(&self, scope: Option<&str>, address: &str) -> Option<Entry> {
        let scope = match scope {
            None => 0,
            Some(d) => self.scopes.get(&self.hasher, d)?,
        };
        self.find(scope, address).map(|i| self.entry(i))
    }

    /// The entry at `index` (below [`LiveSet::len`]).
    pub(crate) fn entry(&self, index: u32) -> Entry {
        let s = &self.slots[index as usize];
        let kind = ReasonKind::ALL
            .get((s.kind & !HAS_CAMPAIGN) as usize)
            .copied()
            .unwrap_or(ReasonKind::Manual);
        Entry {
            address: s.address.to_string(),
            scope: match s.scope {
                0 => Scope::Global,
                id => Scope::SenderDomain(self.scopes.resolve(id).to_string()),
            },
            reason: Reason {
                kind,
                detail: self.details.resolve(s.detail).to_string(),
            },
            added: s.added,
            campaign: (s.kind & HAS_CAMPAIGN != 0).then_some(s.campaign),
        }
    }

    /// Every index, ordered by address, then global before domains, then
    /// by domain.
    pub(crate) fn sorted(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..index(self.slots.len())).collect();
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (&self.slots[a as usize], &self.slots[b as usize]);
            a.address.cmp(&b.address).then_with(|| {
                let name = |s: &Slot| (s.scope != 0, self.scopes.resolve(s.scope));
                name(a).cmp(&name(b))
            })
        });
        order
    }

    /// About how many heap bytes the set holds.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.table.capacity() * 5
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.slots.iter().map(|s| s.address.len()).sum::<usize>()
            + self.scopes.heap_bytes()
            + self.details.heap_bytes()
    }

    fn hash(&self, scope: u32, address: &str) -> u64 {
        self.hasher.hash_one((scope, address))
    }

    fn find(&self, scope: u32, address: &str) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(self.hash(scope, address), |&i| {
                let s = &slots[i as usize];
                s.scope == scope && &*s.address == address
            })
            .copied()
    }

    fn upsert(&mut self, slot: Slot) {
        if let Some(i) = self.find(slot.scope, &slot.address) {
            self.slots[i as usize] = slot;
            return;
        }
        let h = self.hash(slot.scope, &slot.address);
        let id = index(self.slots.len());
        self.slots.push(slot);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.table.insert_unique(h, id, |&i| {
            let s = &slots[i as usize];
            hasher.hash_one((s.scope, &*s.address))
        });
    }

    fn remove(&mut self, scope: u32, address: &str) -> bool {
        let h = self.hash(scope, address);
        let slots = &self.slots;
        let Ok(found) = self.table.find_entry(h, |&i| {
            let s = &slots[i as usize];
            s.scope == scope && &*s.address == address
        }) else {
            return false;
        };
        let (i, _) = found.remove();
        let last = index(self.slots.len() - 1);
        self.slots.swap_remove(i as usize);
        if i != last {
            // The last slot moved to `i`: point its table entry there.
            let moved = &self.slots[i as usize];
            let h = self.hash(moved.scope, &moved.address);
            if let Some(p) = self.table.find_mut(h, |&j| j == last) {
                *p = i;
            }
        }
        true
    }
}

/// A slot index as stored in the tables. The set holds fewer than 2^32
/// entries: one needs about 100 bytes, so 2^32 of them would need 400 GB.
fn index(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn add<'a>(scope: Option<&'a str>, address: &'a str, detail: &'a str) -> Line<'a> {
        Line::Add {
            scope: scope.map(Cow::Borrowed),
            address: address.into(),
            added: 10,
            kind: ReasonKind::Bounce,
            campaign: scope.map(|_| 9),
            detail: detail.into(),
        }
    }

    fn remove<'a>(scope: Option<&'a str>, address: &'a str) -> Line<'a> {
        Line::Remove {
            scope: scope.map(Cow::Borrowed),
            address: address.into(),
            at: 11,
        }
    }

    #[test]
    fn adds_removes_and_scopes() {
        let mut set = LiveSet::default();
        assert!(set.apply(&add(None, "a@x.example", "gone")));
        assert!(set.apply(&add(Some("news.example"), "a@x.example", "")));
        assert!(set.apply(&add(Some("shop.example"), "b@x.example", "gone")));
        assert_eq!(set.len(), 3);
        let e = set.get(Some("news.example"), "a@x.example").unwrap();
        assert_eq!(e.scope, Scope::SenderDomain("news.example".into()));
        assert_eq!(e.campaign, Some(9));
        assert_eq!(e.reason, Reason::new(ReasonKind::Bounce, ""));
        let e = set.get(None, "a@x.example").unwrap();
        assert_eq!((e.campaign, e.reason.detail.as_str()), (None, "gone"));
        assert!(set.get(None, "b@x.example").is_none());
        assert!(set.get(Some("other.example"), "a@x.example").is_none());

        // Re-adding replaces; removing what is not there changes nothing.
        assert!(set.apply(&add(None, "a@x.example", "again")));
        assert_eq!(set.len(), 3);
        assert_eq!(set.get(None, "a@x.example").unwrap().reason.detail, "again");
        assert!(!set.apply(&remove(Some("nowhere.example"), "a@x.example")));
        assert!(!set.apply(&remove(None, "b@x.example")));
        assert!(set.apply(&remove(None, "a@x.example")));
        assert!(set.get(None, "a@x.example").is_none());
        assert!(set.get(Some("news.example"), "a@x.example").is_some());
        assert!(set.get(Some("shop.example"), "b@x.example").is_some());
        assert!(!set.apply(&Line::Comment("# x")));
    }

    #[test]
    fn removal_in_the_middle_keeps_every_other_entry_findable() {
        let mut set = LiveSet::default();
        let names: Vec<String> = (0..500).map(|i| format!("u{i}@x.example")).collect();
        for n in &names {
            set.apply(&add(None, n, ""));
        }
        for n in names.iter().step_by(3) {
            assert!(set.apply(&remove(None, n)));
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(set.get(None, n).is_some(), i % 3 != 0, "{n}");
        }
        assert_eq!(set.len(), 333);
        let sorted: Vec<String> = set
            .sorted()
            .into_iter()
            .map(|i| set.entry(i).address)
            .collect();
        let mut expected: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, n)| n.clone())
            .collect();
        expected.sort();
        assert_eq!(sorted, expected);
    }
}
