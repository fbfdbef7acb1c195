//! Local servers that answer as GitHub's and GitLab's REST APIs do for comments on a
//! pull request / notes on a merge request, as their docs describe them: pages with a
//! `Link` header (GitLab also `x-next-page`), 401 without the token, 403 for a token that
//! may not write, 404 on a comment deleted meanwhile, and rate limits (GitHub: 403 with
//! `x-ratelimit-remaining: 0` and `x-ratelimit-reset`; GitLab: 429 with `Retry-After`).

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, put};
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Github,
    Gitlab,
}

pub const TOKEN: &str = "forge-token-1234";

#[derive(Default)]
pub struct World {
    /// (id, body, deleted)
    pub comments: Vec<(u64, String, bool)>,
    next_id: u64,
    /// Writes answer 403, as a read-only token's do.
    pub read_only: bool,
    /// The next N requests are rate limited.
    pub rate_limited: usize,
    /// Every request: (method, path and query, body).
    pub log: Vec<(String, String, String)>,
}

pub struct Forge {
    pub kind: Kind,
    pub url: String,
    pub world: Arc<Mutex<World>>,
    /// Serves until the forge is dropped.
    _rt: tokio::runtime::Runtime,
}

impl Forge {
    /// A forge holding `others` comments by other people (enough to need pages).
    pub fn start(kind: Kind, others: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let world = Arc::new(Mutex::new(World::default()));
        {
            let mut w = world.lock().unwrap();
            for i in 0..others {
                w.next_id += 1;
                let id = w.next_id;
                w.comments
                    .push((id, format!("a reviewer's comment {i}"), false));
            }
        }
        let app = match kind {
            Kind::Github => Router::new()
                .route("/repos/{o}/{r}/issues/{n}/comments", get(list).post(create))
                .route("/repos/{o}/{r}/issues/comments/{id}", patch(edit)),
            Kind::Gitlab => Router::new()
                .route(
                    "/api/v4/projects/{p}/merge_requests/{iid}/notes",
                    get(list_gl).post(create_gl),
                )
                .route(
                    "/api/v4/projects/{p}/merge_requests/{iid}/notes/{id}",
                    put(edit_gl),
                ),
        }
        .with_state((kind, world.clone()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        let url = match kind {
            Kind::Github => format!("http://{addr}"),
            Kind::Gitlab => format!("http://{addr}/api/v4"),
        };
        Self {
            kind,
            url,
            world,
            _rt: rt,
        }
    }

    /// The live comments carrying `needle`.
    pub fn ours(&self, needle: &str) -> Vec<String> {
        self.world
            .lock()
            .unwrap()
            .comments
            .iter()
            .filter(|(_, b, deleted)| !deleted && b.contains(needle))
            .map(|(_, b, _)| b.clone())
            .collect()
    }

    /// Every body ever sent (each version of the comment).
    pub fn sent_bodies(&self) -> Vec<String> {
        self.world
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|(m, _, _)| m != "GET")
            .map(|(_, _, b)| b.clone())
            .collect()
    }

    pub fn count(&self, method: &str) -> usize {
        self.world
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|(m, _, _)| m == method)
            .count()
    }

    /// Someone deletes our comment.
    pub fn delete_ours(&self, needle: &str) {
        for c in self.world.lock().unwrap().comments.iter_mut() {
            if c.1.contains(needle) {
                c.2 = true;
            }
        }
    }

