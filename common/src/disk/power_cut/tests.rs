use super::*;
use crate::durable_file::DurableFile;
use std::sync::Arc;

fn never_written_back() -> Options {
    Options {
        writeback: None,
        ..Options::default()
    }
}

fn start(root: &Path) -> (Arc<PowerCutDisk>, Recovered) {
    let (disk, r) = PowerCutDisk::start(root, never_written_back()).unwrap();
    (Arc::new(disk), r)
}

/// The recipe's steps by hand: create, write, optionally fsync, rename,
/// optionally fsync the directory.
fn write_file(disk: &dyn Disk, dir: &Path, name: &str, data: &[u8], sync: bool, sync_dir: bool) {
    let tmp = dir.join(format!(".{name}.tmp"));
    let f = disk.create_new(&tmp, Access::Default).unwrap();
    disk.write_at(&f, 0, data).unwrap();
    if sync {
        disk.sync_data(&f).unwrap();
    }
    disk.rename(&tmp, &dir.join(name)).unwrap();
    if sync_dir {
        disk.sync_dir(dir).unwrap();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".power-cut")
        .collect();
    v.sort();
    v
}

#[test]
fn a_fully_synced_file_survives_the_cut_exactly() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = start(root.path());
    write_file(&*disk, root.path(), "a", b"hello", true, true);
    assert_eq!(
        disk.pending(),
        0,
        "the directory fsync covers the create and the rename"
    );
    drop(disk);
    let (_, recovered) = start(root.path());
    assert_eq!(fs::read(root.path().join("a")).unwrap(), b"hello");
    assert_eq!(names(root.path()), ["a"]);
    assert_eq!(recovered.writes, 0);
}

#[test]
fn unsynced_data_is_lost_even_when_the_name_is_durable() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = start(root.path());
    write_file(&*disk, root.path(), "a", b"hello", false, true);
    assert_eq!(fs::read(root.path().join("a")).unwrap(), b"hello");
    drop(disk);
    let (_, recovered) = start(root.path());
    assert_eq!(
        fs::read(root.path().join("a")).unwrap(),
        b"",
        "the data never reached the disk"
    );
    assert_eq!(recovered.writes, 1);
}

#[test]
fn a_rename_without_directory_fsync_is_undone_and_the_old_file_returns() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = start(root.path());
    write_file(&*disk, root.path(), "a", b"old", true, true);
    write_file(&*disk, root.path(), "a", b"new", true, false);
    assert_eq!(fs::read(root.path().join("a")).unwrap(), b"new");
    drop(disk);
    let (_, recovered) = start(root.path());
    assert_eq!(fs::read(root.path().join("a")).unwrap(), b"old");
    assert_eq!(
        names(root.path()),
        ["a"],
        "the new file's temp name is not durable either"
    );
    assert_eq!(recovered.entries, 2, "the rename and the temp create");
}

#[test]
fn a_remove_without_directory_fsync_is_undone() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = start(root.path());
    write_file(&*disk, root.path(), "a", b"kept", true, true);
    disk.remove_file(&root.path().join("a")).unwrap();
    assert!(!root.path().join("a").exists());
    drop(disk);
    start(root.path());
    assert_eq!(fs::read(root.path().join("a")).unwrap(), b"kept");

    let (disk, _) = start(root.path());
    disk.remove_file(&root.path().join("a")).unwrap();
    disk.sync_dir(root.path()).unwrap();
    drop(disk);
    start(root.path());
    assert!(
        !root.path().join("a").exists(),
        "a synced remove stays removed"
    );
    assert_eq!(
        fs::read_dir(root.path().join(".power-cut/aside"))
            .unwrap()
            .count(),
        0,
        "no kept link is left behind"
    );
}

