//! The state of each campaign, kept beside the queue in
//! `spool_dir/campaigns/<ID>.json` and shared in memory by the daemon's
//! threads ([`CampaignRegistry`]).
//!
//! A campaign's file is written only once every slice of it is committed:
//! it is the seal. Slices of a campaign without a file were being accepted
//! when the daemon stopped; they are never sent (the submitter was not told
//! the campaign was accepted) and are dropped at the next start. Pause,
//! resume and cancel rewrite the file (atomically: temporary file, fsync,
//! rename, fsync of the directory) and take effect at once in memory.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::QueueError;

/// Where a campaign stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignState {
    /// Being accepted by this daemon run: its slices wait for the seal.
    Accepting,
    /// Sending.
    Running,
    /// Held: nothing is sent until resumed.
    Paused,
    /// Stopped for good: its unsent recipients are dropped.
    Cancelled,
}

impl CampaignState {
    /// The word shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Accepting => "accepting",
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Cancelled => "cancelled",
        }
    }
}

/// What the daemon knows of one accepted campaign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignInfo {
    /// The campaign ID.
    pub id: u64,
    /// A name for people (the template's file name by default).
    pub name: String,
    /// When it was accepted, microseconds since the epoch.
    pub created_micros: u64,
    /// Its state.
    pub state: CampaignState,
    /// Recipients queued.
    pub recipients: u64,
    /// Rows refused at acceptance (bad address).
    pub refused: u64,
    /// Rows whose address appeared before in the list.
    pub duplicates: u64,
    /// Slices queued.
    pub slices: u64,
    /// Most messages per interval over all shards (`50000/h`), if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Nothing is sent before this time (Unix seconds), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
}

/// The campaigns of this spool, shared by the daemon's threads.
#[derive(Debug, Default)]
pub struct CampaignRegistry {
    dir: PathBuf,
    campaigns: RwLock<HashMap<u64, CampaignInfo>>,
}

impl CampaignRegistry {
    /// Loads every `<ID>.json` of `dir` (created if missing). A file that
    /// cannot be read is reported and skipped: its slices wait, never sent
    /// by mistake.
    pub fn load(dir: &Path) -> Result<Arc<CampaignRegistry>, QueueError> {
        std::fs::create_dir_all(dir).map_err(|e| QueueError::io("mkdir", dir, e))?;
        let mut campaigns = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| QueueError::io("readdir", dir, e))? {
            let entry = entry.map_err(|e| QueueError::io("readdir", dir, e))?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<CampaignInfo>(&b).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(info) => {
                    campaigns.insert(info.id, info);
                }
                Err(e) => {
                    tracing::error!(target: "qmgr", "{}: {e}; this campaign is not sent until the file is repaired", path.display());
                }
            }
        }
        Ok(Arc::new(CampaignRegistry {
            dir: dir.to_path_buf(),
            campaigns: RwLock::new(campaigns),
        }))
    }

    /// The state of campaign `id`; `None` for a campaign never accepted.
    pub fn state(&self, id: u64) -> Option<CampaignState> {
        self.read().get(&id).map(|c| c.state)
    }

    /// A copy of campaign `id`'s information.
    pub fn get(&self, id: u64) -> Option<CampaignInfo> {
        self.read().get(&id).cloned()
    }

    /// Every campaign, oldest first.
    pub fn list(&self) -> Vec<CampaignInfo> {
        let mut all: Vec<CampaignInfo> = self.read().values().cloned().collect();
        all.sort_by_key(|c| (c.created_micros, c.id));
        all
    }

    /// Notes a campaign being accepted (in memory only: nothing on disk
    /// until [`CampaignRegistry::seal`]).
    pub fn begin(&self, info: CampaignInfo) {
        let mut info = info;
        info.state = CampaignState::Accepting;
        self.write().insert(info.id, info);
    }

    /// Forgets a campaign whose acceptance failed.
    pub fn abandon(&self, id: u64) {
        let mut map = self.write();
        if map
            .get(&id)
            .is_some_and(|c| c.state == CampaignState::Accepting)
        {
            map.remove(&id);
        }
    }

    /// Writes the campaign's file (durably) and makes it running.
    pub fn seal(&self, mut info: CampaignInfo) -> Result<(), QueueError> {
        info.state = CampaignState::Running;
        self.save(&info)?;
        self.write().insert(info.id, info);
        Ok(())
    }

    /// Sets campaign `id`'s state (pause, resume, cancel), durably; the
    /// previous state, or `None` when there is no such campaign. A
    /// cancelled campaign stays cancelled.
    pub fn set_state(
        &self,
        id: u64,
        state: CampaignState,
    ) -> Result<Option<CampaignState>, QueueError> {
        let Some(mut info) = self.get(id) else {
            return Ok(None);
        };
        let before = info.state;
        if before == CampaignState::Cancelled || before == CampaignState::Accepting {
            return Ok(Some(before));
        }
        info.state = state;
        self.save(&info)?;
        self.write().insert(id, info);
        Ok(Some(before))
    }

    fn save(&self, info: &CampaignInfo) -> Result<(), QueueError> {
        let path = self.dir.join(format!("{}.json", info.id));
        let tmp = self.dir.join(format!(".{}.json.tmp", info.id));
        let bytes = serde_json::to_vec_pretty(info)
            .map_err(|e| QueueError::io("encode", &path, std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| QueueError::io("create", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_data())
            .map_err(|e| QueueError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| QueueError::io("rename", &path, e))?;
        super::segment::sync_dir(&self.dir)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, CampaignInfo>> {
        // A writer never panics while holding the lock (plain inserts), so
        // a poisoned lock still holds a consistent map.
        self.campaigns.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, CampaignInfo>> {
        self.campaigns.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64) -> CampaignInfo {
        CampaignInfo {
            id,
            name: "t".into(),
            created_micros: id,
            state: CampaignState::Running,
            recipients: 10,
            refused: 1,
            duplicates: 0,
            slices: 1,
            rate: None,
            not_before: None,
        }
    }

    #[test]
    fn seal_pause_cancel_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let reg = CampaignRegistry::load(dir.path()).unwrap();
        reg.begin(info(1));
        assert_eq!(reg.state(1), Some(CampaignState::Accepting));
        reg.begin(info(2));
        reg.abandon(2);
        assert_eq!(reg.state(2), None);
        reg.seal(info(1)).unwrap();
        assert_eq!(
            reg.set_state(1, CampaignState::Paused).unwrap(),
            Some(CampaignState::Running)
        );
        let again = CampaignRegistry::load(dir.path()).unwrap();
        assert_eq!(again.state(1), Some(CampaignState::Paused));
        again.set_state(1, CampaignState::Cancelled).unwrap();
        assert_eq!(
            again.set_state(1, CampaignState::Running).unwrap(),
            Some(CampaignState::Cancelled),
            "cancelled stays cancelled"
        );
        assert_eq!(again.state(1), Some(CampaignState::Cancelled));
        assert_eq!(again.set_state(9, CampaignState::Paused).unwrap(), None);
        // A damaged file is skipped, not guessed.
        std::fs::write(dir.path().join("5.json"), b"{not json").unwrap();
        let third = CampaignRegistry::load(dir.path()).unwrap();
        assert_eq!(third.state(5), None);
        assert_eq!(third.list().len(), 1);
    }
}
