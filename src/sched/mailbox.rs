//! A shard's mailbox: requests from other threads that only the shard may
//! carry out: queue commands from the admin socket and the HTTP API
//! (only the shard owns its queue; each is answered on the channel it
//! carries, after a commit), and tasks to run on the shard's thread (SMTP
//! sessions placed there by the listener). The shard drains it at each
//! turn of its loop.

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
    /// Run a task on the shard's thread, beside the shard loop (an SMTP
    /// session, so that its messages reach the shard's group commit and
    /// their acknowledgements come back without crossing threads).
    Run(crate::rt::LocalTask),
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