    /// The environment a CI job has for this forge, pointing at pull / merge request
    /// 42; `dir` holds the event file and the runner's files.
    pub fn ci_env(&self, dir: &std::path::Path) -> Vec<(String, String)> {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        match self.kind {
            Kind::Github => {
                let event = dir.join("event.json");
                std::fs::write(
                    &event,
                    json!({"action": "synchronize", "number": 42, "pull_request": {"number": 42}})
                        .to_string(),
                )
                .unwrap();
                let file = |n: &str| dir.join(n).display().to_string();
                vec![
                    s("GITHUB_ACTIONS", "true"),
                    s("GITHUB_REPOSITORY", "acme/shop"),
                    s("GITHUB_RUN_ID", "777"),
                    s("GITHUB_API_URL", &self.url),
                    s("GITHUB_EVENT_PATH", &event.display().to_string()),
                    s("GITHUB_REF", "refs/pull/42/merge"),
                    s("GITHUB_TOKEN", TOKEN),
                    s("GITHUB_ENV", &file("github-env")),
                    s("GITHUB_OUTPUT", &file("github-output")),
                    s("GITHUB_STEP_SUMMARY", &file("github-summary")),
                ]
            }
            Kind::Gitlab => vec![
                s("GITLAB_CI", "true"),
                s("CI_API_V4_URL", &self.url),
                s("CI_PROJECT_ID", "1234"),
                s("CI_PROJECT_PATH", "acme/shop"),
                s("CI_JOB_ID", "555"),
                s("CI_MERGE_REQUEST_IID", "42"),
                s("AIVEN_EPHEMERAL_GITLAB_TOKEN", TOKEN),
            ],
        }
    }
}

type St = State<(Kind, Arc<Mutex<World>>)>;

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "message": text }))).into_response()
}

/// Authentication, the log and the rate limit, as each platform answers them.
fn gate(
    kind: Kind,
    world: &mut World,
    headers: &HeaderMap,
    method: &str,
    path: String,
    body: &str,
) -> Option<Response> {
    world.log.push((method.into(), path, body.into()));
    let authorised = match kind {
        Kind::Github => {
            headers.get("authorization").and_then(|v| v.to_str().ok())
                == Some(&format!("Bearer {TOKEN}"))
        }
        Kind::Gitlab => headers.get("private-token").and_then(|v| v.to_str().ok()) == Some(TOKEN),
    };
    if !authorised {
        return Some(match kind {
            Kind::Github => message(StatusCode::UNAUTHORIZED, "Bad credentials"),
            Kind::Gitlab => message(StatusCode::UNAUTHORIZED, "401 Unauthorized"),
        });
    }
    if world.rate_limited > 0 {
        world.rate_limited -= 1;
        let mut r = match kind {
            Kind::Github => message(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for installation ID 1.",
            ),
            Kind::Gitlab => message(StatusCode::TOO_MANY_REQUESTS, "Retry later"),
        };
        let h = r.headers_mut();
        match kind {
            Kind::Github => {
                let reset = time::OffsetDateTime::now_utc().unix_timestamp() + 1;
                h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
                h.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
            }
            Kind::Gitlab => {
                h.insert("retry-after", HeaderValue::from_static("1"));
            }
        }
        return Some(r);
    }
    if method != "GET" && world.read_only {
        return Some(match kind {
            Kind::Github => message(
                StatusCode::FORBIDDEN,
                "Resource not accessible by integration",
            ),
            Kind::Gitlab => message(StatusCode::FORBIDDEN, "403 Forbidden"),
        });
    }
    None
}

fn page_of(world: &World, q: &Value, host: &str, path: &str, kind: Kind) -> Response {
    let per_page: usize = q["per_page"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if kind == Kind::Github { 30 } else { 20 })
        .min(100);
    let page: usize = q["page"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let live: Vec<&(u64, String, bool)> = world.comments.iter().filter(|c| !c.2).collect();
    let pages = live.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = live
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(id, body, _)| match kind {
            Kind::Github => json!({"id": id, "body": body, "html_url": format!("https://github.com/acme/shop/pull/42#issuecomment-{id}"), "user": {"login": "github-actions[bot]"}}),
            Kind::Gitlab => json!({"id": id, "body": body, "system": false, "author": {"username": "project_1234_bot"}}),
        })
        .collect();
    let mut r = Json(Value::Array(items)).into_response();
    let url = |p: usize| format!("<http://{host}{path}?per_page={per_page}&page={p}>");
    let mut links = Vec::new();
    if page < pages {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
        if kind == Kind::Gitlab {
            r.headers_mut()
                .insert("x-next-page", (page + 1).to_string().parse().unwrap());
        }
    }
    links.push(format!("{}; rel=\"first\"", url(1)));
    links.push(format!("{}; rel=\"last\"", url(pages)));
    r.headers_mut()
        .insert("link", links.join(", ").parse().unwrap());
    r
}

