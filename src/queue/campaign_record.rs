//! The two campaign record kinds (format version 4; QUEUE_FORMAT.md):
//!
//! - **Campaign** (kind 3): the template and options, written once per
//!   shard that holds recipients of the campaign, in front of its first
//!   slice there. No aux area.
//! - **Recipients** (kind 4): a slice of the list. Its payload starts
//!   exactly as a message record's (queue ID, arrival, flags, uid, nrcpt,
//!   sender, recipients), so recovery and the index treat it as a message
//!   with `nrcpt` status bytes; the campaign ID, the index of its first
//!   row and the merge-field values follow where a message has its
//!   Message-ID and wire form.

use crate::model::{CampaignSlice, CampaignSpec, QueueId};

use super::record::{finish_header, record_len, short_len, Kind, Reader, Writer, HEADER_LEN};
use super::QueueError;

/// A slice's campaign and merge fields, borrowed from the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceFields<'a> {
    /// The campaign ID.
    pub campaign: u64,
    /// Index of the slice's first recipient in the campaign.
    pub first_index: u32,
    /// Values per row.
    pub ncols: u16,
    /// The values, row after row, each as 2+n bytes.
    values: &'a [u8],
}

impl<'a> SliceFields<'a> {
    /// The values of row `row` (0-based in the slice), parallel to the
    /// campaign's columns.
    pub fn row(&self, row: usize) -> Result<Vec<&'a str>, QueueError> {
        let mut r = Reader {
            buf: self.values,
            pos: 0,
        };
        for _ in 0..row.saturating_mul(self.ncols as usize) {
            r.short_bytes()?;
        }
        (0..self.ncols).map(|_| r.short_str()).collect()
    }
}

/// A decoded campaign record, borrowed from the segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignView<'a> {
    /// The campaign ID.
    pub id: u64,
    /// When it was accepted.
    pub created_micros: u64,
    /// `From:` when the template has none ("" for none).
    pub from: &'a str,
    /// VERP and mailto domain ("" for the From: domain).
    pub bounce_domain: &'a str,
    /// One-click unsubscribe base URL ("" for none).
    pub unsubscribe_base: &'a str,
    /// Merge-field column names.
    pub columns: Vec<&'a str>,
    /// The template.
    pub template: &'a [u8],
}

impl CampaignView<'_> {
    /// An owned copy.
    pub fn to_spec(&self) -> CampaignSpec {
        CampaignSpec {
            id: self.id,
            created_micros: self.created_micros,
            from: self.from.to_string(),
            bounce_domain: self.bounce_domain.to_string(),
            unsubscribe_base: self.unsubscribe_base.to_string(),
            columns: self.columns.iter().map(|c| c.to_string()).collect(),
            template: self.template.to_vec(),
        }
    }
}

/// Payload length of a campaign record.
pub fn campaign_payload_len(c: &CampaignSpec) -> Result<usize, QueueError> {
    let mut len = 8 + 8;
    len += 2 + short_len(c.from.len(), "campaign From")?;
    len += 2 + short_len(c.bounce_domain.len(), "bounce domain")?;
    len += 2 + short_len(c.unsubscribe_base.len(), "unsubscribe URL")?;
    len += 2;
    short_len(c.columns.len(), "column count")?;
    for col in &c.columns {
        len += 2 + short_len(col.len(), "column name")?;
    }
    if c.template.len() > (u32::MAX as usize).saturating_sub(len + 64) {
        return Err(QueueError::TooBig("campaign template"));
    }
    Ok(len + 4 + c.template.len())
}

