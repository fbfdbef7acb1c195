//! Which CI this is, how its annotations are escaped, and the tag that says which CI job
//! a run comes from. Below progress, delivery and the engine, which all ask it.

/// Whether we run inside GitHub Actions.
pub fn github() -> bool {
    std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true")
}

/// Escapes a workflow command's data: `%`, CR and LF.
pub fn escape_annotation(data: &str) -> String {
    data.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Where the run comes from, for the `aiven-ephemeral-ci` tag: `github:<repo>/<run id>`
/// or `gitlab:<project path>/<job id>`, cut from the front to 64 characters.
pub fn tag(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let raw = if env("GITHUB_ACTIONS").as_deref() == Some("true") {
        let repo = env("GITHUB_REPOSITORY")?;
        let run = env("GITHUB_RUN_ID")?;
        format!("github:{repo}/{run}")
    } else if env("GITLAB_CI").as_deref() == Some("true") {
        let project = env("CI_PROJECT_PATH")?;
        let job = env("CI_JOB_ID")?;
        format!("gitlab:{project}/{job}")
    } else {
        return None;
    };
    Some(crate::tags::fit(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_the_runner() {
        assert_eq!(escape_annotation("a%b\r\nc"), "a%25b%0D%0Ac");
    }

    #[test]
    fn ci_tag_keeps_the_tail() {
        let env = |k: &str| match k {
            "GITHUB_ACTIONS" => Some("true".into()),
            "GITHUB_REPOSITORY" => Some(format!("org/{}", "r".repeat(80))),
            "GITHUB_RUN_ID" => Some("987654321".into()),
            _ => None,
        };
        let tag = tag(&env).unwrap();
        assert_eq!(tag.chars().count(), 64);
        assert!(tag.ends_with("/987654321"));
    }
}
