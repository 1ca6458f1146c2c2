//! A campaign template compiled once (minijinja) and rendered per
//! recipient into a whole message: merge fields in header fields and text
//! parts (HTML parts escaped), each text part encoded again after
//! rendering, and the fields a campaign message always carries: its own
//! Message-ID and Date, `To:` when the template has none, and the RFC 2369
//! / RFC 8058 unsubscribe fields. The envelope sender is the recipient's
//! VERP address, so a bounce names the recipient.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use super::encode::{crlf_lines, header_field, text_body};
use super::mime::{parse_message, Body, Header, Part};
use super::recipients::RecipientRow;
use super::token::TokenKey;
use super::ComposeError;

/// Header fields of the template that the campaign writes itself (or, for
/// Bcc, never sends).
const REPLACED_FIELDS: [&str; 7] = [
    "message-id",
    "date",
    "return-path",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "bcc",
    "mime-version",
];

/// Who the campaign is from and where its replies go.
#[derive(Clone, Debug)]
pub struct TemplateOptions {
    /// The campaign ID (in tokens and Message-IDs).
    pub campaign: u64,
    /// `From:` when the template has none.
    pub from: Option<String>,
    /// Domain of the VERP envelope senders (`bounces+TOKEN@domain`) and of
    /// the mailto unsubscribe address; default: the From: domain.
    pub bounce_domain: Option<String>,
    /// Base of the one-click unsubscribe URL (`BASE/u/TOKEN`), e.g.
    /// `https://news.example.com`.
    pub unsubscribe_base: Option<String>,
}

/// What a recipient's message is rendered with.
#[derive(Clone, Copy, Debug)]
pub struct RenderContext<'a> {
    /// The recipient's index in the list (0-based; in its tokens).
    pub index: u32,
    /// The recipient's row.
    pub row: &'a RecipientRow,
    /// When (for the Date field), and a unique part of the Message-ID.
    pub now: chrono::DateTime<chrono::Local>,
}

/// One recipient's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The VERP envelope sender.
    pub sender: String,
    /// The envelope recipient.
    pub recipient: String,
    /// The Message-ID, without angle brackets.
    pub message_id: String,
    /// The whole message, CRLF line ends (not dot-stuffed).
    pub message: Vec<u8>,
}

/// A compiled template.
pub struct CampaignTemplate {
    env: Environment<'static>,
    root: Node,
    from_domain: String,
    bounce_domain: String,
    unsubscribe_base: Option<String>,
    campaign: u64,
    has_to: bool,
    extra_from: Option<String>,
    /// Merge fields the template uses (not `email` or `unsubscribe_url`).
    fields_used: std::collections::BTreeSet<String>,
}

/// Names the templates may use that are not merge fields: minijinja's
/// global functions and the fields every recipient has.
const NOT_FIELDS: [&str; 8] = [
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "self",
    "email",
    "unsubscribe_url",
];

/// The compiled tree: which pieces are templates (by name in `env`).
enum Node {
    Part {
        headers: Vec<HeaderNode>,
        body: BodyNode,
    },
}

enum HeaderNode {
    Fixed(Header),
    Template { name: String, template: String },
}

enum BodyNode {
    Multipart { boundary: String, parts: Vec<Node> },
    Text { subtype: String, template: String },
    Opaque(Vec<u8>),
}

/// True when `s` holds template syntax.
fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

