//! The write path: cut a body into segments and stripes, hash it, encode it
//! and stream the shards to their nodes in parallel, with bounded memory.
//!
//! Memory per PUT is about one stripe being filled, one being encoded and two
//! shard chunks queued per node (≈ 4 + 6 + 12 MiB for 4+2 with 1 MiB units),
//! whatever the object size. MD5 (the ETag, the most expensive step) runs on
//! its own blocking thread in parallel with encoding and sending.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use weft_common::checksum::{crc32c_append, EtagHasher};
use weft_common::manifest::Segment;
use weft_common::placement::place;
use weft_common::profile::Layout;
use weft_common::storage_class::StorageClass;
use weft_common::stripe::Geometry;
use weft_common::{SegmentId, ShardIndex};

use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::time::Duration;
use weft_client::datad::DatadClient;
use weft_common::profile::Profiles;

use crate::cluster_map::ClusterMap;
use crate::codecs::Codecs;
use crate::error::GatewayError;
use crate::limits::SHARD_SEND_TIMEOUT;
use crate::release::Releaser;
use crate::upload_age::UploadAge;

/// Writes new data: places each segment, encodes it and streams its shards
/// to their nodes. Holds only what writing needs; cheap to clone.
#[derive(Clone)]
pub struct ObjectWriter {
    /// Storage classes: the layout of a new object and its segment size.
    pub(crate) profiles: Arc<Profiles>,
    /// Where shards may go, and which nodes failed a write.
    pub(crate) cluster: ClusterMap,
    /// Sends the shards.
    pub(crate) datad: DatadClient,
    /// Encoders, shared with the read path.
    pub(crate) codecs: Codecs,
    /// Deletes the shards of a write that failed.
    pub(crate) release: Releaser,
    /// How long the shard writes beyond the quorum may lag the others.
    pub(crate) straggler_grace: Duration,
    /// How long a write may take before committing it is unsafe.
    pub(crate) upload_max_age: UploadAge,
    /// Counts the shard writes abandoned after the straggler grace.
    pub(crate) put_stragglers: Counter,
}

/// What a successful write produced, ready to commit.
pub struct Written {
    /// Segments in object order.
    pub segments: Vec<Segment>,
    /// MD5 hex of the body.
    pub etag: String,
    /// crc32c of the body.
    pub crc32c: u32,
    /// S3 additional checksums computed over the body (those requested).
    pub checksum: s3s::dto::Checksum,
}

/// Reads exact-size pieces from a byte stream, hashing as it goes.
struct BodyReader<S> {
    body: S,
    buf: BytesMut,
    crc: u32,
    md5_tx: Option<mpsc::Sender<Bytes>>,
    read: u64,
}

