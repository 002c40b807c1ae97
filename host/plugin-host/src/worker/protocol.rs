//! The frames between the host and a worker process, over a Unix socket
//! pair: `[u32 little-endian length][u8 tag][payload]`, the length counting
//! the tag and the payload. Texts are UTF-8; the execution context, the
//! metadata and a call's response travel as the JSON text the native ABI
//! already uses, unwrapped.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

/// The largest frame either side accepts: 256 MiB. A larger length is a
/// broken or hostile peer; the host kills the worker.
pub(crate) const MAX_FRAME_BYTES: usize = 256 << 20;

/// One message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    /// Host → worker, first: what to load and the limits to apply ([`LoadRequest`] as JSON).
    Load(String),
    /// Host → worker: run a call (the `ExecutionContext` as JSON).
    Call(String),
    /// Host → worker: the answer to [`Frame::StateGet`] (the value as JSON text, if set).
    StateValue(Option<String>),
    /// Host → worker: the call in flight is asked to stop (its `is_cancelled` turns true).
    Cancel,
    /// Host → worker: the answer to [`Frame::Orchestrate`] (an `OrchestrationAnswer` as JSON).
    Orchestrated(String),
    /// Worker → host: the library loaded; its metadata as JSON.
    Loaded(String),
    /// Worker → host: the library did not load (a `LoadErrorKind` as JSON).
    LoadFailed(String),
    /// Worker → host: a log line of the call (`LogLevel` as `u8`).
    Log(u8, String),
    /// Worker → host: read a shared-state key.
    StateGet(String),
    /// Worker → host: write a shared-state key (key, value as JSON text).
    StateSet(String, String),
    /// Worker → host: progress of the call.
    Progress(f64, String),
    /// Worker → host: an orchestration request of the call (an `Orchestration` as JSON).
    Orchestrate(String),
    /// Worker → host: the call returned (a `NativeResponse` as JSON), and
    /// what the worker used during it.
    Done(String, WorkerUsage),
}

/// What a worker process used during one call, by its own `getrusage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WorkerUsage {
    /// User + system CPU time of the process during the call, µs.
    pub cpu_us: u64,
    /// The process's peak resident set so far (`ru_maxrss`), KiB.
    pub max_rss_kib: u64,
}

/// What the worker loads and how it limits itself (Linux), sent as JSON in [`Frame::Load`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct LoadRequest {
    /// The native library.
    pub artifact: std::path::PathBuf,
    /// `RLIMIT_AS`, bytes.
    pub memory_bytes: Option<u64>,
    /// `RLIMIT_CPU`, seconds.
    pub cpu_seconds: Option<u64>,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// `[worker.landlock]`, its read paths including the plugin's folder
    /// and its library's.
    #[serde(default)]
    pub landlock: Option<crate::manifest::Landlock>,
    /// The manifest's `[config]`, for the plugin's `initialize` (contract
    /// 0.3; it runs before the worker answers [`Frame::Loaded`], within the
    /// host's wait for that answer).
    #[serde(default)]
    pub config: serde_json::Value,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Frame {
    fn encode(&self) -> Vec<u8> {
        let text = |s: &str| s.as_bytes().to_vec();
        let (tag, payload): (u8, Vec<u8>) = match self {
            Frame::Load(s) => (1, text(s)),
            Frame::Call(s) => (2, text(s)),
            Frame::StateValue(None) => (3, vec![0]),
            Frame::StateValue(Some(s)) => (3, [&[1u8][..], s.as_bytes()].concat()),
            Frame::Cancel => (4, Vec::new()),
            Frame::Orchestrated(s) => (5, text(s)),
            Frame::Loaded(s) => (10, text(s)),
            Frame::LoadFailed(s) => (11, text(s)),
            Frame::Log(level, s) => (12, [&[*level][..], s.as_bytes()].concat()),
            Frame::StateGet(s) => (13, text(s)),
            Frame::StateSet(key, value) => {
                // Lengths fit: a key longer than the frame limit is refused when read.
                let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
                (14, [&len.to_le_bytes()[..], key.as_bytes(), value.as_bytes()].concat())
            }
            Frame::Progress(fraction, s) => (15, [&fraction.to_le_bytes()[..], s.as_bytes()].concat()),
            Frame::Orchestrate(s) => (17, text(s)),
            Frame::Done(s, usage) => {
                (16, [&usage.cpu_us.to_le_bytes()[..], &usage.max_rss_kib.to_le_bytes()[..], s.as_bytes()].concat())
            }
        };
        let len = u32::try_from(payload.len() + 1).unwrap_or(u32::MAX);
        let mut bytes = Vec::with_capacity(5 + payload.len());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.push(tag);
        bytes.extend_from_slice(&payload);
        bytes
    }

    fn decode(tag: u8, payload: &[u8]) -> io::Result<Frame> {
        let text = |bytes: &[u8]| {
            String::from_utf8(bytes.to_vec()).map_err(|_| invalid(format!("frame {tag}: text is not UTF-8")))
        };
        let short = || invalid(format!("frame {tag} is too short"));
        Ok(match tag {
            1 => Frame::Load(text(payload)?),
            2 => Frame::Call(text(payload)?),
            3 => match payload.split_first() {
                Some((0, _)) => Frame::StateValue(None),
                Some((1, rest)) => Frame::StateValue(Some(text(rest)?)),
                _ => return Err(short()),
            },
            4 => Frame::Cancel,
            5 => Frame::Orchestrated(text(payload)?),
            10 => Frame::Loaded(text(payload)?),
            11 => Frame::LoadFailed(text(payload)?),
            12 => {
                let (level, rest) = payload.split_first().ok_or_else(short)?;
                Frame::Log(*level, text(rest)?)
            }
            13 => Frame::StateGet(text(payload)?),
            14 => {
                let len = payload.get(..4).ok_or_else(short)?;
                let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
                let key = payload.get(4..4 + len).ok_or_else(short)?;
                Frame::StateSet(text(key)?, text(&payload[4 + len..])?)
            }
            15 => {
                let fraction = payload.get(..8).ok_or_else(short)?;
                Frame::Progress(f64::from_le_bytes(fraction.try_into().expect("8 bytes")), text(&payload[8..])?)
            }
            16 => {
                let number = |at: usize| -> io::Result<u64> {
                    let bytes = payload.get(at..at + 8).ok_or_else(short)?;
                    Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
                };
                let usage = WorkerUsage { cpu_us: number(0)?, max_rss_kib: number(8)? };
                Frame::Done(text(&payload[16..])?, usage)
            }
            17 => Frame::Orchestrate(text(payload)?),
            other => return Err(invalid(format!("unknown frame tag {other}"))),
        })
    }
}

