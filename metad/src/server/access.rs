//! Which role may call what on metad (docs/security.md, "Roles").
//!
//! Paths are judged before the body is read ([`path_roles`]); commands and
//! queries are judged again by what they are ([`command_roles`],
//! [`query_roles`]), so a gateway cannot commit a repair's result and a
//! data node cannot read access keys.

use weft_client::peer::{Identified, Peer, ANY_ROLE};
use weft_client::pki::Role;
use weft_common::rpc::{Command, Query};

const METAD: &[Role] = &[Role::Metad];
const DATAD: &[Role] = &[Role::Datad];
const GATEWAY: &[Role] = &[Role::Gateway];
/// Administration: the admin CLI, and gateways, whose admin API acts for an
/// authenticated administrator.
const ADMIN: &[Role] = &[Role::Admin, Role::Gateway];
const ADMIN_OR_DATAD: &[Role] = &[Role::Admin, Role::Gateway, Role::Datad];
const DATAD_OR_ADMIN: &[Role] = &[Role::Datad, Role::Admin];
/// The processes that measure the network cost map.
const GATEWAY_OR_DATAD: &[Role] = &[Role::Gateway, Role::Datad];

/// The roles a path serves; `None` for health and metrics, which are open.
pub(crate) fn path_roles(path: &str) -> Option<&'static [Role]> {
    if weft_client::peer::is_open_path(path) {
        return None;
    }
    Some(match path {
        p if p.starts_with("/raft/") => METAD,
        "/v1/master-keys" => METAD,
        "/v1/heartbeat" | "/v1/repair/poll" | "/v1/transition/poll" => DATAD,
        "/v1/netmap" => GATEWAY_OR_DATAD,
        "/v1/init"
        | "/v1/members/add"
        | "/v1/members/remove"
        | "/v1/leader/step-down"
        | "/v1/lifecycle/run" => ADMIN,
        // Judged by kind in the handler.
        "/v1/command" | "/v1/query" => ANY_ROLE,
        _ => ANY_ROLE,
    })
}

/// The roles that may propose `cmd`.
pub(crate) fn command_roles(cmd: &Command) -> &'static [Role] {
    match cmd {
        Command::CreateBucket { .. }
        | Command::DeleteBucket { .. }
        | Command::PutObject { .. }
        | Command::DeleteObject { .. }
        | Command::DeleteObjectVersion { .. }
        | Command::SetBucketVersioning { .. }
        | Command::CreateUpload { .. }
        | Command::PutPart { .. }
        | Command::CompleteUpload { .. }
        | Command::SetObjectTags { .. }
        | Command::SetBucketTags { .. }
        | Command::SetBucketLifecycle { .. }
        | Command::SetBucketTiering { .. }
        | Command::RecordAccess { .. }
        | Command::AbortUpload { .. } => GATEWAY,
        Command::CreateKey { .. }
        | Command::SetBucketResidency { .. }
        | Command::DeleteKey { .. }
        | Command::SetNodeAdmin { .. }
        | Command::SetRepairConfig { .. }
        | Command::SetUploadTimers { .. }
        | Command::SetAuditConfig { .. }
        | Command::PutStorageClass { .. }
        | Command::DeleteStorageClass { .. }
        | Command::Warm { .. }
        | Command::DropWarm { .. }
        | Command::AuditPrune { .. } => ADMIN,
        // Every process reports the failures and denials it saw.
        Command::Audit { .. } => ANY_ROLE,
        // Signed, or seeded, by the leader itself, never sent by anyone.
        Command::AuditCheckpoint { .. }
        | Command::SeedStorageClasses { .. }
        | Command::SeedLifecycleDay { .. }
        | Command::SetLifecycleCursor { .. }
        | Command::FinishClassMigration { .. }
        | Command::ResealKey { .. }
        | Command::DropCacheCopies { .. }
        | Command::Lifecycle { .. } => &[],
        // A repair's or a scrub's results: only data nodes do that work.
        Command::RegisterNode { .. }
        | Command::MoveShard { .. }
        | Command::TransitionVersion { .. }
        | Command::AddCacheCopy { .. }
        | Command::DamageRepaired { .. } => DATAD,
        // Dropping a shard record: a data node that lost it, or an
        // administrator removing a node.
        Command::DropShard { .. } => ADMIN_OR_DATAD,
        // Damage is reported by whoever read it: a scrub or a GET.
        Command::ReportDamage { .. } => &[Role::Datad, Role::Gateway],
        // Wrappers: judged by what they hold ([`command_allowed`]).
        Command::Batch { .. } | Command::Request { .. } => ANY_ROLE,
    }
}