/// Encodes a campaign record into `out` (exactly [`record_len`] long, zeroed).
pub fn encode_campaign(c: &CampaignSpec, out: &mut [u8]) -> Result<(), QueueError> {
    let payload_len = campaign_payload_len(c)?;
    debug_assert_eq!(out.len(), record_len(payload_len, 0));
    let mut w = Writer {
        buf: out,
        pos: HEADER_LEN,
    };
    w.u64(c.id);
    w.u64(c.created_micros);
    w.short_bytes(c.from.as_bytes());
    w.short_bytes(c.bounce_domain.as_bytes());
    w.short_bytes(c.unsubscribe_base.as_bytes());
    w.bytes(&(c.columns.len() as u16).to_le_bytes());
    for col in &c.columns {
        w.short_bytes(col.as_bytes());
    }
    w.u32(c.template.len() as u32);
    w.bytes(&c.template);
    debug_assert_eq!(w.pos, HEADER_LEN + payload_len);
    finish_header(out, Kind::Campaign, payload_len, 0);
    Ok(())
}

/// Decodes a campaign payload (CRC-checked by the scanner).
pub fn decode_campaign(payload: &[u8]) -> Result<CampaignView<'_>, QueueError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let id = r.u64()?;
    let created_micros = r.u64()?;
    let from = r.short_str()?;
    let bounce_domain = r.short_str()?;
    let unsubscribe_base = r.short_str()?;
    let n = r.take(2)?;
    let ncols = u16::from_le_bytes([n[0], n[1]]);
    let columns = (0..ncols)
        .map(|_| r.short_str())
        .collect::<Result<Vec<_>, _>>()?;
    let tlen = r.u32()? as usize;
    let template = r.take(tlen)?;
    if r.pos != payload.len() {
        return Err(QueueError::BadRecord("trailing bytes in campaign record"));
    }
    Ok(CampaignView {
        id,
        created_micros,
        from,
        bounce_domain,
        unsubscribe_base,
        columns,
        template,
    })
}

/// The campaign ID of a campaign payload, without decoding the rest.
pub fn peek_campaign(payload: &[u8]) -> Result<u64, QueueError> {
    Reader {
        buf: payload,
        pos: 0,
    }
    .u64()
}

/// The display sender of a slice (what `mailq` shows).
pub fn slice_sender(spec: &CampaignSpec) -> String {
    let domain = if spec.bounce_domain.is_empty() {
        "campaign"
    } else {
        &spec.bounce_domain
    };
    format!("bounces+*@{domain}")
}

/// Payload length of a slice record.
pub fn slice_payload_len(s: &CampaignSlice) -> Result<usize, QueueError> {
    if s.rows.is_empty() {
        return Err(QueueError::TooBig(
            "a campaign slice needs at least one recipient",
        ));
    }
    let ncols = s.spec.columns.len();
    let mut len = 8 + 8 + 4 + 4 + 4;
    len += 2 + short_len(slice_sender(&s.spec).len(), "sender")?;
    for row in &s.rows {
        len += 2 + short_len(row.email.len(), "recipient")?;
    }
    len += 8 + 4 + 2;
    for row in &s.rows {
        if row.values.len() != ncols {
            return Err(QueueError::BadRecord(
                "a row's values do not match the columns",
            ));
        }
        for v in &row.values {
            len += 2 + short_len(v.len(), "merge field value")?;
        }
    }
    if len > u32::MAX as usize / 2 {
        return Err(QueueError::TooBig("campaign slice"));
    }
    Ok(len)
}

/// Encodes a slice record with queue ID `id` into `out` (exactly
/// [`record_len`] long, zeroed); returns the offset of its status bytes.
pub fn encode_slice(
    id: QueueId,
    arrival_micros: u64,
    s: &CampaignSlice,
    out: &mut [u8],
) -> Result<usize, QueueError> {
    let payload_len = slice_payload_len(s)?;
    debug_assert_eq!(out.len(), record_len(payload_len, s.rows.len()));
    let mut w = Writer {
        buf: out,
        pos: HEADER_LEN,
    };
    w.u64(id.raw());
    w.u64(arrival_micros);
    w.u32(0);
    w.u32(0);
    w.u32(s.rows.len() as u32);
    w.short_bytes(slice_sender(&s.spec).as_bytes());
    for row in &s.rows {
        w.short_bytes(row.email.as_bytes());
    }
    w.u64(s.spec.id);
    w.u32(s.first_index);
    w.bytes(&(s.spec.columns.len() as u16).to_le_bytes());
    for row in &s.rows {
        for v in &row.values {
            w.short_bytes(v.as_bytes());
        }
    }
    debug_assert_eq!(w.pos, HEADER_LEN + payload_len);
    finish_header(out, Kind::Recipients, payload_len, s.rows.len());
    Ok(HEADER_LEN + payload_len)
}

