//! Loopback ports for the servers the harness starts (etcd, the API server,
//! the operator's endpoints). The kernel says which port is free, but the
//! server binds it a moment later; tests starting environments at the same
//! moment could both be told the same port, and the second server would
//! fail to bind. A port is handed out once per test process.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

use anyhow::{Result, bail};

static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port free now and not handed out before in this process.
pub fn free() -> Result<u16> {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..64 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if given.insert(port) {
            return Ok(port);
        }
    }
    bail!("no loopback port this process has not used yet")
}
