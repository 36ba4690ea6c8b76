//! WebSocket frame headers (RFC 6455 §5.2), read only as far as a tunnel needs them: where
//! each frame ends, so the gateway can write a close frame of its own between two frames
//! instead of into the middle of one. Payloads, masking and extensions are never looked at.

/// The longest frame header: 2 bytes, a 64-bit extended length, a masking key.
const MAX_HEADER: usize = 2 + 8 + 4;

const BETWEEN_FRAMES: State = State::Header {
    buf: [0; MAX_HEADER],
    have: 0,
};

/// Where a byte stream of WebSocket frames stands: between frames, inside a header, or inside
/// a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameTracker {
    state: State,
    /// The opcode of the last frame that ended.
    last_opcode: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading a header: `have` of its bytes so far (0: between frames).
    Header { buf: [u8; MAX_HEADER], have: usize },
    /// Inside the payload of a frame with `opcode`, `left` bytes to go.
    Payload { left: u64, opcode: u8 },
}

/// The close frame's opcode (RFC 6455 §5.5.1).
const CLOSE: u8 = 0x8;

impl Default for FrameTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameTracker {
    /// A stream that starts at a frame boundary.
    pub fn new() -> Self {
        Self {
            state: BETWEEN_FRAMES,
            last_opcode: None,
        }
    }

    /// True between two frames: a frame written now would not split another.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header { have: 0, .. })
    }

    /// True when the last frame that ended was a close frame.
    pub fn closed(&self) -> bool {
        self.last_opcode == Some(CLOSE)
    }

    /// Reads `data` up to the end of the frame in progress, or all of it when that frame does
    /// not end within it; returns how many bytes were read. Call again with the rest.
    pub fn advance(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        while used < data.len() {
            match &mut self.state {
                State::Payload { left, opcode } => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(data.len() - used);
                    *left -= take as u64;
                    used += take;
                    if *left == 0 {
                        let opcode = *opcode;
                        self.frame_ended(opcode);
                        return used;
                    }
                }
                State::Header { buf, have } => {
                    buf[*have] = data[used];
                    *have += 1;
                    used += 1;
                    if let Some(payload) = header_complete(&buf[..*have]) {
                        let opcode = buf[0] & 0x0f;
                        if payload == 0 {
                            self.frame_ended(opcode);
                            return used;
                        }
                        self.state = State::Payload {
                            left: payload,
                            opcode,
                        };
                    }
                }
            }
        }
        used
    }

    fn frame_ended(&mut self, opcode: u8) {
        self.state = BETWEEN_FRAMES;
        self.last_opcode = Some(opcode);
    }

    /// Reads all of `data`.
    pub fn skip(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let used = self.advance(data);
            data = &data[used..];
        }
    }
}

/// The payload length once `header` holds a whole frame header, `None` while it is short.
fn header_complete(header: &[u8]) -> Option<u64> {
    let [_, second, ext @ ..] = header else {
        return None;
    };
    let masked = second & 0x80 != 0;
    let (len_bytes, short) = match second & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let needed = len_bytes + if masked { 4 } else { 0 };
    if ext.len() < needed {
        return None;
    }
    Some(short.unwrap_or_else(|| {
        ext[..len_bytes]
            .iter()
            .fold(0u64, |n, &b| (n << 8) | u64::from(b))
    }))
}

/// Who a frame goes to: frames to a server (the upstream) must be masked, frames to a client
/// must not be (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Towards {
    /// The WebSocket client.
    Client,
    /// The upstream server.
    Server,
}

