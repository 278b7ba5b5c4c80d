//! The soak's message, its checksum, and the server endpoint that checks
//! every message's checksum and each sender's order.

use std::sync::{Arc, Mutex};

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcSender};

/// One soak message: who sent it, its place in that sender's sequence (asks
/// and one-ways count separately), how many connection kills the sender had
/// seen when it sent it, and a CRC-32 of the other fields.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Probe {
    /// The sending thread.
    pub sender: u32,
    /// Strictly increasing per sender and kind, from 0.
    pub seq: u64,
    /// The proxy's kill count when the sender built the message.
    pub epoch: u64,
    /// [`checksum`] of `sender`, `seq`, `epoch` and `body`.
    pub crc: u32,
    /// Random bytes.
    pub body: Vec<u8>,
}

/// CRC-32 (crc32fast) over `sender`, `seq` and `epoch` (little-endian) and `body`.
pub fn checksum(sender: u32, seq: u64, epoch: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&sender.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(&epoch.to_le_bytes());
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
    /// Asks received per sender.
    ask: Vec<Bits>,
    /// One-ways received.
    pub one_ways: u64,
    /// Asks received (answered or not).
    pub asks: u64,
    /// The last (seq, epoch) per sender, of one-ways and of asks.
    last_one_way: Vec<Option<(u64, u64)>>,
    last_ask: Vec<Option<(u64, u64)>>,
    /// Messages whose checksum did not match.
    pub corrupt: u64,
    /// Messages handled after a later one of their sender that was sent
    /// after a connection kill: late bytes of a killed connection overtaken
    /// by the new connection.
    pub late_across_kill: u64,
    /// Messages handled after a later one of their sender sent with no kill between them.
    pub reordered: u64,
    /// Messages seen twice.
    pub duplicated: u64,
    /// Messages from an unknown sender or with a seq out of range.
    pub unknown: u64,
    /// The first few problems, for the report.
    pub problems: Vec<String>,
}

impl Seen {
    /// Room for `senders` senders of `one_ways_each` one-ways and `asks_each` asks.
    pub fn new(senders: usize, one_ways_each: u64, asks_each: u64) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            one_way: vec![Bits::new(one_ways_each); senders],
            ask: vec![Bits::new(asks_each); senders],
            one_ways: 0,
            asks: 0,
            last_one_way: vec![None; senders],
            last_ask: vec![None; senders],
            corrupt: 0,
            late_across_kill: 0,
            reordered: 0,
            duplicated: 0,
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
    fn check(
        &mut self,
        ask: bool,
        sender: u32,
        seq: u64,
        epoch: u64,
        crc: u32,
        body: &[u8],
    ) -> Result<(), String> {
        let s = sender as usize;
        if s >= self.last_ask.len() {
            self.unknown += 1;
            let p = format!("unknown sender {sender}");
            self.problem(p.clone());
            return Err(p);
        }
        if checksum(sender, seq, epoch, body) != crc {
            self.corrupt += 1;
            let p = format!("checksum mismatch: sender {sender} seq {seq} ask {ask}");
            self.problem(p.clone());
            return Err(p);
        }
        let (last, seen) = if ask {
            (&mut self.last_ask[s], &mut self.ask[s])
        } else {
            (&mut self.last_one_way[s], &mut self.one_way[s])
        };
        let first_time = seen.insert(seq);
        let previous = *last;
        if previous.is_none_or(|(p, _)| seq > p) {
            *last = Some((seq, epoch));
        }
        if ask {
            self.asks += 1;
        } else {
            self.one_ways += 1;
        }
        let kind = if ask { "ask" } else { "one-way" };
        if !first_time {
            self.duplicated += 1;
            let p = format!("sender {sender}: {kind} {seq} twice, or out of range");
            self.problem(p.clone());
            return Err(p);
        }
        match previous {
            Some((p, e)) if seq <= p => {
                let p = if epoch < e {
                    self.late_across_kill += 1;
                    format!("sender {sender}: {kind} {seq} (kill {epoch}) after {p} (kill {e})")
                } else {
                    self.reordered += 1;
                    format!("sender {sender}: {kind} {seq} after {p}, both after kill {e}")
                };
                self.problem(p);
                // Late, but delivered once and intact: an ask is still answered.
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The server endpoint: checks every [`Probe`] and answers asks with [`reply_for`].
pub struct Sink {
    /// What it saw; shared with the test.
    pub seen: Arc<Mutex<Seen>>,
}

impl Sink {
    fn take(&self, ask: bool, msg: &Msg<'_, Probe>) -> Result<u64, String> {
        let (sender, seq, epoch, crc, body) = match msg {
            Msg::Remote(p) => (
                p.sender.to_native(),
                p.seq.to_native(),
                p.epoch.to_native(),
                p.crc.to_native(),
                p.body.as_slice(),
            ),
            Msg::Local(p) => (p.sender, p.seq, p.epoch, p.crc, p.body.as_slice()),
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.check(ask, sender, seq, epoch, crc, body)?;
        Ok(reply_for(seq, checksum(sender, seq, epoch, body)))
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
