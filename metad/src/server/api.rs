//! The metadata API: commands (`/v1/command`), queries (`/v1/query`),
//! heartbeats and repair polls. Commands and most queries are served only
//! by the leader: a follower answers "not leader" with the leader's address.

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use openraft::error::{CheckIsLeaderError, RaftError};
use std::sync::Arc;
use tokio::time::Instant;
use weft_client::peer::{Identified, Peer};
use weft_common::rpc::{
    Command, CommandResult, Heartbeat, Query, QueryResult, RpcErrorCode, COMMAND_FORMAT,
};

use super::leader_loops::durability_scan;
use super::{ensure_serving_leader, status, ApiError, AppState};
use crate::group_commit::WriteError;

/// Most audit entries or checkpoints one query answers.
const AUDIT_PAGE_MAX: u32 = 1_000;

pub(super) async fn command(
    State(s): State<Arc<AppState>>,
    caller: Option<Extension<ConnectInfo<Peer>>>,
    Json(cmd): Json<Command>,
) -> Result<Json<CommandResult>, ApiError> {
    let outer_caller = caller.clone();
    if let Some(role) = role_of(&caller) {
        if let Err(why) = super::access::command_allowed(&cmd, role) {
            s.audit.report(
                weft_common::audit::EventKind::Denial,
                &weft_client::peer::describe_host(caller.as_ref().map(|c| &c.0 .0)),
                "POST /v1/command",
                &super::access::command_label(&cmd),
                &format!("denied: {why}"),
            );
            return Err(ApiError::forbidden(why));
        }
    }
    if super::access::leader_only(&cmd) {
        // Only this voter's own loops propose checkpoints (signed with the
        // master key) and the classes' seed; whoever sends one is forging it.
        return Err(ApiError::forbidden(
            "audit checkpoints and the storage classes' seed come from the metad leader itself; no caller may propose one (change classes with PutStorageClass)",
        ));
    }
    ensure_serving_leader(&s)?;
    // Only requests: a bare command could not be recognised when retried,
    // and is not applied once (docs/decisions.md, "Every command applies
    // once"). The leader stamps the time records expire by, so no client
    // clock, slow, fast or hostile, can expire another's record early.
    let cmd = match cmd {
        // A format this voter cannot read must not enter the log: every
        // voter that cannot read it would stop at it.
        Command::Request { format, .. } if format > COMMAND_FORMAT => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                RpcErrorCode::BadRequest,
                format!(
                    "command format {format} is newer than this metad reads ({COMMAND_FORMAT}); upgrade every metad voter before its clients (docs/decisions.md, \"Formats and rolling upgrades\")"
                ),
            ))
        }
        Command::Request {
            id,
            command,
            actor,
            ..
        } if !matches!(*command, Command::Request { .. } | Command::Batch { .. }) => {
            let caller = caller.as_ref().map(|c| c.0 .0.clone());
            if let Err(why) = super::access::check_registration(&command) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    RpcErrorCode::BadRequest,
                    why,
                ));
            }
            // What a data node says of a node it names: only of its own.
            match &*command {
                Command::RegisterNode { node } => {
                    check_node(&s, &outer_caller, node.id, "register node")?
                }
                Command::DropShard { node, .. } => {
                    check_node(&s, &outer_caller, *node, "drop shard record")?
                }
                Command::DamageRepaired { node, .. } => {
                    check_node(&s, &outer_caller, *node, "damage repaired")?
                }
                Command::AddCacheCopy { node, .. } => {
                    check_node(&s, &outer_caller, *node, "add cache copy")?
                }
                _ => {}
            }
            if let Err(why) =
                super::clock::check(&command, crate::server::now_ms(), s.clock_skew_max_ms)
            {
                tracing::warn!(%why, "refused a command stamped by a skewed clock");
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    RpcErrorCode::BadRequest,
                    why,
                ));
            }
            if let Err(why) = super::access::check_reports(&command, caller.as_ref()) {
                s.audit.report(
                    weft_common::audit::EventKind::Denial,
                    &weft_client::peer::describe_host(caller.as_ref()),
                    "POST /v1/command",
                    "audit report",
                    &format!("denied: {why}"),
                );
                return Err(ApiError::forbidden(why));
            }
            Command::Request {
                id,
                at_ms: crate::server::now_ms(),
                command,
                // Whatever the client named: this leader writes the entry,
                // with the actor below, in the format it writes (a request
                // written as format 1 would be applied unrecorded).
                format: COMMAND_FORMAT,
                actor: Some(weft_common::audit::Actor {
                    principal: super::access::vouched_principal(
                        actor.and_then(|a| a.principal),
                        caller.as_ref(),
                    ),
                    via: weft_client::peer::describe_host(caller.as_ref()),
                }),
            }
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                RpcErrorCode::BadRequest,
                "commands must be sent as one Request with an id its retries share (use the metad client)",
            ))
        }
    };
    let cmd = seal_secrets(&s, cmd)?;
    // In space-low mode only commands that free space or run the cluster
    // are proposed; decided here, not in apply, which must not depend on
    // this replica's disk.
    if let Some(message) = s.space.refusal(&cmd) {
        tracing::warn!(%message, "refused a command: metad low on disk space");
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            RpcErrorCode::DiskFull,
            message,
        ));
    }
    let t0 = Instant::now();
    let result = s.writes.write(cmd).await;
    if let Err(WriteError::Unavailable(msg) | WriteError::Unknown { message: msg, .. }) = &result {
        if crate::space::mentions_no_space(msg) {
            s.space.write_failed_no_space();
        }
    }
    match result {
        Ok(result) => {
            s.metrics.commands.inc();
            s.metrics
                .command_seconds
                .observe(t0.elapsed().as_secs_f64());
            Ok(Json(result))
        }
        Err(WriteError::Unavailable(msg)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            RpcErrorCode::Unavailable,
            msg,
        )),
        Err(WriteError::Unknown { message, leader }) => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                RpcErrorCode::OutcomeUnknown,
                message,
            );
            e.1.leader_addr = leader.map(|n| n.addr);
            Err(e)
        }
    }
}