async fn list(
    State((kind, world)): St,
    Path((o, r, n)): Path<(String, String, u64)>,
    Query(q): Query<Value>,
    headers: HeaderMap,
) -> Response {
    let mut w = world.lock().unwrap();
    let path = format!("/repos/{o}/{r}/issues/{n}/comments");
    if let Some(r) = gate(kind, &mut w, &headers, "GET", format!("{path}?{q}"), "") {
        return r;
    }
    let host = headers["host"].to_str().unwrap().to_string();
    page_of(&w, &q, &host, &path, kind)
}

fn add(w: &mut World, body: &Value) -> (u64, String) {
    w.next_id += 1;
    let id = w.next_id;
    let text = body["body"].as_str().unwrap_or_default().to_string();
    w.comments.push((id, text.clone(), false));
    (id, text)
}

fn change(w: &mut World, id: u64, body: &Value) -> bool {
    match w.comments.iter_mut().find(|c| c.0 == id && !c.2) {
        Some(c) => {
            c.1 = body["body"].as_str().unwrap_or_default().to_string();
            true
        }
        None => false,
    }
}

async fn create(
    State((kind, world)): St,
    Path((o, r, n)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut w = world.lock().unwrap();
    let path = format!("/repos/{o}/{r}/issues/{n}/comments");
    if let Some(r) = gate(
        kind,
        &mut w,
        &headers,
        "POST",
        path,
        &body["body"].to_string(),
    ) {
        return r;
    }
    let (id, text) = add(&mut w, &body);
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "body": text, "html_url": format!("https://github.com/acme/shop/pull/42#issuecomment-{id}")})),
    )
        .into_response()
}

async fn edit(
    State((kind, world)): St,
    Path((o, r, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut w = world.lock().unwrap();
    let path = format!("/repos/{o}/{r}/issues/comments/{id}");
    if let Some(r) = gate(
        kind,
        &mut w,
        &headers,
        "PATCH",
        path,
        &body["body"].to_string(),
    ) {
        return r;
    }
    if !change(&mut w, id, &body) {
        return message(StatusCode::NOT_FOUND, "Not Found");
    }
    Json(json!({"id": id, "html_url": format!("https://github.com/acme/shop/pull/42#issuecomment-{id}")})).into_response()
}

async fn list_gl(
    State((kind, world)): St,
    Path((p, iid)): Path<(String, u64)>,
    Query(q): Query<Value>,
    headers: HeaderMap,
) -> Response {
    let mut w = world.lock().unwrap();
    let path = format!("/api/v4/projects/{p}/merge_requests/{iid}/notes");
    if let Some(r) = gate(kind, &mut w, &headers, "GET", format!("{path}?{q}"), "") {
        return r;
    }
    let host = headers["host"].to_str().unwrap().to_string();
    page_of(&w, &q, &host, &path, kind)
}

async fn create_gl(
    State((kind, world)): St,
    Path((p, iid)): Path<(String, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut w = world.lock().unwrap();
    let path = format!("/api/v4/projects/{p}/merge_requests/{iid}/notes");
    if let Some(r) = gate(
        kind,
        &mut w,
        &headers,
        "POST",
        path,
        &body["body"].to_string(),
    ) {
        return r;
    }
    let (id, text) = add(&mut w, &body);
    (StatusCode::CREATED, Json(json!({"id": id, "body": text}))).into_response()
}

async fn edit_gl(
    State((kind, world)): St,
    Path((p, iid, id)): Path<(String, u64, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut w = world.lock().unwrap();
    let path = format!("/api/v4/projects/{p}/merge_requests/{iid}/notes/{id}");
    if let Some(r) = gate(
        kind,
        &mut w,
        &headers,
        "PUT",
        path,
        &body["body"].to_string(),
    ) {
        return r;
    }
    if !change(&mut w, id, &body) {
        return message(StatusCode::NOT_FOUND, "404 Not found");
    }
    Json(json!({"id": id})).into_response()
}
