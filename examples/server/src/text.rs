//! [`Utf8Carry`]: device output decoded as text across chunk boundaries.

use netauto_core::exec::incomplete_utf8_tail;

/// Decodes a run's chunks, in order, as UTF-8 text. New runs never split a character across
/// chunks, but output stored before that (or by another writer) may: the first bytes of a
/// character cut at the end of a chunk are carried to the next one, so it renders whole
/// instead of as two replacement characters. Bytes that are not UTF-8 become U+FFFD.
#[derive(Debug, Default)]
pub(crate) struct Utf8Carry {
    carried: Vec<u8>,
}

impl Utf8Carry {
    /// The text of `data` that can be decoded now (carrying an incomplete last character).
    pub(crate) fn push(&mut self, data: &[u8]) -> String {
        let joined;
        let bytes: &[u8] = if self.carried.is_empty() {
            data
        } else {
            let mut all = std::mem::take(&mut self.carried);
            all.extend_from_slice(data);
            joined = all;
            &joined
        };
        let cut = bytes.len() - incomplete_utf8_tail(bytes);
        let text = String::from_utf8_lossy(&bytes[..cut]).into_owned();
        self.carried = bytes[cut..].to_vec();
        text
    }

    /// Whatever is still carried (the output ended mid-character), as text.
    pub(crate) fn finish(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.carried)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_chunks_is_decoded_whole() {
        let bytes = "ab€cd😀".as_bytes();
        for cut in 0..=bytes.len() {
            for second in cut..=bytes.len() {
                let mut carry = Utf8Carry::default();
                let mut text = carry.push(&bytes[..cut]);
                text.push_str(&carry.push(&bytes[cut..second]));
                text.push_str(&carry.push(&bytes[second..]));
                text.push_str(&carry.finish());
                assert_eq!(text, "ab€cd😀", "cuts at {cut}, {second}");
            }
        }
        let mut carry = Utf8Carry::default();
        assert_eq!(carry.push(&[b'a', 0xE2, 0x82]), "a");
        assert_eq!(carry.finish(), "\u{FFFD}");
        assert_eq!(carry.push(&[0xFF, b'x']), "\u{FFFD}x");
    }
}