/// Seals a new key's secret before the command enters the log, so no log
/// entry, state record, snapshot or backup holds it in clear
/// ([`crate::seal`]). Without a master key (a bench run with
/// `--insecure-internal`) secrets are kept as given.
fn seal_secrets(s: &AppState, cmd: Command) -> Result<Command, ApiError> {
    let Command::Request {
        id,
        at_ms,
        command,
        format,
        actor,
    } = cmd
    else {
        return Ok(cmd);
    };
    let command = match *command {
        Command::CreateKey { mut key } => {
            if crate::seal::is_sealed(&key.secret_key) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    RpcErrorCode::BadRequest,
                    "a key's secret may not be given sealed: metad seals it",
                ));
            }
            if let Some(sealer) = &s.sealer {
                key.secret_key = sealer.seal(&key.access_key, &key.secret_key);
            }
            Command::CreateKey { key }
        }
        other => other,
    };
    Ok(Command::Request {
        id,
        at_ms,
        command: Box::new(command),
        format,
        actor,
    })
}

/// What of a key's secret a caller sees: a gateway (which checks
/// signatures with it) the secret, unsealed; anyone else nothing (the
/// field is empty). Unidentified callers (plain HTTP, in process) are
/// treated as the gateway they stand in for.
fn reveal(
    s: &AppState,
    caller: &Option<Extension<ConnectInfo<Peer>>>,
    result: QueryResult,
) -> Result<QueryResult, ApiError> {
    let may_see = matches!(
        role_of(caller),
        None | Some(weft_client::pki::Role::Gateway)
    );
    let open = |k: &mut weft_common::manifest::AccessKey| -> Result<(), ApiError> {
        if !may_see {
            k.secret_key.clear();
        } else if crate::seal::is_sealed(&k.secret_key) {
            let sealer = s.sealer.as_ref().ok_or_else(|| {
                ApiError::internal(format!(
                    "the secret of {} is sealed and this metad has no master key: configure master_key_file (docs/security.md, \"Master key\")",
                    k.access_key
                ))
            })?;
            k.secret_key = sealer
                .unseal(&k.access_key, &k.secret_key)
                .map_err(|e| ApiError::internal(format!("key {}: {e}", k.access_key)))?;
        }
        Ok(())
    };
    Ok(match result {
        QueryResult::AccessKey { key: Some(mut k) } => {
            open(&mut k)?;
            QueryResult::AccessKey { key: Some(k) }
        }
        QueryResult::Keys { mut keys } => {
            // A listing never carries secrets, not even to a gateway.
            for k in &mut keys {
                k.secret_key.clear();
            }
            QueryResult::Keys { keys }
        }
        other => other,
    })
}

