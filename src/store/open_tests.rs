//! Opening the database: schema checks, foreign files, its marker, and a file damaged,
//! emptied or replaced while (or before) berth has it open.

#[cfg(test)]
mod tests {
    use super::super::*;
    use redb::ReadableDatabase;

    #[test]
    fn reopen_keeps_the_hash_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        let k1 = Store::open(&path).unwrap().hash_key;
        let k2 = Store::open(&path).unwrap().hash_key;
        assert_eq!(k1, k2);
    }

    #[test]
    fn a_second_open_in_one_process_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        let _held = Store::open(&path).unwrap();
        let err = Store::open(&path).err().expect("second open must fail");
        assert!(matches!(err, StoreError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("berth.redb"), "{err}");
    }

    #[test]
    fn another_schema_version_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("schema_version", "99")
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(&path).err().expect("must refuse");
        let msg = err.to_string();
        assert!(msg.contains("schema version 99"), "{msg}");
        assert!(msg.contains("berth.redb"), "{msg}");
        // Nothing of ours was written: the version stands and no berth table appeared.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let tables: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        assert_eq!(tables, ["meta"]);
        let meta = txn.open_table(META).unwrap();
        assert_eq!(meta.get("schema_version").unwrap().unwrap().value(), "99");
    }

    #[test]
    fn foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.redb");
        std::fs::write(
            &junk,
            b"this is not a database at all, just text\n".repeat(100),
        )
        .unwrap();
        let err = Store::open(&junk).err().expect("must refuse");
        assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("junk.redb"), "{err}");

        let other = dir.path().join("other.redb");
        {
            let db = Database::create(&other).unwrap();
            let txn = db.begin_write().unwrap();
            let t: TableDefinition<&str, u64> = TableDefinition::new("something");
            txn.open_table(t).unwrap().insert("x", &1).unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(&other).err().expect("must refuse");
        assert!(err.to_string().contains("no schema version"), "{err}");
    }
}

#[cfg(test)]
mod marker_tests {
    use super::super::*;

    #[test]
    fn a_database_that_vanished_is_not_made_again_and_a_replaced_one_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        let store = Store::open(&path).unwrap();
        store.check_on_disk().unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = store.check_on_disk().unwrap_err();
        assert!(err.to_string().contains("deleted or replaced"), "{err}");
        drop(store);
        let err = Store::open(&path).err().expect("opened a fresh database");
        assert!(matches!(err, StoreError::Gone { .. }), "{err}");
        assert!(err.to_string().contains("restore"), "{err}");
        assert!(!path.exists());
        std::fs::remove_file(marker_path(&path)).unwrap();
        Store::open(&path).expect("starting over on purpose");
    }
}

#[cfg(test)]
mod damage_tests {
    use super::super::*;
    use std::io::{Seek, Write};

    fn open_with_user() -> (tempfile::TempDir, PathBuf, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        let store = Store::open(&path).unwrap();
        store.add_user("alice", Role::Admin).unwrap();
        (dir, path, store)
    }

    #[test]
    fn a_database_emptied_in_place_is_never_written_nor_made_again() {
        let (_dir, path, store) = open_with_user();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let err = store.add_user("bob", Role::User).unwrap_err();
        assert!(matches!(err, StoreError::Gone { .. }), "{err}");
        assert!(err.to_string().contains("emptied"), "{err}");
        assert!(err.to_string().contains("berth backup"), "{err}");
        // The loop's own writes are refused the same way, and nothing reached the file.
        let err = store.replace_statuses(&Default::default()).unwrap_err();
        assert!(matches!(err, StoreError::Gone { .. }), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        drop(store);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "closing wrote");
        let err = Store::open(&path).err().expect("made a fresh database");
        assert!(err.to_string().contains("is empty (0 bytes)"), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn a_database_overwritten_in_place_is_refused_and_left_as_it_is() {
        let (_dir, path, store) = open_with_user();
        let junk = b"not a database any more\n".repeat(50);
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(0).unwrap();
        f.rewind().unwrap();
        f.write_all(&junk).unwrap();
        drop(f);
        let err = store.add_user("bob", Role::User).unwrap_err();
        assert!(err.to_string().contains("overwritten in place"), "{err}");
        assert!(!store.writable() || store.check_on_disk().is_err());
        drop(store);
        assert!(std::fs::read(&path).unwrap() == junk, "berth wrote over it");
        // The next start (another process: this one still has the old file's handle).
        let copy = path.with_file_name("copy.redb");
        std::fs::copy(&path, &copy).unwrap();
        let err = Store::open(&copy).err().expect("opened the junk");
        assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
        assert!(
            std::fs::read(&copy).unwrap() == junk,
            "opening wrote over it"
        );
    }
}

#[cfg(test)]
mod refused_tests {
    use super::super::*;

    /// `chattr +i` on `path` until dropped; `None` where the file system has no such flag.
    struct Immutable(PathBuf);

    impl Immutable {
        fn set(path: &Path) -> Option<Immutable> {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(path)
                .status()
                .is_ok_and(|s| s.success());
            ok.then(|| Immutable(path.into()))
        }
    }

    impl Drop for Immutable {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        }
    }

    #[test]
    fn an_immutable_database_is_told_as_one_at_start_and_on_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        let store = Store::open(&path).unwrap();
        let Some(_flag) = Immutable::set(&path) else {
            eprintln!("no chattr here: skipped");
            return;
        };
        let err = store.add_user("bob", Role::User).unwrap_err();
        assert!(matches!(err, StoreError::Unwritable { .. }), "{err}");
        assert!(err.to_string().contains("berth.redb"), "{err}");
        assert!(err.to_string().contains("immutable"), "{err}");
        assert!(!store.writable());
        let why = store.last_write_failure().unwrap_or_default();
        assert!(why.contains("immutable"), "readiness would say: {why}");
        drop(store);
        let err = Store::open(&path).err().expect("opened an immutable file");
        assert!(err.to_string().contains("immutable"), "{err}");
        assert!(!err.to_string().contains("not a berth database"), "{err}");
    }

    #[test]
    fn a_database_cut_short_is_refused_at_start_without_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        {
            let store = Store::open(&path).unwrap();
            for i in 0..50 {
                store.add_user(&format!("user{i}"), Role::User).unwrap();
            }
        }
        let len = std::fs::metadata(&path).unwrap().len();
        for keep in [len / 2, 4096, 100] {
            let cut = dir.path().join(format!("cut{keep}.redb"));
            std::fs::copy(&path, &cut).unwrap();
            let f = std::fs::OpenOptions::new().write(true).open(&cut).unwrap();
            f.set_len(keep).unwrap();
            drop(f);
            match Store::open(&cut) {
                Err(e) => assert!(e.to_string().contains("cut"), "{e}"),
                // redb may repair a file cut past its last commit; it must then be whole.
                Ok(s) => drop(s.list_users().unwrap()),
            }
        }
    }
}
