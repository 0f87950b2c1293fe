//! The JSON summary `odeon-loadgen` prints and `odeon-bench` reads back.

use serde::{Deserialize, Serialize};

use crate::metrics::Quantiles;

/// One workload's results. Rates are over the measure window; `None` is JSON `null`
/// (no server pid given, no active clients, nothing measured).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// The server's base URL.
    pub endpoint: String,
    /// Room name matchmade.
    pub room: String,
    /// Active clients asked for.
    pub clients: u32,
    /// Idle clients asked for.
    pub idle: u32,
    /// Moves per active client per second.
    pub rate_hz: f64,
    /// Warm-up before the window, seconds.
    pub warmup_secs: f64,
    /// Length of the measure window actually observed, seconds.
    pub measure_secs: f64,
    /// Active clients that joined.
    pub joined_active: u32,
    /// Idle clients that joined.
    pub joined_idle: u32,
    /// Joins that failed (active and idle).
    pub failed_joins: u32,
    /// The first failure's text.
    pub first_join_error: Option<String>,
    /// Wall time of the whole join phase, seconds.
    pub join_phase_secs: f64,
    /// Active clients: HTTP request start to first ROOM_STATE, ms.
    pub join_ms: Option<Quantiles>,
    /// The same for idle clients, ms.
    pub idle_join_ms: Option<Quantiles>,
    /// Move sent to the first patch showing it, ms (moves sent in the window).
    pub echo_ms: Option<Quantiles>,
    /// Moves sent while the window was open.
    pub window_moves: u64,
    /// Moves sent in the window whose value was never seen (overwritten by a later move before
    /// a patch, or lost).
    pub echo_missed: u64,
    /// ROOM_STATE_PATCH frames per active client per second.
    pub patches_per_active_client_per_sec: Option<f64>,
    /// ROOM_STATE_PATCH frames per idle client per second (should be ~0).
    pub patches_per_idle_client_per_sec: Option<f64>,
    /// Frames into the server (moves, and PINGs of the `--ping-hz` probe) per second.
    pub frames_in_per_sec: f64,
    /// Frames out of the server (every binary frame received) per second.
    pub frames_out_per_sec: f64,
    /// Bytes of binary frames received per second.
    pub bytes_out_per_sec: f64,
    /// Every WebSocket frame on the clients' sockets per second, both ways (frames in, frames
    /// out, and WebSocket pings with their pongs): what a proxy in the path relays.
    #[serde(default)]
    pub ws_frames_per_sec: f64,
    /// Colyseus PINGs per active client per second (`--ping-hz`; 0: no probe).
    #[serde(default)]
    pub ping_hz: f64,
    /// Round trip of a probe PING sent in the window to its answer, ms.
    #[serde(default)]
    pub ping_rtt_ms: Option<Quantiles>,
    /// Probe slots skipped because the previous PING was unanswered a period later (window).
    #[serde(default)]
    pub pings_skipped: u64,
    /// The server's pid, if given.
    pub server_pid: Option<u32>,
    /// Server CPU over the window, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server VmRSS at the end of the window, KiB.
    pub server_rss_kib: Option<u64>,
    /// Server CPU time per frame in or out, µs.
    pub server_cpu_us_per_frame: Option<f64>,
    /// The kernel's part of it (stime): the TCP path both servers share, µs.
    #[serde(default)]
    pub server_sys_us_per_frame: Option<f64>,
    /// The proxy's pid, if given (`--proxy-pid`).
    #[serde(default)]
    pub proxy_pid: Option<u32>,
    /// Proxy CPU over the window, % of one core.
    #[serde(default)]
    pub proxy_cpu_pct: Option<f64>,
    /// Proxy VmRSS at the end of the window, KiB.
    #[serde(default)]
    pub proxy_rss_kib: Option<u64>,
    /// Proxy CPU time per WebSocket frame relayed (both ways, see `ws_frames_per_sec`), µs.
    #[serde(default)]
    pub proxy_cpu_us_per_frame: Option<f64>,
    /// The kernel's part of it (stime), µs.
    #[serde(default)]
    pub proxy_sys_us_per_frame: Option<f64>,
    /// Time the proxy's threads were runnable but waiting for a CPU, % of the window.
    #[serde(default)]
    pub proxy_wait_pct: Option<f64>,
    /// The loadgen's own CPU over the window, % of one core.
    pub loadgen_cpu_pct: Option<f64>,
    /// The loadgen's VmRSS at the end of the window, KiB.
    pub loadgen_rss_kib: Option<u64>,
    /// How late active clients' sends went out against their schedule, ms (window).
    pub send_late_ms: Option<Quantiles>,
    /// Busy CPU of the whole machine over the window, % of one core (all cores summed).
    pub machine_cpu_pct: Option<f64>,
    /// Machine CPU used by neither the server nor the loadgen, % of one core: other work
    /// sharing the machine, which makes the figures noisy.
    pub other_cpu_pct: Option<f64>,
    /// Time the server's threads were runnable but waiting for a CPU, % of the window
    /// (summed over threads): CPU contention on its core.
    pub server_wait_pct: Option<f64>,
    /// The same for the loadgen: above a few % its sends and reads ran late.
    pub loadgen_wait_pct: Option<f64>,
    /// Tokio worker threads (= cores the loadgen may run on).
    pub loadgen_workers: u32,
    /// The loadgen used more than 90 % of its cores: the figures measure it, not the server.
    pub loadgen_limited: bool,
    /// Frames the schema decoder could not follow (over the whole run).
    pub decode_errors: u64,
    /// Joined clients whose socket closed before the end and who did not get back (over the
    /// whole run).
    pub disconnects: u64,
    /// Every close or failure of a joined client's socket, reconnected or not (whole run): each
    /// one a disconnect its player would have seen.
    #[serde(default)]
    pub socket_closes: u64,
    /// Of those, closes by the server with 4010: the client's room moved to another host.
    #[serde(default)]
    pub closed_4010: u64,
    /// Whether clients reconnected after a 4010 close (`--reconnect-on-4010`).
    #[serde(default)]
    pub reconnect_on_4010: bool,
    /// Clients back in their room after a 4010 close.
    #[serde(default)]
    pub reconnections: u64,
    /// Reconnections that failed (the client ended; also in `disconnects`).
    #[serde(default)]
    pub reconnect_failures: u64,
    /// Reconnection attempts after a client's first (100 ms, 200 ms, 300 ms apart; 4 in all).
    #[serde(default)]
    pub reconnect_retries: u64,
    /// Why the first attempt that was tried again failed.
    #[serde(default)]
    pub first_retry_reason: Option<String>,
    /// The first failed reconnection's error.
    #[serde(default)]
    pub first_reconnect_error: Option<String>,
    /// A 4010 close to the first ROOM_STATE on the new connection, ms.
    #[serde(default)]
    pub reconnect_ms: Option<Quantiles>,
    /// Moves a reconnected client had sent on the closed socket after the one its room's state
    /// shows on the new connection: lost in the move (a room applies a client's moves in order).
    /// Reconnected clients only.
    #[serde(default)]
    pub moves_lost_on_4010: u64,
    /// When the first 4010 close arrived, Unix ms.
    #[serde(default)]
    pub first_4010_unix_ms: Option<u64>,
    /// When the last reconnected client got its ROOM_STATE, Unix ms.
    #[serde(default)]
    pub last_reconnect_unix_ms: Option<u64>,
    /// Send slots skipped because a client fell a period behind (over the window).
    pub skipped_sends: u64,
    /// Sends that waited more than 5 ms for the socket (over the whole run): the server was
    /// not reading.
    pub slow_sends: u64,
}
