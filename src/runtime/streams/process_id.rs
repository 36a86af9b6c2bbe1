//! The replica's process id: a random 128-bit id kept in a file of its state directory,
//! as Kafka Streams keeps its process UUID. Transactional ids are built from it.
//! Invariant: two replicas never share an id, even when every container mounts its state
//! at the same path; one replica keeps its id across restarts on the same state, so its
//! new producer fences its former self at once.

use super::error::StreamsError;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

const FILE_NAME: &str = "creditstream.process-id";

/// The id stored in `state_dir`, created (and written atomically) on first use.
pub fn load_or_create(state_dir: &Path) -> Result<String, StreamsError> {
    let path = state_dir.join(FILE_NAME);
    let fail = |what: &str, e: std::io::Error| StreamsError::StateDir(format!("{what} {}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) if is_valid(text.trim()) => return Ok(text.trim().to_string()),
        Ok(text) => {
            return Err(StreamsError::StateDir(format!(
                "{} holds {:?}, not a process id; delete it to get a new one",
                path.display(),
                text.trim()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("cannot read", e)),
    }
    std::fs::create_dir_all(state_dir).map_err(|e| fail("cannot create the directory of", e))?;
    let id = random_id();
    let tmp = state_dir.join(format!("{FILE_NAME}.tmp"));
    std::fs::write(&tmp, format!("{id}\n")).map_err(|e| fail("cannot write", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| fail("cannot write", e))?;
    Ok(id)
}

fn is_valid(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 128 random bits as 32 hex digits: from the kernel, or, where it cannot be read, from
/// std's per-process random hasher keys mixed with the clock and the pid.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let from_kernel = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if from_kernel.is_err() {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u128(nanos);
            hasher.write_u32(std::process::id());
            hasher.write_usize(i);
            chunk.copy_from_slice(&hasher.finish().to_be_bytes());
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_dir_gets_its_own_id_and_keeps_it() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = load_or_create(a.path()).unwrap();
        assert!(is_valid(&first), "{first}");
        assert_eq!(load_or_create(a.path()).unwrap(), first);
        assert_ne!(load_or_create(b.path()).unwrap(), first);
    }

    #[test]
    fn a_damaged_id_file_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "not-an-id").unwrap();
        assert!(matches!(load_or_create(dir.path()), Err(StreamsError::StateDir(_))));
    }
}
