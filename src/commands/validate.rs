//! `validate`: the manifest checked offline. Nothing is sent.

use crate::cli::ManifestArgs;
use crate::error::{Error, Result, Status};
use crate::progress::Reporter;

pub fn validate(args: &ManifestArgs, reporter: &Reporter) -> Result<Status> {
    let checked = crate::manifest::load(&args.file).and_then(|m| {
        let source = std::fs::read_to_string(&args.file).unwrap_or_default();
        crate::exports::check_names(&m, &source).map(|()| m)
    });
    let manifest = match checked {
        Ok(m) => m,
        Err(e) => {
            let file = args.file.display().to_string();
            for p in &e.problems {
                reporter.annotate_error(&p.message, Some((&file, p.at.line, p.at.column)));
            }
            return Err(Error::Manifest(e));
        }
    };
    let run_id = "x".repeat(20);
    for spec in &manifest.services {
        crate::naming::service_name(&manifest.name_prefix, &spec.key, &run_id)
            .map_err(Error::usage)?;
    }
    let keys: Vec<&str> = manifest.services.iter().map(|s| s.key.as_str()).collect();
    reporter.info(format!(
        "{}: valid, {} service(s): {}",
        args.file.display(),
        keys.len(),
        keys.join(", ")
    ));
    Ok(Status::Success)
}
