//! The client's address behind a proxy: `X-Forwarded-For` is believed only from a peer the
//! operator named (`--trusted-proxies`) or, behind `odeon-proxy` (`--behind-proxy`), from a
//! request that carries a running proxy's secret from the registry. Anything else that reaches
//! the host directly is known by its own address, whatever headers it sends, so it cannot
//! choose the address per-address limits count and auth hooks see.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use odeon_protocol::registry;

use crate::presence::Presence;

/// How long a proxy secret read from the registry is believed without reading it again.
const FRESH: Duration = Duration::from_secs(5);
/// How soon a secret that did not match may be read again (a proxy restarted under its id).
const RECHECK: Duration = Duration::from_secs(1);
/// How long a registry read may take before the request is treated as not from a proxy.
const READ_TIMEOUT: Duration = Duration::from_millis(300);
/// Proxies remembered at most (a deployment runs a handful).
const MAX_KNOWN: usize = 256;

/// Who may say where a request came from.
pub(super) struct Forwarded {
    /// Peers named by the operator: their `X-Forwarded-For` is believed.
    networks: Vec<ipnet::IpNet>,
    /// The registry proxies prove themselves against (`--behind-proxy`), if any.
    registry: Option<Arc<dyn Presence>>,
    /// Proxy id → its secret and when it was read.
    known: Mutex<HashMap<String, (String, Instant)>>,
}

impl Forwarded {
    pub(super) fn new(networks: Vec<ipnet::IpNet>, registry: Option<Arc<dyn Presence>>) -> Self {
        Self { networks, registry, known: Mutex::new(HashMap::new()) }
    }

    /// The client's address: the peer's, or, from a trusted proxy, the one it forwarded.
    pub(super) async fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.networks.iter().any(|net| net.contains(&peer)) {
            return from_chain(peer, headers, &self.networks);
        }
        if let Some(registry) = &self.registry
            && let Some(claim) = headers.get(registry::PROXY_HEADER).and_then(|v| v.to_str().ok())
            && self.proven(registry.as_ref(), claim).await
        {
            // odeon-proxy appends the address it saw last; what the client sent comes before.
            return forwarded_chain(headers).last().copied().unwrap_or(peer);
        }
        peer
    }

    /// Whether the request came through a running `odeon-proxy` (its secret checked against the
    /// registry, with `--behind-proxy`).
    pub(super) async fn is_proxy(&self, headers: &HeaderMap) -> bool {
        let Some(registry) = &self.registry else { return false };
        let Some(claim) = headers.get(registry::PROXY_HEADER).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        self.proven(registry.as_ref(), claim).await
    }

    /// Whether `claim` (`<proxy id>:<secret>`) names a running proxy's secret.
    async fn proven(&self, registry: &dyn Presence, claim: &str) -> bool {
        let Some((id, secret)) = claim.split_once(':') else { return false };
        let now = Instant::now();
        let cached = self.known.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        if let Some((known, at)) = &cached {
            let matches = token_eq(secret.as_bytes(), known.as_bytes());
            if matches && now.duration_since(*at) < FRESH || !matches && now.duration_since(*at) < RECHECK {
                return matches;
            }
        }
        let read = tokio::time::timeout(READ_TIMEOUT, registry.get(&registry::proxy_key(id))).await;
        let Ok(Ok(Some(known))) = read else {
            self.known.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            return false;
        };
        let matches = token_eq(secret.as_bytes(), known.as_bytes());
        let mut all = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() >= MAX_KNOWN {
            all.clear();
        }
        all.insert(id.to_string(), (known, now));
        matches
    }
}

/// Every address of `X-Forwarded-For`, in order (unparsable entries left out).
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect()
}

/// From a trusted peer: the last address of `X-Forwarded-For` that is not itself trusted (the
/// one the outermost trusted proxy saw).
fn from_chain(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let forwarded = forwarded_chain(headers);
    // All trusted (a client on the proxies' own network): the first is the client.
    forwarded.iter().rev().find(|ip| !is_trusted(ip)).or(forwarded.first()).copied().unwrap_or(peer)
}

/// Compares two secrets in time that depends on `expected`'s length only.
pub(crate) fn token_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= g ^ e;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(forwarded: &[&str], proxy: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in forwarded {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        if let Some(p) = proxy {
            h.insert(registry::PROXY_HEADER, HeaderValue::from_str(p).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn forwarded_for_is_believed_from_named_networks_only() {
        let trusted: Vec<ipnet::IpNet> = vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let f = Forwarded::new(trusted, None);
        let spoofed = headers(&["6.6.6.6"], None);
        // An untrusted peer's header is ignored: it could say anything.
        assert_eq!(f.client_ip(ip("203.0.113.9"), &spoofed).await, ip("203.0.113.9"));
        // Another loopback address is not the named proxy.
        assert_eq!(f.client_ip(ip("127.0.0.2"), &spoofed).await, ip("127.0.0.2"));
        // From a proxy: the last untrusted entry; what the client prepended is skipped.
        let chain = headers(&["6.6.6.6, 198.51.100.7", "10.1.2.3"], None);
        assert_eq!(f.client_ip(ip("127.0.0.1"), &chain).await, ip("198.51.100.7"));
        // A proxy that sent no header, or garbage: the peer.
        assert_eq!(f.client_ip(ip("127.0.0.1"), &headers(&["nonsense"], None)).await, ip("127.0.0.1"));
        // Nothing named, no registry: never believed.
        let none = Forwarded::new(Vec::new(), None);
        assert_eq!(none.client_ip(ip("127.0.0.1"), &spoofed).await, ip("127.0.0.1"));
    }

    #[tokio::test]
    async fn a_proxy_is_believed_only_with_its_registry_secret() {
        let presence: Arc<dyn Presence> = Arc::new(crate::presence::LocalPresence::default());
        presence.set(&registry::proxy_key("p1"), "s3cret-value").await.unwrap();
        let f = Forwarded::new(Vec::new(), Some(presence.clone()));
        let from = |claim: Option<&str>| headers(&["6.6.6.6", "198.51.100.7"], claim);
        assert_eq!(f.client_ip(ip("127.0.0.1"), &from(Some("p1:s3cret-value"))).await, ip("198.51.100.7"));
        assert_eq!(f.client_ip(ip("127.0.0.1"), &from(Some("p1:guess"))).await, ip("127.0.0.1"));
        assert_eq!(f.client_ip(ip("127.0.0.1"), &from(Some("p2:s3cret-value"))).await, ip("127.0.0.1"));
        assert_eq!(f.client_ip(ip("127.0.0.1"), &from(Some("no-colon"))).await, ip("127.0.0.1"));
        assert_eq!(f.client_ip(ip("127.0.0.1"), &from(None)).await, ip("127.0.0.1"));
        // A proxy that stopped: once its secret is gone and the cache is stale, no longer believed.
        presence.del(&registry::proxy_key("p1")).await.unwrap();
        f.known.lock().unwrap().clear();
        assert_eq!(f.client_ip(ip("127.0.0.1"), &from(Some("p1:s3cret-value"))).await, ip("127.0.0.1"));
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(token_eq(b"secret", b"secret"));
        assert!(!token_eq(b"secreT", b"secret"));
        assert!(!token_eq(b"secret-and-more", b"secret"));
        assert!(!token_eq(b"sec", b"secret"));
        assert!(!token_eq(b"secre", b"secre\0"));
    }
}
