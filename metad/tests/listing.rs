//! Listing against a model of ListObjectsV2: random key sets, prefixes,
//! delimiters, page sizes and start-after points, paged through with the
//! returned `next` marker.

mod support;

use openraft::storage::RaftStateMachine;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use support::{create_bucket, entries, put, version};
use weft_common::rpc::{Command, ListMarker, ListPage, ListRequest};
use weft_metad::state_machine::StateMachine;

/// Characters below, at and above '/' in byte order, multi-byte ones, and
/// the characters S3 clients get wrong (space, '+').
const ALPHABET: &[&str] = &["a", "b", "/", "+", " ", "-", ".", "0", "~", "é", "日", "😀"];

fn text(max_len: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ALPHABET), 0..=max_len).prop_map(|v| v.concat())
}

#[derive(Clone, Debug, PartialEq)]
enum Item {
    Key(String),
    Prefix(String),
}

/// ListObjectsV2 over a sorted key set: keys after `start_after` that start
/// with `prefix`; with a delimiter, a key whose remainder after the prefix
/// contains it is rolled into the common prefix ending at its first
/// occurrence, reported once.
fn model(
    keys: &BTreeSet<String>,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
) -> Vec<Item> {
    let mut out: Vec<Item> = vec![];
    for k in keys {
        if !k.starts_with(prefix) || start_after.is_some_and(|s| k.as_str() <= s) {
            continue;
        }
        let rest = &k[prefix.len()..];
        match delimiter
            .filter(|d| !d.is_empty())
            .and_then(|d| rest.find(d).map(|p| p + d.len()))
        {
            Some(end) => {
                let cp = format!("{prefix}{}", &rest[..end]);
                if out.last() != Some(&Item::Prefix(cp.clone())) {
                    out.push(Item::Prefix(cp));
                }
            }
            None => out.push(Item::Key(k.clone())),
        }
    }
    out
}

#[derive(Clone, Debug)]
struct Req {
    /// 0: empty prefix, 1: `random`, 2: a leading part of an existing key.
    prefix_kind: u8,
    random_prefix: String,
    pick: usize,
    cut: usize,
    delimiter: Option<&'static str>,
    max_keys: u32,
    /// 0: none, 1: `random_after`, 2: an existing key.
    after_kind: u8,
    random_after: String,
}

fn req() -> impl Strategy<Value = Req> {
    (
        0u8..3,
        text(3),
        any::<usize>(),
        0usize..5,
        prop::option::weighted(
            0.7,
            prop::sample::select(&["/", "+", "é", "a/", " ", "日"][..]),
        ),
        1u32..8,
        0u8..3,
        text(4),
    )
        .prop_map(
            |(
                prefix_kind,
                random_prefix,
                pick,
                cut,
                delimiter,
                max_keys,
                after_kind,
                random_after,
            )| Req {
                prefix_kind,
                random_prefix,
                pick,
                cut,
                delimiter,
                max_keys,
                after_kind,
                random_after,
            },
        )
}

/// Pages through a listing; panics if it does not terminate.
fn list_pages(sm: &StateMachine, first: ListRequest) -> Vec<ListPage> {
    let mut pages = vec![];
    let mut req = first;
    for _ in 0..1_000 {
        let page = sm.list(&req).expect("list").expect("bucket exists");
        let next = page.next.clone();
        pages.push(page);
        match next {
            None => return pages,
            Some(m) => req.after = Some(m),
        }
    }
    panic!("listing did not terminate: {req:?}");
}

