//! Every host function a guest can call, in one place, plus where guest stdout and stderr go.
//!
//! Imports never block and never touch the network: the ABI's design puts everything a room
//! does to the world in the effects returned from `odeon_events` (see `odeon_protocol::abi`).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use odeon_protocol::abi::{self, LogLevel};
use wasmtime::{Caller, Linker, Memory, ResourceLimiter};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The data of one room's wasmtime `Store`.
pub struct RoomEnv {
    /// The WASI context: no preopens, no environment, no network; stdout and stderr go to the log.
    pub wasi: WasiP1Ctx,
    /// Memory and table limits of this room.
    pub limiter: RoomLimiter,
    /// The guest's memory, cached after instantiation so imports skip the export lookup.
    pub memory: Option<Memory>,
    /// Tag for every log line this guest produces.
    pub tag: Arc<str>,
    /// Epoch ticks the running call may still use before it is interrupted; the call gives its
    /// worker back at every tick in between.
    pub ticks_left: u64,
}

impl RoomEnv {
    /// A fresh environment for a guest tagged `tag` (a room id, or `auth:<type>`).
    pub fn new(tag: Arc<str>, memory_limit: usize) -> Self {
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(GuestOutput::new(tag.clone(), "stdout"))
            .stderr(GuestOutput::new(tag.clone(), "stderr"))
            .build_p1();
        Self {
            wasi,
            limiter: RoomLimiter { memory_limit, exceeded: false },
            memory: None,
            tag,
            ticks_left: 0,
        }
    }
}

/// Caps a room's memory and remembers whether the cap was hit, so a room that dies of it is
/// reported as "memory cap exceeded" rather than as the guest's abort.
pub struct RoomLimiter {
    memory_limit: usize,
    /// Set when the guest asked for more memory than its cap.
    pub exceeded: bool,
}

impl ResourceLimiter for RoomLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_limit;
        self.exceeded |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

/// Registers the WASI subset and every `odeon_room_v1` import on `linker`.
pub fn link(linker: &mut Linker<RoomEnv>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_async(linker, |env: &mut RoomEnv| &mut env.wasi)?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::imports::LOG, log)?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::imports::NOW_MS, now_ms)?;
    Ok(())
}

/// `log(level, ptr, len)`: one UTF-8 line from the guest.
///
/// # Traps
/// When `ptr..ptr+len` is outside the guest's memory or the bytes are not UTF-8.
fn log(mut caller: Caller<'_, RoomEnv>, level: i32, ptr: i32, len: i32) -> wasmtime::Result<()> {
    let memory = caller.data().memory.ok_or_else(|| wasmtime::format_err!("log called before start"))?;
    let (data, env) = memory.data_and_store_mut(&mut caller);
    let start = ptr as u32 as usize;
    let bytes = start
        .checked_add(len as u32 as usize)
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| wasmtime::format_err!("log: buffer {start}+{len} outside guest memory"))?;
    let line = std::str::from_utf8(bytes).map_err(|_| wasmtime::format_err!("log: line is not UTF-8"))?;
    emit(&env.tag, LogLevel::from_u32(level as u32), line);
    Ok(())
}

/// `now_ms()`: the host's wall clock.
fn now_ms(_: Caller<'_, RoomEnv>) -> i64 {
    crate::clock::now_ms() as i64
}

fn emit(tag: &str, level: LogLevel, line: &str) {
    match level {
        LogLevel::Trace => tracing::trace!(target: "guest", room = tag, "{line}"),
        LogLevel::Debug => tracing::debug!(target: "guest", room = tag, "{line}"),
        LogLevel::Info => tracing::info!(target: "guest", room = tag, "{line}"),
        LogLevel::Warn => tracing::warn!(target: "guest", room = tag, "{line}"),
        LogLevel::Error => tracing::error!(target: "guest", room = tag, "{line}"),
    }
}

/// Guest stdout or stderr, forwarded line by line to the host log with the guest's tag.
#[derive(Clone)]
struct GuestOutput {
    tag: Arc<str>,
    stream: &'static str,
    /// The unfinished last line; shared because WASI may open several handles to one stream.
    partial: Arc<Mutex<Vec<u8>>>,
}

/// A guest line longer than this is logged in pieces, so a guest cannot grow host memory.
const MAX_LINE: usize = 4096;

impl GuestOutput {
    fn new(tag: Arc<str>, stream: &'static str) -> Self {
        Self { tag, stream, partial: Arc::default() }
    }

    fn push(&self, bytes: &[u8]) {
        let mut partial = self.partial.lock().expect("guest output lock");
        for &b in bytes {
            if b == b'\n' || partial.len() >= MAX_LINE {
                self.flush_line(&mut partial);
                if b == b'\n' {
                    continue;
                }
            }
            partial.push(b);
        }
    }

    fn flush_line(&self, partial: &mut Vec<u8>) {
        let line = String::from_utf8_lossy(partial);
        let level = if self.stream == "stderr" { LogLevel::Warn } else { LogLevel::Info };
        emit(&self.tag, level, &format!("[{}] {line}", self.stream));
        partial.clear();
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