#[test]
fn in_place_writes_and_truncation_roll_back_to_the_last_fsync() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = start(root.path());
    let path = root.path().join("db");
    let f = disk.create_new(&path, Access::Default).unwrap();
    disk.write_at(&f, 0, b"0123456789").unwrap();
    disk.sync_data(&f).unwrap();
    disk.sync_dir(root.path()).unwrap();
    disk.write_at(&f, 2, b"ab").unwrap();
    disk.write_at(&f, 8, b"XYZW").unwrap();
    disk.set_len(&f, 4).unwrap();
    disk.write_at(&f, 2, b"cd").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"01cd");
    drop(f);
    drop(disk);
    let (_, recovered) = start(root.path());
    assert_eq!(fs::read(&path).unwrap(), b"0123456789");
    assert_eq!(recovered.writes, 4);
}

/// A change older than the writeback age is durable at the cut; one
/// younger is not. (2 s of age and a 2.5 s pause: the young write would have
/// to stall for 2 s between its record and the aging to be misjudged.)
#[test]
fn the_writeback_age_makes_old_changes_durable_and_young_ones_not() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = PowerCutDisk::start(
        root.path(),
        Options {
            writeback: Some(Duration::from_secs(2)),
            ..Options::default()
        },
    )
    .unwrap();
    write_file(&disk, root.path(), "old", b"aged", false, false);
    std::thread::sleep(Duration::from_millis(2_500));
    write_file(&disk, root.path(), "young", b"fresh", false, false);
    assert_eq!(
        disk.pending(),
        3,
        "the young file's create, write and rename"
    );
    drop(disk);
    start(root.path());
    assert_eq!(fs::read(root.path().join("old")).unwrap(), b"aged");
    assert_eq!(names(root.path()), ["old"]);
}

#[test]
fn skipped_file_fsyncs_lose_acknowledged_data() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = PowerCutDisk::start(
        root.path(),
        Options {
            writeback: None,
            skip_file_fsync: true,
            ..Options::default()
        },
    )
    .unwrap();
    let disk: Arc<dyn Disk> = Arc::new(disk);
    let mut file = DurableFile::create_on(disk.clone(), root.path(), Access::Default).unwrap();
    std::io::Write::write_all(&mut file.writer(), b"acked").unwrap();
    file.commit(&root.path().join("a")).unwrap();
    drop(disk);
    start(root.path());
    assert_eq!(fs::read(root.path().join("a")).unwrap(), b"");
}

#[test]
fn the_durable_file_recipe_survives_a_cut_and_an_unfinished_one_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = start(root.path());
    let disk: Arc<dyn Disk> = disk;
    let mut done = DurableFile::create_on(disk.clone(), root.path(), Access::Default).unwrap();
    std::io::Write::write_all(&mut done.writer(), b"committed").unwrap();
    done.commit(&root.path().join("a")).unwrap();
    let mut unfinished =
        DurableFile::create_on(disk.clone(), root.path(), Access::Default).unwrap();
    std::io::Write::write_all(&mut unfinished.writer(), b"half").unwrap();
    std::mem::forget(unfinished); // the process died mid-write
    drop(disk);
    start(root.path());
    assert_eq!(fs::read(root.path().join("a")).unwrap(), b"committed");
    assert_eq!(names(root.path()), ["a"]);
}

#[test]
fn replaying_the_journal_of_a_finished_recovery_moves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = start(root.path());
    write_file(&*disk, root.path(), "a", b"old", true, true);
    write_file(&*disk, root.path(), "a", b"new", true, false);
    let journal = fs::read(root.path().join(".power-cut/journal")).unwrap();
    drop(disk);
    start(root.path());
    // The same journal found again (its removal lost): the old file is back
    // under its name, so the rename's undo must not move it.
    fs::write(root.path().join(".power-cut/journal"), journal).unwrap();
    start(root.path());
    assert_eq!(fs::read(root.path().join("a")).unwrap(), b"old");
    assert_eq!(names(root.path()), ["a"]);
}

