//! A directory mode written as `chmod` takes it, in octal digits: `"1770"`.

use serde::{Deserialize, Serialize};

/// A mode of up to 12 bits (permissions, sticky, set-gid, set-uid), written
/// in the configuration as a string of octal digits (`"1770"`), so that a
/// number is never read as decimal by mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DirMode(u32);

impl DirMode {
    /// The mode with these bits; only the low 12 are kept.
    pub const fn new(bits: u32) -> DirMode {
        DirMode(bits & 0o7777)
    }

    /// The mode bits, for `chmod`.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl TryFrom<String> for DirMode {
    type Error = String;

    fn try_from(text: String) -> Result<DirMode, String> {
        let digits = text.trim();
        if digits.is_empty()
            || digits.len() > 4
            || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            return Err(format!(
                "expected one to four octal digits as chmod takes them, such as \"1770\", got {text:?}"
            ));
        }
        let bits = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
        if bits & 0o700 != 0o700 {
            return Err(format!(
                "{text:?} does not give the directory's owner rwx (the daemon reads and removes files there)"
            ));
        }
        Ok(DirMode(bits))
    }
}

impl From<DirMode> for String {
    fn from(mode: DirMode) -> String {
        format!("{:04o}", mode.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_digits_are_read_as_octal() {
        assert_eq!(
            DirMode::try_from("1770".to_string()),
            Ok(DirMode::new(0o1770))
        );
        assert_eq!(
            DirMode::try_from("770".to_string()),
            Ok(DirMode::new(0o770))
        );
        assert_eq!(String::from(DirMode::new(0o770)), "0770");
        for bad in ["", "17700", "1778", "0o1770", "rwx", "0070"] {
            assert!(DirMode::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
