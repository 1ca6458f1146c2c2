//! The screen: four panels drawn with ratatui (rates with sparklines, the
//! queue by domain, campaigns with progress, the most frequent deferral
//! reasons), and the same content as plain text for `--once`.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use super::model::{Campaign, QueueRow, Reasons, Series, Snapshot, REASONS_MAX_QUEUE};

/// The panels' titles (the tests look for them).
pub const TITLES: [&str; 4] = [
    "Rates (per second, last 2 minutes)",
    "Queue by domain",
    "Campaigns",
    "Recent errors (top deferral reasons)",
];

/// The four rate series with their labels.
fn series(s: &Snapshot) -> [(&'static str, &Series); 4] {
    [
        ("in (received)", &s.rates.received),
        ("out (delivered)", &s.rates.delivered),
        ("deferred", &s.rates.deferred),
        ("bounced", &s.rates.bounced),
    ]
}

/// One rate's text: label, rate, total.
fn rate_line(label: &str, s: &Series) -> String {
    format!("{label:<16}{:>9.1}/s  total {:>8}", s.now(), s.total as u64)
}

/// A progress bar of `width` cells and the percentage.
fn bar(ratio: f64, width: usize) -> String {
    let full = ((ratio * width as f64).round() as usize).min(width);
    format!(
        "{}{} {:>3.0}%",
        "#".repeat(full),
        ".".repeat(width - full),
        ratio * 100.0
    )
}

/// The queue table's header and rows as text cells.
fn queue_cells(rows: &[QueueRow]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let with_site = rows.iter().any(|r| r.site.is_some());
    let mut header = vec!["Domain"];
    if with_site {
        header.push("Site");
    }
    header.extend(["Recipients", "Older than 5 min"]);
    let cells = rows
        .iter()
        .map(|r| {
            let mut c = vec![r.domain.clone()];
            if with_site {
                c.push(r.site.clone().unwrap_or_default());
            }
            c.extend([r.total.to_string(), r.older.to_string()]);
            c
        })
        .collect();
    (header, cells)
}

/// The campaigns table's header and rows as text cells, progress bars of
/// `bar_width` cells.
fn campaign_cells(
    campaigns: &[Campaign],
    bar_width: usize,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "ID", "Name", "State", "Progress", "Sent", "Deferred", "Bounced", "Pending",
    ];
    let cells = campaigns
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.name.clone(),
                c.state.clone(),
                bar(c.progress(), bar_width),
                c.sent.to_string(),
                c.deferred.to_string(),
                c.bounced.to_string(),
                c.pending.to_string(),
            ]
        })
        .collect();
    (header, cells)
}

/// The reasons panel's lines.
fn reason_lines(r: &Reasons) -> Vec<String> {
    match r {
        Reasons::Unknown => vec!["(not read yet)".into()],
        Reasons::Skipped { queued } => vec![format!(
            "not counted: {queued} messages queued (over {REASONS_MAX_QUEUE})"
        )],
        Reasons::Top(top) if top.is_empty() => vec!["no deferred recipients".into()],
        Reasons::Top(top) => top.iter().map(|(t, n)| format!("{n:>7}  {t}")).collect(),
    }
}

/// The title line.
fn heading(s: &Snapshot) -> String {
    format!(
        "ringmail top  {}  {}  queue {} messages{}",
        s.url,
        s.at,
        s.rates.queued as u64,
        if s.paused { "  [paused]" } else { "" }
    )
}

/// Draws the whole screen.
pub fn draw(f: &mut Frame, s: &Snapshot) {
    let [top, rates, middle, errors, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(10),
        Constraint::Min(6),
        Constraint::Length(7),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new(heading(s)).style(Style::default().add_modifier(Modifier::BOLD)),
        top,
    );
    draw_rates(f, rates, s);
    let [queue, campaigns] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(middle);
    let (header, cells) = queue_cells(&s.queue);
    // Domain (and site) take what the counts leave.
    let widths: &[u16] = if header.contains(&"Site") {
        &[0, 0]
    } else {
        &[0]
    };
    draw_table(f, queue, TITLES[1], header, cells, widths);
    let (header, mut cells) = campaign_cells(&s.campaigns, 10);
    if s.campaigns_more > 0 {
        cells.push(vec![format!("... {} more", s.campaigns_more)]);
    }
    draw_table(f, campaigns, TITLES[2], header, cells, &[17, 0, 9, 16]);
    let lines: Vec<Line> = reason_lines(&s.reasons)
        .into_iter()
        .map(Line::from)
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(" {} ", TITLES[3]))),
        errors,
    );
    let status = match &s.error {
        Some(e) => format!("error: {e}"),
        None => String::new(),
    };
    f.render_widget(
        Paragraph::new(format!("q quit  p pause/resume  {status}")),
        footer,
    );
}

