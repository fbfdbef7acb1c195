//! `sandbox`: serve the local imitation of the Aiven API until interrupted.

use crate::cli::SandboxArgs;
use crate::error::{Error, Result, Status};

pub async fn sandbox(args: &SandboxArgs) -> Result<Status> {
    if let Some(dir) = &args.detach_for {
        crate::sandbox_process::serve(dir).await?;
        return Ok(Status::Success);
    }
    let config = match &args.config {
        Some(path) => aiven_sandbox::Config::load(path).map_err(|e| Error::usage(e.to_string()))?,
        None => aiven_sandbox::Config::default(),
    };
    let project = config
        .projects
        .first()
        .map(|p| p.name.clone())
        .unwrap_or_else(|| "sandbox".into());
    let sandbox = aiven_sandbox::Sandbox::start(config, (args.bind, args.port).into())
        .await
        .map_err(|e| Error::usage(e.to_string()))?;
    let url = sandbox.url().to_string();
    // Machine-readable first, on stdout: sourced, the variables reach the commands the
    // shell runs next.
    let export = crate::delivery::env::export_line;
    crate::say!(out "{}", export("AIVEN_API_URL", &url).trim_end());
    crate::say!(out "{}", export("AIVEN_TOKEN", sandbox.token()).trim_end());
    crate::say!(out "{}", export("AIVEN_PROJECT", &project).trim_end());
    if url.starts_with("https://") {
        let ca = std::env::temp_dir().join(format!("aiven-sandbox-ca-{}.pem", std::process::id()));
        crate::state::write_private(&ca, sandbox.ca_pem().as_bytes())
            .map_err(|e| Error::io(format!("cannot write {}", ca.display()), e))?;
        crate::say!(out "{}", export("AIVEN_CA_CERT", &ca.display().to_string()).trim_end());
    }
    crate::say!(
        "Aiven API sandbox listening on {url} ({})",
        sandbox.backend_description()
    );
    crate::say!(
        "  aiven-ephemeral: AIVEN_API_URL={url} AIVEN_TOKEN={} AIVEN_PROJECT={project} aiven-ephemeral up",
        sandbox.token()
    );
    crate::say!(
        "  avn:             avn --url {url} --auth-token {} service list --project {project}",
        sandbox.token()
    );
    crate::say!("  admin:           curl {url}/_sandbox/services");
    crate::say!("Ctrl-C stops it.");
    let signals = crate::signals::Signals::install()
        .map_err(|e| Error::io("cannot install signal handlers", e))?;
    signals.token().cancelled().await;
    crate::say!("stopping the sandbox");
    sandbox.shutdown().await;
    Ok(Status::Success)
}
