//! What a running main job started, in `<state>/run.json`: lets the next
//! start tell a live run from what a killed one left behind.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::process;

/// The running devstack and the process groups it started, each as
/// (pid, start time) so a reused pid is never taken for ours.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// devstack itself: (pid, start time).
    pub owner: (u32, u64),
    /// Process groups it started: (name, pid, start time).
    pub children: Vec<(String, u32, u64)>,
}

impl RunRecord {
    /// A record naming this process as the owner, with no children yet.
    pub fn this_process() -> Self {
        let pid = std::process::id();
        Self {
            owner: (pid, process::start_time(pid).unwrap_or(0)),
            children: Vec::new(),
        }
    }

    /// Adds a started process group.
    pub fn add(&mut self, proc: &process::Proc) {
        let pid = proc.id();
        self.children.push((
            proc.name().to_string(),
            pid,
            process::start_time(pid).unwrap_or(0),
        ));
    }

    /// `<state>/run.json`.
    pub fn path(state: &Path) -> PathBuf {
        state.join("run.json")
    }

    /// The record in `state`, if there is a readable one.
    pub fn load(state: &Path) -> Option<Self> {
        let text = std::fs::read(Self::path(state)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes it to `<state>/run.json`.
    pub fn save(&self, state: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(state)?;
        std::fs::write(Self::path(state), serde_json::to_vec(self)?)?;
        Ok(())
    }

    /// Whether its owner is still running.
    pub fn owner_alive(&self) -> bool {
        let (pid, started) = self.owner;
        process::start_time(pid) == Some(started)
    }

    /// Stops every recorded group still running; returns their names and pids.
    pub fn stop_children(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .filter(|(_, pid, started)| process::stop_group_if_same(*pid, *started))
            .map(|(name, pid, _)| (name.clone(), *pid))
            .collect()
    }
}

/// Refuses to start beside a live run over `state`; stops what a killed run
/// left running and says so.
pub fn clear_earlier_run(state: &Path) -> anyhow::Result<()> {
    let Some(record) = RunRecord::load(state) else {
        return Ok(());
    };
    let (pid, _) = record.owner;
    if pid != std::process::id() && record.owner_alive() {
        bail!(
            "the stack is already running over {} (devstack pid {pid}): stop it with Ctrl-C in its terminal or `kill {pid}`",
            state.display()
        );
    }
    for (name, pid) in record.stop_children() {
        println!("stopped {name} (pid {pid}), left running by an earlier run that was killed");
    }
    Ok(())
}