/// Whether `role` may propose `cmd`, wrappers included.
pub(crate) fn command_allowed(cmd: &Command, role: Role) -> Result<(), String> {
    match cmd {
        Command::Request { command, .. } => command_allowed(command, role),
        Command::Batch { commands, .. } => {
            commands.iter().try_for_each(|c| command_allowed(c, role))
        }
        other => {
            let allowed = command_roles(other);
            if allowed.contains(&role) {
                Ok(())
            } else {
                Err(format!(
                    "command {} is not allowed for role {}; it needs one of the roles {}",
                    command_name(other),
                    role.name(),
                    weft_client::peer::role_names(allowed)
                ))
            }
        }
    }
}

/// Whether `cmd` is, or wraps, a command only the leader itself proposes:
/// an audit checkpoint or the storage classes' seed.
pub(crate) fn leader_only(cmd: &Command) -> bool {
    match cmd {
        Command::AuditCheckpoint { .. }
        | Command::SeedStorageClasses { .. }
        | Command::SeedLifecycleDay { .. }
        | Command::SetLifecycleCursor { .. }
        | Command::FinishClassMigration { .. }
        | Command::ResealKey { .. }
        | Command::DropCacheCopies { .. }
        | Command::Lifecycle { .. } => true,
        Command::Request { command, .. } => leader_only(command),
        Command::Batch { commands } => commands.iter().any(leader_only),
        _ => false,
    }
}

/// A command's name, for an audit record of its refusal.
pub(crate) fn command_label(cmd: &Command) -> String {
    match cmd {
        Command::Request { command, .. } => command_label(command),
        other => command_name(other),
    }
}

/// The principal a caller names for its command, if the caller may vouch
/// for one: only a gateway acts for users (S3 keys, the admin API's
/// callers); every other role proposes for itself. Bounded, so a record
/// stays small.
pub(crate) fn vouched_principal(named: Option<String>, caller: Option<&Peer>) -> Option<String> {
    let vouches = match caller.map(|p| p.identified) {
        Some(Identified::Role(role)) => role == Role::Gateway,
        // Plain HTTP and in-process callers are not checked at all.
        Some(Identified::Insecure | Identified::InProcess) => true,
        _ => false,
    };
    named
        .filter(|_| vouches)
        .map(|p| p.chars().take(AUDIT_TEXT_MAX).collect())
}

/// Longest text of a reported audit event's fields.
pub(crate) const AUDIT_TEXT_MAX: usize = 512;
/// Most events in one report.
pub(crate) const AUDIT_REPORT_EVENTS_MAX: usize = 256;

/// Checks what a process reports for the audit chain: refusals it saw,
/// bounded in number and size. Only a gateway (for the admin API's callers,
/// e.g. a certificate issue) and metad may report administrative events;
/// nobody reports data-plane events, which ride in the writes themselves.
pub(crate) fn check_reports(cmd: &Command, caller: Option<&Peer>) -> Result<(), String> {
    use weft_common::audit::EventKind;
    let Command::Audit { events } = cmd else {
        return Ok(());
    };
    if events.len() > AUDIT_REPORT_EVENTS_MAX {
        return Err(format!(
            "an audit report holds at most {AUDIT_REPORT_EVENTS_MAX} events, this one {}",
            events.len()
        ));
    }
    let may_report_admin = match caller.map(|p| p.identified) {
        Some(Identified::Role(role)) => matches!(role, Role::Gateway | Role::Metad),
        Some(Identified::Insecure | Identified::InProcess) => true,
        _ => false,
    };
    for e in events {
        let long = [&e.actor, &e.action, &e.target, &e.outcome]
            .iter()
            .any(|t| t.len() > AUDIT_TEXT_MAX);
        if long {
            return Err(format!(
                "an audit event's fields are at most {AUDIT_TEXT_MAX} bytes each"
            ));
        }
        match e.kind {
            EventKind::AuthFailure | EventKind::Denial | EventKind::Dropped => {}
            EventKind::Admin if may_report_admin => {}
            kind => {
                return Err(format!(
                    "this caller may not report {} events to the audit chain",
                    kind.name()
                ))
            }
        }
    }
    Ok(())
}

