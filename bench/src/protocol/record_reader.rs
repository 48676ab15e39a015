//! Reads the records of fetched v2 batches in place, for the consumer's delivery check and
//! end-to-end latency. Hot path: no allocation for uncompressed batches; each record's key
//! and value are borrowed slices of the fetch response. A compressed batch is decompressed
//! once into one buffer. CRC32C is checked as Kafka's consumers do (`check.crcs`).

use super::compression::{decompress, ATTR_COMPRESSION_MASK};
use super::varint::get_varint;
use crate::error::BenchError;

const BATCH_HEADER_BYTES: usize = 61;
const ATTR_CONTROL: i16 = 0x20;

/// Calls `on_record(offset, value)` for each data record of the complete batches in
/// `records`, and returns the offset to fetch next (None when no complete batch was there).
/// A partial batch at the end (Kafka may cut a fetch mid-batch) is left for the next fetch.
pub fn for_each_record(
    records: &[u8],
    mut on_record: impl FnMut(i64, &[u8]),
) -> Result<Option<i64>, BenchError> {
    let mut next_offset = None;
    let mut pos = 0;
    while records.len() - pos >= BATCH_HEADER_BYTES {
        let batch_start = pos;
        let base_offset = i64::from_be_bytes(array(records, pos));
        let batch_len = i32::from_be_bytes(array(records, pos + 8));
        let total = 12usize.saturating_add(
            usize::try_from(batch_len).map_err(|_| corrupt(base_offset, "negative length"))?,
        );
        if total < BATCH_HEADER_BYTES {
            return Err(corrupt(base_offset, "length shorter than a batch header"));
        }
        if records.len() - pos < total {
            break;
        }
        let batch = &records[batch_start..batch_start + total];
        if batch[16] != 2 {
            return Err(corrupt(base_offset, "magic is not 2"));
        }
        let crc = u32::from_be_bytes(array(batch, 17));
        if crc32c::crc32c(&batch[21..]) != crc {
            return Err(corrupt(base_offset, "CRC32C mismatch"));
        }
        let attributes = i16::from_be_bytes(array(batch, 21));
        let last_offset_delta = i32::from_be_bytes(array(batch, 23));
        next_offset = Some(base_offset + i64::from(last_offset_delta) + 1);
        pos += total;
        if attributes & ATTR_CONTROL != 0 {
            continue; // transaction markers carry no data
        }
        let count = i32::from_be_bytes(array(batch, 57));
        let body = &batch[BATCH_HEADER_BYTES..];
        if attributes & ATTR_COMPRESSION_MASK == 0 {
            read_records(body, base_offset, count, &mut on_record)?;
        } else {
            let body =
                decompress(attributes, body).map_err(|e| corrupt(base_offset, &e.to_string()))?;
            read_records(&body, base_offset, count, &mut on_record)?;
        }
    }
    Ok(next_offset)
}

fn read_records(
    body: &[u8],
    base_offset: i64,
    count: i32,
    on_record: &mut impl FnMut(i64, &[u8]),
) -> Result<(), BenchError> {
    let mut pos = 0;
    let bad = |what| corrupt(base_offset, what);
    for _ in 0..count {
        let len = get_varint(body, &mut pos).ok_or_else(|| bad("record length"))?;
        let end = pos
            .checked_add(usize::try_from(len).map_err(|_| bad("negative record length"))?)
            .filter(|&end| end <= body.len())
            .ok_or_else(|| bad("record past the batch end"))?;
        let record = &body[..end];
        pos += 1; // attributes
        get_varint(record, &mut pos).ok_or_else(|| bad("timestamp delta"))?;
        let offset_delta = get_varint(record, &mut pos).ok_or_else(|| bad("offset delta"))?;
        skip_bytes_field(record, &mut pos).ok_or_else(|| bad("key"))?;
        let value_len = get_varint(record, &mut pos).ok_or_else(|| bad("value length"))?;
        let value = if value_len < 0 {
            &[][..]
        } else {
            record
                .get(pos..pos + value_len as usize)
                .ok_or_else(|| bad("value past the record end"))?
        };
        on_record(base_offset + offset_delta, value);
        pos = end; // headers are not read
    }
    Ok(())
}

fn skip_bytes_field(record: &[u8], pos: &mut usize) -> Option<()> {
    let len = get_varint(record, pos)?;
    if len > 0 {
        *pos = pos
            .checked_add(len as usize)
            .filter(|&p| p <= record.len())?;
    }
    Some(())
}

fn array<const N: usize>(input: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&input[at..at + N]);
    out
}

fn corrupt(offset: i64, message: &str) -> BenchError {
    BenchError::CorruptBatch {
        offset,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record_batch::BatchBuilder;

    fn batch_of(n: u8) -> Vec<u8> {
        let mut builder = BatchBuilder::with_capacity(64);
        for i in 0..n {
            builder.append(1, Some(b"key"), &[i], b"");
        }
        builder.finish().to_vec()
    }

    #[test]
    fn offsets_follow_the_base_offset_and_a_partial_tail_is_left() {
        let mut first = batch_of(3);
        first[..8].copy_from_slice(&10i64.to_be_bytes());
        let crc = crc32c::crc32c(&first[21..]);
        first[17..21].copy_from_slice(&crc.to_be_bytes());
        let mut fetched = first.clone();
        let second = batch_of(2);
        fetched.extend_from_slice(&second[..second.len() - 1]); // cut mid-batch
        let mut offsets = Vec::new();
        let next = for_each_record(&fetched, |offset, _| {
            offsets.push(offset);
        })
        .expect("valid");
        assert_eq!(offsets, vec![10, 11, 12]);
        assert_eq!(next, Some(13));
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut batch = batch_of(2);
        let last = batch.len() - 1;
        batch[last] ^= 1;
        assert!(matches!(
            for_each_record(&batch, |_, _| {}),
            Err(BenchError::CorruptBatch { .. })
        ));
    }

    #[test]
    fn a_negative_length_is_an_error_not_a_panic() {
        let mut batch = batch_of(1);
        batch[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(for_each_record(&batch, |_, _| {}).is_err());
    }
}
