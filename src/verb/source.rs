//! The local files an ADD or COPY sends (and bootstrap's ADD): found on the operator, hashed
//! once at plan time.

use super::options::{err, VerbError};
use sha3::{Digest, Sha3_224};
use std::io::Read;
use std::path::{Path, PathBuf};

/// One local file an ADD/COPY sends.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub path: PathBuf,
    pub size: u64,
    /// sha3-224 of the content, hex.
    pub sha3: String,
}

/// Where ADD/COPY look for relative sources: the working directory, then the directory of
/// the orchestration file.
pub(crate) struct SourceRoots {
    pub cwd: PathBuf,
    pub file_dir: Option<PathBuf>,
}

/// A bootstrap ADD's source: one file (not a pattern), looked up in `bases` in order.
pub(crate) fn find(path: &str, bases: &[PathBuf]) -> Result<Source, VerbError> {
    let p = Path::new(path);
    let candidates: Vec<PathBuf> =
        if p.is_absolute() { vec![p.to_path_buf()] } else { bases.iter().map(|b| b.join(p)).collect() };
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => hash(found),
        None => {
            let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
            Err(err(format!("ADD source `{path}` is not a file on the operator (looked for {})", looked.join(" and "))))
        }
    }
}

/// The regular files a source pattern names, sorted, each hashed.
pub(crate) fn resolve(pattern: &str, roots: &SourceRoots) -> Result<Vec<Source>, VerbError> {
    let mut bases = vec![roots.cwd.clone()];
    if let Some(dir) = &roots.file_dir {
        if *dir != roots.cwd {
            bases.push(dir.clone());
        }
    }
    for base in &bases {
        let full = if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { base.join(pattern) };
        let escaped = full.to_string_lossy().into_owned();
        let paths =
            glob::glob(&escaped).map_err(|e| err(format!("source `{pattern}` is not a valid pattern: {}", e.msg)))?;
        let mut files: Vec<PathBuf> = paths.flatten().filter(|p| p.is_file()).collect();
        files.sort();
        if !files.is_empty() {
            return files.into_iter().map(|p| hash(&p)).collect();
        }
        if Path::new(pattern).is_absolute() {
            break;
        }
    }
    let looked: Vec<String> = bases.iter().map(|b| b.display().to_string()).collect();
    Err(err(format!("source `{pattern}` matches no file"))
        .hint(format!("relative sources are looked up in {}", looked.join(" and then "))))
}

fn hash(path: &Path) -> Result<Source, VerbError> {
    let read = || -> std::io::Result<Source> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha3_224::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buf[..n]);
        }
        Ok(Source { path: path.to_path_buf(), size, sha3: hex(&hasher.finalize()) })
    };
    read().map_err(|e| err(format!("cannot read source {}: {}", path.display(), crate::error::io_reason(&e))))
}

pub(crate) use director_proto::hex;
