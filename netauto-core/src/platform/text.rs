//! Byte-level helpers transports use on device output: ANSI escape removal that keeps its
//! state across reads.

/// Removes ANSI escape sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL` or `ESC ] … ESC \`,
/// charset designations `ESC ( X`, and two-byte `ESC X`) from a byte stream, however the
/// stream is split. Other bytes pass unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnsiStripper {
    state: AnsiState,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum AnsiState {
    #[default]
    Text,
    Escape,
    Csi,
    Osc,
    OscEscape,
    Charset,
}

impl AnsiStripper {
    /// A stripper at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `input` without its escape sequences to `out`.
    pub fn strip_into(&mut self, input: &[u8], out: &mut Vec<u8>) {
        use AnsiState::*;
        for &b in input {
            self.state = match (self.state, b) {
                (Text, 0x1B) => Escape,
                (Text, _) => {
                    out.push(b);
                    Text
                }
                (Escape, b'[') => Csi,
                (Escape, b']') => Osc,
                (Escape, b'(' | b')' | b'*' | b'+') => Charset,
                (Escape, 0x1B) => Escape,
                (Escape, _) => Text,
                (Csi, 0x40..=0x7E) => Text,
                (Csi, _) => Csi,
                (Osc, 0x07) => Text,
                (Osc, 0x1B) => OscEscape,
                (Osc, _) => Osc,
                (OscEscape, b'\\') => Text,
                (OscEscape, _) => Osc,
                (Charset, _) => Text,
            };
        }
    }

    /// `input` without its escape sequences.
    pub fn strip(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        self.strip_into(input, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_cursor_moves_and_titles_go_however_split() {
        let input = b"\x1b[1;32mup\x1b[0m eth0 \x1b]0;title\x07ok\x1b(Bx\x1b[2K\x1b]2;t\x1b\\!\n";
        for size in 1..input.len() {
            let mut s = AnsiStripper::new();
            let out: Vec<u8> = input.chunks(size).flat_map(|c| s.strip(c)).collect();
            assert_eq!(
                String::from_utf8_lossy(&out),
                "up eth0 okx!\n",
                "pieces of {size}"
            );
        }
    }

    #[test]
    fn text_without_escapes_is_unchanged() {
        let text = "é € \u{8} --More-- \r\n".as_bytes();
        assert_eq!(AnsiStripper::new().strip(text), text);
    }
}