/// A close frame (FIN, opcode 8) with `code` and `reason` (at most 123 bytes; longer ones are
/// cut at a character boundary), masked with a fresh random key when it goes to a server.
pub fn close_frame(code: u16, reason: &str, towards: Towards) -> Vec<u8> {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    // At most 125 bytes: the 7-bit length always fits.
    let len = payload.len() as u8;
    let mut frame = vec![0x88];
    match towards {
        Towards::Client => frame.push(len),
        Towards::Server => {
            let mut key = [0u8; 4];
            // A masking key only has to be unpredictable to scripts on the client; should the
            // system generator fail, a fixed key still yields a well-formed frame.
            let _ = getrandom::fill(&mut key);
            frame.push(0x80 | len);
            frame.extend_from_slice(&key);
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
    }
    frame.extend_from_slice(&payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// How a generated frame spells its length.
    #[derive(Debug, Clone, Copy)]
    enum LengthForm {
        Shortest,
        Sixteen,
        SixtyFour,
    }

    /// One frame's bytes: any first byte (FIN, RSV, opcode are not read), masked or not, the
    /// length in the chosen form.
    fn frame(first: u8, key: Option<[u8; 4]>, form: LengthForm, payload: &[u8]) -> Vec<u8> {
        let mask_bit = if key.is_some() { 0x80 } else { 0 };
        let len = payload.len();
        let mut out = vec![first];
        match form {
            LengthForm::Shortest if len < 126 => out.push(mask_bit | len as u8),
            LengthForm::Shortest | LengthForm::Sixteen if len <= 0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if let Some(key) = key {
            out.extend_from_slice(&key);
        }
        out.extend_from_slice(payload);
        out
    }

    fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
        let form = prop_oneof![
            Just(LengthForm::Shortest),
            Just(LengthForm::Sixteen),
            Just(LengthForm::SixtyFour)
        ];
        // Payload lengths around the 125/126 edge, and empty ones.
        let payload = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..4),
            proptest::collection::vec(any::<u8>(), 120..131),
            proptest::collection::vec(any::<u8>(), 0..300),
        ];
        (
            any::<u8>(),
            proptest::option::of(any::<[u8; 4]>()),
            form,
            payload,
        )
            .prop_map(|(first, key, form, payload)| frame(first, key, form, &payload))
    }

    /// The frames concatenated, and the offset where each ends.
    fn stream(frames: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for f in frames {
            bytes.extend_from_slice(f);
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    /// Feeds `chunks` in order, recording every offset at which the tracker reports a boundary
    /// right after [`FrameTracker::advance`] stopped.
    fn boundaries(chunks: &[&[u8]]) -> Vec<usize> {
        let mut tracker = FrameTracker::new();
        let mut seen = Vec::new();
        let mut offset = 0;
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let used = tracker.advance(rest);
                assert!(used > 0, "advance made no progress");
                offset += used;
                rest = &rest[used..];
                if tracker.at_boundary() {
                    seen.push(offset);
                }
            }
        }
        seen
    }

    proptest! {
        #[test]
        fn boundaries_are_found_wherever_the_stream_is_split(
            frames in proptest::collection::vec(arb_frame(), 1..6)
        ) {
            let (bytes, ends) = stream(&frames);
            for split in 0..=bytes.len() {
                let (a, b) = bytes.split_at(split);
                prop_assert_eq!(boundaries(&[a, b]), ends.clone(), "split at {}", split);
            }
        }

        #[test]
        fn boundaries_are_found_byte_by_byte_and_in_random_pieces(
            frames in proptest::collection::vec(arb_frame(), 1..6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let (bytes, ends) = stream(&frames);
            let singles: Vec<&[u8]> = bytes.chunks(1).collect();
            prop_assert_eq!(boundaries(&singles), ends.clone());
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.sort_unstable();
            let mut pieces = Vec::new();
            let mut last = 0;
            for cut in at {
                pieces.push(&bytes[last..cut]);
                last = cut;
            }
            pieces.push(&bytes[last..]);
            prop_assert_eq!(boundaries(&pieces), ends);
        }
    }

    #[test]
    fn a_fresh_tracker_is_at_a_boundary_and_a_partial_header_is_not() {
        let mut t = FrameTracker::new();
        assert!(t.at_boundary());
        assert_eq!(t.advance(&[0x82]), 1);
        assert!(!t.at_boundary());
        // 127: eight length bytes follow, then the four key bytes of a masked frame.
        t.skip(&[0xff, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4]);
        assert!(!t.at_boundary());
        assert_eq!(t.advance(&[9, 9, 9, 7, 7]), 3);
        assert!(t.at_boundary());
    }

    #[test]
    fn a_close_frame_is_noticed_once_it_has_ended() {
        let mut t = FrameTracker::new();
        let close = close_frame(1000, "bye", Towards::Server);
        t.skip(&frame(0x81, None, LengthForm::Shortest, b"hi"));
        assert!(!t.closed());
        t.skip(&close[..close.len() - 1]);
        assert!(!t.closed());
        t.skip(&close[close.len() - 1..]);
        assert!(t.closed() && t.at_boundary());
        // An empty close frame (no code) counts too.
        let mut t = FrameTracker::new();
        t.skip(&[0x88, 0x00]);
        assert!(t.closed());
    }

    #[test]
    fn a_huge_declared_length_is_tracked_without_overflow() {
        let mut t = FrameTracker::new();
        t.skip(&[0x02, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(t.advance(&[0u8; 4096]), 4096);
        assert!(!t.at_boundary());
    }

    #[test]
    fn close_frames_carry_code_and_reason_masked_only_towards_the_server() {
        let to_client = close_frame(1008, "token revoked", Towards::Client);
        assert_eq!(to_client[0], 0x88);
        assert_eq!(to_client[1], 15);
        assert_eq!(&to_client[2..4], &1008u16.to_be_bytes());
        assert_eq!(&to_client[4..], b"token revoked");

        let to_server = close_frame(1001, "going away", Towards::Server);
        assert_eq!(to_server[1], 0x80 | 12);
        let key = [to_server[2], to_server[3], to_server[4], to_server[5]];
        let payload: Vec<u8> = to_server[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(&payload[..2], &1001u16.to_be_bytes());
        assert_eq!(&payload[2..], b"going away");
        // Either is one whole frame for the tracker.
        let mut t = FrameTracker::new();
        assert_eq!(t.advance(&to_server), to_server.len());
        assert!(t.at_boundary());
    }

    #[test]
    fn an_overlong_reason_is_cut_at_a_character_boundary() {
        let frame = close_frame(1008, &"é".repeat(100), Towards::Client);
        assert!(frame.len() <= 2 + 125);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }
}