impl CampaignTemplate {
    /// Parses and compiles `bytes` (a whole message, LF or CRLF).
    pub fn compile(bytes: &[u8], opts: &TemplateOptions) -> Result<CampaignTemplate, ComposeError> {
        let part = parse_message(bytes)?;
        let from_header = part
            .header("From")
            .map(str::to_string)
            .or_else(|| opts.from.clone());
        let Some(from_header) = from_header else {
            return Err(ComposeError::Template(
                "no From: field in the template and no --from given".into(),
            ));
        };
        let from_domain = domain_of(&from_header).ok_or_else(|| {
            ComposeError::Template(format!("cannot find a domain in From: {from_header:?}"))
        })?;
        let has_to = part.header("To").is_some();
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        let mut counter = 0usize;
        let root = compile_part(&mut env, part, &mut counter, "message")?;
        let mut used = std::collections::BTreeSet::new();
        for (_, t) in env.templates() {
            used.extend(t.undeclared_variables(false));
        }
        if used.contains("unsubscribe_url") && opts.unsubscribe_base.is_none() {
            return Err(ComposeError::Template(
                "the template uses {{ unsubscribe_url }} but no unsubscribe base URL was given (--unsubscribe)"
                    .into(),
            ));
        }
        let fields_used = used
            .into_iter()
            .filter(|v| !NOT_FIELDS.contains(&v.as_str()))
            .collect();
        let bounce_domain = opts
            .bounce_domain
            .clone()
            .unwrap_or_else(|| from_domain.clone());
        Ok(CampaignTemplate {
            env,
            root,
            from_domain,
            bounce_domain,
            unsubscribe_base: opts
                .unsubscribe_base
                .as_ref()
                .map(|b| b.trim_end_matches('/').to_string()),
            campaign: opts.campaign,
            has_to,
            extra_from: if has_from(bytes) {
                None
            } else {
                opts.from.clone()
            },
            fields_used,
        })
    }

    /// The merge fields the template uses, besides `email` and
    /// `unsubscribe_url`.
    pub fn fields_used(&self) -> impl Iterator<Item = &str> {
        self.fields_used.iter().map(String::as_str)
    }