/// Where each recipient of a slice is in its payload: built once per
/// slice by the store, so the delivery path reads one recipient without
/// decoding the 1,024 of its slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceIndex {
    /// The campaign ID.
    pub campaign: u64,
    /// Index of the slice's first recipient in the campaign.
    pub first_index: u32,
    /// Arrival time of the slice.
    pub arrival_micros: u64,
    ncols: u16,
    /// Per recipient: offset of its address's length prefix.
    emails: Vec<u32>,
    /// Per recipient: offset of its first value's length prefix.
    rows: Vec<u32>,
}

/// One recipient of a slice, read through a [`SliceIndex`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEntry<'a> {
    /// Its address.
    pub email: &'a str,
    /// Its merge-field values, parallel to the campaign's columns.
    pub values: Vec<&'a str>,
}

impl SliceIndex {
    /// Walks a slice payload once (the checksum was verified when it was
    /// appended or recovered).
    pub fn build(payload: &[u8]) -> Result<SliceIndex, QueueError> {
        let mut r = Reader {
            buf: payload,
            pos: 0,
        };
        r.u64()?;
        let arrival_micros = r.u64()?;
        r.u32()?;
        r.u32()?;
        let nrcpt = r.u32()? as usize;
        r.short_bytes()?;
        let mut emails = Vec::with_capacity(nrcpt.min(payload.len() / 2));
        for _ in 0..nrcpt {
            emails.push(r.pos as u32);
            r.short_bytes()?;
        }
        let campaign = r.u64()?;
        let first_index = r.u32()?;
        let n = r.take(2)?;
        let ncols = u16::from_le_bytes([n[0], n[1]]);
        let mut rows = Vec::with_capacity(nrcpt);
        for _ in 0..nrcpt {
            rows.push(r.pos as u32);
            for _ in 0..ncols {
                r.short_bytes()?;
            }
        }
        Ok(SliceIndex {
            campaign,
            first_index,
            arrival_micros,
            ncols,
            emails,
            rows,
        })
    }

    /// Recipient `i` of the slice whose payload this indexes.
    pub fn entry<'a>(&self, payload: &'a [u8], i: usize) -> Result<SliceEntry<'a>, QueueError> {
        let (Some(&e), Some(&v)) = (self.emails.get(i), self.rows.get(i)) else {
            return Err(QueueError::BadRecord("no such recipient in the slice"));
        };
        let mut r = Reader {
            buf: payload,
            pos: e as usize,
        };
        let email = r.short_str()?;
        r.pos = v as usize;
        let values = (0..self.ncols)
            .map(|_| r.short_str())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SliceEntry { email, values })
    }

    /// Recipients in the slice.
    pub fn len(&self) -> usize {
        self.emails.len()
    }

    /// True for a slice without recipients (never written).
    pub fn is_empty(&self) -> bool {
        self.emails.is_empty()
    }
}

