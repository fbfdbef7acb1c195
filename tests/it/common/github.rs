//! A server on 127.0.0.1:0 laid out like GitHub's releases: the REST API the release
//! workflow calls (releases listed with their drafts to who may push, a draft created,
//! assets uploaded to its `upload_url`, the draft published or deleted) and the download
//! URLs the action follows (`/OWNER/REPO/releases/download/TAG/ASSET`, answered with a
//! 302 to storage as github.com does, and only for a published release). Faults can be
//! queued for the next downloads from storage and for the next uploads.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

pub const REPO: &str = "aiven-ephemeral/aiven-ephemeral";
pub const GH_TOKEN: &str = "ghs_release_token";

/// What the next download from storage meets.
#[derive(Clone, Copy, Debug)]
pub enum DownloadFault {
    /// Headers never come: the connection stays open until the client gives up.
    Hang,
    /// An error status, e.g. 502 from a proxy.
    Status(u16),
    /// The full length announced, half the body sent, the connection closed.
    Truncate,
}

#[derive(Clone, Debug)]
pub struct Release {
    pub id: u64,
    pub tag: String,
    pub draft: bool,
    pub assets: BTreeMap<String, Vec<u8>>,
}

#[derive(Default)]
struct State {
    releases: Vec<Release>,
    next_id: u64,
    asked: Vec<String>,
    download_faults: VecDeque<DownloadFault>,
    failing_uploads: usize,
    /// The repository's git remote: publishing a draft whose tag is missing creates the
    /// tag on the default branch, as GitHub does.
    git_dir: Option<PathBuf>,
}

pub struct GitHub {
    pub url: String,
    state: Arc<Mutex<State>>,
}

struct Request {
    method: String,
    path: String,
    authorized: bool,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split(' ');
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let (mut length, mut authorized) = (0, false);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? <= 2 {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorized = value.trim() == format!("Bearer {GH_TOKEN}"),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        authorized,
        body,
    })
}

fn answer(stream: &mut TcpStream, status: u16, headers: &str, body: &[u8]) {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    let _ = stream.write_all(&out);
}

fn json_answer(stream: &mut TcpStream, status: u16, body: Value) {
    answer(
        stream,
        status,
        "content-type: application/json\r\n",
        body.to_string().as_bytes(),
    );
}

impl GitHub {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            next_id: 1,
            ..State::default()
        }));
        let shared = state.clone();
        let base = url.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                let base = base.clone();
                std::thread::spawn(move || serve(stream, &state, &base));
            }
        });
        Self { url, state }
    }

    /// Published releases with these assets ("TAG/NAME" → bytes).
    pub fn serving(assets: BTreeMap<String, Vec<u8>>) -> Self {
        let github = Self::start();
        let mut state = github.state.lock().unwrap();
        for (key, bytes) in assets {
            let (tag, name) = key.split_once('/').unwrap();
            if !state.releases.iter().any(|r| r.tag == tag) {
                let id = state.next_id;
                state.next_id += 1;
                state.releases.push(Release {
                    id,
                    tag: tag.to_string(),
                    draft: false,
                    assets: BTreeMap::new(),
                });
            }
            let release = state.releases.iter_mut().find(|r| r.tag == tag).unwrap();
            release.assets.insert(name.to_string(), bytes);
        }
        drop(state);
        github
    }

    pub fn with_git_dir(self, git_dir: PathBuf) -> Self {
        self.state.lock().unwrap().git_dir = Some(git_dir);
        self
    }

    /// The paths asked for, in order.
    pub fn asked(&self) -> Vec<String> {
        self.state.lock().unwrap().asked.clone()
    }

    pub fn releases(&self) -> Vec<Release> {
        self.state.lock().unwrap().releases.clone()
    }

    pub fn fault_downloads(&self, faults: &[DownloadFault]) {
        self.state
            .lock()
            .unwrap()
            .download_faults
            .extend(faults.iter().copied());
    }

    pub fn fail_uploads(&self, n: usize) {
        self.state.lock().unwrap().failing_uploads = n;
    }
}

fn release_json(r: &Release, base: &str) -> Value {
    json!({
        "id": r.id,
        "tag_name": r.tag,
        "draft": r.draft,
        "upload_url": format!("{base}/uploads/repos/{REPO}/releases/{}/assets{{?name,label}}", r.id),
        "assets": r.assets.keys().map(|n| json!({"name": n})).collect::<Vec<_>>(),
    })
}