fn check(sm: &StateMachine, keys: &BTreeMap<String, u64>, r: &Req) -> Result<(), TestCaseError> {
    let sorted: BTreeSet<String> = keys.keys().cloned().collect();
    let prefix = match r.prefix_kind {
        0 => String::new(),
        1 => r.random_prefix.clone(),
        _ => match sorted.iter().nth(r.pick % sorted.len().max(1)) {
            Some(k) => k.chars().take(r.cut).collect(),
            None => String::new(),
        },
    };
    let start_after = match r.after_kind {
        0 => None,
        1 => Some(r.random_after.clone()),
        _ => sorted
            .iter()
            .nth(r.pick.wrapping_add(1) % sorted.len().max(1))
            .cloned(),
    };
    let expected = model(&sorted, &prefix, r.delimiter, start_after.as_deref());
    let pages = list_pages(
        sm,
        ListRequest {
            bucket: "b".into(),
            prefix: prefix.clone(),
            delimiter: r.delimiter.map(str::to_string),
            after: start_after.clone().map(ListMarker::Key),
            max_keys: r.max_keys,
        },
    );
    let ctx = format!(
        "prefix {prefix:?} delimiter {:?} after {start_after:?} max {}",
        r.delimiter, r.max_keys
    );

    // Page by page: exactly the model's items, max_keys at a time, with a
    // marker on every page but the last.
    let chunks: Vec<&[Item]> = if expected.is_empty() {
        vec![&[]]
    } else {
        expected.chunks(r.max_keys as usize).collect()
    };
    prop_assert_eq!(pages.len(), chunks.len(), "page count; {}", ctx);
    for (i, (page, chunk)) in pages.iter().zip(&chunks).enumerate() {
        let want_keys: Vec<&str> = chunk
            .iter()
            .filter_map(|it| match it {
                Item::Key(k) => Some(k.as_str()),
                Item::Prefix(_) => None,
            })
            .collect();
        let want_prefixes: Vec<&str> = chunk
            .iter()
            .filter_map(|it| match it {
                Item::Prefix(p) => Some(p.as_str()),
                Item::Key(_) => None,
            })
            .collect();
        let got_keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
        let got_prefixes: Vec<&str> = page.common_prefixes.iter().map(String::as_str).collect();
        prop_assert_eq!(got_keys, want_keys, "keys of page {}; {}", i, ctx);
        prop_assert_eq!(
            got_prefixes,
            want_prefixes,
            "prefixes of page {}; {}",
            i,
            ctx
        );
        prop_assert_eq!(
            page.next.is_some(),
            i + 1 < chunks.len(),
            "marker of page {}; {}",
            i,
            ctx
        );
        for e in &page.entries {
            let v = version(keys[&e.key]);
            prop_assert_eq!(
                (e.size, &e.etag, e.last_modified_ms),
                (v.size, &v.etag, v.last_modified_ms)
            );
        }
    }

    // Across pages: each common prefix once, and the union is the model.
    let all_prefixes: Vec<&String> = pages.iter().flat_map(|p| &p.common_prefixes).collect();
    let unique: BTreeSet<&String> = all_prefixes.iter().copied().collect();
    prop_assert_eq!(
        unique.len(),
        all_prefixes.len(),
        "a common prefix repeats; {}",
        ctx
    );
    let union: BTreeSet<String> = pages
        .iter()
        .flat_map(|p| {
            p.entries
                .iter()
                .map(|e| e.key.clone())
                .chain(p.common_prefixes.iter().cloned())
        })
        .collect();
    let want: BTreeSet<String> = expected
        .iter()
        .map(|it| match it {
            Item::Key(k) | Item::Prefix(k) => k.clone(),
        })
        .collect();
    prop_assert_eq!(union, want, "union of pages; {}", ctx);
    Ok(())
}

/// A state machine holding `keys` in bucket "b", plus decoys with the same
/// keys in neighbouring buckets.
fn load(keys: &BTreeMap<String, u64>) -> (tempfile::TempDir, StateMachine) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut sm = StateMachine::open(dir.path()).expect("open");
    let mut cmds: Vec<Command> = vec![
        create_bucket("a", "o"),
        create_bucket("b", "o"),
        create_bucket("b0", "o"),
    ];
    for (k, n) in keys {
        cmds.push(put("b", k, *n));
        cmds.push(put("a", k, n + 1_000));
        cmds.push(put("b0", k, n + 2_000));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(sm.apply(entries(1, cmds))).expect("apply");
    (dir, sm)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn paged_listing_matches_the_model(
        keys in prop::collection::btree_set(
            text(6).prop_filter("keys are not empty", |k| !k.is_empty()),
            0..40,
        ),
        reqs in prop::collection::vec(req(), 1..6),
    ) {
        let keys: BTreeMap<String, u64> = keys.into_iter().zip(0u64..).collect();
        let (_dir, sm) = load(&keys);
        for r in &reqs {
            check(&sm, &keys, r)?;
        }
    }
}

