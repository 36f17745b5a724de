//! The on-disk record frame.
//!
//! ```text
//! +----------------+----------------+----------------+-------------------+
//! | len: u32 LE    | crc: u32 LE    | id: u64 LE     | payload: len bytes|
//! +----------------+----------------+----------------+-------------------+
//! ```
//!
//! `crc` is CRC32C over `id || payload`, so a frame whose bytes were torn, zeroed or flipped
//! does not decode, and a frame copied to the wrong place does not pass as the record expected
//! there.

/// Bytes before the payload.
pub const HEADER: usize = 16;
/// Largest payload accepted (a guard against reading garbage lengths as huge allocations).
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// Appends the frame of record `id` to `out`.
pub fn encode(id: u64, payload: &[u8], out: &mut Vec<u8>) {
    let mut crc = crc32c::crc32c(&id.to_le_bytes());
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(payload);
}

/// What is at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid frame: its id, payload, and total length on disk.
    Frame {
        id: u64,
        payload: &'a [u8],
        len: usize,
    },
    /// The end of the data, exactly.
    End,
    /// Bytes that are not a valid frame (torn, truncated or corrupted).
    Invalid(&'static str),
}

/// Decodes the frame at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Decoded<'_> {
    if bytes.is_empty() {
        return Decoded::End;
    }
    if bytes.len() < HEADER {
        return Decoded::Invalid("truncated header");
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let mut id_bytes = [0u8; 8];
    id_bytes.copy_from_slice(&bytes[8..16]);
    if len > MAX_PAYLOAD {
        return Decoded::Invalid("length out of range");
    }
    if bytes.len() < HEADER + len {
        return Decoded::Invalid("truncated payload");
    }
    let payload = &bytes[HEADER..HEADER + len];
    let actual = crc32c::crc32c_append(crc32c::crc32c(&id_bytes), payload);
    if actual != crc {
        return Decoded::Invalid("checksum mismatch");
    }
    Decoded::Frame {
        id: u64::from_le_bytes(id_bytes),
        payload,
        len: HEADER + len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_single_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode(7, b"hello audit", &mut buf);
        assert_eq!(
            decode(&buf),
            Decoded::Frame {
                id: 7,
                payload: b"hello audit",
                len: buf.len()
            }
        );
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    !matches!(
                        decode(&bad),
                        Decoded::Frame {
                            id: 7,
                            payload: b"hello audit",
                            ..
                        }
                    ),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_invalid() {
        let mut buf = Vec::new();
        encode(1, b"payload", &mut buf);
        for cut in 1..buf.len() {
            assert!(
                matches!(decode(&buf[..cut]), Decoded::Invalid(_)),
                "cut at {cut}"
            );
        }
        assert_eq!(decode(&[]), Decoded::End);
    }
}
