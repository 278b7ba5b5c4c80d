//! The soak's message, its checksum, and the server endpoint that checks
//! every message's checksum and each sender's order.

use std::sync::{Arc, Mutex};

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcSender};

/// One soak message: who sent it, its place in that sender's sequence (asks
/// and one-ways count separately), and a CRC-32 of the three other fields.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Probe {
    /// The sending thread.
    pub sender: u32,
    /// Strictly increasing per sender and kind, from 0.
    pub seq: u64,
    /// [`checksum`] of `sender`, `seq` and `body`.
    pub crc: u32,
    /// Random bytes.
    pub body: Vec<u8>,
}

/// CRC-32 (crc32fast) over `sender` and `seq` (little-endian) and `body`.
pub fn checksum(sender: u32, seq: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&sender.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// The answer to an ask: its seq in the high 32 bits, its checksum in the low.
pub fn reply_for(seq: u64, crc: u32) -> u64 {
    (seq << 32) | u64::from(crc)
}

/// A set of sequence numbers `0..n`, one bit each.
#[derive(Debug, Clone)]
pub struct Bits(Vec<u64>);

impl Bits {
    /// An empty set for `0..n`.
    pub fn new(n: u64) -> Self {
        Self(vec![0; n.div_ceil(64) as usize])
    }
    /// Adds `i`; whether it was absent (false for `i` out of range).
    pub fn insert(&mut self, i: u64) -> bool {
        let Some(w) = self.0.get_mut((i / 64) as usize) else {
            return false;
        };
        let bit = 1u64 << (i % 64);
        let absent = *w & bit == 0;
        *w |= bit;
        absent
    }
    /// Whether `i` is in the set.
    pub fn contains(&self, i: u64) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// What the server saw.
#[derive(Debug)]
pub struct Seen {
    /// One-ways received per sender.
    pub one_way: Vec<Bits>,
    /// One-ways received.
    pub one_ways: u64,
    /// Asks received (answered or not).
    pub asks: u64,
    /// The last seq per sender, of one-ways and of asks.
    last_one_way: Vec<Option<u64>>,
    last_ask: Vec<Option<u64>>,
    /// Messages whose checksum did not match.
    pub corrupt: u64,
    /// Messages not after their sender's previous one (reordered or duplicated).
    pub out_of_order: u64,
    /// Messages from an unknown sender or with a seq out of range.
    pub unknown: u64,
    /// The first few problems, for the report.
    pub problems: Vec<String>,
}

impl Seen {
    /// Room for `senders` senders of `one_ways_each` one-ways.
    pub fn new(senders: usize, one_ways_each: u64) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            one_way: vec![Bits::new(one_ways_each); senders],
            one_ways: 0,
            asks: 0,
            last_one_way: vec![None; senders],
            last_ask: vec![None; senders],
            corrupt: 0,
            out_of_order: 0,
            unknown: 0,
            problems: Vec::new(),
        }))
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < 20 {
            self.problems.push(text);
        }
    }

    /// Checks one message; `Err` says what is wrong with it.
    fn check(&mut self, ask: bool, sender: u32, seq: u64, crc: u32, body: &[u8]) -> Result<(), String> {
        let s = sender as usize;
        if s >= self.last_ask.len() {
            self.unknown += 1;
            let p = format!("unknown sender {sender}");
            self.problem(p.clone());
            return Err(p);
        }
        if checksum(sender, seq, body) != crc {
            self.corrupt += 1;
            let p = format!("checksum mismatch: sender {sender} seq {seq} ask {ask}");
            self.problem(p.clone());
            return Err(p);
        }
        let last = if ask {
            &mut self.last_ask[s]
        } else {
            &mut self.last_one_way[s]
        };
        let previous = last.replace(seq);
        if previous.is_some_and(|p| seq <= p) {
            self.out_of_order += 1;
            let p = format!("sender {sender} ask {ask}: seq {seq} after {previous:?}");
            self.problem(p.clone());
            return Err(p);
        }
        if ask {
            self.asks += 1;
        } else {
            self.one_ways += 1;
            if !self.one_way[s].insert(seq) {
                self.unknown += 1;
                let p = format!("sender {sender}: one-way seq {seq} out of range or twice");
                self.problem(p.clone());
                return Err(p);
            }
        }
        Ok(())
    }
}

/// The server endpoint: checks every [`Probe`] and answers asks with [`reply_for`].
pub struct Sink {
    /// What it saw; shared with the test.
    pub seen: Arc<Mutex<Seen>>,
}

impl Sink {
    fn take(&self, ask: bool, msg: &Msg<'_, Probe>) -> Result<u64, String> {
        let (sender, seq, crc, body) = match msg {
            Msg::Remote(p) => (
                p.sender.to_native(),
                p.seq.to_native(),
                p.crc.to_native(),
                p.body.as_slice(),
            ),
            Msg::Local(p) => (p.sender, p.seq, p.crc, p.body.as_slice()),
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.check(ask, sender, seq, crc, body)?;
        Ok(reply_for(seq, checksum(sender, seq, body)))
    }
}

impl RpcEndpoint for Sink {
    type Message = Probe;
    type Reply = u64;

    fn receive(&mut self, msg: Msg<'_, Probe>, _sender: &RpcSender) {
        let _ = self.take(false, &msg);
    }

    fn receive_and_reply(&mut self, msg: Msg<'_, Probe>, ctx: RpcCallContext<u64>) {
        match self.take(true, &msg) {
            Ok(reply) => ctx.reply(reply),
            Err(problem) => ctx.send_failure(problem),
        }
    }
}
