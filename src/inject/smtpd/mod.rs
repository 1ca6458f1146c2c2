//! The SMTP listener's side of injection.

pub mod passwd;
