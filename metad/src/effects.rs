//! What applying a command did to the set of referenced segments, said by
//! the code that made the change.
//!
//! The segment index is maintained from these facts rather than inferred
//! from the shape of a [`CommandResult`]: a result is an answer for the
//! proposer (and is stripped of its releases when a retry is answered),
//! while the effects are what the index must do, so the two can be checked
//! against each other instead of one standing in for the other.

use weft_common::manifest::Segment;
use weft_common::rpc::CommandResult;

/// Whose data a segment is: what the index records beside its placement,
/// so the planner can name the object a degraded segment belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) class: String,
}

impl Owner {
    pub(crate) fn new(bucket: &str, key: &str, class: &str) -> Self {
        Owner {
            bucket: bucket.to_string(),
            key: key.to_string(),
            class: class.to_string(),
        }
    }
}

/// Segments one command made referenced or unreferenced. A command applied
/// again (a retry) has none: it changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Segments the data this command wrote refers to, with their owner.
    /// The index gains those it lacks; one it holds keeps its placement,
    /// which repair may have changed since the segment was first written
    /// (a completed upload names its parts' segments again).
    pub(crate) added: Vec<(Owner, Segment)>,
    /// Segments nothing refers to any more, with the placement the index
    /// held for them, so whoever deletes their shards deletes them where
    /// they are now. Never one that the same command adds. For a batch, the
    /// commands' effects in order: one command may release what an earlier
    /// one added.
    pub(crate) released: Vec<Segment>,
}

impl Effects {
    /// Records `segments` as added for `owner`.
    pub(crate) fn add(&mut self, owner: &Owner, segments: &[Segment]) {
        self.added
            .extend(segments.iter().map(|s| (owner.clone(), s.clone())));
    }

    /// Whether the command changed no segment's reference.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty() && self.released.is_empty()
    }

    /// Appends the effects of a command applied after these (a batch).
    pub(crate) fn extend(&mut self, later: Effects) {
        self.added.extend(later.added);
        self.released.extend(later.released);
    }
}

/// A command's answer with its effects.
#[derive(Debug)]
pub(crate) struct Applied {
    pub(crate) result: CommandResult,
    pub(crate) effects: Effects,
}

/// An answer that changed no segment's reference: a refusal, a retry, or a
/// command about something other than object data.
impl From<CommandResult> for Applied {
    fn from(result: CommandResult) -> Self {
        Applied {
            result,
            effects: Effects::default(),
        }
    }
}
