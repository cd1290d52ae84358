//! Child processes that cannot outlive their owner.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A running child in its own process group, output going to a log file.
///
/// Dropping it sends SIGTERM to the whole group (wrangler starts workerd, for
/// instance), waits up to 10 s, then SIGKILLs what is left.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

impl Proc {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            stopped: false,
        })
    }

    /// The process's name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its pid, which is also its process group id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `max_bytes` of its log.
    pub fn log_tail(&self, max_bytes: u64) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)));
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    }

    /// Kills the whole group at once (SIGKILL), as a crash would, and reaps
    /// the leader.
    pub fn kill(&mut self) {
        if let Ok(raw) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
        }
        let _ = self.child.wait();
        self.stopped = true;
    }

    /// Sends SIGTERM to the group and waits for the leader; SIGKILL after 10 s.
    /// Returns the leader's exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if self.stopped {
            return self.exited();
        }
        self.stopped = true;
        let Ok(raw) = i32::try_from(self.child.id()) else {
            let _ = self.child.kill();
            return self.child.wait().ok();
        };
        let group = Pid::from_raw(raw);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut status = None;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (children of the leader) goes too.
        let _ = killpg(group, Signal::SIGKILL);
        match status {
            Some(s) => Some(s),
            None => self.child.wait().ok(),
        }
    }
}

/// Whether any process of group `pgid` is still running. Zombies (exited,
/// not yet reaped by whoever adopted them) do not count: they hold no port,
/// file or memory.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // No /proc to read: ask the kernel (zombies count then).
        return i32::try_from(pgid).is_ok_and(|raw| killpg(Pid::from_raw(raw), None).is_ok());
    };
    let group = pgid.to_string();
    entries.flatten().any(|entry| {
        let Some(fields) = stat_fields(&entry.path().join("stat")) else {
            return false;
        };
        // Fields 3, 5: state, pgrp.
        fields.get(2) == Some(&group) && fields.first().is_some_and(|s| s != "Z")
    })
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- last output of {} ({}) ----\n{}",
                self.name,
                self.log.display(),
                self.log_tail(4000)
            );
        }
        self.stop();
    }
}

/// When process `pid` started (clock ticks since boot, field 22 of
/// `/proc/<pid>/stat`): with the pid it names one process, even once the pid
/// is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(&proc_stat(pid))?.get(19)?.parse().ok()
}

fn proc_stat(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/stat"))
}

/// The fields of a `/proc/<pid>/stat` file from field 3 (state) on, so
/// field N is at index N - 3. The command name (field 2) may hold spaces and
/// parentheses: the fields start after its last closing parenthesis.
fn stat_fields(path: &Path) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// CPU time process `pid` has used so far (all threads, user + system).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let fields = stat_fields(&proc_stat(pid))?;
    // Fields 14, 15: utime, stime.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)?;
    Some(Duration::from_millis((user + system) * 1000 / ticks))
}

/// Resident memory of process `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Stops process group `pgid` if its leader is still the process that
/// started at `started` (SIGTERM, SIGKILL after 10 s) and waits until the
/// group is gone, ports released. Returns whether it was running.
pub fn stop_group_if_same(pgid: u32, started: u64) -> bool {
    if start_time(pgid) != Some(started) {
        return false;
    }
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    let group = Pid::from_raw(raw);
    for (signal, wait) in [(Signal::SIGTERM, 10), (Signal::SIGKILL, 5)] {
        let _ = killpg(group, signal);
        let deadline = Instant::now() + Duration::from_secs(wait);
        while group_alive(pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !group_alive(pgid) {
            break;
        }
    }
    true
}

/// The TCP ports process `pid` listens on, read from `/proc` (its socket
/// descriptors matched against the listening sockets of its network
/// namespace): how the port of a server told to bind port 0 that does not
/// log the port it got (Prometheus) is read back.
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: std::collections::HashSet<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            link.strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl, local, remote, state (0A: LISTEN), …, inode (the 10th).
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            if *state != "0A" || !inodes.contains(*inode) {
                continue;
            }
            let port = local
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            ports.extend(port);
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_names_this_process() {
        let me = std::process::id();
        let started = start_time(me).expect("own start time");
        assert_eq!(start_time(me), Some(started));
        assert!(cpu_time(me).is_some());
        assert_eq!(start_time(u32::MAX), None);
    }
}
