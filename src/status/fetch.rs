//! Each `MAILROOM_FETCH` source as the status shows it: when it last fetched, its last
//! error with when it happened, and when the next run (after the back-off) starts, so an
//! operator sees why mail from a remote account stopped arriving.

use std::time::SystemTime;

use serde::Serialize;

use super::{unix_secs, unix_secs_opt};
use crate::fetch::{FetchStatus, SourceStatus};

/// One source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FetchView {
    /// `#1 local <- URL`: no password in it.
    pub name: String,
    #[serde(serialize_with = "unix_secs_opt")]
    pub last_success: Option<SystemTime>,
    /// The last failure, if any since the start (kept after a later success, with its time).
    pub last_error: Option<FetchErrorView>,
    /// Failed runs in a row: 0 when the last run succeeded.
    pub failures: u32,
    #[serde(serialize_with = "unix_secs_opt")]
    pub next_try: Option<SystemTime>,
    pub over_quota: bool,
    /// Messages delivered since the start.
    pub messages: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FetchErrorView {
    #[serde(serialize_with = "unix_secs")]
    pub at: SystemTime,
    pub message: String,
}

impl FetchView {
    pub fn of(row: &SourceStatus) -> FetchView {
        FetchView {
            name: row.name.clone(),
            last_success: row.last_success,
            last_error: row
                .last_error
                .as_ref()
                .map(|(at, message)| FetchErrorView { at: *at, message: message.clone() }),
            failures: row.failures,
            next_try: row.next_try,
            over_quota: row.over_quota,
            messages: row.messages,
        }
    }

    /// True when the last run failed: the error is current, not history.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }
}

/// Every source, in `MAILROOM_FETCH` order.
pub fn view(status: &FetchStatus) -> Vec<FetchView> {
    status.snapshot().iter().map(FetchView::of).collect()
}