impl<S, E> BodyReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    /// Exactly `n` bytes, or an error if the body ends first.
    async fn take(&mut self, n: usize) -> Result<Bytes, GatewayError> {
        while self.buf.len() < n {
            let next = tokio::time::timeout(crate::limits::CLIENT_IDLE_TIMEOUT, self.body.next())
                .await
                .map_err(|_| GatewayError::ClientIdle(crate::limits::CLIENT_IDLE_TIMEOUT))?;
            match next {
                Some(Ok(chunk)) => self.absorb(chunk).await?,
                Some(Err(e)) => return Err(body_error(&e, self.read)),
                None => {
                    return Err(GatewayError::Body(format!(
                        "body ended after {} bytes, before the declared Content-Length",
                        self.read
                    )))
                }
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    async fn absorb(&mut self, chunk: Bytes) -> Result<(), GatewayError> {
        self.read += chunk.len() as u64;
        self.crc = crc32c_append(self.crc, &chunk);
        if let Some(tx) = &self.md5_tx {
            tx.send(chunk.clone())
                .await
                .map_err(|_| GatewayError::Internal("md5 worker stopped".into()))?;
        }
        self.buf.extend_from_slice(&chunk);
        Ok(())
    }

    /// Succeeds only if the body has no bytes left.
    async fn finish(&mut self) -> Result<(), GatewayError> {
        loop {
            let next = tokio::time::timeout(crate::limits::CLIENT_IDLE_TIMEOUT, self.body.next())
                .await
                .map_err(|_| GatewayError::ClientIdle(crate::limits::CLIENT_IDLE_TIMEOUT))?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| body_error(&e, self.read))?;
            if !chunk.is_empty() {
                return Err(GatewayError::Body(
                    "body is longer than the declared Content-Length".into(),
                ));
            }
        }
        if !self.buf.is_empty() {
            return Err(GatewayError::Body(
                "body is longer than the declared Content-Length".into(),
            ));
        }
        Ok(())
    }
}

/// Classifies a body stream failure: a failed chunk signature (s3s's
/// aws-chunked decoder, whose error type is private, so matched by its
/// message) is the client's signature problem; anything else is a broken body.
fn body_error(e: &dyn std::fmt::Display, read: u64) -> GatewayError {
    let msg = format!("read body after {read} bytes: {e}");
    if msg.contains("SignatureMismatch") {
        GatewayError::BodySignature(msg)
    } else {
        GatewayError::Body(msg)
    }
}

/// One shard's writer: a queue to a streaming PUT on its node.
struct ShardWriter {
    index: usize,
    node: weft_common::NodeId,
    tx: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
    task: tokio::task::AbortHandle,
}

/// What one shard's PUT task returns: its index, its node and the outcome.
type ShardOutcome = (
    usize,
    weft_common::NodeId,
    Result<(), weft_client::datad::DatadClientError>,
);

impl ObjectWriter {
    /// Writes `size` bytes from `body` as the segments of a new version.
    /// Nothing is committed here: on error the caller commits nothing and
    /// the shards already written are removed (best effort; GC covers the rest).
    pub async fn write_object<S, E>(
        &self,
        class: &StorageClass,
        size: u64,
        body: S,
        checksum: Option<s3s::checksum::ChecksumHasher>,
    ) -> Result<Written, GatewayError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if let Some(message) = self.cluster.metad_space_low() {
            return Err(GatewayError::Metad(
                weft_client::MetadClientError::Rejected {
                    code: weft_common::rpc::RpcErrorCode::DiskFull,
                    message,
                },
            ));
        }
        // MD5 and any requested S3 checksum run on their own thread, beside
        // encoding and sending; under simulation (one thread) after the
        // body, from a channel with room for all of it.
        let (md5_tx, mut md5_rx) =
            mpsc::channel::<Bytes>(weft_common::effects::channel_capacity(8));
        let md5_work = move || {
            let mut h = EtagHasher::default();
            let mut extra = checksum;
            while let Some(chunk) = weft_common::effects::blocking_recv(&mut md5_rx) {
                h.update(&chunk);
                if let Some(x) = &mut extra {
                    x.update(&chunk);
                }
            }
            (
                h.finish_hex(),
                extra.map(|x| x.finalize()).unwrap_or_default(),
            )
        };
        let (md5_task, md5_later) = if weft_common::effects::simulated() {
            (None, Some(md5_work))
        } else {
            (Some(weft_common::effects::spawn_blocking(md5_work)), None)
        };
        let mut reader = BodyReader {
            body,
            buf: BytesMut::new(),
            crc: 0,
            md5_tx: Some(md5_tx),
            read: 0,
        };
        let layout = class.layout_for(size);
        let started = tokio::time::Instant::now();
        let mut segments = Vec::new();
        let mut offset = 0u64;
        let result: Result<(), GatewayError> = async {
            while offset < size {
                let len = (size - offset).min(self.profiles.segment_bytes_max);
                let seg = self
                    .write_segment(&mut reader, class, layout, offset, len)
                    .await?;
                segments.push(seg);
                offset += len;
            }
            reader.finish().await?;
            // Shards written long ago may already look like garbage to the
            // data nodes' collector: never commit such an upload.
            let max = self.upload_max_age.get();
            if started.elapsed() > max {
                return Err(GatewayError::TooSlow {
                    took: started.elapsed(),
                    max,
                });
            }
            Ok(())
        }
        .await;
        reader.md5_tx = None;
        let (etag, checksum) = match (md5_task, md5_later) {
            (Some(task), _) => task
                .await
                .map_err(|e| GatewayError::Internal(format!("md5 worker: {e}")))?,
            (None, Some(work)) => work(),
            (None, None) => unreachable!("one of the two is set"),
        };
        if let Err(e) = result {
            self.release.unreferenced(segments);
            return Err(e);
        }
        Ok(Written {
            segments,
            etag,
            crc32c: reader.crc,
            checksum,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(offset, len, segment))]
    async fn write_segment<S, E>(
        &self,
        reader: &mut BodyReader<S>,
        class: &StorageClass,
        layout: Layout,
        offset: u64,
        len: u64,
    ) -> Result<Segment, GatewayError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = SegmentId::from_random(weft_common::effects::random());
        let width = layout.width();
        let quorum = layout.write_quorum();
        let rule = self.cluster.resolve(class, id, layout)?;
        let nodes = place(
            id,
            width,
            quorum,
            rule.spread_zones,
            &self.cluster.candidates_for(&rule),
        )?;
        let (geometry, shard_len) = match layout {
            Layout::Replicated { .. } => (None, len),
            Layout::Erasure { k, m, unit_bytes } => {
                let g = Geometry::new(usize::from(k), usize::from(m), u64::from(unit_bytes), len);
                (Some(g), g.shard_len())
            }
        };
        tracing::Span::current().record("segment", tracing::field::display(id));

        let mut writers: Vec<ShardWriter> = Vec::with_capacity(width);
        let mut tasks: JoinSet<ShardOutcome> = JoinSet::new();
        for (index, node) in nodes.iter().copied().enumerate() {
            let Some((addr, _)) = self.cluster.locate(node) else {
                continue;
            };
            let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
            let client = self.datad.clone();
            let task = tasks.spawn(async move {
                let result = client
                    .put_shard(
                        &addr,
                        id,
                        ShardIndex(index as u8),
                        shard_len,
                        ReceiverStream::new(rx),
                    )
                    .await
                    .map(|_| ());
                (index, node, result)
            });
            writers.push(ShardWriter {
                index,
                node,
                tx: Some(tx),
                task,
            });
        }

        match geometry {
            None => {
                let data = reader.take(len as usize).await?;
                for w in &mut writers {
                    send_chunk(w, data.clone()).await;
                }
            }
            Some(g) => {
                let codec = self.codecs.get(g.k, g.m)?;
                for s in 0..g.stripe_count() {
                    let span = g.stripe(s);
                    let data = reader
                        .take((span.data.end - span.data.start) as usize)
                        .await?;
                    let codec = codec.clone();
                    let shards = weft_common::effects::spawn_blocking(move || codec.encode(&data))
                        .await
                        .map_err(|e| GatewayError::Internal(format!("encode: {e}")))?;
                    for w in &mut writers {
                        send_chunk(w, shards[w.index].clone()).await;
                    }
                }
            }
        }

        // Closing the queues ends each body; now collect the replies.
        for w in &mut writers {
            w.tx = None;
        }
        let (shards, failures, shortfall) = self.collect_shards(tasks, width, quorum).await;
        let segment = Segment {
            id,
            offset,
            len,
            layout,
            shards,
            shard_len,
            placement: Some(rule),
            cache: vec![],
        };
        let written = segment.shards_present();
        if written < quorum {
            self.release.unreferenced(vec![segment]);
            return Err(GatewayError::WriteQuorum {
                segment: id,
                written,
                needed: quorum,
                detail: failures.join("; "),
                shortfall: shortfall.verdict(),
            });
        }
        if !failures.is_empty() {
            tracing::warn!(segment = %id, failures = %failures.join("; "), "segment written below full redundancy");
        }
        Ok(segment)
    }
}

