//! Host configuration, from flags and environment variables.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use odeon_protocol::profile::Profile;

use crate::plugins::GuestLimits;

/// Odeon host: runs Colyseus-compatible rooms as sandboxed wasm plugins.
#[derive(Debug, Clone, Parser)]
#[command(name = "odeon-host", version)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "ODEON_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port to listen on; `NODE_APP_INSTANCE` is added, as PM2 numbers its instances.
    #[arg(long, env = "PORT", default_value_t = 2567)]
    pub port: u16,
    /// Directory of room plugins (`*.wasm`), watched for new versions.
    #[arg(long, env = "ODEON_PLUGINS", default_value = "plugins")]
    pub plugins: PathBuf,
    /// Client generation to speak: 0.16 (colyseus.js), 0.17 or 0.18 (@colyseus/sdk).
    #[arg(long, env = "ODEON_PROTOCOL", default_value = "0.18")]
    pub protocol: Profile,
    /// Bearer token of the admin endpoint (`POST /odeon/admin/plugins`); unset disables it.
    #[arg(long, env = "ODEON_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Seconds a seat reservation waits for its WebSocket.
    #[arg(long, env = "COLYSEUS_SEAT_RESERVATION_TIME", default_value_t = 15)]
    pub seat_reservation_secs: u64,
    /// This process's id; random when unset.
    #[arg(long, env = "ODEON_PROCESS_ID")]
    pub process_id: Option<String>,
    /// Address clients connect to for rooms of this host, e.g. `game.example.com/{port}` (`{port}`
    /// is this host's port). With Redis presence it defaults to the listening address.
    #[arg(long, env = "ODEON_PUBLIC_ADDRESS")]
    pub public_address: Option<String>,
    /// Behind a proxy (`odeon-proxy`): reservations name no address unless `--public-address`
    /// is given, so each client comes back through the proxy it matchmade through; and the
    /// client address given to limits and auth hooks comes from `X-Forwarded-For` when the
    /// request carries a running proxy's secret from the registry (in Redis).
    #[arg(long, env = "ODEON_BEHIND_PROXY")]
    pub behind_proxy: bool,
    /// Addresses or networks (`10.0.0.0/8`) whose `X-Forwarded-For` is believed (other
    /// proxies than `odeon-proxy`, say); none by default.
    #[arg(long, env = "ODEON_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where a proxy reaches this host (`host:port`), announced in the process registry;
    /// defaults to the listening address unless that is unspecified (`0.0.0.0`).
    #[arg(long, env = "ODEON_INTERNAL_ADDRESS")]
    pub internal_address: Option<String>,
    /// Linear memory cap per room, in MiB.
    #[arg(long, env = "ODEON_ROOM_MEMORY_MB", default_value_t = 64)]
    pub room_memory_mb: usize,
    /// Time budget of one guest call, in milliseconds.
    #[arg(long, env = "ODEON_CALL_DEADLINE_MS", default_value_t = 200)]
    pub call_deadline_ms: u64,
    /// Most rooms alive at once in this process.
    #[arg(long, env = "ODEON_MAX_ROOMS", default_value_t = 1000)]
    pub max_rooms: u32,
    /// Largest WebSocket message accepted from a client, in bytes.
    #[arg(long, env = "ODEON_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,
    /// Messages per second one client may send (bursts of twice that); a client over it is
    /// closed with 1008. 0: no limit.
    #[arg(long, env = "ODEON_MAX_MESSAGES_PER_SEC", default_value_t = 500)]
    pub max_messages_per_sec: u32,
    /// Matchmaking requests per second from one client address (bursts of twice that); more
    /// are answered 429. 0: no limit.
    #[arg(long, env = "ODEON_MATCHMAKE_RATE", default_value_t = 50)]
    pub matchmake_rate: u32,
    /// Rooms one client address may have created per minute (in bursts of as many); more
    /// creations are refused. 0: no limit.
    #[arg(long, env = "ODEON_ROOM_CREATES_PER_MIN", default_value_t = 120)]
    pub room_creates_per_min: u32,
    /// Redis URL for presence shared by several hosts; unset keeps the in-process presence.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// MongoDB URI for room listings shared by several hosts; unset keeps the in-process driver.
    #[arg(long, env = "MONGO_URI")]
    pub mongo_uri: Option<String>,
    /// How long a request body may take to arrive once its headers have, in milliseconds; a
    /// slower one is answered 408 and its connection closed.
    #[arg(long, env = "ODEON_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// Origins whose pages may matchmake from a browser (CORS), comma-separated, `null`
    /// included only if listed; unset: any origin but `null`.
    #[arg(long, env = "ODEON_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Rooms of a canary version that may fail on this host (trap, deadline, memory cap, or a
    /// failed migration to it) before it reverts the canary for the whole deployment.
    #[arg(long, env = "ODEON_CANARY_FAULTS", default_value_t = 3)]
    pub canary_faults: u64,
    /// How long a draining host (`POST /odeon/admin/drain`) waits for its rooms to end before it
    /// closes what is left and exits, in seconds.
    #[arg(long, env = "ODEON_DRAIN_TIMEOUT_SECS", default_value_t = 300)]
    pub drain_timeout_secs: u64,
    /// How long a host stopping on SIGTERM or SIGINT with rooms, and no other live host to move
    /// them to, waits for one to appear (a rolling restart starts the next instance), in
    /// milliseconds; it does not wait when every other host is stopping too.
    #[arg(long, env = "ODEON_DRAIN_PEER_WAIT_MS", default_value_t = 5000)]
    pub drain_peer_wait_ms: u64,
    /// Do not watch the plugins directory for new versions.
    #[arg(long, env = "ODEON_NO_WATCH")]
    pub no_watch: bool,
}

impl Config {
    /// The port after the PM2 instance offset.
    pub fn effective_port(&self) -> u16 {
        let instance: u16 = std::env::var("NODE_APP_INSTANCE").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        self.port.saturating_add(instance)
    }

    /// Limits for every guest.
    pub fn guest_limits(&self) -> GuestLimits {
        GuestLimits {
            memory_bytes: self.room_memory_mb << 20,
            call_deadline: Duration::from_millis(self.call_deadline_ms),
            max_instances: self.max_rooms,
            ..GuestLimits::default()
        }
    }
}
