//! What a deploy answers, and one timed upload: `POST /odeon/admin/plugins` with the module's
//! bytes and the admin token, timed from the request's start to the whole answer, which host 1
//! sends once every live host has answered.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::deploy::TOKEN;
use super::server;

/// How long one upload may take to answer (the hosts give up on each other after 10 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The upload path.
const UPLOAD: &str = "/odeon/admin/plugins";

/// One room's migration on one host, as the host answers it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    /// The version the rooms moved to.
    #[serde(default)]
    pub hash: String,
    /// Rooms that run the new version now.
    pub migrated: u64,
    /// Rooms that stayed on their version, and why.
    #[serde(default)]
    pub kept: Vec<Kept>,
    /// Longest pause of a room (freeze to first call on the new code), µs.
    pub pause_max_us: u64,
    /// Median pause, µs.
    pub pause_p50_us: u64,
    /// 99th percentile pause, µs (hosts before it was reported: none).
    #[serde(default)]
    pub pause_p99_us: Option<u64>,
    /// The whole migration on that host, µs.
    #[serde(default)]
    pub elapsed_us: Option<u64>,
}

/// A room a migration left on its version.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    /// The room.
    pub room_id: String,
    /// Why.
    pub reason: String,
}

/// One host's answer to a deploy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostAnswer {
    /// The host.
    pub process_id: String,
    /// `active`, `refused` or `timeout`.
    pub status: String,
    /// Why it refused.
    #[serde(default)]
    pub reason: Option<String>,
    /// Its migration, when the deploy asked for one.
    #[serde(default)]
    pub migration: Option<Migration>,
}

/// The upload's answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Answer {
    /// Room type.
    pub name: String,
    /// The module's SHA-256.
    pub hash: String,
    /// Every live host's answer.
    pub hosts: Vec<HostAnswer>,
}

/// One timed upload.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The module's file name.
    pub file: String,
    /// Request start to the whole answer, ms (none if no answer came).
    pub ms: Option<f64>,
    /// HTTP status.
    pub status: Option<u16>,
    /// The answer, when it was a 200 with the expected body.
    pub answer: Option<Answer>,
    /// What went wrong on the way (connection, status, body).
    pub error: Option<String>,
    /// For a migration: whether it ended inside the loadgen's measure window.
    pub in_window: bool,
}

impl Upload {
    /// Why this upload does not count as a deploy to every host (`None`: `hosts` hosts, all
    /// `active`).
    pub fn failure(&self, hosts: usize) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(e.clone());
        }
        let answer = self.answer.as_ref()?;
        let not_active: Vec<String> = answer
            .hosts
            .iter()
            .filter(|h| h.status != "active")
            .map(|h| {
                format!(
                    "{} {}{}",
                    h.process_id,
                    h.status,
                    h.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
                )
            })
            .collect();
        if answer.hosts.len() != hosts {
            Some(format!("{} hosts answered, not {hosts}", answer.hosts.len()))
        } else if !not_active.is_empty() {
            Some(not_active.join(", "))
        } else {
            None
        }
    }

    /// `process_id`'s migration in the answer.
    pub fn migration_of(&self, process_id: &str) -> Option<&Migration> {
        self.answer.as_ref()?.hosts.iter().find(|h| h.process_id == process_id)?.migration.as_ref()
    }
}

/// Uploads `module` to the host on `port`, timed from the request's start to the whole answer.
pub fn upload(port: u16, module: &Path, migrate: bool) -> Upload {
    let file = module.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    let mut up = Upload { file, ms: None, status: None, answer: None, error: None, in_window: false };
    let bytes = match std::fs::read(module) {
        Ok(b) => b,
        Err(e) => {
            up.error = Some(format!("reading {}: {e}", module.display()));
            return up;
        }
    };
    let path = if migrate { format!("{UPLOAD}?migrate=1") } else { UPLOAD.to_owned() };
    let auth = format!("Bearer {TOKEN}");
    let started = Instant::now();
    match server::http_post(port, &path, &[("Authorization", &auth)], &bytes, ANSWER_TIMEOUT) {
        Ok((status, body)) => {
            up.ms = Some(started.elapsed().as_secs_f64() * 1000.0);
            up.status = Some(status);
            if status != 200 {
                up.error = Some(format!("HTTP {status}: {}", body.trim()));
            } else {
                match serde_json::from_str::<Answer>(&body) {
                    Ok(a) => up.answer = Some(a),
                    Err(e) => up.error = Some(format!("unexpected answer ({e}): {}", body.trim())),
                }
            }
        }
        Err(e) => up.error = Some(format!("{e:#}")),
    }
    up
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"{"name":"arena","hash":"ab12","version":3,"hosts":[
        {"processId":"deploy-host-1","status":"active","migration":{"hash":"ab12","migrated":10,"kept":[],
         "pauseMaxUs":900,"pauseP50Us":400,"pauseP99Us":900,"elapsedUs":5000}},
        {"processId":"deploy-host-2","status":"active","migration":{"hash":"ab12","migrated":0,"kept":[],
         "pauseMaxUs":0,"pauseP50Us":0}},
        {"processId":"deploy-host-3","status":"refused","reason":"bad import"}]}"#;

    fn answered(body: &str) -> Upload {
        Upload {
            file: "arena-v2.wasm".into(),
            ms: Some(12.0),
            status: Some(200),
            answer: Some(serde_json::from_str(body).unwrap()),
            error: None,
            in_window: true,
        }
    }

    #[test]
    fn answers_parse_with_and_without_the_newer_figures() {
        let up = answered(ANSWER);
        let m = up.migration_of("deploy-host-1").unwrap();
        assert_eq!((m.migrated, m.pause_p99_us, m.elapsed_us), (10, Some(900), Some(5000)));
        let m = up.migration_of("deploy-host-2").unwrap();
        assert_eq!((m.pause_p99_us, m.elapsed_us), (None, None));
        assert!(up.migration_of("deploy-host-3").is_none());
        assert_eq!(up.failure(3).unwrap(), "deploy-host-3 refused (bad import)");
    }

    #[test]
    fn failures_count_hosts_and_errors() {
        let all = ANSWER.replace(r#""status":"refused","reason":"bad import""#, r#""status":"active""#);
        assert_eq!(answered(&all).failure(3), None);
        assert_eq!(answered(&all).failure(2).unwrap(), "3 hosts answered, not 2");
        let mut up = answered(&all);
        up.error = Some("HTTP 401: no".into());
        assert_eq!(up.failure(3).unwrap(), "HTTP 401: no");
    }
}