    /// Checks that every merge field the template uses is a column of the
    /// list (`columns`, without `email`): the campaign is refused as a
    /// whole otherwise, before anything is queued.
    pub fn check_columns(&self, columns: &[String]) -> Result<(), ComposeError> {
        let missing: Vec<&str> = self
            .fields_used()
            .filter(|f| !columns.iter().any(|c| c == f))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ComposeError::Template(format!(
            "the template uses {} but the list has no such column (its columns: email{}{})",
            missing
                .iter()
                .map(|m| format!("{{{{ {m} }}}}"))
                .collect::<Vec<_>>()
                .join(", "),
            if columns.is_empty() { "" } else { ", " },
            columns.join(", ")
        )))
    }

    /// The From: domain (the scope a per-domain suppression applies to).
    pub fn from_domain(&self) -> &str {
        &self.from_domain
    }

    /// The domain VERP and mailto unsubscribe addresses use.
    pub fn bounce_domain(&self) -> &str {
        &self.bounce_domain
    }

    /// Renders the message of one recipient. An `Err` concerns this
    /// recipient only ([`ComposeError::Render`]).
    pub fn render(&self, ctx: RenderContext<'_>, key: &TokenKey) -> Result<Rendered, ComposeError> {
        let token = key.token(self.campaign, ctx.index);
        let unsubscribe_url = self
            .unsubscribe_base
            .as_ref()
            .map(|b| format!("{b}/u/{token}"));
        let mailto = format!("unsubscribe+{token}@{}", self.bounce_domain);
        let mut vars: BTreeMap<&str, Value> = BTreeMap::new();
        for (k, v) in &ctx.row.fields {
            vars.insert(k.as_str(), Value::from(v.as_str()));
        }
        vars.insert("email", Value::from(ctx.row.email.as_str()));
        if let Some(u) = &unsubscribe_url {
            // Ours and URL-safe (base from the sender, token base32): not
            // escaped in HTML, so href="{{ unsubscribe_url }}" stays readable.
            vars.insert("unsubscribe_url", Value::from_safe_string(u.clone()));
        }
        let message_id = format!(
            "{}.{}.{}@{}",
            self.campaign,
            ctx.index,
            ctx.now.timestamp_micros(),
            self.from_domain
        );
        let mut out = Vec::with_capacity(4096);
        // The fields the campaign writes, first.
        let mut top = String::new();
        top.push_str(&header_field(
            "Date",
            &crate::cleanup::date::rfc5322_date(&ctx.now),
        ));
        top.push_str(&header_field("Message-ID", &format!("<{message_id}>")));
        if let Some(from) = &self.extra_from {
            top.push_str(&header_field("From", from));
        }
        if !self.has_to {
            top.push_str(&header_field("To", &format!("<{}>", ctx.row.email)));
        }
        let list = match &unsubscribe_url {
            Some(u) => format!("<{u}>, <mailto:{mailto}>"),
            None => format!("<mailto:{mailto}>"),
        };
        top.push_str(&header_field("List-Unsubscribe", &list));
        if unsubscribe_url.is_some() {
            top.push_str(&header_field(
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click",
            ));
        }
        top.push_str("MIME-Version: 1.0\r\n");
        out.extend_from_slice(top.as_bytes());
        self.render_node(&self.root, &vars, &mut out, true)?;
        Ok(Rendered {
            sender: format!("bounces+{token}@{}", self.bounce_domain),
            recipient: ctx.row.email.clone(),
            message_id,
            message: out,
        })
    }

    fn render_node(
        &self,
        node: &Node,
        vars: &BTreeMap<&str, Value>,
        out: &mut Vec<u8>,
        top: bool,
    ) -> Result<(), ComposeError> {
        let Node::Part { headers, body } = node;
        let text = match body {
            BodyNode::Text { subtype, template } => Some((subtype, self.run(template, vars)?)),
            _ => None,
        };
        let encoded = text.as_ref().map(|(subtype, t)| (subtype, text_body(t)));
        for h in headers {
            let (name, value) = match h {
                HeaderNode::Fixed(h) => (
                    h.name.as_str(),
                    std::borrow::Cow::Borrowed(h.value.as_str()),
                ),
                HeaderNode::Template { name, template } => {
                    let v = self.run(template, vars)?;
                    if v.contains(['\r', '\n']) {
                        return Err(ComposeError::Render(format!(
                            "header {name}: a merge field holds a line break"
                        )));
                    }
                    (name.as_str(), std::borrow::Cow::Owned(v))
                }
            };
            let lower = name.to_ascii_lowercase();
            if top && REPLACED_FIELDS.contains(&lower.as_str()) {
                continue;
            }
            if let Some((subtype, (cte, body))) = &encoded {
                if lower == "content-type" {
                    let charset = if body.is_ascii() && *cte == "7bit" {
                        "us-ascii"
                    } else {
                        "utf-8"
                    };
                    out.extend_from_slice(
                        header_field(
                            "Content-Type",
                            &format!("text/{subtype}; charset={charset}"),
                        )
                        .as_bytes(),
                    );
                    continue;
                }
                if lower == "content-transfer-encoding" {
                    continue;
                }
            }
            out.extend_from_slice(header_field(name, &value).as_bytes());
        }
        match (body, encoded) {
            (BodyNode::Text { .. }, Some((subtype, (cte, bytes)))) => {
                if !headers
                    .iter()
                    .any(|h| h.name().eq_ignore_ascii_case("content-type"))
                {
                    out.extend_from_slice(
                        header_field("Content-Type", &format!("text/{subtype}; charset=utf-8"))
                            .as_bytes(),
                    );
                }
                out.extend_from_slice(header_field("Content-Transfer-Encoding", cte).as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&bytes);
            }
            (BodyNode::Multipart { boundary, parts }, _) => {
                out.extend_from_slice(b"\r\n");
                for p in parts {
                    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                    self.render_node(p, vars, out, false)?;
                }
                out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            }
            (BodyNode::Opaque(bytes), _) => {
                out.extend_from_slice(b"\r\n");
                if !bytes.is_empty() {
                    out.extend_from_slice(&crlf_lines(bytes));
                }
            }
            (BodyNode::Text { .. }, None) => {}
        }
        Ok(())
    }

    /// Renders the template named `name`.
    fn run(&self, name: &str, vars: &BTreeMap<&str, Value>) -> Result<String, ComposeError> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| ComposeError::Render(format!("{}: {e}", place_of(name))))?;
        t.render(vars).map_err(|e| {
            let what = match e.kind() {
                minijinja::ErrorKind::UndefinedError => {
                    "a merge field is missing for this recipient"
                }
                _ => "does not render",
            };
            ComposeError::Render(format!("{}: {what} ({e})", place_of(name)))
        })
    }
}

impl HeaderNode {
    fn name(&self) -> &str {
        match self {
            HeaderNode::Fixed(h) => &h.name,
            HeaderNode::Template { name, .. } => name,
        }
    }
}