#[test]
fn start_after_beyond_the_prefix_is_an_empty_page() {
    let keys: BTreeMap<String, u64> = [("a/1", 1), ("a/2", 2), ("c", 3)]
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
    let (_dir, sm) = load(&keys);
    let page = sm
        .list(&ListRequest {
            bucket: "b".into(),
            prefix: "a".into(),
            delimiter: Some("/".into()),
            after: Some(ListMarker::Key("b".into())),
            max_keys: 10,
        })
        .expect("list")
        .expect("bucket exists");
    assert_eq!(page, ListPage::default());
    let page = sm
        .list(&ListRequest {
            bucket: "b".into(),
            prefix: "a".into(),
            delimiter: Some("/".into()),
            after: Some(ListMarker::Prefix("a/".into())),
            max_keys: 10,
        })
        .expect("list")
        .expect("bucket exists");
    assert_eq!(page, ListPage::default(), "resuming after the last prefix");
    assert_eq!(
        sm.list(&ListRequest {
            bucket: "nope".into(),
            prefix: String::new(),
            delimiter: None,
            after: None,
            max_keys: 10,
        })
        .expect("list"),
        None
    );
}

/// 100,000 keys in a tree of prefixes (plus awkward characters), loaded once.
fn big_tree() -> &'static (tempfile::TempDir, StateMachine, BTreeSet<String>) {
    static TREE: std::sync::OnceLock<(tempfile::TempDir, StateMachine, BTreeSet<String>)> =
        std::sync::OnceLock::new();
    TREE.get_or_init(|| {
        let mut keys = BTreeSet::new();
        for a in 0..10 {
            for b in 0..100 {
                for c in 0..99 {
                    keys.insert(format!("d{a}/e{b}/f{c}"));
                }
                keys.insert(format!("d{a}/e{b}/g é+{b}"));
            }
        }
        for i in 0..100 {
            keys.insert(format!("top {i}+日"));
        }
        assert_eq!(keys.len(), 100_100);
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut sm = StateMachine::open(dir.path()).expect("open");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut index = 1;
        let mut batch = vec![create_bucket("big", "o")];
        for (n, k) in keys.iter().enumerate() {
            batch.push(put("big", k, n as u64));
            if batch.len() == 10_000 {
                let cmds = std::mem::take(&mut batch);
                let len = cmds.len() as u64;
                rt.block_on(sm.apply(entries(index, cmds))).expect("apply");
                index += len;
            }
        }
        rt.block_on(sm.apply(entries(index, batch))).expect("apply");
        (dir, sm, keys)
    })
}

fn item_str(i: &Item) -> &str {
    match i {
        Item::Key(k) | Item::Prefix(k) => k,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// The first pages of any listing of a 100,000-key tree match the model,
    /// and `next` is set exactly when the model has more.
    #[test]
    fn listing_a_100k_key_tree_matches_the_model(
        prefix in prop::sample::select(&["", "d", "d3", "d3/", "d3/e5", "d3/e50/", "d9/e99/f9", "d0/e0/g", "top", "x", "d3/e50/f98"][..]),
        delimiter in prop::option::of(prop::sample::select(&["/", "e", "+", "/f"][..])),
        after in prop::option::of(prop::sample::select(&["d2/e77/f5", "d3/e50/", "d5", "top 5", "d9/e99/g é+99", "a"][..])),
        max_keys in prop::sample::select(&[1u32, 3, 100, 1000][..]),
    ) {
        let (_dir, sm, keys) = big_tree();
        let want = model(keys, prefix, delimiter, after);
        let mut req = ListRequest {
            bucket: "big".into(),
            prefix: prefix.into(),
            delimiter: delimiter.map(str::to_string),
            after: after.map(|a| ListMarker::Key(a.to_string())),
            max_keys,
        };
        let mut got: Vec<String> = vec![];
        for _page in 0..20 {
            let page = sm.list(&req).expect("list").expect("bucket exists");
            let mut items: Vec<String> = page.entries.iter().map(|e| e.key.clone()).chain(page.common_prefixes.iter().cloned()).collect();
            items.sort();
            prop_assert!(items.len() as u32 <= max_keys);
            got.extend(items);
            match page.next {
                Some(m) => {
                    prop_assert!(got.len() < want.len(), "next marker but the model has no more");
                    req.after = Some(m);
                }
                None => {
                    prop_assert_eq!(got.len(), want.len(), "no next marker but the model has more");
                    break;
                }
            }
        }
        let want: Vec<&str> = want.iter().take(got.len()).map(item_str).collect();
        let got: Vec<&str> = got.iter().map(String::as_str).collect();
        prop_assert_eq!(got, want);
    }
}
