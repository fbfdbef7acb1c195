//! One comment per pull request (GitHub) or merge request (GitLab), edited in place on
//! every push and on close: the run's services, their state, time to ready, expiry,
//! hourly cost and cost so far, how to get the connection values. Never a secret: it
//! holds names, plans, times and prices only.
//!
//! The comment is found again by a hidden marker naming the run, through the platform's
//! paginated list; a machine-readable line beside it keeps each service's hourly price
//! and creation time, so that the close (`down`, which has no manifest) can say the
//! total cost. Whatever the platform refuses (a read-only token on a fork's pull
//! request, a missing scope, a rate limit that does not pass soon) is the caller's
//! warning, never a failed job.

use std::time::Duration;

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::secret::Secret;

/// The longest wait a rate limit may ask for before the comment is given up on.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// Comments read per page (both platforms allow 100).
const PER_PAGE: u32 = 100;
/// Pages read at most while looking for the comment.
const MAX_PAGES: usize = 30;

/// Where the comment goes.
#[derive(Debug)]
pub enum Target {
    Github {
        api: String,
        repo: String,
        number: u64,
        token: Secret,
    },
    Gitlab {
        api: String,
        project: String,
        iid: u64,
        token: Secret,
    },
}

/// The comment's target from the CI's environment; `Err` says why there is none (for a
/// warning).
pub fn target(env: &dyn Fn(&str) -> Option<String>) -> Result<Target, String> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if set("GITHUB_ACTIONS").as_deref() == Some("true") {
        let repo = set("GITHUB_REPOSITORY").ok_or("GITHUB_REPOSITORY is not set")?;
        let number = github_number(env).ok_or(
            "this workflow run is not for a pull request (no pull_request in GITHUB_EVENT_PATH, GITHUB_REF is not refs/pull/N/...)",
        )?;
        let token = set("GITHUB_TOKEN").ok_or(
            "GITHUB_TOKEN is not set: give the step `env: GITHUB_TOKEN: ${{ github.token }}` and the job `permissions: pull-requests: write`",
        )?;
        return Ok(Target::Github {
            api: set("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into()),
            repo,
            number,
            token: Secret::new(token),
        });
    }
    if set("GITLAB_CI").as_deref() == Some("true") {
        let iid = set("CI_MERGE_REQUEST_IID")
            .and_then(|v| v.parse().ok())
            .ok_or(
                "this pipeline is not a merge request pipeline (CI_MERGE_REQUEST_IID is not set)",
            )?;
        let token = set("AIVEN_EPHEMERAL_GITLAB_TOKEN").ok_or(
            "AIVEN_EPHEMERAL_GITLAB_TOKEN is not set: CI_JOB_TOKEN cannot write notes; use a project access token with the `api` scope and at least the Reporter role, as a masked CI/CD variable",
        )?;
        return Ok(Target::Gitlab {
            api: set("CI_API_V4_URL").ok_or("CI_API_V4_URL is not set")?,
            project: set("CI_PROJECT_ID").ok_or("CI_PROJECT_ID is not set")?,
            iid,
            token: Secret::new(token),
        });
    }
    Err("neither GitHub Actions nor GitLab CI: there is no pull request to comment on".into())
}

/// The pull request's number: from the event's payload, else from the ref.
fn github_number(env: &dyn Fn(&str) -> Option<String>) -> Option<u64> {
    let from_event = env("GITHUB_EVENT_PATH")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|e| {
            e["pull_request"]["number"].as_u64().or_else(|| {
                e["issue"]["pull_request"]
                    .is_object()
                    .then(|| e["issue"]["number"].as_u64())?
            })
        });
    from_event.or_else(|| {
        env("GITHUB_REF")?
            .strip_prefix("refs/pull/")?
            .split('/')
            .next()?
            .parse()
            .ok()
    })
}

/// A service as the comment shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub key: String,
    #[serde(rename = "type")]
    pub service_type: String,
    pub plan: String,
    /// Hourly price in USD, when known.
    pub usd_h: Option<f64>,
    /// When the service was created (RFC 3339).
    pub created: Option<String>,
    /// Seconds this push waited for it to be ready.
    #[serde(skip)]
    pub ready_secs: Option<u64>,
    /// Ready for use after this push (a failed push may leave some not).
    #[serde(skip)]
    pub ready: bool,
}

/// What the comment says now.
#[derive(Debug)]
pub enum Report {
    /// After a push: the run is up, or failed (why: the error's first line) with
    /// what it has of each service.
    Up {
        rows: Vec<Row>,
        expires: String,
        failed: Option<String>,
    },
    /// After the close: deleted at, or what could not be.
    Closed { at: String, left: Vec<String> },
}