/// The readable place of a template name (`header Subject`, `part 2 (html)`).
fn place_of(name: &str) -> String {
    // Names are "NNN|what.ext": the part after '|' says where.
    name.split_once('|')
        .map_or(name, |(_, w)| w)
        .rsplit_once('.')
        .map_or_else(|| name.to_string(), |(w, _)| w.to_string())
}

fn compile_part(
    env: &mut Environment<'static>,
    part: Part,
    counter: &mut usize,
    place: &str,
) -> Result<Node, ComposeError> {
    let mut headers = Vec::with_capacity(part.headers.len());
    for h in part.headers {
        if is_template(&h.value) {
            *counter += 1;
            let template = format!("{:06}|header {}.txt", *counter, h.name);
            add(env, &template, h.value)?;
            headers.push(HeaderNode::Template {
                name: h.name,
                template,
            });
        } else {
            headers.push(HeaderNode::Fixed(h));
        }
    }
    let body = match part.body {
        Body::Multipart { boundary, parts } => {
            let mut nodes = Vec::with_capacity(parts.len());
            for (i, p) in parts.into_iter().enumerate() {
                nodes.push(compile_part(
                    env,
                    p,
                    counter,
                    &format!("{place}, part {}", i + 1),
                )?);
            }
            BodyNode::Multipart {
                boundary,
                parts: nodes,
            }
        }
        Body::Text { subtype, text } => {
            *counter += 1;
            let ext = if subtype == "html" { "html" } else { "txt" };
            let template = format!("{:06}|{place} (text/{subtype}).{ext}", *counter);
            add(env, &template, text)?;
            BodyNode::Text { subtype, template }
        }
        Body::Opaque(bytes) => BodyNode::Opaque(bytes),
    };
    Ok(Node::Part { headers, body })
}

fn add(env: &mut Environment<'static>, name: &str, source: String) -> Result<(), ComposeError> {
    env.add_template_owned(name.to_string(), source)
        .map_err(|e| ComposeError::Syntax {
            place: place_of(name),
            reason: e.to_string(),
        })
}

/// The domain of the (first) address in a From: value.
fn domain_of(from: &str) -> Option<String> {
    let addr = match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from.trim(),
    };
    let (_, domain) = addr.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('>').to_ascii_lowercase();
    (!domain.is_empty() && !is_template(&domain)).then_some(domain)
}

