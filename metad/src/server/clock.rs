//! The clock guard: times a gateway stamps into the state (a version's
//! last-modified time, an upload's start, a delete marker's time) are what
//! lifecycle rules are judged by, so a gateway whose clock is far off
//! would make objects expire or move early, or never. The leader refuses
//! a command whose stamps are further from its own clock than
//! `clock_skew_max_secs` (900 by default, S3's limit for a request's
//! signature time), before it enters the log; apply stays deterministic.

use weft_common::rpc::Command;

/// The stamps `cmd` carries from its proposer's clock.
fn stamps(cmd: &Command) -> Vec<u64> {
    match cmd {
        Command::PutObject { version, .. } | Command::CompleteUpload { version, .. } => {
            vec![version.last_modified_ms]
        }
        Command::PutPart { part, .. } => vec![part.last_modified_ms],
        Command::CreateUpload { upload } => vec![upload.initiated_ms],
        // A warm's request time orders eviction: one stamped far ahead
        // would never be the least recently used.
        Command::Warm { warm } => vec![warm.created_ms],
        Command::SetBucketTiering {
            change: weft_common::lifecycle::tiering::TieringChange::Unread { rules },
            ..
        } => rules.iter().map(|r| r.since_ms).collect(),
        Command::DeleteObject {
            marker: Some((_, at)),
            ..
        } => vec![*at],
        Command::Batch { commands } => commands.iter().flat_map(stamps).collect(),
        _ => vec![],
    }
}

/// Refuses `cmd` if a stamp is more than `max_ms` from `now_ms`, saying by
/// how much and what to do.
pub(crate) fn check(cmd: &Command, now_ms: u64, max_ms: u64) -> Result<(), String> {
    if let Command::RecordAccess { reads } = cmd {
        let max = weft_common::lifecycle::tiering::READS_PER_COMMAND;
        if reads.len() > max {
            return Err(format!(
                "{} reads in one RecordAccess; send at most {max} per command",
                reads.len()
            ));
        }
    }
    // A read stamped ahead would keep its object hot; one stamped behind
    // (a batch a gateway kept through an outage) only raises a last access
    // to a time already past, so it is not refused.
    let ahead = |c: &Command| match c {
        Command::RecordAccess { reads } => reads
            .iter()
            .map(|r| r.at_ms)
            .filter(|&at| at > now_ms)
            .collect::<Vec<_>>(),
        _ => vec![],
    };
    let reads: Vec<u64> = match cmd {
        Command::Batch { commands } => commands.iter().flat_map(ahead).collect(),
        other => ahead(other),
    };
    for at in stamps(cmd).into_iter().chain(reads) {
        let off = at.abs_diff(now_ms);
        if off > max_ms {
            let side = if at > now_ms { "ahead of" } else { "behind" };
            return Err(format!(
                "the proposer's clock is {} s {side} the metad leader's (at most {} s is accepted): the times it stamps would make lifecycle rules fire early or never; fix its clock (NTP) and retry",
                off / 1000,
                max_ms / 1000
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_common::VersionId;

    const SKEW_MAX_MS: u64 = 900_000;

    fn delete_at(at: u64) -> Command {
        Command::DeleteObject {
            bucket: "b".into(),
            key: "k".into(),
            marker: Some((VersionId(1), at)),
        }
    }

    #[test]
    fn stamps_beyond_the_skew_bound_are_refused_either_way() {
        let now = 10 * SKEW_MAX_MS;
        assert!(check(&delete_at(now), now, SKEW_MAX_MS).is_ok());
        assert!(check(&delete_at(now - SKEW_MAX_MS), now, SKEW_MAX_MS).is_ok());
        assert!(check(&delete_at(now + SKEW_MAX_MS), now, SKEW_MAX_MS).is_ok());
        let early = check(&delete_at(now - SKEW_MAX_MS - 1_000), now, SKEW_MAX_MS).unwrap_err();
        assert!(early.contains("behind"), "{early}");
        let late = check(&delete_at(now + 2 * SKEW_MAX_MS), now, SKEW_MAX_MS).unwrap_err();
        assert!(
            late.contains("ahead of") && late.contains("1800 s"),
            "{late}"
        );
        // Inside a batch too; commands without stamps pass.
        let batch = Command::Batch {
            commands: vec![delete_at(now), delete_at(0)],
        };
        assert!(check(&batch, now, SKEW_MAX_MS).is_err());
        // Reads: one from long ago passes (it cannot make anything look
        // hotter than it was), one ahead does not.
        let read = |at| Command::RecordAccess {
            reads: vec![weft_common::lifecycle::tiering::Read {
                bucket: "b".into(),
                key: "k".into(),
                version_id: VersionId(1),
                at_ms: at,
            }],
        };
        assert!(check(&read(0), now, SKEW_MAX_MS).is_ok());
        assert!(check(&read(now + SKEW_MAX_MS / 2), now, SKEW_MAX_MS).is_ok());
        let Command::RecordAccess { reads } = read(now) else {
            unreachable!()
        };
        let many = Command::RecordAccess {
            reads: vec![reads[0].clone(); weft_common::lifecycle::tiering::READS_PER_COMMAND + 1],
        };
        assert!(check(&many, now, SKEW_MAX_MS)
            .unwrap_err()
            .contains("at most"));
        assert!(check(&read(now + 2 * SKEW_MAX_MS), now, SKEW_MAX_MS).is_err());
        assert!(check(
            &Command::SetBucketTags {
                bucket: "b".into(),
                tags: Default::default()
            },
            now,
            SKEW_MAX_MS
        )
        .is_ok());
    }
}