/// The hidden marker that finds the run's comment again.
fn marker(run_id: &str) -> String {
    format!("<!-- aiven-ephemeral run={run_id} -->")
}

const DATA: &str = "<!-- aiven-ephemeral-data ";

/// The rows kept in an earlier version of the comment.
fn rows_of(body: &str) -> Vec<Row> {
    body.lines()
        .find_map(|l| l.strip_prefix(DATA)?.strip_suffix(" -->"))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

fn hours_between(from: &str, to: OffsetDateTime) -> Option<f64> {
    let from = OffsetDateTime::parse(from, &time::format_description::well_known::Rfc3339).ok()?;
    Some(((to - from).as_seconds_f64() / 3600.0).max(0.0))
}

/// Cost from each service's creation to `until`; `None` when a price is unknown.
fn cost(rows: &[Row], until: OffsetDateTime) -> Option<f64> {
    rows.iter()
        .map(|r| Some(r.usd_h? * hours_between(r.created.as_deref()?, until)?))
        .sum()
}

fn usd(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:.3}"))
}

/// The comment's text. `previous`: the comment as it was (its rows give the close its
/// total cost).
pub fn render(
    run_id: &str,
    project: &str,
    report: &Report,
    previous: Option<&str>,
    now: OffsetDateTime,
) -> String {
    let mut out = vec![
        marker(run_id),
        format!("### Aiven services for this change: run `{run_id}` (project `{project}`)"),
        String::new(),
    ];
    match report {
        Report::Up {
            rows,
            expires,
            failed,
        } => {
            // A failed push knows its services from its state, not their prices or
            // creation times: the last push's comment has them.
            let previous = previous.map(rows_of).unwrap_or_default();
            let rows: Vec<Row> = rows
                .iter()
                .map(|r| {
                    let before = previous.iter().find(|p| p.name == r.name);
                    Row {
                        usd_h: r.usd_h.or(before.and_then(|p| p.usd_h)),
                        created: r.created.clone().or(before.and_then(|p| p.created.clone())),
                        ..r.clone()
                    }
                })
                .collect();
            if let Some(why) = failed {
                out.push(format!(
                    "**The last push failed:** {}. The services stay as they are; the next push tries again.",
                    why.lines().next().unwrap_or_default().trim_end_matches('.')
                ));
                out.push(String::new());
            }
            out.push("| service | type | plan | state | ready in | USD/h |".into());
            out.push("|---|---|---|---|---|---|".into());
            for r in &rows {
                out.push(format!(
                    "| `{}` | {} | {} | {} | {} | {} |",
                    r.name,
                    r.service_type,
                    r.plan,
                    if r.ready { "ready" } else { "not ready" },
                    r.ready_secs.map_or("-".into(), |s| format!("{s}s")),
                    usd(r.usd_h)
                ));
            }
            let hourly: Option<f64> = rows.iter().map(|r| r.usd_h).sum();
            out.push(String::new());
            out.push(format!(
                "Cost: {} USD/h; so far about {} USD. Expires {expires} unless another push moves it (`aiven-ephemeral reap` deletes it then).",
                usd(hourly),
                usd(cost(&rows, now))
            ));
            out.push(String::new());
            out.push(format!(
                "Connection values: `aiven-ephemeral env --run-id {run_id} --project {project}` (needs the Aiven token) writes them to `.aiven-ephemeral/env`. They are never posted here."
            ));
            out.push(format!(
                "{DATA}{} -->",
                serde_json::to_string(&rows).unwrap_or_default()
            ));
        }
        Report::Closed { at, left } => {
            let rows = previous.map(rows_of).unwrap_or_default();
            if left.is_empty() {
                out.push(format!("Deleted at {at}."));
            } else {
                out.push(format!(
                    "Closed at {at}, but not confirmed deleted: {}. `aiven-ephemeral down --run-id {run_id}` (or `reap` once they expire) finishes it.",
                    left.join(", ")
                ));
            }
            if !rows.is_empty() {
                let names: Vec<String> = rows.iter().map(|r| format!("`{}`", r.name)).collect();
                out.push(String::new());
                out.push(format!(
                    "Total cost: about {} USD ({}).",
                    usd(cost(&rows, now)),
                    names.join(", ")
                ));
            }
        }
    }
    out.join("\n")
}

