//! A shard's mailbox: requests from other threads (the admin socket, the
//! HTTP API) that only the shard may carry out, because only it owns its
//! queue. The shard drains it between commit batches and answers each
//! request on the channel it carries, after a commit.

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::Notify;

use crate::model::queue_command::{QueueCommand, QueueCommandReport};
use crate::model::QueueId;

/// A request for one shard.
pub enum ShardRequest {
    /// Carry out an administrative queue command and report what it did,
    /// once the change is durable.
    Queue {
        /// The command.
        command: QueueCommand,
        /// Its selector's parsed queue IDs.
        ids: Vec<QueueId>,
        /// Where the report goes.
        reply: Sender<QueueCommandReport>,
    },
}

/// The mailbox of one shard: any thread sends, the shard receives.
pub struct ShardMailbox {
    tx: Sender<ShardRequest>,
    rx: Receiver<ShardRequest>,
    wake: Notify,
}

impl Default for ShardMailbox {
    fn default() -> Self {
        ShardMailbox::new()
    }
}

impl ShardMailbox {
    /// An empty mailbox.
    pub fn new() -> ShardMailbox {
        let (tx, rx) = crossbeam_channel::unbounded();
        ShardMailbox {
            tx,
            rx,
            wake: Notify::new(),
        }
    }

    /// Leaves `request` for the shard and wakes it.
    pub fn send(&self, request: ShardRequest) {
        // Cannot fail: the mailbox holds its own receiver.
        let _ = self.tx.send(request);
        self.wake.notify_one();
    }

    /// The next waiting request, if any.
    pub fn try_recv(&self) -> Option<ShardRequest> {
        self.rx.try_recv().ok()
    }

    /// Resolves when a request was sent (a request sent before the wait
    /// is not missed: the wake-up is stored).
    pub async fn wait(&self) {
        self.wake.notified().await;
    }
}
