//! Helpers shared by the host's integration tests.

#![allow(dead_code)] // each test crate uses part of it

pub mod redis;
pub mod rooms;
pub mod secantus;

use std::net::{Ipv4Addr, TcpListener};

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}
