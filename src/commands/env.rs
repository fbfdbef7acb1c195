//! `env`: rebuild a live run's env file and certificates from the API, for CI jobs after
//! the one that ran `up` (credentials travel by API, not by artifact). It writes files:
//! secrets reach stdout only with `--stdout`, since CI logs are not masked for us.

use crate::delivery::{self, Delivered, env::Format};
use crate::engine::env::{Credentials, credentials};
use crate::engine::locate::RunRef;
use crate::error::{Error, Result, Status};
use crate::settings;

pub async fn env(args: &settings::Env) -> Result<Status> {
    let run = RunRef::open(&args.run, &args.api).await?;
    let manifest_path = run
        .manifest
        .clone()
        .unwrap_or_else(|| args.run.manifest.clone());
    let manifest = crate::manifest::load(&manifest_path)?;
    let Credentials {
        services: fetched,
        ca,
    } = credentials(&run, &manifest).await?;
    let out_dir = args.out.clone().unwrap_or_else(|| run.state.dir.clone());
    // In the state directory, the names of the run's own outputs; in `--out`, plain ones.
    let out = |name: &str| match &args.out {
        Some(dir) => dir.join(name),
        None => run.state.beside(name),
    };
    // Keys and passwords go there: a `.gitignore` of `*` keeps them out of commits.
    crate::state::prepare_dir(&out_dir)?;
    let delivered: Vec<Delivered> = fetched
        .iter()
        .map(|(spec, svc, created)| Delivered {
            spec,
            service: svc,
            created,
        })
        .collect();
    let (values, secrets) =
        delivery::materialise(&delivered, Some(&ca), &out("certs"), run.conn.is_sandbox())?;
    if crate::ci::github() {
        delivery::github::print_masks(&delivery::github::mask_words(&secrets, &values));
    }
    if args.stdout {
        crate::say!(
            "warning: --stdout prints passwords and URIs with credentials; a CI job log keeps them in clear text"
        );
        use std::io::Write as _;
        let _ = std::io::stdout().write_all(delivery::env::render(&values, args.format).as_bytes());
    } else {
        let name = match args.format {
            Format::Dotenv => "env",
            Format::Shell => "env.sh",
            Format::Json => "env.json",
        };
        let path = out(name);
        delivery::env::write(&path, &values, args.format)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        crate::say!("wrote {} and {}", path.display(), out("certs").display());
    }
    run.conn.close().await;
    Ok(Status::Success)
}