#[test]
fn a_rename_across_directories_is_settled_by_the_destination_directory() {
    let root = tempfile::tempdir().unwrap();
    let (tmp, dst) = (root.path().join("tmp"), root.path().join("shards"));
    fs::create_dir(&tmp).unwrap();
    fs::create_dir(&dst).unwrap();
    let (disk, _) = start(root.path());
    for (name, sync_dst) in [("kept", true), ("lost", false)] {
        let f = disk.create_new(&tmp.join(name), Access::Default).unwrap();
        disk.write_at(&f, 0, name.as_bytes()).unwrap();
        disk.sync_data(&f).unwrap();
        disk.rename(&tmp.join(name), &dst.join(name)).unwrap();
        if sync_dst {
            disk.sync_dir(&dst).unwrap();
        } else {
            disk.sync_dir(&tmp).unwrap();
        }
    }
    drop(disk);
    start(root.path());
    assert_eq!(fs::read(dst.join("kept")).unwrap(), b"kept");
    assert!(!dst.join("lost").exists());
}

#[test]
fn a_failed_rename_is_cancelled_and_leaves_nothing_to_undo() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = start(root.path());
    write_file(&*disk, root.path(), "a", b"a", true, true);
    fs::create_dir(root.path().join("full")).unwrap();
    fs::write(root.path().join("full/x"), b"x").unwrap();
    // Renaming a file over a non-empty directory fails.
    disk.rename(&root.path().join("a"), &root.path().join("full"))
        .unwrap_err();
    assert_eq!(disk.pending(), 0);
    assert_eq!(
        fs::read_dir(root.path().join(".power-cut/aside"))
            .unwrap()
            .count(),
        0
    );
    drop(disk);
    let (_, recovered) = start(root.path());
    assert_eq!(recovered, Recovered::default());
    assert_eq!(fs::read(root.path().join("a")).unwrap(), b"a");
}

#[test]
fn a_durable_rename_over_a_file_drops_that_file_s_unsynced_writes() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = start(root.path());
    write_file(&*disk, root.path(), "a", b"first", true, true);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.path().join("a"))
        .unwrap();
    disk.write_at(&f, 0, b"FIRST").unwrap();
    drop(f);
    write_file(&*disk, root.path(), "a", b"second", true, true);
    assert_eq!(
        disk.pending(),
        0,
        "the replaced file's pending write went with it"
    );
    drop(disk);
    let (_, recovered) = start(root.path());
    assert_eq!(recovered, Recovered::default());
    assert_eq!(fs::read(root.path().join("a")).unwrap(), b"second");
}

#[test]
fn the_journal_is_compacted_and_still_undoes_what_is_pending() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = PowerCutDisk::start(
        root.path(),
        Options {
            writeback: None,
            compact_bytes: 4096,
            ..Options::default()
        },
    )
    .unwrap();
    for i in 0..200 {
        write_file(&disk, root.path(), &format!("f{i}"), &[7; 100], true, true);
    }
    write_file(&disk, root.path(), "unsynced", b"x", false, false);
    let journal = fs::metadata(root.path().join(".power-cut/journal"))
        .unwrap()
        .len();
    assert!(journal < 8192, "compacted: {journal} bytes");
    drop(disk);
    start(root.path());
    assert_eq!(
        names(root.path()).len(),
        200,
        "the unsynced file is gone, the rest kept"
    );
    assert_eq!(fs::read(root.path().join("f199")).unwrap(), [7; 100]);
}

#[test]
fn the_journal_directory_itself_is_not_journaled() {
    let root = tempfile::tempdir().unwrap();
    let (disk, _) = start(root.path());
    let inside = root.path().join(".power-cut/other");
    let f = disk.create_new(&inside, Access::Default).unwrap();
    disk.write_at(&f, 0, b"x").unwrap();
    assert_eq!(disk.pending(), 0);
}

#[test]
fn paths_outside_the_root_are_not_journaled() {
    let root = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let (disk, _) = start(root.path());
    let sub = root.path().join("data");
    fs::create_dir(&sub).unwrap();
    let (disk2, _) = start(&sub);
    write_file(&*disk2, root.path(), "outside", b"x", false, false);
    write_file(&*disk, other.path(), "elsewhere", b"y", false, false);
    assert_eq!(disk2.pending(), 0);
    assert_eq!(disk.pending(), 0);
}
