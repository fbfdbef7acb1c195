//! `validate`: the manifest checked offline with the same checks, and words, as `up`.
//! Nothing is sent.

use crate::cli::ValidateArgs;
use crate::error::{Error, Result, Status};
use crate::manifest::ManifestError;
use crate::progress::Reporter;

pub fn validate(args: &ValidateArgs, reporter: &Reporter) -> Result<Status> {
    let timeout = args.timeout;
    let checked =
        crate::manifest::load(&args.manifest.file).and_then(|m| m.ttl_for(timeout).map(|_| m));
    let manifest = checked.map_err(|e| annotated(e, reporter))?;
    // The longest run id `up` accepts, so that a name fitting here fits there.
    let run_id = "x".repeat(crate::identity::MAX_RUN_ID);
    for spec in &manifest.services {
        crate::identity::service_name(&manifest.name_prefix, &spec.key, &run_id)
            .map_err(Error::usage)?;
    }
    let keys: Vec<&str> = manifest.services.iter().map(|s| s.key.as_str()).collect();
    reporter.info(format!(
        "{}: valid, {} service(s): {}",
        args.manifest.file.display(),
        keys.len(),
        keys.join(", ")
    ));
    Ok(Status::Success)
}

/// In GitHub Actions each problem also becomes an annotation on its line.
fn annotated(e: ManifestError, reporter: &Reporter) -> Error {
    let file = e.path.display().to_string();
    for p in &e.problems {
        reporter.annotate_error(&p.message, Some((&file, p.at.line, p.at.column)));
    }
    Error::Manifest(e)
}
