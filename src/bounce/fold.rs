//! Line shaping shared by the notice's parts: control characters out,
//! words wrapped so that no line exceeds the 998-octet limit (RFC 5322
//! 2.1.1), header-style fields folded at blanks.

/// Preferred longest line of generated text (RFC 5322 2.1.1 "SHOULD").
pub(super) const FOLD_AT: usize = 78;

/// Longest piece of a single word put on one line. Longer words are cut
/// (on a character boundary) so that a line, with its indent or field name
/// in front, stays well below 998 octets.
const MAX_PIECE: usize = 900;

/// `text` on one line: every control character (CR, LF, TAB, NUL, DEL,
/// the C1 controls) becomes a space, so nothing from outside can start a
/// line or a field of its own.
pub(super) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` with every non-ASCII character replaced by `?`, for the parts
/// that must stay 7-bit.
pub(super) fn ascii_only(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect()
}

/// Splits `text` into lines of at most `width` octets where the words
/// allow it, breaking at spaces. Runs of spaces count as one. The first
/// line starts with the first word; each later line starts with `indent`.
/// A word longer than [`MAX_PIECE`] octets is cut into pieces (which the
/// result separates as if they were words), so every line is at most
/// `indent.len() + MAX_PIECE` octets long. Empty or blank text gives no
/// lines.
pub(super) fn wrap(text: &str, width: usize, indent: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut has_word = false;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        for piece in pieces(word, MAX_PIECE) {
            if has_word && line.len() + 1 + piece.len() > width {
                lines.push(std::mem::replace(&mut line, indent.to_string()));
                has_word = false;
            }
            if has_word {
                line.push(' ');
            }
            line.push_str(piece);
            has_word = true;
        }
    }
    if has_word {
        lines.push(line);
    }
    lines
}

/// The field `name: value` with its CRLF, folded (a CRLF put before a
/// space) where a line would pass [`FOLD_AT`] octets. `value` must be on
/// one line (see [`one_line`]). Unfolding gives the value back with runs of
/// spaces reduced to one, except where a word longer than 900 octets had
/// to be cut: a space appears at each cut.
pub(super) fn field(name: &str, value: &str) -> String {
    let text = format!("{name}: {value}");
    let mut out = String::with_capacity(text.len() + 8);
    for line in wrap(&text, FOLD_AT, " ") {
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

/// `word` cut into pieces of at most `max` octets, never inside a
/// character.
fn pieces(word: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = word;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = rest.len().min(max);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            // Only when `max` is smaller than the first character: take
            // that character whole, so the loop always advances.
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_spaces() {
        assert_eq!(one_line("a\r\nb\tc\0d\u{85}e"), "a  b c d e");
        assert_eq!(ascii_only("grüße"), "gr??e");
    }

    #[test]
    fn wraps_at_spaces_with_indent() {
        let lines = wrap("aaa bbb  ccc ddd", 8, "  ");
        assert_eq!(lines, vec!["aaa bbb", "  ccc", "  ddd"]);
        assert!(wrap("   ", 10, " ").is_empty());
        assert_eq!(wrap("one", 1, " "), vec!["one"]);
    }

    #[test]
    fn long_words_are_cut_on_character_boundaries() {
        let word = "ü".repeat(1000); // 2000 octets
        let lines = wrap(&word, FOLD_AT, "    ");
        assert!(lines.len() >= 3);
        assert!(lines.iter().all(|l| l.len() <= 904), "{lines:?}");
        let joined: String = lines.iter().map(|l| l.trim_start()).collect();
        assert_eq!(joined, word);
    }

    #[test]
    fn fields_fold_before_a_space_and_unfold_to_the_value() {
        let value = "smtp; 550 5.1.1 <someone@example.org>: Recipient address rejected: User unknown in virtual mailbox table";
        let f = field("Diagnostic-Code", value);
        assert!(f.ends_with("\r\n"));
        assert!(f.lines().all(|l| l.len() <= FOLD_AT), "{f}");
        assert!(f.lines().skip(1).all(|l| l.starts_with(' ')), "{f}");
        let unfolded = f.trim_end().replace("\r\n", "");
        assert_eq!(unfolded, format!("Diagnostic-Code: {value}"));
    }
}
