//! The daily housekeeping jobs (retention, auto-archive, clean-ups): their
//! names, as operators see them in `/admin/jobs`, and when each runs next.

use chrono::{DateTime, Days, NaiveTime, Utc};

/// A job that runs once a day (once per cluster), or when an admin asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduledJob {
    /// Purges the bodies of messages past `PARLEY_MESSAGE_RETENTION_DAYS`,
    /// and of erased users' messages whose conversation is no longer held.
    MessageRetention,
    /// Deletes audit rows past `PARLEY_AUDIT_RETENTION_DAYS`.
    AuditRetention,
    /// Archives conversations idle for `PARLEY_AUTO_ARCHIVE_DAYS`.
    AutoArchive,
    /// Deletes attachments past their retention.
    AttachmentRetention,
    /// Deletes expired data exports.
    ExportCleanup,
}

impl ScheduledJob {
    /// Every job, in the order a daily run takes them.
    pub const ALL: [Self; 5] = [
        Self::MessageRetention,
        Self::AuditRetention,
        Self::AutoArchive,
        Self::AttachmentRetention,
        Self::ExportCleanup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::MessageRetention => "message_retention",
            Self::AuditRetention => "audit_retention",
            Self::AutoArchive => "auto_archive",
            Self::AttachmentRetention => "attachment_retention",
            Self::ExportCleanup => "export_cleanup",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|job| job.name() == name)
    }
}

/// The first moment after `now` whose UTC time of day is `at`.
pub fn next_daily_run(now: DateTime<Utc>, at: NaiveTime) -> DateTime<Utc> {
    let today = now.date_naive().and_time(at).and_utc();
    if today > now {
        today
    } else {
        today
            .checked_add_days(Days::new(1))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// The moment before which records are past a retention of `days` (`None`:
/// 0 days, kept forever).
pub fn retention_cutoff(now: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    (days > 0).then(|| now - chrono::Duration::days(i64::from(days)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn names_round_trip() {
        for job in ScheduledJob::ALL {
            assert_eq!(ScheduledJob::parse(job.name()), Some(job));
        }
        assert_eq!(ScheduledJob::parse("vacuum"), None);
    }

    #[test]
    fn the_next_run_is_today_until_its_time_has_passed() {
        let three = NaiveTime::from_hms_opt(3, 0, 0).unwrap();
        assert_eq!(
            next_daily_run(at("2026-12-01T02:59:00Z"), three),
            at("2026-12-01T03:00:00Z")
        );
        assert_eq!(
            next_daily_run(at("2026-12-01T03:00:00Z"), three),
            at("2026-12-02T03:00:00Z")
        );
        assert_eq!(
            next_daily_run(at("2026-12-31T23:00:00Z"), three),
            at("2027-01-01T03:00:00Z")
        );
    }

    #[test]
    fn zero_days_keeps_forever() {
        let now = at("2026-12-01T00:00:00Z");
        assert_eq!(retention_cutoff(now, 0), None);
        assert_eq!(retention_cutoff(now, 1), Some(at("2026-11-30T00:00:00Z")));
    }
}