/// The role a caller's certificate names; `None` when nothing identifies
/// callers (plain HTTP, in process), where the path guard let it through.
fn role_of(caller: &Option<Extension<ConnectInfo<Peer>>>) -> Option<weft_client::pki::Role> {
    match caller.as_ref().map(|c| c.0 .0.identified) {
        Some(Identified::Role(role)) => Some(role),
        _ => None,
    }
}

async fn ensure_leader_read(s: &AppState) -> Result<(), ApiError> {
    if s.stepping_down.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::not_leader(None));
    }
    match s.raft.ensure_linearizable().await {
        Ok(read) => match s.read_floor {
            Some(floor) if !floor.allows(read.as_ref()) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                RpcErrorCode::Unavailable,
                "restarted as leader: reads wait until the commit index passes the log it restarted with",
            )),
            _ => Ok(()),
        },
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            Err(ApiError::not_leader(f.leader_node))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            RpcErrorCode::Unavailable,
            format!("cannot confirm leadership for a consistent read: {e}"),
        )),
    }
}

/// Most segments one `Segments` page carries (a page of records stays
/// well under the RPC body limit).
const SEGMENTS_PAGE_MAX: u32 = 1000;
/// Most objects one `Query::Placements` page answers.
const PLACEMENTS_PAGE_MAX: u32 = 5000;
/// Most objects one `Query::PlacementTable` page answers: a few dozen
/// bytes each, so 10,000 is well under a megabyte, and a walk pays one
/// leader read and one round trip per 10,000 objects.
const PLACEMENT_TABLE_PAGE_MAX: u32 = 10_000;

