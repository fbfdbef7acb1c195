//! A terminal that goes away (a closed terminal window, a dropped SSH session, a killed
//! tmux session): the kernel sends SIGHUP to the session leader and every later write
//! to the terminal fails with EIO. The binary runs in a real pseudo-terminal, as the
//! session leader with it as controlling terminal (as a terminal emulator, sshd or tmux
//! starts a command), and the terminal is closed while it works: the teardown must still
//! happen, and the exit code is SIGHUP's 129.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

const THREE: &str = "project: test-project\nservices:\n  a: {type: pg, plan: hobbyist}\n  b: {type: mysql, plan: hobbyist}\n  c: {type: valkey, plan: hobbyist}\n";

fn creates(r: &[Value]) -> usize {
    r.iter()
        .filter(|r| {
            r["method"] == "POST"
                && r["path"] == format!("/v1/project/{PROJECT}/service")
                && r["status"] == 200
        })
        .count()
}

/// The binary in a pseudo-terminal of its own, with what it writes there.
struct InTerminal {
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    close: Arc<AtomicBool>,
    reader: std::thread::JoinHandle<()>,
}

impl InTerminal {
    /// `setsid --ctty` makes the binary the session leader with the terminal as its
    /// controlling terminal, and execs it: the pid is the binary's.
    fn start(env: &Env, args: &[&str]) -> Self {
        require("setsid");
        use nix::fcntl::OFlag;
        use std::os::unix::fs::OpenOptionsExt;
        // Close-on-exec, so that no other test's child holds the terminal open.
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .expect("a pseudo-terminal");
        nix::pty::grantpt(&master).expect("grantpt");
        nix::pty::unlockpt(&master).expect("unlockpt");
        let path = nix::pty::ptsname_r(&master).expect("ptsname");
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(OFlag::O_NOCTTY.bits())
            .open(&path)
            .expect("the terminal's slave side");
        let mut cmd = Command::new("setsid");
        cmd.arg("--ctty").arg(BIN).args(args);
        against(&mut cmd, env.dir.path(), &env.sandbox);
        cmd.env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().expect("binary starts");
        drop(cmd);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let close = Arc::new(AtomicBool::new(false));
        let mut master = std::fs::File::from(std::os::fd::OwnedFd::from(master));
        let reader = std::thread::spawn({
            let (screen, close) = (screen.clone(), close.clone());
            move || {
                let mut buf = [0u8; 4096];
                // The live view redraws several times a second: a read returns soon.
                while !close.load(Ordering::SeqCst) {
                    match master.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => screen.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
                // The last descriptor of the master side: the terminal is gone.
                drop(master);
            }
        });
        Self {
            child,
            screen,
            close,
            reader,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// The last lines written, for a failure's message.
    fn tail(&self) -> String {
        let screen = self.screen();
        let lines: Vec<&str> = screen.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    fn wait_for_screen(&self, what: &str) {
        let start = Instant::now();
        while !self.screen().contains(what) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {what:?} on the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes the terminal and waits for the binary to end.
    fn close(self) -> Run {
        self.close.store(true, Ordering::SeqCst);
        self.reader.join().expect("reader");
        wait(self.child, Duration::from_secs(60))
    }
}

/// Nothing left in the sandbox, the state file says so, and the DELETEs were sent.
fn all_deleted(env: &Env, screen: &str) {
    assert!(
        env.sandbox.live_names().is_empty(),
        "left behind: {:?}\n{screen}",
        env.sandbox.live_names()
    );
    assert!(env.sandbox.count("DELETE", "/v1/project/") >= 1);
    assert_eq!(env.state()["status"], "torn_down", "{screen}");
}

#[test]
fn closing_the_terminal_during_up_deletes_everything() {
    let env = Env::new(THREE);
    env.sandbox
        .service_fault(json!({"name": "*", "ready_after": "60s"}));
    let term = InTerminal::start(&env, &["up"]);
    env.sandbox
        .wait_for("the creates", Duration::from_secs(30), |r| creates(r) == 3);
    term.wait_for_screen("0/3 ready");
    let screen = term.tail();
    let out = term.close();
    assert_eq!(out.code, Some(129), "{screen}");
    all_deleted(&env, &screen);
}

#[test]
fn closing_the_terminal_during_runs_command_deletes_everything() {
    let env = Env::new(PG);
    let term = InTerminal::start(
        &env,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo started; while :; do echo tick; sleep 0.1; done",
        ],
    );
    term.wait_for_screen("started");
    let screen = term.tail();
    let out = term.close();
    assert_eq!(out.code, Some(129), "{screen}");
    all_deleted(&env, &screen);
}

/// The issue's own steps: `tmux new -d 'aiven-ephemeral up'`, then `tmux kill-session`.
#[test]
fn killing_the_tmux_session_during_up_deletes_everything() {
    require("tmux");
    let env = Env::new(THREE);
    env.sandbox
        .service_fault(json!({"name": "*", "ready_after": "60s"}));
    let session = format!("ae-test-{}", uuid::Uuid::new_v4().simple());
    let command = format!(
        "cd {} && exec env -i PATH=/usr/bin:/bin HOME={} TERM=xterm-256color AIVEN_API_URL={} AIVEN_TOKEN={} NO_PROXY=127.0.0.1 {BIN} up",
        env.dir.path().display(),
        env.dir.path().display(),
        env.sandbox.url,
        env.sandbox.token,
    );
    let started = Command::new("tmux")
        .args(["new-session", "-d", "-s", &session, "-x", "100", "-y", "30"])
        .arg(&command)
        .status()
        .expect("tmux runs");
    assert!(started.success());
    env.sandbox
        .wait_for("the creates", Duration::from_secs(30), |r| creates(r) == 3);
    let killed = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status()
        .expect("tmux runs");
    assert!(killed.success());
    // The binary's own end is its state file's: nothing else is left to ask.
    let start = Instant::now();
    while std::fs::read_to_string(env.path(".aiven-ephemeral/state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_none_or(|s| s["status"] != "torn_down")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no teardown recorded; live: {:?}",
            env.sandbox.live_names()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    all_deleted(&env, "");
}
