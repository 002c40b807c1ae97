//! Artifacts from the plugin's side: [`ArtifactWriter`] and
//! [`ArtifactReader`], `std::io` streams over the host's artifact services
//! ([`HostServices::artifact_create`] and the rest, contract 0.4). A native
//! plugin's streams go straight to the file the host names; a WASM
//! component's move through the host in chunks of at most 1 MiB, so neither
//! side holds a whole artifact in memory.

use crate::contract::{ArtifactHandle, ArtifactRef, HostServices, PluginError};
use std::io::{self, Read, Write};

/// The chunk a WASM component's streams move per host request, bytes.
const CHUNK: usize = 1 << 20;

enum Sink {
    File(io::BufWriter<std::fs::File>),
    Host(Vec<u8>),
}

/// An artifact being written: `std::io::Write`, then [`Self::finish`] for its
/// reference. Made by [`crate::Context::create_artifact`]. Dropped
/// unfinished, its bytes are discarded when the call ends.
pub struct ArtifactWriter<'a> {
    host: &'a dyn HostServices,
    id: u32,
    sink: Sink,
}

impl<'a> ArtifactWriter<'a> {
    pub(crate) fn new(host: &'a dyn HostServices, handle: ArtifactHandle) -> Result<Self, PluginError> {
        let sink = match handle.path {
            Some(path) => Sink::File(io::BufWriter::with_capacity(
                CHUNK,
                std::fs::OpenOptions::new().write(true).truncate(true).open(&path).map_err(|e| {
                    PluginError::failed(format!("cannot open the artifact file {}: {e}", path.display()))
                })?,
            )),
            None => Sink::Host(Vec::with_capacity(CHUNK)),
        };
        Ok(Self { host, id: handle.id, sink })
    }

    fn send(&mut self) -> io::Result<()> {
        if let Sink::Host(buf) = &mut self.sink
            && !buf.is_empty()
        {
            self.host.artifact_write(self.id, buf).map_err(io::Error::other)?;
            buf.clear();
        }
        Ok(())
    }

    /// Store the bytes written (the host keeps one copy per content) and
    /// answer the artifact's reference, which the call may put in its output.
    ///
    /// # Errors
    /// A write that failed, or the host's refusal (`failed` past the
    /// plugin's `limits.artifact_bytes`).
    pub fn finish(mut self) -> Result<ArtifactRef, PluginError> {
        self.flush().map_err(|e| PluginError::failed(format!("writing artifact: {e}")))?;
        if let Sink::File(file) = &self.sink {
            file.get_ref().sync_data().map_err(|e| PluginError::failed(format!("writing artifact: {e}")))?;
        }
        self.host.artifact_finish(self.id)
    }
}

impl Write for ArtifactWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.sink {
            Sink::File(file) => file.write(data),
            Sink::Host(buf) => {
                let n = data.len().min(CHUNK - buf.len());
                buf.extend_from_slice(&data[..n]);
                if buf.len() == CHUNK {
                    self.send()?;
                }
                Ok(n)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::File(file) => file.flush(),
            Sink::Host(_) => self.send(),
        }
    }
}

/// An artifact opened for reading: `std::io::Read`. Made by
/// [`crate::Context::open_artifact`].
pub struct ArtifactReader<'a> {
    host: &'a dyn HostServices,
    id: u32,
    source: Source,
}

enum Source {
    File(std::fs::File),
    Host { chunk: Vec<u8>, at: usize, ended: bool },
}

impl<'a> ArtifactReader<'a> {
    pub(crate) fn new(host: &'a dyn HostServices, handle: ArtifactHandle) -> Result<Self, PluginError> {
        let source =
            match handle.path {
                Some(path) => Source::File(std::fs::File::open(&path).map_err(|e| {
                    PluginError::failed(format!("cannot open the artifact file {}: {e}", path.display()))
                })?),
                None => Source::Host { chunk: Vec::new(), at: 0, ended: false },
            };
        Ok(Self { host, id: handle.id, source })
    }
}

impl Read for ArtifactReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.source {
            Source::File(file) => file.read(out),
            Source::Host { chunk, at, ended } => {
                if *at == chunk.len() {
                    if *ended || out.is_empty() {
                        return Ok(0);
                    }
                    *chunk = self.host.artifact_read(self.id, CHUNK as u32).map_err(io::Error::other)?;
                    *at = 0;
                    if chunk.is_empty() {
                        *ended = true;
                        return Ok(0);
                    }
                }
                let n = out.len().min(chunk.len() - *at);
                out[..n].copy_from_slice(&chunk[*at..*at + n]);
                *at += n;
                Ok(n)
            }
        }
    }
}

/// Rows (JSON objects) given inline or as an artifact of JSON lines: what a
/// `rows` parameter takes when its rows may come by reference
/// (`${{ steps.load.artifacts.rows }}`) or by value
/// (`${{ steps.load.output.rows }}`). As JSON: a list of objects, or an
/// artifact reference.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Rows {
    /// An artifact of JSON lines, one object per line (see [`write_rows`]).
    Artifact(ArtifactRef),
    /// The rows themselves.
    Inline(Vec<serde_json::Map<String, serde_json::Value>>),
}

/// The media type of an artifact of rows: JSON lines.
pub const ROWS_MEDIA_TYPE: &str = "application/x-ndjson";

impl Rows {
    /// The rows, read from the artifact if they are one.
    ///
    /// # Errors
    /// The artifact cannot be opened or read, or a line is not a JSON object
    /// (`invalid-input`, naming the line).
    pub fn read(
        self,
        ctx: &crate::Context<'_>,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, PluginError> {
        let reference = match self {
            Rows::Inline(rows) => return Ok(rows),
            Rows::Artifact(reference) => reference,
        };
        let reader = io::BufReader::with_capacity(CHUNK, ctx.open_artifact(&reference)?);
        let mut rows = Vec::new();
        for (n, line) in io::BufRead::lines(reader).enumerate() {
            let line = line.map_err(|e| PluginError::failed(format!("reading artifact `{}`: {e}", reference.name)))?;
            if line.trim().is_empty() {
                continue;
            }
            let row = serde_json::from_str(&line).map_err(|e| {
                PluginError::invalid_input(format!(
                    "artifact `{}` line {}: not a JSON object: {e}",
                    reference.name,
                    n + 1
                ))
            })?;
            rows.push(row);
        }
        Ok(rows)
    }
}

/// Write `rows` as artifact `name` of JSON lines (one object per line,
/// [`ROWS_MEDIA_TYPE`]) and answer its reference.
///
/// # Errors
/// See [`crate::Context::create_artifact`] and [`ArtifactWriter::finish`].
pub fn write_rows<'r>(
    ctx: &crate::Context<'_>,
    name: &str,
    rows: impl IntoIterator<Item = &'r serde_json::Map<String, serde_json::Value>>,
) -> Result<ArtifactRef, PluginError> {
    let mut out = ctx.create_artifact(name, Some(ROWS_MEDIA_TYPE))?;
    let failed = |e: io::Error| PluginError::failed(format!("writing artifact `{name}`: {e}"));
    for row in rows {
        serde_json::to_writer(&mut out, row).map_err(|e| failed(e.into()))?;
        out.write_all(b"\n").map_err(failed)?;
    }
    out.finish()
}