pub(super) async fn query(
    State(s): State<Arc<AppState>>,
    caller: Option<Extension<ConnectInfo<Peer>>>,
    Json(q): Json<Query>,
) -> Result<Json<QueryResult>, ApiError> {
    if let Some(role) = role_of(&caller) {
        if let Err(why) = super::access::query_allowed(&q, role) {
            s.audit.report(
                weft_common::audit::EventKind::Denial,
                &weft_client::peer::describe_host(caller.as_ref().map(|c| &c.0 .0)),
                "POST /v1/query",
                &super::access::query_label(&q),
                &format!("denied: {why}"),
            );
            return Err(ApiError::forbidden(why));
        }
    }
    s.metrics.queries.inc();
    if q != Query::Status && q != Query::Digest && q != Query::UploadTimers {
        ensure_leader_read(&s).await?;
    }
    let sm = s.sm.clone();
    let warming_zones = s.warming.zones();
    let warming = s.clone();
    let public_keys = s
        .sealer
        .as_ref()
        .map(|k| k.audit_public_keys())
        .unwrap_or_default();
    let passes = *s.lifecycle_passes.lock().expect("passes lock");
    let (transitions, transition_error) = s.transitions.stats();
    let now = crate::server::now_ms();
    let result = match q {
        Query::Status => QueryResult::Status { status: status(&s) },
        // From this replica's state, not a leader read: gateways and data
        // nodes ask any voter, and tolerate a lagging one (a gateway keeps
        // the shortest age it has seen, a data node the longest grace).
        Query::UploadTimers => {
            let timers = weft_common::effects::spawn_blocking(move || sm.upload_timers())
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            match timers {
                Some(record) => QueryResult::UploadTimers {
                    timers: record.served(crate::server::now_ms()),
                },
                None => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        RpcErrorCode::Unavailable,
                        "this metad has no upload timers yet: a new cluster's leader sets them from its config just after it is elected; retry in a moment",
                    ))
                }
            }
        }
        Query::Digest => {
            let (applied_index, digest) = weft_common::effects::spawn_blocking(move || sm.digest())
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            QueryResult::Digest {
                applied_index,
                digest,
            }
        }
        Query::Nodes => {
            let sm = sm.clone();
            let (classes, day) = weft_common::effects::spawn_blocking(move || {
                Ok::<_, crate::error::MetaError>((sm.storage_classes()?, sm.lifecycle_day_ms()?))
            })
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
            let classes = classes.unwrap_or_default();
            QueryResult::Nodes {
                nodes: node_views(&s).await?,
                metad_space_low: s.space.low_reason(),
                classes,
                lifecycle_day_ms: day.unwrap_or(0),
                netmap: s.netmap.map(),
            }
        }
        Query::Durability => {
            // A cached report is reused only if nothing it depends on moved:
            // no command applied since, and every node in the same state.
            // Otherwise scan now, so "healthy" is never an old answer.
            let applied = s.raft.metrics().borrow().last_applied.map(|l| l.index);
            let views = node_views(&s).await?;
            let fresh = s.planner.last_status().filter(|(at, st, at_index)| {
                at.elapsed() <= s.planner.config().status_max_age
                    && *at_index == applied
                    && st.nodes.len() == views.len()
                    && views.iter().all(|v| {
                        st.nodes
                            .iter()
                            .any(|n| n.node == v.info.id && n.state == v.state_name())
                    })
            });
            let status = match fresh {
                Some((_, status, _)) => status,
                None => durability_scan(s.clone()).await?,
            };
            QueryResult::Durability { status }
        }
        q => weft_common::effects::spawn_blocking(
            move || -> Result<QueryResult, crate::error::MetaError> {
                Ok(match q {
                    Query::Bucket { name } => QueryResult::Bucket {
                        bucket: sm.bucket(&name)?,
                    },
                    Query::Buckets => QueryResult::Buckets {
                        buckets: sm.buckets()?,
                    },
                    Query::Object { bucket, key } => QueryResult::Object {
                        bucket_exists: sm.bucket(&bucket)?.is_some(),
                        version: sm.object(&bucket, &key)?,
                    },
                    Query::List(req) => QueryResult::List {
                        page: sm.list(&req)?,
                    },
                    Query::AccessKey { access_key } => QueryResult::AccessKey {
                        key: sm.access_key(&access_key)?,
                    },
                    Query::Keys => QueryResult::Keys { keys: sm.keys()? },
                    Query::ObjectVersion {
                        bucket,
                        key,
                        version_id,
                    } => QueryResult::VersionRecord {
                        bucket_exists: sm.bucket(&bucket)?.is_some(),
                        record: sm.object_version(&bucket, &key, &version_id)?,
                    },
                    Query::Versions {
                        bucket,
                        prefix,
                        key_marker,
                        version_marker,
                        delimiter,
                        max,
                    } => {
                        let page = sm.versions(
                            &bucket,
                            &prefix,
                            key_marker.as_deref(),
                            version_marker.as_deref(),
                            delimiter.as_deref(),
                            max,
                        )?;
                        QueryResult::Versions {
                            entries: page.entries,
                            common_prefixes: page.common_prefixes,
                            next: page.next,
                        }
                    }
                    Query::Uploads { bucket, prefix } => QueryResult::Uploads {
                        uploads: sm.uploads(&bucket, &prefix)?,
                    },
                    Query::Upload { upload_id } => QueryResult::Upload {
                        upload: sm.upload(&upload_id)?,
                    },
                    Query::ShardsHeld { node, shards } => QueryResult::ShardsHeld {
                        held: sm.shards_held(node, &shards)?,
                    },
                    Query::Segments { after, max } => {
                        let (segments, more) =
                            sm.segments_page(after, max.clamp(1, SEGMENTS_PAGE_MAX))?;
                        QueryResult::Segments { segments, more }
                    }
                    Query::Audit { after, max } => QueryResult::Audit {
                        entries: sm.audit_entries(after, max.clamp(1, AUDIT_PAGE_MAX))?,
                    },
                    Query::AuditCheckpoints { after, max } => QueryResult::AuditCheckpoints {
                        checkpoints: sm.audit_checkpoints(after, max.clamp(1, AUDIT_PAGE_MAX))?,
                    },
                    Query::LifecyclePreview { bucket, max_keys } => {
                        let (actions, keys, complete, day_ms) =
                            crate::lifecycle::preview(&sm, &bucket, max_keys, now)?;
                        QueryResult::LifecyclePreview {
                            actions,
                            keys,
                            complete,
                            day_ms,
                            passes,
                            transitions,
                            transition_error,
                        }
                    }
                    Query::StorageClasses => QueryResult::StorageClasses {
                        classes: sm.storage_classes()?.unwrap_or_default(),
                        usage: sm.class_usage()?,
                        migrating: sm.class_migrations()?.into_keys().collect(),
                    },
                    Query::Placements {
                        bucket,
                        prefix,
                        after,
                        max,
                    } => {
                        let (objects, next) = sm.placements(
                            &bucket,
                            &prefix,
                            after.as_deref(),
                            max.clamp(1, PLACEMENTS_PAGE_MAX),
                        )?;
                        QueryResult::Placements { objects, next }
                    }
                    Query::PlacementTable {
                        bucket,
                        prefix,
                        after,
                        max,
                    } => {
                        let (table, next) = sm.placement_table(
                            &bucket,
                            &prefix,
                            after.as_deref(),
                            max.clamp(1, PLACEMENT_TABLE_PAGE_MAX),
                        )?;
                        QueryResult::PlacementTable { table, next }
                    }
                    Query::Warms => {
                        let warms = sm.warms()?;
                        QueryResult::Warms {
                            last_used_ms: warming.warming.last_used_of(&warms),
                            warms,
                            zones: warming_zones.clone(),
                        }
                    }
                    Query::AuditInfo => QueryResult::AuditInfo {
                        info: weft_common::audit::AuditInfo {
                            public_keys,
                            ..sm.audit_info()?
                        },
                    },
                    Query::Nodes
                    | Query::Status
                    | Query::Digest
                    | Query::Durability
                    | Query::UploadTimers => {
                        unreachable!("handled above")
                    }
                })
            },
        )
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?,
    };
    Ok(Json(reveal(&s, &caller, result)?))
}