fn serve(mut stream: TcpStream, state: &Mutex<State>, base: &str) {
    let Some(req) = read_request(&stream) else {
        return;
    };
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let mut s = state.lock().unwrap();
    s.asked.push(req.path.clone());
    let api = format!("/repos/{REPO}/releases");
    let uploads = format!("/uploads/repos/{REPO}/releases/");
    let downloads = format!("/{REPO}/releases/download/");
    if let Some(rest) = path.strip_prefix(&downloads) {
        let (tag, name) = rest.split_once('/').unwrap_or((rest, ""));
        let found = s
            .releases
            .iter()
            .any(|r| r.tag == tag && !r.draft && r.assets.contains_key(name));
        drop(s);
        if found {
            let location = format!("location: /storage/{tag}/{name}\r\n");
            answer(&mut stream, 302, &location, b"");
        } else {
            answer(&mut stream, 404, "", b"Not Found");
        }
    } else if let Some(rest) = path.strip_prefix("/storage/") {
        let (tag, name) = rest.split_once('/').unwrap_or((rest, ""));
        let body = s
            .releases
            .iter()
            .find(|r| r.tag == tag && !r.draft)
            .and_then(|r| r.assets.get(name).cloned());
        let fault = s.download_faults.pop_front();
        drop(s);
        match (fault, body) {
            (_, None) => answer(&mut stream, 404, "", b"Not Found"),
            (Some(DownloadFault::Hang), _) => {
                // Until the client closes the connection.
                let mut buf = [0; 64];
                while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
            }
            (Some(DownloadFault::Status(code)), _) => answer(&mut stream, code, "", b"Bad Gateway"),
            (Some(DownloadFault::Truncate), Some(body)) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body[..body.len() / 2]);
            }
            (None, Some(body)) => answer(&mut stream, 200, "", &body),
        }
    } else if !req.authorized {
        drop(s);
        json_answer(&mut stream, 401, json!({"message": "Bad credentials"}));
    } else if req.method == "GET" && path == api {
        let list: Vec<Value> = s.releases.iter().map(|r| release_json(r, base)).collect();
        drop(s);
        json_answer(&mut stream, 200, Value::Array(list));
    } else if req.method == "POST" && path == api {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let tag = body["tag_name"].as_str().unwrap_or_default().to_string();
        if s.releases.iter().any(|r| r.tag == tag) {
            drop(s);
            let errors =
                json!([{"resource": "Release", "code": "already_exists", "field": "tag_name"}]);
            json_answer(
                &mut stream,
                422,
                json!({"message": "Validation Failed", "errors": errors}),
            );
            return;
        }
        let release = Release {
            id: s.next_id,
            tag,
            draft: body["draft"].as_bool().unwrap_or(false),
            assets: BTreeMap::new(),
        };
        s.next_id += 1;
        let out = release_json(&release, base);
        s.releases.push(release);
        drop(s);
        json_answer(&mut stream, 201, out);
    } else if let Some(rest) = path.strip_prefix(&uploads) {
        let id: u64 = rest.split('/').next().unwrap_or("").parse().unwrap_or(0);
        let name = query.strip_prefix("name=").unwrap_or("").to_string();
        if s.failing_uploads > 0 {
            s.failing_uploads -= 1;
            drop(s);
            json_answer(&mut stream, 500, json!({"message": "Server Error"}));
            return;
        }
        let Some(release) = s.releases.iter_mut().find(|r| r.id == id) else {
            drop(s);
            json_answer(&mut stream, 404, json!({"message": "Not Found"}));
            return;
        };
        release.assets.insert(name.clone(), req.body);
        drop(s);
        json_answer(&mut stream, 201, json!({"name": name}));
    } else if let Some(id) = path.strip_prefix(&format!("{api}/")) {
        let id: u64 = id.parse().unwrap_or(0);
        let Some(at) = s.releases.iter().position(|r| r.id == id) else {
            drop(s);
            json_answer(&mut stream, 404, json!({"message": "Not Found"}));
            return;
        };
        if req.method == "DELETE" {
            s.releases.remove(at);
            drop(s);
            answer(&mut stream, 204, "", b"");
            return;
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        if body["draft"] == false {
            let tag = s.releases[at].tag.clone();
            if let Some(git_dir) = &s.git_dir {
                let tag_ref = format!("refs/tags/{tag}");
                let exists = Command::new("git")
                    .arg("--git-dir")
                    .arg(git_dir)
                    .args(["rev-parse", "--verify", "--quiet", &tag_ref])
                    .output()
                    .unwrap()
                    .status
                    .success();
                if !exists {
                    let made = Command::new("git")
                        .arg("--git-dir")
                        .arg(git_dir)
                        .args(["update-ref", &tag_ref, "refs/heads/main"])
                        .status()
                        .unwrap();
                    assert!(made.success());
                }
            }
            s.releases[at].draft = false;
        }
        let out = release_json(&s.releases[at], base);
        drop(s);
        json_answer(&mut stream, 200, out);
    } else {
        drop(s);
        json_answer(&mut stream, 404, json!({"message": "Not Found"}));
    }
}
