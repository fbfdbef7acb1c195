//! `init`: a commented starter manifest and, on request, a CI snippet that uses it (for
//! a manifest already there, only the snippet). Nothing is overwritten: a file already
//! there is an error, and then nothing is written at all.

use std::path::{Path, PathBuf};

use crate::cli::{Ci, InitArgs};
use crate::error::{Error, Result, Status};
use crate::progress::Reporter;

const MANIFEST: &str = include_str!("init/manifest.yaml");
const GITHUB: &str = include_str!("init/github.yml");
const GITLAB: &str = include_str!("init/gitlab.yml");

pub fn init(args: &InitArgs, reporter: &Reporter) -> Result<Status> {
    let manifest = &args.manifest.file;
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    if args.ci.is_some() && manifest.exists() {
        reporter.info(format!(
            "keeping {}: adding the CI snippet only",
            manifest.display()
        ));
    } else {
        files.push((manifest.clone(), MANIFEST.to_string()));
    }
    if let Some(ci) = args.ci {
        let (path, template) = match ci {
            Ci::Github => (".github/workflows/aiven-ephemeral.yml", GITHUB),
            Ci::Gitlab => ("aiven-ephemeral.gitlab-ci.yml", GITLAB),
        };
        files.push((
            PathBuf::from(path),
            template.replace("MANIFEST", &manifest.display().to_string()),
        ));
    }
    if let Some((path, _)) = files.iter().find(|(p, _)| p.exists()) {
        return Err(Error::usage_hint(
            format!("{} exists; init does not overwrite it", path.display()),
            "remove or rename it first, or pass another manifest path with -f",
        ));
    }
    for (path, text) in &files {
        write(path, text)?;
        reporter.info(format!("wrote {}", path.display()));
    }
    reporter.info(format!(
        "next: edit {m}, then `aiven-ephemeral validate -f {m}`, and try it without an account with `aiven-ephemeral run --sandbox -f {m} -- aiven-ephemeral check`",
        m = manifest.display()
    ));
    Ok(Status::Success)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    // create_new: a file that appeared since the check above is still not overwritten.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}
