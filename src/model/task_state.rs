//! The states of a device task (the rules of moving between them live in
//! `ota::task`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Queued,
    Initiated,
    Downloading,
    Downloaded,
    Verified,
    Updating,
    Updated,
    Failed,
}

/// Number of a campaign's tasks in each state, indexed by
/// [`TaskState::index`].
pub type StateCounts = [u64; 8];

impl TaskState {
    pub const ALL: [TaskState; 8] = [
        TaskState::Queued,
        TaskState::Initiated,
        TaskState::Downloading,
        TaskState::Downloaded,
        TaskState::Verified,
        TaskState::Updating,
        TaskState::Updated,
        TaskState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Initiated => "initiated",
            TaskState::Downloading => "downloading",
            TaskState::Downloaded => "downloaded",
            TaskState::Verified => "verified",
            TaskState::Updating => "updating",
            TaskState::Updated => "updated",
            TaskState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// States a device may put in a report.
    pub fn parse_reported(s: &str) -> Option<TaskState> {
        TaskState::parse(s).filter(|state| *state >= TaskState::Downloading)
    }

    pub fn is_final(self) -> bool {
        matches!(self, TaskState::Updated | TaskState::Failed)
    }

    pub fn index(self) -> u8 {
        self as u8
    }

    pub fn from_index(i: u8) -> Option<TaskState> {
        TaskState::ALL.get(usize::from(i)).copied()
    }

    /// Number of tasks not yet `updated` or `failed`.
    pub fn unfinished(counts: &StateCounts) -> u64 {
        TaskState::ALL
            .iter()
            .filter(|s| !s.is_final())
            .map(|s| counts[usize::from(s.index())])
            .sum()
    }
}