/// Writes the run's comment as `report` says, where the CI's environment points; a
/// refusal, or no pull request to comment on, is a warning.
pub async fn publish(
    run_id: &str,
    project: &str,
    report: Report,
    reporter: &crate::progress::Reporter,
) {
    let target = match target(&|k| std::env::var(k).ok()) {
        Ok(t) => t,
        Err(why) => {
            reporter.warn(format!("--comment: no comment written: {why}"));
            return;
        }
    };
    let now = OffsetDateTime::now_utc();
    // The close edits the push's comment; it never starts one.
    let create = matches!(report, Report::Up { .. });
    let written = upsert(&target, run_id, create, |previous| {
        render(run_id, project, &report, previous, now)
    })
    .await;
    match written {
        Ok(link) => reporter.info(format!("comment updated: {link}")),
        Err(e) => reporter.warn(format!("--comment: {e}; the job goes on")),
    }
}

/// A platform's answer.
struct Answer {
    headers: HeaderMap,
    body: Value,
}

/// Why a comment could not be written: always a warning.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// Writes the run's comment: edits the one carrying its marker, or posts it (when
/// `create`). `make` builds the text from the previous version, if any. Returns the comment's URL
/// or id for the log.
pub async fn upsert(
    target: &Target,
    run_id: &str,
    create: bool,
    make: impl FnOnce(Option<&str>) -> String,
) -> Result<String, Refused> {
    let http = reqwest::Client::builder()
        .user_agent(format!("aiven-ephemeral/{}", crate::VERSION))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Refused(format!("cannot set up the HTTPS client: {e}")))?;
    let platform = Platform { http, target };
    let found = platform.find(&marker(run_id)).await?;
    if found.is_none() && !create {
        return Ok("no comment of this run to update".into());
    }
    let body = make(found.as_ref().map(|(_, b)| b.as_str()));
    if let Some((id, _)) = found {
        match platform.edit(id, &body).await {
            // Deleted by someone since it was listed: post it again.
            Err(Failure::Gone) => {}
            other => return other.map_err(|e| platform.refused("editing", e)),
        }
    }
    platform
        .post(&body)
        .await
        .map_err(|e| platform.refused("posting", e))
}

enum Failure {
    /// 404 on the comment itself.
    Gone,
    Other(String),
}

struct Platform<'a> {
    http: reqwest::Client,
    target: &'a Target,
}

impl Platform<'_> {
    fn refused(&self, doing: &str, e: Failure) -> Refused {
        let what = match self.target {
            Target::Github { .. } => "the pull request's comment",
            Target::Gitlab { .. } => "the merge request's note",
        };
        Refused(match e {
            Failure::Gone => format!("{doing} {what}: it is gone (404)"),
            Failure::Other(m) => format!("{doing} {what}: {m}"),
        })
    }

    /// The list of comments' first page.
    fn list_url(&self) -> String {
        match self.target {
            Target::Github {
                api, repo, number, ..
            } => format!("{api}/repos/{repo}/issues/{number}/comments?per_page={PER_PAGE}"),
            Target::Gitlab {
                api, project, iid, ..
            } => format!(
                "{api}/projects/{project}/merge_requests/{iid}/notes?per_page={PER_PAGE}&sort=asc&order_by=created_at"
            ),
        }
    }

    fn item_url(&self, id: u64) -> String {
        match self.target {
            Target::Github { api, repo, .. } => format!("{api}/repos/{repo}/issues/comments/{id}"),
            Target::Gitlab {
                api, project, iid, ..
            } => format!("{api}/projects/{project}/merge_requests/{iid}/notes/{id}"),
        }
    }

    /// The comment carrying `marker`: (id, body).
    async fn find(&self, marker: &str) -> Result<Option<(u64, String)>, Refused> {
        let mut url = Some(self.list_url());
        let mut pages = 0;
        while let Some(u) = url.take() {
            pages += 1;
            if pages > MAX_PAGES {
                break;
            }
            let answer = self
                .send(Method::GET, &u, None)
                .await
                .map_err(|e| self.refused("reading the comments for", e))?;
            let items = answer.body.as_array().cloned().unwrap_or_default();
            if let Some(c) = items.iter().find(|c| {
                c["body"]
                    .as_str()
                    .is_some_and(|b| b.lines().next() == Some(marker))
            }) {
                let id = c["id"].as_u64().unwrap_or_default();
                return Ok(Some((
                    id,
                    c["body"].as_str().unwrap_or_default().to_string(),
                )));
            }
            url = next_page(&answer.headers);
        }
        Ok(None)
    }

    async fn edit(&self, id: u64, body: &str) -> Result<String, Failure> {
        let method = match self.target {
            Target::Github { .. } => Method::PATCH,
            Target::Gitlab { .. } => Method::PUT,
        };
        let answer = self
            .send(method, &self.item_url(id), Some(json!({ "body": body })))
            .await?;
        Ok(link_of(&answer.body))
    }

    async fn post(&self, body: &str) -> Result<String, Failure> {
        let url = self.list_url();
        let url = url.split('?').next().unwrap_or_default();
        let answer = self
            .send(Method::POST, url, Some(json!({ "body": body })))
            .await?;
        Ok(link_of(&answer.body))
    }

    /// One request; a rate limit that asks for a short wait is waited out once.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Answer, Failure> {
        for attempt in 0..2 {
            let mut req = self.http.request(method.clone(), url);
            req = match self.target {
                Target::Github { token, .. } => req
                    .header("accept", "application/vnd.github+json")
                    .header("x-github-api-version", "2022-11-28")
                    .bearer_auth(token.expose()),
                Target::Gitlab { token, .. } => req.header("private-token", token.expose()),
            };
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| Failure::Other(crate::api::chain(&e)))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let text = resp.text().await.unwrap_or_default();
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(Answer {
                    headers,
                    body: value,
                });
            }
            if let Some(wait) = rate_limited(status, &headers) {
                if attempt == 0 && wait <= MAX_WAIT {
                    tracing::info!(
                        "{method} {url}: rate limited; retrying in {:.0}s",
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(Failure::Other(format!(
                    "rate limited ({}); the next push or the close updates it",
                    status.as_u16()
                )));
            }
            let said = value["message"]
                .as_str()
                .map(str::to_string)
                .or_else(|| value["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(match status {
                StatusCode::NOT_FOUND if method != Method::GET => Failure::Gone,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                    Failure::Other(format!(
                        "{} {said}: the token may not write here (a fork's pull request gets a read-only GITHUB_TOKEN; GitLab needs a token with the `api` scope)",
                        status.as_u16()
                    ))
                }
                _ => Failure::Other(format!("{} {said}", status.as_u16())),
            });
        }
        unreachable!("the loop returns on its last attempt")
    }
}

