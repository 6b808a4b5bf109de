//! The device task state machine, as a pure function.
//!
//! ```text
//! queued ──poll──▶ initiated ──▶ downloading(%) ──▶ downloaded ──▶ verified ──▶ updating ──▶ updated
//!    │                 │               │                 │             │            │
//!    └─────────────────┴── cancel / timeout / device error ────────────┴────────────┴──▶ failed(error)
//! ```
//!
//! Device reports may skip forward (a device that reports only `updated`
//! is fine) but never go back; `updated` and `failed` are final. A
//! transition that would change nothing is `Unchanged`, which is what makes
//! repeated reports idempotent.

pub use crate::model::TaskState;

/// The part of a task the state machine decides about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: TaskState,
    pub progress: u8,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEvent {
    /// A poll handed the task to the device.
    Handed,
    /// The device reported.
    Report {
        state: TaskState,
        progress: Option<u8>,
        error: Option<String>,
    },
    /// The device fetched blocks up to this percentage of the image.
    BlockProgress(u8),
    /// The device polled with the task's target version.
    ReachedTarget,
    TimedOut,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Changed(Status),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("task was not handed to the device yet (state queued)")]
    NotHanded,
    #[error("task is already {0}")]
    Final(&'static str),
    #[error("cannot go back from {from} to {to}")]
    Backward {
        from: &'static str,
        to: &'static str,
    },
}

pub fn apply(current: &Status, event: &TaskEvent) -> Result<Outcome, Rejected> {
    use TaskState::*;
    let changed = |state, progress, error: Option<String>| {
        let next = Status {
            state,
            progress,
            error,
        };
        if next == *current {
            Outcome::Unchanged
        } else {
            Outcome::Changed(next)
        }
    };
    match event {
        TaskEvent::Handed => Ok(match current.state {
            Queued => changed(Initiated, 0, None),
            _ => Outcome::Unchanged,
        }),
        TaskEvent::BlockProgress(p) => Ok(match current.state {
            Initiated => changed(Downloading, (*p).min(100), None),
            Downloading if *p > current.progress => changed(Downloading, (*p).min(100), None),
            _ => Outcome::Unchanged,
        }),
        TaskEvent::ReachedTarget if !current.state.is_final() => Ok(changed(Updated, 100, None)),
        TaskEvent::TimedOut if !current.state.is_final() => {
            Ok(changed(Failed, current.progress, Some("timeout".into())))
        }
        TaskEvent::Cancelled if !current.state.is_final() => {
            Ok(changed(Failed, current.progress, Some("cancelled".into())))
        }
        TaskEvent::ReachedTarget | TaskEvent::TimedOut | TaskEvent::Cancelled => {
            Ok(Outcome::Unchanged)
        }
        TaskEvent::Report {
            state,
            progress,
            error,
        } => apply_report(current, *state, *progress, error.as_deref()),
    }
}

fn apply_report(
    current: &Status,
    state: TaskState,
    progress: Option<u8>,
    error: Option<&str>,
) -> Result<Outcome, Rejected> {
    use TaskState::*;
    if current.state.is_final() {
        // The same final report again is a harmless repeat; anything else
        // would rewrite history.
        let same_error = state != Failed || error.is_none() || current.error.as_deref() == error;
        return if state == current.state && same_error {
            Ok(Outcome::Unchanged)
        } else {
            Err(Rejected::Final(current.state.as_str()))
        };
    }
    if current.state == Queued {
        return Err(Rejected::NotHanded);
    }
    let next = match state {
        Failed => Status {
            state: Failed,
            progress: current.progress,
            error: Some(error.unwrap_or("device reported failure").to_string()),
        },
        _ if state < current.state => {
            return Err(Rejected::Backward {
                from: current.state.as_str(),
                to: state.as_str(),
            })
        }
        Downloading => Status {
            state,
            progress: progress.unwrap_or(current.progress).min(100),
            error: None,
        },
        _ => Status {
            state,
            progress: 100,
            error: None,
        },
    };
    Ok(if next == *current {
        Outcome::Unchanged
    } else {
        Outcome::Changed(next)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: TaskState, progress: u8) -> Status {
        Status {
            state,
            progress,
            error: None,
        }
    }

    fn report(state: TaskState, progress: Option<u8>) -> TaskEvent {
        TaskEvent::Report {
            state,
            progress,
            error: None,
        }
    }

    #[test]
    fn happy_path_and_idempotent_repeats() {
        use TaskState::*;
        let mut s = status(Queued, 0);
        for event in [
            TaskEvent::Handed,
            TaskEvent::BlockProgress(10),
            report(Downloading, Some(50)),
            report(Downloaded, None),
            report(Verified, None),
            report(Updating, None),
            report(Updated, None),
        ] {
            match apply(&s, &event).unwrap() {
                Outcome::Changed(next) => s = next,
                Outcome::Unchanged => panic!("{event:?} changed nothing from {s:?}"),
            }
            // The same event twice changes nothing the second time.
            assert_eq!(apply(&s, &event).unwrap(), Outcome::Unchanged, "{event:?}");
        }
        assert_eq!(s, status(Updated, 100));
    }

    #[test]
    fn impossible_transitions_are_rejected() {
        use TaskState::*;
        assert_eq!(
            apply(&status(Queued, 0), &report(Downloading, None)),
            Err(Rejected::NotHanded)
        );
        assert!(matches!(
            apply(&status(Verified, 100), &report(Downloading, Some(3))),
            Err(Rejected::Backward { .. })
        ));
        assert!(matches!(
            apply(&status(Updated, 100), &report(Failed, None)),
            Err(Rejected::Final("updated"))
        ));
    }

    #[test]
    fn timeout_cancel_and_target_version_only_touch_unfinished_tasks() {
        use TaskState::*;
        let failed = apply(&status(Downloading, 40), &TaskEvent::TimedOut).unwrap();
        assert_eq!(
            failed,
            Outcome::Changed(Status {
                state: Failed,
                progress: 40,
                error: Some("timeout".into())
            })
        );
        assert_eq!(
            apply(&status(Updated, 100), &TaskEvent::Cancelled).unwrap(),
            Outcome::Unchanged
        );
        assert_eq!(
            apply(&status(Initiated, 0), &TaskEvent::ReachedTarget).unwrap(),
            Outcome::Changed(status(Updated, 100))
        );
    }

    #[test]
    fn block_progress_only_moves_forward() {
        use TaskState::*;
        assert_eq!(
            apply(&status(Downloading, 50), &TaskEvent::BlockProgress(20)).unwrap(),
            Outcome::Unchanged
        );
        assert_eq!(
            apply(&status(Downloaded, 100), &TaskEvent::BlockProgress(20)).unwrap(),
            Outcome::Unchanged
        );
    }
}
