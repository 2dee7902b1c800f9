//! The byte layout of one WAL batch: the single sled value a group commit writes.
//! A 32-byte header (magic, CRC32, first LSN, record count, the records'
//! format, then zeros), then frames of a
//! little-endian u32 length and the record. Records use rkyv's unaligned
//! format, so frames need no padding and decode in place.

const MAGIC: [u8; 4] = *b"FDW1";
const HEADER_LEN: usize = 32;
const FRAME_HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch is shorter than its header")]
    Truncated,
    #[error("batch magic is wrong (not a flashdrop WAL batch)")]
    BadMagic,
    #[error("batch checksum mismatch")]
    BadChecksum,
    #[error("frame {index} runs past the end of the batch")]
    BadFrame { index: u32 },
}

/// Accumulates records into one batch value; reused across commits.
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    first_lsn: u64,
}

impl BatchBuilder {
    pub fn with_capacity(bytes: usize) -> Self {
        let mut builder = Self {
            buf: Vec::with_capacity(bytes + HEADER_LEN),
            count: 0,
            first_lsn: 0,
        };
        builder.reset(0);
        builder
    }

    pub fn reset(&mut self, first_lsn: u64) {
        self.buf.clear();
        self.buf.resize(HEADER_LEN, 0);
        self.count = 0;
        self.first_lsn = first_lsn;
    }

    /// Bytes the batch would take with a payload of `len` more bytes.
    pub fn size_with(&self, len: usize) -> usize {
        self.buf.len() + FRAME_HEADER_LEN + len
    }

    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn first_lsn(&self) -> u64 {
        self.first_lsn
    }

    pub fn push(&mut self, payload: &[u8]) {
        self.buf
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(payload);
        self.count += 1;
    }

    /// Seals the header and returns the value to store.
    pub fn finish(&mut self) -> &[u8] {
        self.buf[0..4].copy_from_slice(&MAGIC);
        self.buf[8..16].copy_from_slice(&self.first_lsn.to_le_bytes());
        self.buf[16..20].copy_from_slice(&self.count.to_le_bytes());
        self.buf[20..22].copy_from_slice(&super::record::FORMAT.to_le_bytes());
        let crc = crc32fast::hash(&self.buf[8..]);
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        &self.buf
    }
}

/// A batch read back and checked; frames borrow from the stored value.
pub struct DecodedBatch<'a> {
    data: &'a [u8],
    pub first_lsn: u64,
    pub count: u32,
    /// The format of its records (`record::FORMAT` when written; 0 before formats were recorded).
    pub format: u16,
}

pub fn decode_batch(value: &[u8]) -> Result<DecodedBatch<'_>, BatchError> {
    if value.len() < HEADER_LEN {
        return Err(BatchError::Truncated);
    }
    if value[0..4] != MAGIC {
        return Err(BatchError::BadMagic);
    }
    let stored = u32::from_le_bytes(value[4..8].try_into().map_err(|_| BatchError::Truncated)?);
    if crc32fast::hash(&value[8..]) != stored {
        return Err(BatchError::BadChecksum);
    }
    let first_lsn = u64::from_le_bytes(value[8..16].try_into().map_err(|_| BatchError::Truncated)?);
    let count = u32::from_le_bytes(
        value[16..20]
            .try_into()
            .map_err(|_| BatchError::Truncated)?,
    );
    let format = u16::from_le_bytes(
        value[20..22]
            .try_into()
            .map_err(|_| BatchError::Truncated)?,
    );
    Ok(DecodedBatch {
        data: value,
        first_lsn,
        count,
        format,
    })
}

impl DecodedBatch<'_> {
    pub fn last_lsn(&self) -> u64 {
        self.first_lsn + u64::from(self.count) - 1
    }

    /// `(lsn, payload)` for every frame, in order.
    pub fn frames(&self) -> impl Iterator<Item = Result<(u64, &[u8]), BatchError>> + '_ {
        let mut offset = HEADER_LEN;
        (0..self.count).map(move |index| {
            let bad = BatchError::BadFrame { index };
            let header = self
                .data
                .get(offset..offset + FRAME_HEADER_LEN)
                .ok_or(BatchError::BadFrame { index })?;
            let len = u32::from_le_bytes(header[..4].try_into().map_err(|_| bad)?) as usize;
            let start = offset + FRAME_HEADER_LEN;
            let payload = self
                .data
                .get(start..start + len)
                .ok_or(BatchError::BadFrame { index })?;
            offset = start + len;
            Ok((self.first_lsn + u64::from(index), payload))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_in_order_aligned_with_their_lsns() {
        let mut builder = BatchBuilder::with_capacity(1024);
        builder.reset(100);
        builder.push(b"abc");
        builder.push(&[7u8; 17]);
        builder.push(b"");
        let value = builder.finish().to_vec();
        let batch = decode_batch(&value).unwrap();
        assert_eq!(batch.last_lsn(), 102);
        assert_eq!(batch.format, crate::persistence::record::FORMAT);
        let frames: Vec<_> = batch.frames().map(Result::unwrap).collect();
        assert_eq!(frames[0], (100, &b"abc"[..]));
        assert_eq!(frames[1], (101, &[7u8; 17][..]));
        assert_eq!(frames[2], (102, &b""[..]));
    }

    #[test]
    fn a_frame_longer_than_the_batch_is_refused() {
        let mut builder = BatchBuilder::with_capacity(64);
        builder.reset(1);
        builder.push(b"abc");
        let mut value = builder.finish().to_vec();
        value[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&1000u32.to_le_bytes());
        let crc = crc32fast::hash(&value[8..]);
        value[4..8].copy_from_slice(&crc.to_le_bytes());
        let batch = decode_batch(&value).unwrap();
        assert_eq!(
            batch.frames().next(),
            Some(Err(BatchError::BadFrame { index: 0 }))
        );
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_checksum() {
        let mut builder = BatchBuilder::with_capacity(64);
        builder.reset(1);
        builder.push(b"payload");
        let mut value = builder.finish().to_vec();
        let last = value.len() - 20;
        value[last] ^= 1;
        assert_eq!(decode_batch(&value).err(), Some(BatchError::BadChecksum));
        assert_eq!(decode_batch(b"nope").err(), Some(BatchError::Truncated));
    }
}
