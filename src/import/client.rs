//! The `mailroom import` command's side: check the arguments, get the password (a file
//! holding it alone, or asked on the terminal), hand the request to the running server
//! over its control socket, and show the job's events: a bar redrawn on a terminal, plain
//! lines otherwise, the summary at the end.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use super::progress::{Counts, summary_line};
use super::{COMMAND, Event, ImportRequest, Summary};

/// Without a terminal, a progress line every this many messages…
const LINE_EVERY_MESSAGES: u64 = 100;
/// …or this often, whichever comes first.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// The terminal bar is redrawn at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Cells of the bar.
const BAR_WIDTH: usize = 24;

/// How the command ended: its exit status is 1 for `Failed`, 2 for `BadArguments`.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    BadArguments(String),
    #[error("{0}")]
    Failed(String),
}

/// The command line, as given.
pub struct Options {
    pub source: String,
    pub to: String,
    pub password_file: Option<PathBuf>,
    pub folders: Vec<String>,
    pub ca_file: Option<PathBuf>,
}

/// Check the options and read the password: everything that can be wrong before the
/// server is asked (exit 2).
pub fn prepare(options: &Options) -> Result<(ImportRequest, String), CommandError> {
    let bad = CommandError::BadArguments;
    crate::fetch::parse_import_url(&options.source).map_err(bad)?;
    crate::accounts::Address::parse(&options.to).map_err(|e| bad(format!("--to {:?}: {e}", options.to)))?;
    let ca_file = match &options.ca_file {
        // The server reads it, from its own working directory: an absolute path.
        Some(p) => {
            let path = std::path::absolute(p).map_err(|e| bad(format!("--ca-file {}: {e}", p.display())))?;
            crate::config::pem_roots(&path).map_err(|e| bad(format!("--ca-file {}: {e}", p.display())))?;
            Some(path.display().to_string())
        }
        None => None,
    };
    let password = read_password(options.password_file.as_deref(), &options.source)?;
    let folders = options.folders.iter().flat_map(|f| f.split(',')).map(str::to_string).filter(|f| !f.is_empty());
    let request =
        ImportRequest { source: options.source.clone(), to: options.to.clone(), folders: folders.collect(), ca_file };
    Ok((request, password))
}

/// The file's first line, or asked on the terminal.
fn read_password(file: Option<&Path>, source: &str) -> Result<String, CommandError> {
    let bad = CommandError::BadArguments;
    let password = match file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| bad(format!("--password-file {}: {e}", path.display())))?;
            text.lines().next().unwrap_or("").to_string()
        }
        None if std::io::stdin().is_terminal() => rpassword::prompt_password(format!("Password for {source}: "))
            .map_err(|e| bad(format!("cannot read the password: {e}")))?,
        None => return Err(bad("no --password-file, and no terminal to ask for the password on".into())),
    };
    if password.is_empty() {
        return Err(bad("the password is empty".into()));
    }
    if password.contains(['\r', '\n', '\0']) {
        return Err(bad("the password holds a line break or NUL".into()));
    }
    Ok(password)
}

/// Ask the server whose data dir this is to run the import, and show its progress.
pub async fn run(data_dir: &Path, request: &ImportRequest, password: &str) -> Result<Summary, CommandError> {
    let json = serde_json::to_string(request).map_err(|e| CommandError::Failed(e.to_string()))?;
    let stream = crate::queue::control_connect(data_dir, &format!("{COMMAND} {json}\n{password}\n"))
        .await
        .map_err(|e| CommandError::Failed(e.to_string()))?;
    let mut lines = BufReader::new(stream).lines();
    let mut screen = Screen::new();
    let lost = || CommandError::Failed("the server closed the connection before the import ended".into());
    while let Some(line) = lines.next_line().await.map_err(|e| CommandError::Failed(e.to_string()))? {
        if line == "." {
            break;
        }
        if let Some(text) = line.strip_prefix("error:") {
            return Err(CommandError::Failed(text.trim().to_string()));
        }
        match Event::from_line(&line).ok_or_else(|| CommandError::Failed(format!("unexpected answer: {line}")))? {
            Event::Done { summary } => {
                screen.finish();
                println!("{}", summary_line(&summary, screen.start.elapsed()));
                return Ok(summary);
            }
            Event::Failed { text } => {
                screen.finish();
                return Err(CommandError::Failed(text));
            }
            event => screen.show(event),
        }
    }
    Err(lost())
}

/// Where progress goes: a redrawn bar on a terminal (stderr), plain lines otherwise.
struct Screen {
    start: Instant,
    terminal: bool,
    counts: Counts,
    /// When the last progress line or bar was written, and at how many messages.
    shown: (Instant, u64),
    bar_up: bool,
}

impl Screen {
    fn new() -> Screen {
        let now = Instant::now();
        Screen {
            start: now,
            terminal: std::io::stderr().is_terminal(),
            counts: Counts::default(),
            shown: (now, 0),
            bar_up: false,
        }
    }

    /// A line that stays: above the bar on a terminal.
    fn say(&mut self, text: &str) {
        self.clear_bar();
        println!("{text}");
    }

    fn clear_bar(&mut self) {
        if self.bar_up {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.bar_up = false;
        }
    }

    fn show(&mut self, event: Event) {
        match event {
            Event::Plan { folders, messages, bytes, skipped } => {
                self.counts.total_messages = messages;
                self.counts.total_bytes = bytes;
                self.say(&format!(
                    "import: {folders} folder(s), {messages} message(s) ({bytes} bytes) to copy, {skipped} already here"
                ));
            }
            Event::Folder { remote, local, messages } => {
                self.say(&format!("import: {remote} -> {local}: {messages} message(s) to copy"));
            }
            Event::Warning { text } => {
                self.clear_bar();
                eprintln!("import: warning: {text}");
            }
            Event::Progress { messages, bytes } => {
                self.counts.messages = messages;
                self.counts.bytes = bytes;
                self.progress();
            }
            Event::Done { .. } | Event::Failed { .. } => {}
        }
    }

    fn progress(&mut self) {
        let now = Instant::now();
        let (at, messages) = self.shown;
        let last = self.counts.messages == self.counts.total_messages;
        let elapsed = self.start.elapsed();
        if self.terminal {
            if now.duration_since(at) >= REDRAW_EVERY || last {
                let mut err = std::io::stderr();
                let _ = write!(err, "\r\x1b[2K{}", self.counts.bar(elapsed, BAR_WIDTH));
                let _ = err.flush();
                self.bar_up = true;
                self.shown = (now, self.counts.messages);
            }
        } else if now.duration_since(at) >= LINE_EVERY || self.counts.messages >= messages + LINE_EVERY_MESSAGES || last
        {
            println!("{}", self.counts.line(elapsed));
            self.shown = (now, self.counts.messages);
        }
    }

    /// Leave the bar's last state on its own line.
    fn finish(&mut self) {
        if self.bar_up {
            let _ = writeln!(std::io::stderr());
            self.bar_up = false;
        }
    }
}