/// Decodes a slice payload as a message view with [`SliceFields`].
pub fn decode_slice(payload: &[u8]) -> Result<super::record::MessageView<'_>, QueueError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let id = QueueId::from_raw(r.u64()?);
    let arrival_micros = r.u64()?;
    r.u32()?;
    r.u32()?;
    let nrcpt = r.u32()? as usize;
    let sender = r.short_str()?;
    let mut recipients = Vec::with_capacity(nrcpt.min(payload.len() / 2));
    for _ in 0..nrcpt {
        recipients.push(r.short_str()?);
    }
    let campaign = r.u64()?;
    let first_index = r.u32()?;
    let n = r.take(2)?;
    let ncols = u16::from_le_bytes([n[0], n[1]]);
    let values = &payload[r.pos..];
    Ok(super::record::MessageView {
        id,
        arrival_micros,
        flags: crate::model::MessageFlags::default(),
        uid: 0,
        sender,
        recipients,
        message_id: "",
        wire: &[],
        dsn: crate::model::DsnParams::default(),
        campaign: Some(SliceFields {
            campaign,
            first_index,
            ncols,
            values,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SliceRow;
    use crate::queue::record::{scan, Scan};
    use std::sync::Arc;

    fn spec() -> Arc<CampaignSpec> {
        Arc::new(CampaignSpec {
            id: 99,
            created_micros: 5,
            from: String::new(),
            bounce_domain: "bounce.example.com".into(),
            unsubscribe_base: "https://u.example.com".into(),
            columns: vec!["name".into(), "city".into()],
            template: b"From: a@example.com\r\n\r\nHi {{ name }}\r\n".to_vec(),
        })
    }

    #[test]
    fn campaign_round_trip() {
        let s = spec();
        let len = record_len(campaign_payload_len(&s).unwrap(), 0);
        let mut buf = vec![0u8; len];
        encode_campaign(&s, &mut buf).unwrap();
        let Scan::Record { kind, payload, .. } = scan(&buf) else {
            panic!()
        };
        assert_eq!(kind, Kind::Campaign);
        assert_eq!(peek_campaign(payload).unwrap(), 99);
        assert_eq!(decode_campaign(payload).unwrap().to_spec(), *s);
    }

    #[test]
    fn slice_round_trip_reads_as_a_message() {
        let slice = CampaignSlice {
            spec: spec(),
            first_index: 2048,
            rows: (0..3)
                .map(|i| SliceRow {
                    email: format!("r{i}@example.net"),
                    values: vec![format!("N{i}"), "Zürich".into()],
                })
                .collect(),
        };
        let id = QueueId::new(1, 7);
        let len = record_len(slice_payload_len(&slice).unwrap(), 3);
        let mut buf = vec![0u8; len];
        let aux = encode_slice(id, 11, &slice, &mut buf).unwrap();
        let Scan::Record {
            kind,
            payload,
            aux_offset,
            aux_len,
            ..
        } = scan(&buf)
        else {
            panic!()
        };
        assert_eq!((kind, aux_offset, aux_len), (Kind::Recipients, aux, 3));
        // The message record's prefix: recovery reads it as one.
        assert_eq!(
            crate::queue::record::peek_message(payload).unwrap(),
            (id, 11, 3)
        );
        let v = decode_slice(payload).unwrap();
        assert_eq!(
            v.recipients,
            vec!["r0@example.net", "r1@example.net", "r2@example.net"]
        );
        let f = v.campaign.unwrap();
        assert_eq!((f.campaign, f.first_index), (99, 2048));
        assert_eq!(f.row(2).unwrap(), vec!["N2", "Zürich"]);
        let idx = SliceIndex::build(payload).unwrap();
        assert_eq!((idx.campaign, idx.first_index, idx.len()), (99, 2048, 3));
        let e = idx.entry(payload, 1).unwrap();
        assert_eq!(
            (e.email, e.values),
            ("r1@example.net", vec!["N1", "Zürich"])
        );
        assert!(idx.entry(payload, 3).is_err());
        assert_eq!(f.row(0).unwrap(), vec!["N0", "Zürich"]);
        assert!(f.row(3).is_err());
        // A row with the wrong number of values is refused.
        let mut bad = slice.clone();
        bad.rows[1].values.pop();
        assert!(slice_payload_len(&bad).is_err());
    }
}