/// One end of the socket, with the bytes read but not yet parsed.
pub(crate) struct Conn {
    stream: UnixStream,
    /// Read bytes live in `buf[start..end]`; the rest is room for more.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// The read buffer's usual size; it grows for a larger frame, up to
/// [`MAX_FRAME_BYTES`], and shrinks back once that frame is read.
const BUFFER_BYTES: usize = 64 << 10;

impl Conn {
    pub(crate) fn new(stream: UnixStream) -> Self {
        Self { stream, buf: vec![0; BUFFER_BYTES], start: 0, end: 0 }
    }

    /// The socket (to set timeouts, or shut it down).
    pub(crate) fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Send `frame` in one write.
    pub(crate) fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let bytes = frame.encode();
        if bytes.len() - 4 > MAX_FRAME_BYTES {
            return Err(invalid(format!("a frame of {} bytes is past the limit of {MAX_FRAME_BYTES}", bytes.len())));
        }
        self.stream.write_all(&bytes)
    }

    /// The next frame, waiting for it (up to the socket's read timeout:
    /// then an error of kind `WouldBlock` or `TimedOut`, and the bytes read so
    /// far are kept for the next try). `Ok(None)`: the peer closed the socket.
    pub(crate) fn recv(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(Some(frame));
            }
            if self.fill()? == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the socket inside a frame"))
                };
            }
        }
    }

    /// [`Self::recv`], but first polling without sleeping for up to `spin`:
    /// waking a sleeping thread takes tens of microseconds on a busy or
    /// virtual machine, more than a short call, and the peer usually answers
    /// within that time on another core.
    pub(crate) fn recv_spinning(&mut self, spin: std::time::Duration) -> io::Result<Option<Frame>> {
        if spin.is_zero() {
            return self.recv();
        }
        if let Some(frame) = self.parse()? {
            return Ok(Some(frame));
        }
        self.stream.set_nonblocking(true)?;
        let started = std::time::Instant::now();
        let polled = loop {
            match self.fill() {
                Ok(0) => break None,
                Ok(_) => match self.parse() {
                    Ok(Some(frame)) => break Some(Ok(Some(frame))),
                    Ok(None) => {}
                    Err(e) => break Some(Err(e)),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if started.elapsed() >= spin {
                        break None;
                    }
                    std::hint::spin_loop();
                }
                Err(e) => break Some(Err(e)),
            }
        };
        self.stream.set_nonblocking(false)?;
        match polled {
            Some(result) => result,
            None => self.recv(),
        }
    }

    /// The next frame if one has fully arrived, without waiting.
    pub(crate) fn try_recv(&mut self) -> io::Result<Option<Frame>> {
        if let Some(frame) = self.parse()? {
            return Ok(Some(frame));
        }
        self.stream.set_nonblocking(true)?;
        let filled = self.fill();
        self.stream.set_nonblocking(false)?;
        match filled {
            Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the socket")),
            Ok(_) => self.parse(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Read what is there; 0 at end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
            if self.buf.len() > BUFFER_BYTES {
                self.buf = vec![0; BUFFER_BYTES];
            }
        }
        // Room for the rest of the frame being read, growing 1 MiB at a
        // time: a header alone never allocates what it claims.
        let need = self.needed().unwrap_or(4096).clamp(4096, 1 << 20);
        if self.buf.len() - self.end < need {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            if self.buf.len() - self.end < need {
                self.buf.resize(self.end + need, 0);
            }
        }
        let read = self.stream.read(&mut self.buf[self.end..])?;
        self.end += read;
        Ok(read)
    }

    /// Bytes still missing for the frame whose header has arrived, if one has.
    fn needed(&self) -> Option<usize> {
        let pending = &self.buf[self.start..self.end];
        let len = u32::from_le_bytes(pending.get(..4)?.try_into().ok()?) as usize;
        Some((4 + len).saturating_sub(pending.len()))
    }

    /// A complete frame from `buf`, if there is one.
    fn parse(&mut self) -> io::Result<Option<Frame>> {
        let pending = &self.buf[self.start..self.end];
        let Some(header) = pending.get(..4) else { return Ok(None) };
        let len = u32::from_le_bytes(header.try_into().expect("4 bytes")) as usize;
        if len == 0 || len > MAX_FRAME_BYTES + 1 {
            return Err(invalid(format!("a frame of {len} bytes (the limit is {MAX_FRAME_BYTES})")));
        }
        let Some(body) = pending.get(4..4 + len) else { return Ok(None) };
        let frame = Frame::decode(body[0], &body[1..])?;
        self.start += 4 + len;
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_survives_the_socket_whole_or_in_pieces() {
        let frames = [
            Frame::Load("{\"artifact\":\"/x\"}".into()),
            Frame::Call("{\"operation\":\"é\"}".into()),
            Frame::StateValue(None),
            Frame::StateValue(Some("[1,2]".into())),
            Frame::Cancel,
            Frame::Orchestrated("{\"ok\":\"e-1\"}".into()),
            Frame::Orchestrate("{\"op\":\"execution-status\",\"execution\":\"e\"}".into()),
            Frame::Loaded("{}".into()),
            Frame::LoadFailed("{\"kind\":\"not-a-plugin\",\"detail\":\"x\"}".into()),
            Frame::Log(3, "hello".into()),
            Frame::StateGet("key".into()),
            Frame::StateSet("k".into(), "\"v\"".into()),
            Frame::StateSet(String::new(), String::new()),
            Frame::Progress(0.5, "half".into()),
            Frame::Done("{\"ok\":null}".into(), WorkerUsage { cpu_us: 1500, max_rss_kib: 4096 }),
        ];
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Conn::new(a), Conn::new(b));
        for frame in &frames {
            a.send(frame).unwrap();
        }
        for frame in &frames {
            assert_eq!(&b.recv().unwrap().unwrap(), frame);
        }
        assert!(b.try_recv().unwrap().is_none(), "nothing more has arrived");
        // A frame written a byte at a time is read once complete.
        let bytes = Frame::Progress(1.0, "done".into()).encode();
        let mut raw = a.stream().try_clone().unwrap();
        for byte in &bytes[..bytes.len() - 1] {
            raw.write_all(&[*byte]).unwrap();
            assert!(b.try_recv().unwrap().is_none());
        }
        raw.write_all(&bytes[bytes.len() - 1..]).unwrap();
        assert_eq!(b.recv().unwrap(), Some(Frame::Progress(1.0, "done".into())));
        drop((a, raw));
        assert_eq!(b.recv().unwrap(), None, "a closed socket is the end");
    }

    #[test]
    fn a_hostile_peer_gets_an_error_not_an_allocation() {
        for bad in [
            &[0xff, 0xff, 0xff, 0xff, 16][..], // 4 GiB
            &[0, 0, 0, 0][..],                 // empty
            &[1, 0, 0, 0, 99][..],             // unknown tag
            &[3, 0, 0, 0, 16, 0xc3, 0x28][..], // not UTF-8
            &[2, 0, 0, 0, 14, 9][..],          // state-set too short
        ] {
            let (mut a, b) = UnixStream::pair().unwrap();
            a.write_all(bad).unwrap();
            drop(a);
            let err = Conn::new(b).recv().unwrap_err();
            assert!(matches!(err.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof), "{bad:?}: {err}");
        }
    }
}
