//! `karyoscreen serve` (the review station) and `karyoscreen user add` (its accounts).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use karyoscreen::device::board::Board;
use karyoscreen::integrity::record::{RecordOptions, DEFAULT_KEEP, DEFAULT_MAX_BYTES};
use karyoscreen::review::accounts::{Role, Sessions, Users};
use karyoscreen::review::server::{serve, Station};

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  karyoscreen user add ana --role reviewer --users /etc/karyoscreen/users.json\n  \
                        karyoscreen serve --record /var/lib/karyoscreen/record.jsonl --users /etc/karyoscreen/users.json \
                        --listen 0.0.0.0:8080")]
pub struct ServeArgs {
    /// The record the device writes (`run --record FILE`, `analyze --record FILE`, `case --record FILE`).
    #[arg(long, value_name = "FILE")]
    record: PathBuf,
    /// The accounts (`karyoscreen user add`).
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// Address and port to listen on; 127.0.0.1 keeps it to this machine (a proxy in front).
    /// Default: the profile's `[review] listen` with --config, else 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// A board profile whose `[review]` table turns the station on (`enabled = true`; when it is
    /// off, serve says so and exits 0) and gives `listen` and `https`: the board service's switch.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Minutes of inactivity that end a session.
    #[arg(long, default_value_t = 30, value_name = "MIN")]
    idle_minutes: u64,
    /// Hours after which a session ends whatever its activity.
    #[arg(long, default_value_t = 12, value_name = "H")]
    session_hours: u64,
    /// Mark the session cookie Secure: set it when the page is reached over HTTPS (a TLS proxy).
    #[arg(long)]
    https: bool,
    /// Where the device keeps the frames it recorded (as the writer was given with
    /// --record-frames): the cell pages show them annotated and as a karyogram.
    #[arg(long, value_name = "DIR")]
    frames: Option<PathBuf>,
    /// Files the record keeps (as the writer was given with --record-keep).
    #[arg(long, default_value_t = DEFAULT_KEEP, value_name = "N")]
    record_keep: usize,
}

pub fn exec(args: ServeArgs) -> Result<ExitCode> {
    let (listen, https) = match &args.config {
        Some(path) => {
            let review = Board::load(path)?.review;
            if !review.enabled {
                outln!("review station: off in {} ([review] enabled = false); nothing served", path.display())?;
                return Ok(ExitCode::SUCCESS);
            }
            (args.listen.clone().unwrap_or(review.listen), args.https || review.https)
        }
        None => (args.listen.clone().unwrap_or_else(|| "127.0.0.1:8080".to_string()), args.https),
    };
    let users = Users::load(&args.users)?;
    ensure!(args.idle_minutes > 0, "--idle-minutes must be at least 1");
    let sessions =
        Sessions::new(Duration::from_secs(60 * args.idle_minutes), Duration::from_secs(3600 * args.session_hours))?;
    let options = RecordOptions { max_bytes: DEFAULT_MAX_BYTES, keep: args.record_keep };
    let mut station = Station::new(args.record.clone(), options, users, sessions);
    station.secure_cookies = https;
    station.frames = args.frames.clone();
    serve(&station, &listen, |address| {
        // the one line a supervisor (or a test) waits for
        outln!("review station on http://{address}/ (record {})", args.record.display())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add (or replace) an account; its password is read from standard input (one line).
    #[command(after_help = "Example:\n  karyoscreen user add ana --role reviewer --users users.json")]
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        #[arg(long, value_name = "FILE")]
        users: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    /// Reads and signs off.
    Reviewer,
    /// Reads only.
    Viewer,
}

pub fn user(action: UserCommand) -> Result<ExitCode> {
    match action {
        UserCommand::Add { name, role, users } => {
            let password = read_password()?;
            let role = match role {
                RoleArg::Reviewer => Role::Reviewer,
                RoleArg::Viewer => Role::Viewer,
            };
            Users::add(&users, &name, role, password.trim_end_matches(['\r', '\n']))?;
            outln!("{}: {name} ({role:?}) saved", users.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line from standard input; on a terminal it asks for it and does not echo it.
fn read_password() -> Result<String> {
    let stdin = std::io::stdin();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stdin);
    // SAFETY: termios calls on our own standard input, restored before returning.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let terminal = unsafe { libc::isatty(fd) == 1 && libc::tcgetattr(fd, &mut saved) == 0 };
    if terminal {
        eprint!("password: ");
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut password = String::new();
    let read = stdin.lock().read_line(&mut password);
    if terminal {
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
        eprintln!();
    }
    read.context("cannot read the password from standard input")?;
    Ok(password)
}