/// True when the raw template has a From: field.
fn has_from(bytes: &[u8]) -> bool {
    parse_message(bytes).is_ok_and(|p| p.header("From").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(&[3u8; 32])
    }

    fn row(email: &str, fields: &[(&str, &str)]) -> RecipientRow {
        RecipientRow {
            line: 2,
            email: email.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn opts() -> TemplateOptions {
        TemplateOptions {
            campaign: 7,
            from: None,
            bounce_domain: None,
            unsubscribe_base: Some("https://news.example.com/".into()),
        }
    }

    fn render(t: &CampaignTemplate, r: &RecipientRow) -> Result<Rendered, ComposeError> {
        t.render(
            RenderContext {
                index: 5,
                row: r,
                now: chrono::Local::now(),
            },
            &key(),
        )
    }

    const ALT: &str = "From: News <news@example.com>\nTo: \"{{ name }}\" <{{ email }}>\nSubject: Hello {{ name }}\n\
        Message-ID: <template@x>\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b1\n\n\
        --b1\nContent-Type: text/plain; charset=utf-8\n\nHi {{ name }}, café.\nUnsubscribe: {{ unsubscribe_url }}\n\
        --b1\nContent-Type: text/html; charset=utf-8\n\n<p>Hi {{ name }}</p>\n--b1--\n";

    #[test]
    fn renders_fields_escapes_html_and_adds_campaign_fields() {
        let t = CampaignTemplate::compile(ALT.as_bytes(), &opts()).unwrap();
        let r = render(&t, &row("ada@example.net", &[("name", "Ada <&>")])).unwrap();
        let text = String::from_utf8(r.message.clone()).unwrap();
        assert!(text.contains("Subject: Hello Ada <&>\r\n"), "{text}");
        assert!(text.contains("<p>Hi Ada &lt;&amp;&gt;</p>"), "{text}");
        assert!(
            text.contains("caf=C3=A9") && text.contains("quoted-printable"),
            "{text}"
        );
        assert!(
            text.contains("To: \"Ada <&>\" <ada@example.net>\r\n"),
            "{text}"
        );
        assert!(!text.contains("template@x"), "{text}");
        assert_eq!(text.matches("Message-ID:").count(), 1);
        assert_eq!(text.matches("MIME-Version:").count(), 1);
        let token = key().token(7, 5);
        assert!(
            text.contains(&format!(
                "List-Unsubscribe: <https://news.example.com/u/{token}>,"
            )),
            "{text}"
        );
        assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        assert_eq!(r.sender, format!("bounces+{token}@example.com"));
        assert!(r.message_id.starts_with("7.5.") && r.message_id.ends_with("@example.com"));
        assert!(text.lines().all(|l| l.len() <= 998));
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "bare LF in {text:?}"
        );
        // The parser of the tests reads it back.
        let parsed = mail_parser::MessageParser::default()
            .parse(&r.message)
            .unwrap();
        assert_eq!(parsed.subject(), Some("Hello Ada <&>"));
        let body = parsed.body_text(0).unwrap();
        assert!(body.contains("Hi Ada <&>, café."), "{body}");
        assert!(body.contains(&format!("/u/{token}")), "{body}");
    }

    #[test]
    fn missing_field_or_header_injection_fails_one_recipient() {
        let t = CampaignTemplate::compile(ALT.as_bytes(), &opts()).unwrap();
        let e = render(&t, &row("a@example.net", &[])).unwrap_err();
        assert!(e.is_per_recipient());
        assert!(e.to_string().contains("missing"), "{e}");
        let e = render(
            &t,
            &row("a@example.net", &[("name", "x\r\nBcc: victim@example.org")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("line break"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_place() {
        let e = CampaignTemplate::compile(b"From: a@example.com\nSubject: {{ oops\n\nx\n", &opts())
            .err()
            .unwrap();
        assert!(matches!(e, ComposeError::Syntax { .. }), "{e}");
        assert!(e.to_string().contains("header Subject"), "{e}");
        let e = CampaignTemplate::compile(b"Subject: x\n\nbody\n", &opts())
            .err()
            .unwrap();
        assert!(e.to_string().contains("no From:"), "{e}");
        let no_base = TemplateOptions {
            unsubscribe_base: None,
            ..opts()
        };
        let e = CampaignTemplate::compile(ALT.as_bytes(), &no_base)
            .err()
            .unwrap();
        assert!(e.to_string().contains("--unsubscribe"), "{e}");
    }

    #[test]
    fn fields_used_are_checked_against_the_columns() {
        let t = CampaignTemplate::compile(ALT.as_bytes(), &opts()).unwrap();
        assert_eq!(t.fields_used().collect::<Vec<_>>(), vec!["name"]);
        t.check_columns(&["city".into(), "name".into()]).unwrap();
        let e = t.check_columns(&["city".into()]).unwrap_err().to_string();
        assert!(e.contains("{{ name }}") && e.contains("email, city"), "{e}");
    }

    #[test]
    fn plain_template_gets_to_and_from() {
        let o = TemplateOptions {
            from: Some("news@example.org".into()),
            unsubscribe_base: None,
            ..opts()
        };
        let t = CampaignTemplate::compile(b"Subject: Hi\n\nHello {{ email }}\n", &o).unwrap();
        let r = render(&t, &row("b@example.net", &[])).unwrap();
        let text = String::from_utf8(r.message).unwrap();
        assert!(text.contains("From: news@example.org\r\n"), "{text}");
        assert!(text.contains("To: <b@example.net>\r\n"), "{text}");
        assert!(text.contains("\r\n\r\nHello b@example.net\r\n"), "{text}");
        assert!(
            text.contains("List-Unsubscribe: <mailto:unsubscribe+"),
            "{text}"
        );
        assert!(
            !text.contains("List-Unsubscribe-Post"),
            "no one-click without a URL"
        );
        assert!(text.contains("Content-Transfer-Encoding: 7bit"), "{text}");
    }
}