/// Registered nodes joined with liveness and operator states.
pub(super) async fn node_views(
    s: &AppState,
) -> Result<Vec<weft_common::topology::NodeView>, ApiError> {
    let sm = s.sm.clone();
    let (nodes, admin) =
        weft_common::effects::spawn_blocking(move || -> Result<_, crate::error::MetaError> {
            Ok((sm.nodes()?, sm.node_admin()?))
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(s.liveness.view(nodes, &admin))
}

/// Refuses, and reports to the audit chain, a data node speaking for
/// another node than its certificate names (`what`: the request).
pub(super) fn check_node(
    s: &AppState,
    caller: &Option<Extension<ConnectInfo<Peer>>>,
    node: weft_common::ids::NodeId,
    what: &str,
) -> Result<(), ApiError> {
    let Some(peer) = caller.as_ref().map(|c| &c.0 .0) else {
        return Ok(());
    };
    match peer.may_act_as_node(node.0, s.allow_unbound_datad_certs) {
        Ok(false) => Ok(()),
        Ok(true) => {
            // At most one line a minute: heartbeats come twice a second.
            static LAST_WARNED_S: std::sync::atomic::AtomicU64 =
                std::sync::atomic::AtomicU64::new(0);
            let now_s = crate::server::now_ms() / 1000;
            let last = LAST_WARNED_S.load(std::sync::atomic::Ordering::Relaxed);
            if now_s >= last + 60
                && LAST_WARNED_S
                    .compare_exchange(
                        last,
                        now_s,
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    )
                    .is_ok()
            {
                tracing::warn!(%node, addr = %peer.addr, "a data node certificate that names no node id was let through (allow_unbound_datad_certs): re-issue it with `weft cert issue --role datad --node-id N`");
            }
            Ok(())
        }
        Err(why) => Err(why),
    }
    .map_err(|why| {
        s.audit.report(
            weft_common::audit::EventKind::Denial,
            &weft_client::peer::describe_host(Some(peer)),
            what,
            &format!("node {node}"),
            &format!("denied: {why}"),
        );
        ApiError::forbidden(why)
    })
}

pub(super) async fn repair_poll(
    State(s): State<Arc<AppState>>,
    caller: Option<Extension<ConnectInfo<Peer>>>,
    Json(poll): Json<weft_common::repair::RepairPoll>,
) -> Result<Json<weft_common::repair::RepairAssignment>, ApiError> {
    check_node(&s, &caller, poll.node, "POST /v1/repair/poll")?;
    // Tasks are planned by the leader; a follower redirects.
    ensure_serving_leader(&s)?;
    let sm = s.sm.clone();
    let config = weft_common::effects::spawn_blocking(move || sm.repair_config())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let writers = node_views(&s)
        .await?
        .iter()
        .filter(|v| v.accepts_writes())
        .count();
    s.metrics.repair_finished.inc_by(poll.finished.len() as u64);
    Ok(Json(s.planner.poll(&poll, config, writers)))
}

/// `POST /v1/netmap`: a gateway's or data node's latest network
/// measurements, kept in leader memory like heartbeats.
pub(super) async fn netmap_report(
    State(s): State<Arc<AppState>>,
    caller: Option<Extension<ConnectInfo<Peer>>>,
    Json(mut report): Json<weft_common::netmap::NetReport>,
) -> Result<StatusCode, ApiError> {
    ensure_serving_leader(&s)?;
    if role_of(&caller) == Some(weft_client::pki::Role::Datad) {
        // Only gateways read through warm copies; and a data node's report
        // is keyed apart, so it can never replace a gateway's.
        report.cache_reads.clear();
        report.reporter = format!("datad {}", report.reporter);
    }
    let reads = (report.zone.clone(), report.cache_reads.clone());
    s.netmap.record(report);
    super::warming::note_cache_reads(&s, reads.0, reads.1).await;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn heartbeat(
    State(s): State<Arc<AppState>>,
    caller: Option<Extension<ConnectInfo<Peer>>>,
    Json(hb): Json<Heartbeat>,
) -> Result<StatusCode, ApiError> {
    check_node(&s, &caller, hb.node, "POST /v1/heartbeat")?;
    // Liveness lives on the leader, which answers node queries and plans
    // repair: a voter that removed itself or is stepping down must send
    // heartbeats on, or the real leader would think the nodes silent.
    ensure_serving_leader(&s)?;
    s.liveness.record(&hb);
    Ok(StatusCode::NO_CONTENT)
}