impl ObjectWriter {
    /// Waits for the shard writes of a segment: all of them, or, once
    /// `quorum` are durable, the others for at most the straggler grace.
    /// A straggler is abandoned and its slot left empty, so the committed
    /// segment records the missing shard and repair rebuilds it; whatever
    /// the straggler may still write is unreferenced, for garbage collection
    /// (not released here: repair might put the same shard on the same node).
    async fn collect_shards(
        &self,
        mut tasks: JoinSet<ShardOutcome>,
        width: usize,
        quorum: usize,
    ) -> (
        Vec<Option<weft_common::NodeId>>,
        Vec<String>,
        crate::error::ShortfallTally,
    ) {
        let mut shards = vec![None; width];
        let mut failures = Vec::new();
        let mut shortfall = crate::error::ShortfallTally::default();
        let mut durable = 0usize;
        let mut grace_ends: Option<tokio::time::Instant> = None;
        loop {
            let next = match grace_ends {
                None => tasks.join_next().await,
                Some(at) => match tokio::time::timeout_at(at, tasks.join_next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let Some(joined) = next else { break };
            match joined {
                Ok((index, node, Ok(()))) => {
                    shards[index] = Some(node);
                    durable += 1;
                }
                Ok((index, node, Err(e))) => {
                    shortfall.note(&e);
                    if matches!(e, weft_client::datad::DatadClientError::Unreachable { .. }) {
                        self.cluster.mark_unreachable(node);
                    }
                    failures.push(format!("shard {index} on {node}: {e}"));
                }
                // Aborted by a stalled send, or panicked.
                Err(e) => {
                    shortfall.note_other();
                    failures.push(format!("a shard write ended: {e}"));
                }
            }
            if durable >= quorum && grace_ends.is_none() && !tasks.is_empty() {
                grace_ends = Some(tokio::time::Instant::now() + self.straggler_grace);
            }
        }
        if !tasks.is_empty() {
            let n = tasks.len();
            for _ in 0..n {
                shortfall.note_other();
            }
            tasks.abort_all();
            self.put_stragglers.inc_by(n as u64);
            failures.push(format!(
                "{n} shard write(s) still running after the {:?} straggler grace; left to repair",
                self.straggler_grace
            ));
        }
        (shards, failures, shortfall)
    }
}

/// Queues a chunk for one shard; a writer that died or stalls is dropped and
/// its shard counted as missing.
async fn send_chunk(w: &mut ShardWriter, chunk: Bytes) {
    let Some(tx) = &w.tx else { return };
    match tokio::time::timeout(SHARD_SEND_TIMEOUT, tx.send(Ok(chunk))).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => w.tx = None,
        Err(_) => {
            tracing::warn!(shard = w.index, node = %w.node, "shard writer stalled; giving up on it");
            w.tx = None;
            w.task.abort();
        }
    }
}
