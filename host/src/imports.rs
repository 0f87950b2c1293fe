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
    /// How many lines this guest may still log (its log calls and its stdout and stderr).
    pub log_budget: Arc<LogBudget>,
    /// Epoch ticks the running call may still use before it is interrupted; the call gives its
    /// worker back at every tick in between.
    pub ticks_left: u64,
}

impl RoomEnv {
    /// A fresh environment for a guest tagged `tag` (a room id, or `auth:<type>`).
    pub fn new(tag: Arc<str>, memory_limit: usize) -> Self {
        let log_budget = Arc::new(LogBudget::default());
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(GuestOutput::new(tag.clone(), "stdout", log_budget.clone()))
            .stderr(GuestOutput::new(tag.clone(), "stderr", log_budget.clone()))
            .build_p1();
        Self {
            wasi,
            limiter: RoomLimiter { memory_limit, exceeded: false },
            memory: None,
            tag,
            log_budget,
            ticks_left: 0,
        }
    }
}

/// A guest's log allowance: bursts of [`LogBudget::BURST`] lines, then [`LogBudget::PER_SEC`] a
/// second. Lines past it are dropped and counted, and the count is logged once lines flow again,
/// so a chatty or hostile guest cannot flood the host's log.
#[derive(Debug)]
pub struct LogBudget {
    state: Mutex<(f64, std::time::Instant, u64)>,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self { state: Mutex::new((Self::BURST, std::time::Instant::now(), 0)) }
    }
}

impl LogBudget {
    /// Lines a guest may log at once.
    pub const BURST: f64 = 200.0;
    /// Lines a second after a burst.
    pub const PER_SEC: f64 = 50.0;

    /// Takes one line from the budget: `None` when it is spent (the line is dropped), else the
    /// number of lines dropped since the last one logged.
    fn take(&self) -> Option<u64> {
        let mut state = self.state.lock().expect("log budget lock");
        let (tokens, at, dropped) = &mut *state;
        let now = std::time::Instant::now();
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * Self::PER_SEC).min(Self::BURST);
        *at = now;
        if *tokens < 1.0 {
            *dropped += 1;
            return None;
        }
        *tokens -= 1.0;
        Some(std::mem::take(dropped))
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
    emit_budgeted(&env.tag, &env.log_budget, LogLevel::from_u32(level as u32), line);
    Ok(())
}

/// Logs `line` (cut at [`MAX_LINE`] bytes) if the guest's budget allows, saying first how many
/// lines were dropped before it.
fn emit_budgeted(tag: &str, budget: &LogBudget, level: LogLevel, line: &str) {
    let Some(dropped) = budget.take() else { return };
    if dropped > 0 {
        tracing::warn!(target: "guest", room = tag, "{dropped} log lines dropped: over the guest's log budget");
    }
    if line.len() > MAX_LINE {
        let cut = (0..=MAX_LINE).rev().find(|&i| line.is_char_boundary(i)).unwrap_or(0);
        emit(tag, level, &format!("{}… ({} bytes)", &line[..cut], line.len()));
    } else {
        emit(tag, level, line);
    }
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
    budget: Arc<LogBudget>,
}

/// A guest line longer than this is logged in pieces, so a guest cannot grow host memory.
const MAX_LINE: usize = 4096;

impl GuestOutput {
    fn new(tag: Arc<str>, stream: &'static str, budget: Arc<LogBudget>) -> Self {
        Self { tag, stream, partial: Arc::default(), budget }
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
        emit_budgeted(&self.tag, &self.budget, level, &format!("[{}] {line}", self.stream));
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

#[cfg(test)]
mod tests {
    use super::LogBudget;

    #[test]
    fn the_log_budget_allows_a_burst_then_counts_what_it_drops() {
        let budget = LogBudget::default();
        for _ in 0..LogBudget::BURST as usize {
            assert_eq!(budget.take(), Some(0));
        }
        assert_eq!(budget.take(), None);
        assert_eq!(budget.take(), None);
        std::thread::sleep(std::time::Duration::from_millis(60));
        // 50 lines a second: after 60 ms there are 3 again, and the first says 2 were dropped.
        assert_eq!(budget.take(), Some(2));
        assert_eq!(budget.take(), Some(0));
    }
}
