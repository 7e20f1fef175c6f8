//! Writing a secret to a file atomically, readable only by its owner.
//!
//! One implementation for every key, pepper and keyset file the workspace writes: the bytes
//! go to a temporary file in the same directory, created with mode 0600 (never widened
//! afterwards), synced, then moved into place and the directory synced. A reader sees the
//! old file or the whole new one, never a partial write; a crash leaves at most a hidden
//! `.<name>.<random>.tmp`, never a truncated secret under the real name.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

/// What to do when the target already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Existing {
    /// Refuse with [`std::io::ErrorKind::AlreadyExists`] and leave it untouched (new keys:
    /// overwriting one would lose a secret something may still need). Two concurrent
    /// writers to one path: exactly one succeeds.
    Refuse,
    /// Replace it atomically (a keyset rewritten with its next generation).
    Replace,
}

/// Writes `bytes` to `path` atomically with mode 0600 (on Unix).
///
/// On any error nothing is left behind: the target is untouched (or, with
/// [`Existing::Refuse`], still absent) and the temporary file is removed.
pub fn write_secret_file(path: &Path, bytes: &[u8], existing: Existing) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        )
    })?;
    let mut suffix = [0u8; 8];
    crate::fill_random(&mut suffix).map_err(std::io::Error::other)?;
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(".");
    for byte in suffix {
        temp_name.push(format!("{byte:02x}"));
    }
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&temp)?;
    let result = (|| {
        out.write_all(bytes)?;
        out.sync_all()?;
        match existing {
            // hard_link fails if the target exists: no window in which a concurrent
            // creator's file is overwritten.
            Existing::Refuse => {
                std::fs::hard_link(&temp, path)?;
                std::fs::remove_file(&temp)?;
            }
            Existing::Replace => std::fs::rename(&temp, path)?,
        }
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Syncs a directory so that a file created or renamed in it survives a crash. Platforms
/// that cannot open a directory as a file (Windows) skip this.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::File::open(dir) {
        Ok(handle) => handle.sync_all(),
        Err(_) if cfg!(not(unix)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch(name: &str) -> PathBuf {
        let mut suffix = [0u8; 8];
        crate::fill_random(&mut suffix).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "mcpsec-core-{name}-{}",
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_file_is_0600_with_the_bytes_and_no_temp_left() {
        let dir = scratch("new");
        let path = dir.join("key.pem");
        write_secret_file(&path, b"secret", Existing::Refuse).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        assert_eq!(entries(&dir), ["key.pem"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuse_leaves_an_existing_file_untouched() {
        let dir = scratch("refuse");
        let path = dir.join("pepper");
        std::fs::write(&path, b"old").unwrap();
        let err = write_secret_file(&path, b"new", Existing::Refuse).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(&dir), ["pepper"], "no temporary file left behind");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn replace_swaps_the_whole_file_and_narrows_its_mode() {
        let dir = scratch("replace");
        let path = dir.join("keyset.json");
        std::fs::write(&path, b"a much longer old version").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        write_secret_file(&path, b"new", Existing::Replace).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"new",
            "no tail of the old file"
        );
        #[cfg(unix)]
        assert_eq!(
            mode(&path),
            0o600,
            "the new file's own mode, not the old one's"
        );
        assert_eq!(entries(&dir), ["keyset.json"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = scratch("fail");
        // The target is a directory: the final step fails after the temp file was written.
        let path = dir.join("occupied");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_secret_file(&path, b"secret", Existing::Replace).is_err());
        assert!(write_secret_file(&path, b"secret", Existing::Refuse).is_err());
        assert_eq!(entries(&dir), ["occupied"], "temporary files were removed");
        assert!(write_secret_file(&dir.join("missing/key"), b"s", Existing::Refuse).is_err());
        assert!(write_secret_file(Path::new("/"), b"s", Existing::Refuse).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn concurrent_creators_exactly_one_wins() {
        let dir = scratch("race");
        let path = dir.join("key.pem");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let handles: Vec<_> = (0..4u8)
            .map(|i| {
                let (barrier, path) = (barrier.clone(), path.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    write_secret_file(&path, &[i; 64], Existing::Refuse).is_ok()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|won| *won)
            .count();
        assert_eq!(wins, 1);
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len(), 64);
        assert!(
            written.iter().all(|b| *b == written[0]),
            "one writer's whole file"
        );
        assert_eq!(entries(&dir), ["key.pem"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