/// The wait a rate-limited answer asks for: `Retry-After`, else until
/// `x-ratelimit-reset` when `x-ratelimit-remaining` is 0 (GitHub answers 403 or 429;
/// GitLab 429). `None`: not a rate limit.
fn rate_limited(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    if status != StatusCode::TOO_MANY_REQUESTS
        && !(status == StatusCode::FORBIDDEN && (exhausted || header("retry-after").is_some()))
    {
        return None;
    }
    if let Some(secs) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok());
    Some(match reset {
        Some(at) => {
            Duration::from_secs((at - OffsetDateTime::now_utc().unix_timestamp()).max(1) as u64)
        }
        // GitHub's advice without either header: wait at least a minute.
        None => Duration::from_secs(60),
    })
}

/// The next page, from the `Link` header (both platforms send it).
fn next_page(headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

fn link_of(body: &Value) -> String {
    body["html_url"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("note {}", body["id"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            "<https://api.github.com/repositories/1/issues/2/comments?page=2>; rel=\"next\", <https://api.github.com/repositories/1/issues/2/comments?page=5>; rel=\"last\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_page(&h).as_deref(),
            Some("https://api.github.com/repositories/1/issues/2/comments?page=2")
        );
        h.insert(
            "link",
            "<https://x/?page=1>; rel=\"first\"".parse().unwrap(),
        );
        assert_eq!(next_page(&h), None);
    }

    #[test]
    fn the_close_adds_up_what_the_pushes_recorded() {
        let now = OffsetDateTime::parse(
            "2026-01-01T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let rows = vec![Row {
            name: "ci-db-pr-1".into(),
            key: "db".into(),
            service_type: "pg".into(),
            plan: "hobbyist".into(),
            usd_h: Some(0.5),
            created: Some("2026-01-01T10:00:00Z".into()),
            ready_secs: Some(3),
            ready: true,
        }];
        let up = render(
            "pr-1",
            "p",
            &Report::Up {
                rows,
                expires: "2026-01-01T14:00:00Z".into(),
                failed: None,
            },
            None,
            now,
        );
        assert!(up.contains("so far about 1.000 USD"), "{up}");
        let closed = render(
            "pr-1",
            "p",
            &Report::Closed {
                at: "2026-01-01T13:00:00Z".into(),
                left: vec![],
            },
            Some(&up),
            now + time::Duration::hours(1),
        );
        assert!(closed.starts_with(&marker("pr-1")));
        assert!(closed.contains("Total cost: about 1.500 USD"), "{closed}");
    }
}
