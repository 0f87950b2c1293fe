//! The proxy's identity toward hosts: a random id and secret, kept in the registry
//! (`odeon_protocol::registry::proxy_key`) with a short TTL this proxy renews, and sent with every
//! request it forwards (`x-odeon-proxy: <id>:<secret>`). A host believes a request's
//! `X-Forwarded-For` only when the secret matches the registry's, so a process that reaches a
//! host directly cannot choose its own client address; a stopped proxy's secret expires with it.

use std::io::Read;
use std::time::Duration;

use hyper::header::HeaderValue;
use odeon_protocol::registry::{PROXY_TTL_MS, proxy_key};
use redis::AsyncCommands;
use tokio::time::timeout;

use crate::discovery::TIMEOUT;

/// This proxy's id and secret.
#[derive(Clone)]
pub struct Identity {
    id: String,
    secret: String,
    header: HeaderValue,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Identity {
    /// A new id and secret from the operating system's random source.
    pub fn generate() -> std::io::Result<Self> {
        let mut bytes = [0u8; 24];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let (id, secret) = (hex(&bytes[..6]), hex(&bytes[6..]));
        let header = HeaderValue::from_str(&format!("{id}:{secret}")).expect("hex is a header value");
        Ok(Self { id, secret, header })
    }

    /// The proxy's id (in logs).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What goes in `x-odeon-proxy` on every forwarded request.
    pub fn header(&self) -> &HeaderValue {
        &self.header
    }

    /// Writes the secret to the registry now and every third of its TTL, forever. A failed write
    /// is logged and retried at the next period; hosts keep believing the secret they read until
    /// it expires.
    pub async fn keep_registered(self, client: redis::Client) {
        let mut every = tokio::time::interval(Duration::from_millis(PROXY_TTL_MS / 3));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn = None;
        loop {
            every.tick().await;
            if conn.is_none() {
                conn = timeout(TIMEOUT, client.get_multiplexed_async_connection())
                    .await
                    .ok()
                    .and_then(Result::ok);
            }
            let Some(c) = conn.as_mut() else {
                tracing::warn!("proxy secret not registered: Redis unreachable");
                continue;
            };
            let written: Result<Result<(), _>, _> =
                timeout(TIMEOUT, c.pset_ex(proxy_key(&self.id), &self.secret, PROXY_TTL_MS)).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!("proxy secret not registered; retrying");
                conn = None;
            }
        }
    }

    /// Removes the secret (a proxy shutting down).
    pub async fn unregister(&self, client: &redis::Client) {
        let removed = async {
            let mut c = client.get_multiplexed_async_connection().await?;
            c.del::<_, ()>(proxy_key(&self.id)).await
        };
        let _ = timeout(TIMEOUT, removed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_random_and_fit_a_header() {
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        assert_ne!(a.header(), b.header());
        let text = a.header().to_str().unwrap();
        let (id, secret) = text.split_once(':').unwrap();
        assert_eq!((id.len(), secret.len()), (12, 36));
        assert_eq!(id, a.id());
    }
}
