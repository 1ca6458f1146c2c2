//! What the session tells its driver: why `feed` stopped, what it waits
//! for, and its counts.

/// Why [`Session::feed`](super::Session::feed) returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Everything usable was consumed: write the output, read more, and
    /// offer the unconsumed bytes again with it.
    NeedInput,
    /// A message is complete: see [`Session::pending_message`](super::Session::pending_message) (or
    /// [`Session::take_content`](super::Session::take_content)), store it, answer with
    /// [`Session::finish_message`](super::Session::finish_message), then feed the rest.
    Message,
    /// AUTH credentials are complete: check [`Session::pending_auth`](super::Session::pending_auth) (it
    /// may take time; delay the answer after failures if you like), answer
    /// with [`Session::auth_result`](super::Session::auth_result), then feed the rest.
    Auth,
    /// STARTTLS was accepted: write the output (the `220`), discard all
    /// unconsumed and unread input (RFC 3207 section 6), run the TLS
    /// handshake, call [`Session::tls_started`](super::Session::tls_started) and read on over TLS. If
    /// the handshake fails, close.
    StartTls,
    /// Write the output, then close the connection.
    Close,
}

/// What the session waits for, so the driver can pick a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// [`Session::greeting`](super::Session::greeting) was not called yet.
    Greeting,
    /// A command.
    Command,
    /// Message data after DATA or BDAT.
    Data,
    /// A response in an AUTH exchange.
    AuthResponse,
    /// The driver: a message or credentials to answer, a TLS handshake.
    Driver,
    /// Nothing: the session is over.
    Closed,
}

/// Counts of one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Replies written (a multi-line reply counts once), greeting included.
    pub replies: u64,
    /// Error replies (4xx, 5xx) caused by the client, toward the hard
    /// error limit.
    pub errors: u32,
    /// Failed AUTH exchanges (bad credentials, cancelled, undecodable).
    pub auth_failures: u32,
    /// Messages accepted (finished with a queue ID).
    pub messages: u32,
    /// Messages refused after their data: too big, refused by the policy,
    /// not stored.
    pub messages_refused: u32,
    /// Commands refused as pipelined after the end of a message (with
    /// `refuse_pipelined_after_data`).
    pub pipelined_after_data: u32,
    /// Bare LFs taken as CRLF ([`LineEnds::Normalize`](super::LineEnds::Normalize)), in commands and
    /// data.
    pub bare_line_ends: u32,
    /// The client talked before the greeting.
    pub pregreet: bool,
}
