use super::*;

fn name(text: &str) -> &OsStr {
    OsStr::new(text)
}

fn content(model: &Model, parent: Ino, file: &str) -> Option<Vec<u8>> {
    let ino = model.lookup(parent, name(file)).ok()?;
    let size = model.attr(ino).ok()?.size as u32;
    Some(model.read(ino, 0, size).ok()?.to_vec())
}

/// A file whose entry is already durable (created, root fsynced), empty.
fn durable_empty_file(model: &mut Model, file: &str) -> Ino {
    let ino = model.create(ROOT_INO, name(file), NodeKind::File).unwrap();
    model.fsync_directory(ROOT_INO).unwrap();
    ino
}

#[test]
fn data_is_durable_only_after_fsync() {
    let mut model = Model::new(DurabilityMode::Posix);
    let ino = durable_empty_file(&mut model, "log");
    model.write(ino, 0, b"synced").unwrap();
    model.fsync(ino).unwrap();
    model.write(ino, 6, b"-lost").unwrap();
    assert_eq!(model.stats().unsynced_bytes, 5);
    let report = model.cut(None);
    assert_eq!(report.dropped.unsynced_bytes, 5);
    assert_eq!(content(&model, ROOT_INO, "log").unwrap(), b"synced");
    assert_eq!(model.stats().unsynced_bytes, 0);
}

#[test]
fn posix_entry_is_durable_only_after_parent_fsync() {
    let mut model = Model::new(DurabilityMode::Posix);
    let dir = model
        .create(ROOT_INO, name("topic-0"), NodeKind::Directory)
        .unwrap();
    model.fsync_directory(ROOT_INO).unwrap();
    let file = model.create(dir, name("0.log"), NodeKind::File).unwrap();
    model.write(file, 0, b"data").unwrap();
    // The data is fsynced but the name is not: the file vanishes at a cut.
    model.fsync(file).unwrap();
    model.cut(None);
    assert!(model.lookup(ROOT_INO, name("topic-0")).is_ok());
    assert_eq!(content(&model, dir, "0.log"), None);

    let file = model.create(dir, name("0.log"), NodeKind::File).unwrap();
    model.write(file, 0, b"data").unwrap();
    model.fsync(file).unwrap();
    model.fsync_directory(dir).unwrap();
    model.cut(None);
    assert_eq!(content(&model, dir, "0.log").unwrap(), b"data");
}

#[test]
fn posix_directory_fsync_of_unsynced_file_keeps_an_empty_file() {
    let mut model = Model::new(DurabilityMode::Posix);
    let file = model.create(ROOT_INO, name("f"), NodeKind::File).unwrap();
    model.write(file, 0, b"data").unwrap();
    model.fsync_directory(ROOT_INO).unwrap();
    model.cut(None);
    assert_eq!(content(&model, ROOT_INO, "f").unwrap(), b"");
}

#[test]
fn posix_new_directory_needs_its_parent_fsynced() {
    let mut model = Model::new(DurabilityMode::Posix);
    let dir = model
        .create(ROOT_INO, name("d"), NodeKind::Directory)
        .unwrap();
    let file = model.create(dir, name("f"), NodeKind::File).unwrap();
    model.fsync(file).unwrap();
    model.fsync_directory(dir).unwrap();
    model.cut(None);
    assert_eq!(model.lookup(ROOT_INO, name("d")), Err(ModelError::NotFound));
}

#[test]
fn journal_mode_commits_every_entry_on_any_fsync() {
    let mut model = Model::new(DurabilityMode::Journal);
    let dir = model
        .create(ROOT_INO, name("d"), NodeKind::Directory)
        .unwrap();
    let file = model.create(dir, name("f"), NodeKind::File).unwrap();
    let other = model
        .create(ROOT_INO, name("other"), NodeKind::File)
        .unwrap();
    model.write(file, 0, b"kept").unwrap();
    model.write(other, 0, b"dropped").unwrap();
    model.fsync(file).unwrap();
    model.cut(None);
    let dir = model.lookup(ROOT_INO, name("d")).unwrap();
    assert_eq!(content(&model, dir, "f").unwrap(), b"kept");
    // Its name was committed with the journal, its data was never fsynced.
    assert_eq!(content(&model, ROOT_INO, "other").unwrap(), b"");
}

/// `checkpoint.tmp` written with "new" and fsynced, then renamed over `checkpoint`, as
/// the broker replaces its checkpoints.
fn replace_checkpoint_by_rename(model: &mut Model) {
    let new = model
        .create(ROOT_INO, name("checkpoint.tmp"), NodeKind::File)
        .unwrap();
    model.write(new, 0, b"new").unwrap();
    model.fsync(new).unwrap();
    model
        .rename(
            ROOT_INO,
            name("checkpoint.tmp"),
            ROOT_INO,
            name("checkpoint"),
            false,
        )
        .unwrap();
}

#[test]
fn rename_over_an_existing_file_is_durable_after_directory_fsync() {
    let mut model = Model::new(DurabilityMode::Posix);
    let old = durable_empty_file(&mut model, "checkpoint");
    model.write(old, 0, b"old").unwrap();
    model.fsync(old).unwrap();
    replace_checkpoint_by_rename(&mut model);
    assert_eq!(content(&model, ROOT_INO, "checkpoint").unwrap(), b"new");
    // Without the directory fsync the old file is what a cut leaves.
    model.cut(None);
    assert_eq!(content(&model, ROOT_INO, "checkpoint").unwrap(), b"old");
    assert_eq!(content(&model, ROOT_INO, "checkpoint.tmp"), None);

    let mut model = Model::new(DurabilityMode::Posix);
    durable_empty_file(&mut model, "checkpoint");
    replace_checkpoint_by_rename(&mut model);
    model.fsync_directory(ROOT_INO).unwrap();
    model.cut(None);
    assert_eq!(content(&model, ROOT_INO, "checkpoint").unwrap(), b"new");
    assert_eq!(content(&model, ROOT_INO, "checkpoint.tmp"), None);
}

