//! Who is submitting: the login name for a uid, for default senders.

/// The login name of `uid` from `/etc/passwd`, or `None` when not listed.
pub fn login_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let id: u32 = fields.next()?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// The real uid of this process.
pub fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The default envelope sender for `uid`, as Postfix does: the login name
/// (then `$LOGNAME`, `$USER`), qualified later with `@myorigin`.
pub fn default_sender(uid: u32) -> String {
    login_name(uid)
        .or_else(|| std::env::var("LOGNAME").ok())
        .or_else(|| std::env::var("USER").ok())
        .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
        .unwrap_or_else(|| format!("uid{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found() {
        assert_eq!(login_name(0).as_deref(), Some("root"));
        assert!(!default_sender(current_uid()).is_empty());
    }
}
