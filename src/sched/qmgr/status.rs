//! Writing recipients' statuses to the queue segments.

use crate::model::{QueueId, RcptStatus};
use crate::queue::Store;

/// Writes the statuses set since the last call to the segment files, where
/// a killed daemon does not lose them (one write for all of them: call it
/// after a loop of [`set_final_status`]).
pub(super) fn write_statuses(store: &mut Store) {
    if let Err(e) = store.flush_statuses() {
        tracing::error!(target: "qmgr", "cannot record delivery statuses: {e}");
    }
}

/// Sets a recipient's final status (written by [`write_statuses`]); logs
/// `removed` when that was the message's last live recipient.
pub(super) fn set_final_status(store: &mut Store, id: QueueId, rcpt: u32, status: RcptStatus) {
    match store.set_status(id, rcpt as usize, status) {
        Ok(true) => crate::info_line!(target: "qmgr", "{id}: removed"),
        Ok(false) => {}
        Err(e) => tracing::error!(target: "qmgr", "{id}: cannot record delivery status: {e}"),
    }
}