/// Refuses a registration whose labels no data node would have started
/// with (a peer's bytes are checked as a config file is).
pub(crate) fn check_registration(cmd: &Command) -> Result<(), String> {
    match cmd {
        Command::RegisterNode { node } => weft_common::topology::check_labels(&node.labels)
            .map_err(|why| format!("node {}: {why}", node.id)),
        _ => Ok(()),
    }
}

/// A query's name, for an audit record of its refusal.
pub(crate) fn query_label(q: &Query) -> String {
    serde_json::to_value(q)
        .ok()
        .and_then(|v| v.get("q").and_then(|n| n.as_str()).map(String::from))
        .unwrap_or_else(|| "query".to_string())
}

fn command_name(cmd: &Command) -> String {
    // The variant's name, as `Debug` begins it.
    format!("{cmd:?}")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// Whether `role` may ask `q`.
pub(crate) fn query_allowed(q: &Query, role: Role) -> Result<(), String> {
    let allowed = query_roles(q);
    if allowed.contains(&role) {
        Ok(())
    } else {
        Err(format!(
            "this query is not allowed for role {}; it needs one of the roles {}",
            role.name(),
            weft_client::peer::role_names(allowed)
        ))
    }
}

/// The roles that may ask `q`.
pub(crate) fn query_roles(q: &Query) -> &'static [Role] {
    match q {
        // Key records hold the secret a gateway checks signatures with.
        Query::AccessKey { .. } | Query::Keys => ADMIN,
        // Object metadata: the S3 surface and administration.
        Query::Bucket { .. }
        | Query::Buckets
        | Query::Object { .. }
        | Query::List(_)
        | Query::Uploads { .. }
        | Query::ObjectVersion { .. }
        | Query::Versions { .. }
        | Query::Placements { .. }
        | Query::PlacementTable { .. }
        | Query::Upload { .. }
        | Query::StorageClasses
        | Query::LifecyclePreview { .. } => ADMIN,
        // What a data node may delete: its garbage collector asks.
        Query::ShardsHeld { .. } => DATAD_OR_ADMIN,
        Query::Segments { .. } => DATAD_OR_ADMIN,
        // Cluster shape and timers: every member needs them.
        Query::Nodes | Query::Durability | Query::Status | Query::Digest | Query::UploadTimers => {
            ANY_ROLE
        }
        // The record of who did what: administration only.
        Query::Audit { .. } | Query::AuditCheckpoints { .. } | Query::AuditInfo => ADMIN,
        Query::Warms => ADMIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_cannot_commit_a_repair_and_a_data_node_cannot_read_keys() {
        let moved = Command::MoveShard {
            segment: weft_common::SegmentId(7),
            index: 2,
            from: None,
            to: weft_common::NodeId(3),
        };
        assert!(command_allowed(&moved, Role::Gateway).is_err());
        assert!(command_allowed(&moved, Role::Datad).is_ok());
        let wrapped = Command::Batch {
            commands: vec![Command::DeleteKey { name: "k".into() }, moved],
        };
        let e = command_allowed(&wrapped, Role::Gateway).unwrap_err();
        assert!(e.contains("MoveShard"), "{e}");
        assert!(!query_roles(&Query::Keys).contains(&Role::Datad));
        assert!(path_roles("/raft/append") == Some(METAD));
        assert!(path_roles("/metrics").is_none());
        assert!(path_roles("/health/ready").is_none());
    }
}