#[test]
fn rename_checks_targets() {
    let mut model = Model::new(DurabilityMode::Posix);
    let dir = model
        .create(ROOT_INO, name("d"), NodeKind::Directory)
        .unwrap();
    model.create(dir, name("f"), NodeKind::File).unwrap();
    model.create(ROOT_INO, name("g"), NodeKind::File).unwrap();
    assert_eq!(
        model.rename(ROOT_INO, name("g"), ROOT_INO, name("d"), false),
        Err(ModelError::IsDirectory)
    );
    assert_eq!(
        model.rename(ROOT_INO, name("d"), dir, name("inside"), false),
        Err(ModelError::Invalid)
    );
    assert_eq!(
        model.rename(ROOT_INO, name("g"), dir, name("f"), true),
        Err(ModelError::Exists)
    );
    assert_eq!(model.rmdir(ROOT_INO, name("d")), Err(ModelError::NotEmpty));
    model.unlink(dir, name("f")).unwrap();
    model.rmdir(ROOT_INO, name("d")).unwrap();
}

#[test]
fn tear_keeps_a_sector_aligned_prefix_of_the_last_write() {
    for seed in 0..64 {
        let mut model = Model::new(DurabilityMode::Posix);
        let ino = durable_empty_file(&mut model, "log");
        model.write(ino, 0, &[1; 700]).unwrap();
        model.fsync(ino).unwrap();
        model.write(ino, 700, &[2; 2000]).unwrap();
        let report = model.cut(Some(seed));
        let data = content(&model, ROOT_INO, "log").unwrap();
        assert!(data[..700].iter().all(|&b| b == 1));
        let kept = data.len() as u64 - 700;
        assert!(
            kept == 0 || (data.len() as u64).is_multiple_of(SECTOR_BYTES),
            "len {}",
            data.len()
        );
        assert!(kept <= 2000 && data[700..].iter().all(|&b| b == 2));
        if kept > 0 {
            assert_eq!(report.torn_writes, vec![(ino, kept)]);
        }
    }
}

#[test]
fn tear_choices_cover_none_some_and_all() {
    let mut kept_lengths = BTreeSet::new();
    for seed in 0..64 {
        let mut model = Model::new(DurabilityMode::Posix);
        let ino = durable_empty_file(&mut model, "log");
        model.fsync(ino).unwrap();
        model.write(ino, 0, &[7; 1024]).unwrap();
        model.cut(Some(seed));
        kept_lengths.insert(content(&model, ROOT_INO, "log").unwrap().len());
    }
    assert_eq!(kept_lengths, BTreeSet::from([0, 512, 1024]));
}

#[test]
fn truncate_is_volatile_until_fsync() {
    let mut model = Model::new(DurabilityMode::Posix);
    let ino = durable_empty_file(&mut model, "log");
    model.write(ino, 0, b"0123456789").unwrap();
    model.fsync(ino).unwrap();
    model.set_size(ino, 4).unwrap();
    assert_eq!(content(&model, ROOT_INO, "log").unwrap(), b"0123");
    model.cut(None);
    assert_eq!(content(&model, ROOT_INO, "log").unwrap(), b"0123456789");
    let ino = model.lookup(ROOT_INO, name("log")).unwrap();
    model.set_size(ino, 4).unwrap();
    model.set_size(ino, 6).unwrap();
    model.fsync(ino).unwrap();
    model.cut(Some(1));
    assert_eq!(content(&model, ROOT_INO, "log").unwrap(), b"0123\0\0");
}

#[test]
fn fallocate_grows_unless_keep_size_and_refuses_punch_hole() {
    let mut model = Model::new(DurabilityMode::Posix);
    let ino = durable_empty_file(&mut model, "log");
    model
        .allocate(ino, 0, 100, libc::FALLOC_FL_KEEP_SIZE)
        .unwrap();
    assert_eq!(model.attr(ino).unwrap().size, 0);
    model.allocate(ino, 0, 100, 0).unwrap();
    assert_eq!(model.attr(ino).unwrap().size, 100);
    assert_eq!(
        model.allocate(
            ino,
            0,
            10,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
        ),
        Err(ModelError::Unsupported)
    );
}

#[test]
fn unlink_is_undone_by_a_cut_without_directory_fsync() {
    let mut model = Model::new(DurabilityMode::Posix);
    let ino = durable_empty_file(&mut model, "old.log");
    model.write(ino, 0, b"x").unwrap();
    model.fsync(ino).unwrap();
    model.unlink(ROOT_INO, name("old.log")).unwrap();
    model.cut(None);
    assert_eq!(content(&model, ROOT_INO, "old.log").unwrap(), b"x");
    model.unlink(ROOT_INO, name("old.log")).unwrap();
    model.fsync_directory(ROOT_INO).unwrap();
    model.cut(None);
    assert_eq!(content(&model, ROOT_INO, "old.log"), None);
}

#[test]
fn cut_advances_the_epoch_and_never_reuses_inodes() {
    let mut model = Model::new(DurabilityMode::Posix);
    let first = model.create(ROOT_INO, name("a"), NodeKind::File).unwrap();
    model.cut(None);
    assert_eq!(model.epoch(), 1);
    let second = model.create(ROOT_INO, name("a"), NodeKind::File).unwrap();
    assert_ne!(first, second);
}
