//! Bugs that were fixed, re-introduced on demand so the simulator can prove
//! it would have caught them (`weft sim --bug NAME`, only in builds with
//! the `failpoints` feature). Without the feature every check is a constant
//! `false` and no switch exists.

/// A re-introducible bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bug {
    /// metad answers a write as soon as it is queued for raft, before the
    /// group commits it (so a leader crash loses an acknowledged write, and
    /// a read right after it can miss it).
    AckBeforeCommit,
    /// The metad client treats a write whose response was lost as not
    /// applied, so its caller may release what the write still references.
    UnknownAsNotApplied,
    /// File fsyncs do nothing, so a power cut takes writes that were
    /// acknowledged as durable (the simulator's disk honours it; the chaos
    /// image has its own switch for real processes).
    SkipFsync,
    /// metad applies a re-sent `PutPart` as if it were new (no request-id
    /// memory, no no-op for a part that already points at the same
    /// segments) and reports the part's own segments as replaced, so the
    /// gateway frees the shards the upload still references: the bug a
    /// lost response plus a retry used to trigger.
    SelfReleasingPutPart,
    /// The scrubber removes a shard file with any bad block instead of
    /// reporting the blocks for repair, so rot in different stripes of
    /// more than m shards of one segment loses it although every stripe
    /// kept k good shards.
    WholeFileScrubDrop,
}

impl Bug {
    /// Every bug, for `--bug` help and the tests.
    pub const ALL: [Bug; 5] = [
        Bug::AckBeforeCommit,
        Bug::UnknownAsNotApplied,
        Bug::SkipFsync,
        Bug::SelfReleasingPutPart,
        Bug::WholeFileScrubDrop,
    ];

    /// The name `weft sim --bug` takes.
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeCommit => "ack-before-commit",
            Bug::UnknownAsNotApplied => "unknown-as-not-applied",
            Bug::SkipFsync => "skip-fsync",
            Bug::SelfReleasingPutPart => "self-releasing-put-part",
            Bug::WholeFileScrubDrop => "whole-file-scrub-drop",
        }
    }

    /// The bug called `name`.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

#[cfg(feature = "failpoints")]
static ACTIVE: std::sync::Mutex<Vec<Bug>> = std::sync::Mutex::new(Vec::new());

/// Switches `bug` on (or off) for this process. Returns false, changing
/// nothing, in a build without the `failpoints` feature.
pub fn set(bug: Bug, on: bool) -> bool {
    #[cfg(feature = "failpoints")]
    {
        let mut a = ACTIVE.lock().expect("failpoints lock");
        a.retain(|b| *b != bug);
        if on {
            a.push(bug);
        }
        true
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (bug, on);
        false
    }
}

/// Whether `bug` is switched on.
#[inline]
pub fn active(bug: Bug) -> bool {
    #[cfg(feature = "failpoints")]
    {
        ACTIVE.lock().expect("failpoints lock").contains(&bug)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = bug;
        false
    }
}
