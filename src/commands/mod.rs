//! One module per command. `dispatch` maps the parsed command line to them.

pub mod check;
pub mod down;
pub mod env;
pub mod extend;
pub mod init;
pub mod plan;
pub mod reap;
pub mod run;
pub mod sandbox;
pub mod status;
pub mod up;
pub mod validate;

use crate::cli::Cli;
use crate::error::{Result, Status};
use crate::progress::Reporter;
use crate::settings::Settings;

pub async fn dispatch(cli: Cli, reporter: &'static Reporter) -> Result<Status> {
    match Settings::resolve(&cli.command) {
        Settings::Init(args) => init::init(&args, reporter),
        Settings::Validate(args) => validate::validate(&args, reporter),
        Settings::Plan(s) => plan::plan(&s).await,
        Settings::Up(s) => up::up(&s, reporter).await,
        Settings::Down(s) => down::down(&s, reporter).await,
        Settings::Run(s) => run::run(&s, reporter).await,
        Settings::Status(s) => status::status(&s).await,
        Settings::Reap(s) => reap::reap(&s, reporter).await,
        Settings::Extend(s) => extend::extend(&s, reporter).await,
        Settings::Env(s) => env::env(&s).await,
        Settings::Check(args) => check::check(&args).await,
        Settings::Sandbox(args) => sandbox::sandbox(&args).await,
        Settings::Completions(shell) => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            let name = command.get_name().to_string();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, &name, &mut script);
            let mut script = String::from_utf8_lossy(&script).into_owned();
            if shell == clap_complete::Shell::Bash {
                // clap_complete mangles the `-` of the name one way where it tracks the
                // subcommand and another in the labels it matches that against, so
                // nothing past the subcommand's name would complete.
                script = script.replace("aiven__subcmd__ephemeral", "aiven__ephemeral");
            }
            if shell == clap_complete::Shell::Fish {
                // clap_complete gives fish no values for a positional argument, so fish
                // offered files for the shell's name.
                use clap::ValueEnum;
                let shells: Vec<String> = clap_complete::Shell::value_variants()
                    .iter()
                    .filter_map(|s| Some(s.to_possible_value()?.get_name().to_string()))
                    .collect();
                script.push_str(&format!(
                    "complete -c {name} -n \"__fish_{}_using_subcommand completions\" -f -a \"{}\"\n",
                    name.replace('-', "_"),
                    shells.join(" ")
                ));
            }
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(script.as_bytes());
            Ok(Status::Success)
        }
    }
}

/// Left-aligned columns, two spaces apart.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        crate::say!(out "{}", text.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