/// The rates panel: a text column and a sparkline per series.
fn draw_rates(f: &mut Frame, area: Rect, s: &Snapshot) {
    let block = Block::bordered().title(format!(" {} ", TITLES[0]));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let rows = Layout::vertical([Constraint::Length(2); 4]).split(inner);
    for ((label, series), row) in series(s).into_iter().zip(rows.iter()) {
        let [text, spark] =
            Layout::horizontal([Constraint::Length(44), Constraint::Min(4)]).areas(*row);
        f.render_widget(Paragraph::new(rate_line(label, series)), text);
        let data = series.sparkline();
        // The newest points, as many as fit.
        let from = data.len().saturating_sub(spark.width as usize);
        f.render_widget(Sparkline::default().data(&data[from..]), spark);
    }
}

/// A bordered table; `widths` gives the widths of the first columns (0:
/// they share what is left); the others are as wide as their heading.
fn draw_table(
    f: &mut Frame,
    area: Rect,
    title: &str,
    header: Vec<&'static str>,
    cells: Vec<Vec<String>>,
    widths: &[u16],
) {
    let constraints: Vec<Constraint> = header
        .iter()
        .enumerate()
        .map(|(i, h)| match widths.get(i) {
            Some(&w) if w > 0 => Constraint::Length(w),
            Some(_) => Constraint::Min(8),
            None => Constraint::Length(h.len().max(7) as u16),
        })
        .collect();
    let header = Row::new(header)
        .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let rows = cells.into_iter().map(Row::new);
    let table = Table::new(rows, constraints)
        .header(header)
        .block(Block::bordered().title(format!(" {title} ")));
    f.render_widget(table, area);
}

/// The snapshot as plain text (`--once`).
pub fn text(s: &Snapshot) -> String {
    let mut out = format!("{}\n\n{}\n", heading(s), TITLES[0]);
    for (label, series) in series(s) {
        out.push_str(&format!("  {}\n", rate_line(label, series)));
    }
    out.push_str(&format!("\n{}\n", TITLES[1]));
    let (header, cells) = queue_cells(&s.queue);
    out.push_str(&columns(&header, &cells));
    out.push_str(&format!("\n{}\n", TITLES[2]));
    let (header, cells) = campaign_cells(&s.campaigns, 20);
    out.push_str(&columns(&header, &cells));
    if s.campaigns_more > 0 {
        out.push_str(&format!("  ... {} more\n", s.campaigns_more));
    }
    out.push_str(&format!("\n{}\n", TITLES[3]));
    for l in reason_lines(&s.reasons) {
        out.push_str(&format!("  {l}\n"));
    }
    if let Some(e) = &s.error {
        out.push_str(&format!("\nerror: {e}\n"));
    }
    out
}

/// Left-aligned text columns, two spaces apart, indented by two.
fn columns(header: &[&str], cells: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: Vec<&str>| {
        let mut l = String::from(" ");
        for (c, w) in row.iter().zip(&widths) {
            l.push_str(&format!(" {c:<w$} "));
        }
        format!("{}\n", l.trim_end())
    };
    let mut out = line(header.to_vec());
    for row in cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    if cells.is_empty() {
        out.push_str("  (none)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::model::{Counters, Rates};
    use super::*;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::new("http://127.0.0.1:1".into(), 1000);
        let mut rates = Rates::new(1000);
        rates.add(Counters::default(), 0);
        rates.add(
            Counters {
                received: 3.0,
                delivered: 6.0,
                ..Counters::default()
            },
            2000,
        );
        s.rates = rates;
        s.queue = vec![QueueRow {
            domain: "example.com".into(),
            site: None,
            total: 4,
            older: 1,
        }];
        s.campaigns = vec![Campaign {
            id: 7,
            name: "spring".into(),
            state: "running".into(),
            recipients: 10,
            sent: 5,
            deferred: 0,
            bounced: 0,
            pending: 5,
        }];
        s.reasons = Reasons::Top(vec![("451 busy".into(), 3)]);
        s
    }

    #[test]
    fn the_text_snapshot_has_every_panel() {
        let t = text(&snapshot());
        for title in TITLES {
            assert!(t.contains(title), "{title}: {t}");
        }
        assert!(
            t.contains("out (delivered)       3.0/s  total        6"),
            "{t}"
        );
        assert!(t.contains("example.com"));
        assert!(t.contains("##########..........  50%"), "{t}");
        assert!(t.contains("      3  451 busy"), "{t}");
        assert!(!t.contains("Site"));
    }

    #[test]
    fn a_site_column_appears_when_rows_have_sites() {
        let mut s = snapshot();
        s.queue[0].site = Some("mx.example.com".into());
        let t = text(&s);
        assert!(t.contains("Site") && t.contains("mx.example.com"), "{t}");
    }

    #[test]
    fn skipped_reasons_say_why() {
        let lines = reason_lines(&Reasons::Skipped { queued: 20_000 });
        assert_eq!(
            lines,
            vec!["not counted: 20000 messages queued (over 10000)"]
        );
    }

    #[test]
    fn the_screen_draws_every_panel() {
        let backend = ratatui::backend::TestBackend::new(160, 40);
        let mut terminal = ratatui::Terminal::new(backend).unwrap();
        terminal.draw(|f| draw(f, &snapshot())).unwrap();
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for title in TITLES {
            assert!(screen.contains(title), "{title}");
        }
        assert!(screen.contains("example.com"));
        assert!(screen.contains("spring"));
    }
}
