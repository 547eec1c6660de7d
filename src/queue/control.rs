//! The operator's handle on the running queue: a Unix socket `<data>/state/control.sock`
//! (mode 0600: only the server's own user may steer it) speaking one command line in,
//! a text reply out, ending with a line holding only `.`.
//!
//! Commands: `list`, `show ID`, `retry [ID]`, `hold ID`, `release ID`, `delete ID`,
//! `reports send` (DMARC aggregate reports now, carried here for `dmarc/`), `status`
//! (the status snapshot as JSON, for `status/`) and `import {request}` followed by a
//! password line (`mailroom import`, for `import/`: its reply is streamed, one progress
//! line at a time): one socket for the operator.
//! A reply whose first line starts with `error:` is a failure; [`control_request`] (what
//! `mailroom queue …` calls) turns it into an `Err`. The command line is bounded and ids
//! are validated before they reach the file system.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::envelope::{QueueId, format_time};
use super::{BoxFuture, Queue, QueueError};

/// The socket, relative to the data dir.
pub const CONTROL_SOCKET: &str = "state/control.sock";
/// Longest command line read (an import request names folders).
const MAX_COMMAND: u64 = 16 * 1024;
/// A client that says nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(10);

/// `reports send`: run the DMARC report sender now, its reply (or `Err`, the error text).
/// `None` when reports are off.
pub type ReportsCommand = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// `status`: the server's status snapshot as JSON (carried here for `status/`).
pub type StatusCommand = Arc<dyn Fn() -> BoxFuture<'static, String> + Send + Sync>;

/// `import REQUEST` with the password read from the next line: starts the job and hands
/// back its reply lines as they come (carried here for `import/`). The job stops when
/// the receiver is dropped (the client went away).
pub type ImportCommand = Arc<dyn Fn(&str, String) -> tokio::sync::mpsc::Receiver<String> + Send + Sync>;

/// The commands other modules answer through this socket.
#[derive(Clone, Default)]
pub struct ControlCommands {
    pub reports: Option<ReportsCommand>,
    pub status: Option<StatusCommand>,
    pub import: Option<ImportCommand>,
}

/// Bind the socket (replacing a stale one) and serve it until `shutdown` turns true.
pub fn spawn_control_server(
    queue: Queue,
    commands: ControlCommands,
    data_dir: &Path,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, QueueError> {
    let path = data_dir.join(CONTROL_SOCKET);
    let err = |source| QueueError::Control { path: path.display().to_string(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // A socket left by a crashed process would make bind fail; the data dir lock
    // guarantees no live server owns it.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    let cleanup = path.clone();
    Ok(tokio::spawn(async move {
        let mut watching = true;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let q = queue.clone();
                        let c = commands.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve_one(q, c, stream).await {
                                tracing::debug!(error = %e, "queue control: client error");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "queue control: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                changed = shutdown.changed(), if watching => {
                    watching = changed.is_ok();
                    if *shutdown.borrow() { break; }
                }
            }
        }
        let _ = std::fs::remove_file(cleanup);
    }))
}

/// One bounded line, `None` when the client said nothing for [`IDLE`].
async fn read_command_line(reader: &mut (impl AsyncBufReadExt + Unpin)) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    match tokio::time::timeout(IDLE, reader.read_line(&mut line)).await {
        Ok(result) => result.map(|_| Some(line)),
        Err(_) => Ok(None),
    }
}

async fn serve_one(queue: Queue, commands: ControlCommands, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_COMMAND);
    let Some(line) = read_command_line(&mut reader).await? else { return Ok(()) };
    let mut words = line.split_ascii_whitespace();
    let (reports, status) = (&commands.reports, &commands.status);
    let reply = match (words.next().map(str::to_ascii_lowercase).as_deref(), words.next(), words.next()) {
        (Some("import"), Some(_), _) => match &commands.import {
            Some(start) => {
                reader.set_limit(MAX_COMMAND);
                let Some(password) = read_command_line(&mut reader).await? else { return Ok(()) };
                let request = line.trim_start()["import".len()..].trim();
                let mut lines = start(request, password.trim_end_matches(['\r', '\n']).to_string());
                while let Some(reply) = lines.recv().await {
                    write.write_all(format!("{reply}\n").as_bytes()).await?;
                }
                write.write_all(b".\n").await?;
                return write.shutdown().await;
            }
            None => "error: no import here".to_string(),
        },
        (Some("reports"), Some(w), None) if w.eq_ignore_ascii_case("send") => match &reports {
            Some(run) => run().await.unwrap_or_else(|e| format!("error: {e}")),
            None => "error: reports are off (MAILROOM_DMARC_REPORTS=off and MAILROOM_TLS_REPORTS=off)".to_string(),
        },
        (Some("reports"), ..) => "error: usage: reports send".to_string(),
        (Some("status"), None, _) => match &status {
            Some(snapshot) => snapshot().await,
            None => "error: no status here".to_string(),
        },
        (Some("status"), ..) => "error: usage: status".to_string(),
        _ => execute(&queue, line.trim()).await,
    };
    let mut out = reply;
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(".\n");
    write.write_all(out.as_bytes()).await?;
    write.shutdown().await
}

/// Run one command and render its reply (without the final `.`). Exported as
/// `queue::execute_control_command` so that `mailroom queue …` can steer a shared
/// (PostgreSQL) queue directly, without a socket, from any replica's host.
pub async fn execute(queue: &Queue, line: &str) -> String {
    let mut words = line.split_ascii_whitespace();
    let command = words.next().unwrap_or("").to_ascii_lowercase();
    let arg = words.next();
    if words.next().is_some() {
        return "error: too many arguments".to_string();
    }
    let id = match arg.map(|a| QueueId::parse(a).ok_or(a)) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(bad)) => return format!("error: {bad:?} is not a queue id"),
    };
    let needs_id = |id: Option<QueueId>| id.ok_or_else(|| format!("error: usage: {command} ID"));
    let result: Result<String, String> = match command.as_str() {
        "list" => render_list(queue).await.map_err(err_text),
        "show" => match needs_id(id) {
            Err(e) => Err(e),
            Ok(id) => match queue.try_show(&id).await {
                Ok(Some(detail)) => Ok(render_show(&detail)),
                Ok(None) => Err(format!("error: no queue item {id}")),
                Err(e) => Err(err_text(e)),
            },
        },
        "retry" => queue.retry(id.as_ref()).await.map(|n| format!("{n} item(s) scheduled now")).map_err(err_text),
        "hold" => match needs_id(id) {
            Err(e) => Err(e),
            Ok(id) => queue.hold(&id).await.map(|_| format!("{id} held")).map_err(err_text),
        },
        "release" => match needs_id(id) {
            Err(e) => Err(e),
            Ok(id) => queue.release(&id).await.map(|_| format!("{id} released")).map_err(err_text),
        },
        "delete" => match needs_id(id) {
            Err(e) => Err(e),
            Ok(id) => queue.delete(&id).await.map(|_| format!("{id} deleted")).map_err(err_text),
        },
        "" => Err("error: empty command; try list, show ID, retry [ID], hold ID, release ID, delete ID".to_string()),
        other => Err(format!(
            "error: unknown command {other:?}; try list, show ID, retry [ID], hold ID, release ID, delete ID"
        )),
    };
    result.unwrap_or_else(|e| e)
}

fn err_text(e: QueueError) -> String {
    format!("error: {e}")
}

/// One line per item, and under it, like Postfix's mailq, one indented line per pending
/// recipient with its last reply. Items are rendered as the backend hands them over, so
/// only one item's recipients are in memory besides the text.
async fn render_list(queue: &Queue) -> Result<String, QueueError> {
    let mut out = format!(
        "{:<20} {:<8} {:>9} {:>4} {:>8} {:<20} {:<20} {}\n",
        "ID", "STATE", "SIZE", "TRY", "PENDING", "CREATED", "NEXT", "SENDER"
    );
    let mut count = 0usize;
    queue
        .visit_items(&mut |i, envelope| {
            count += 1;
            let state = if i.in_flight { "sending" } else { i.state.name() };
            out.push_str(&format!(
                "{:<20} {:<8} {:>9} {:>4} {:>8} {:<20} {:<20} {}\n",
                i.id,
                state,
                i.size,
                i.attempts,
                format!("{}/{}", i.pending, i.recipients),
                format_time(i.created),
                format_time(i.next_attempt),
                i.sender.as_ref().map(|s| s.to_string()).unwrap_or_else(|| "<>".to_string()),
            ));
            for r in envelope.pending() {
                out.push_str(&format!("    {}", r.address));
                if let Some(reply) = &r.last_reply {
                    out.push_str(&format!(" ({})", printable(reply)));
                }
                out.push('\n');
            }
        })
        .await?;
    out.push_str(&format!("{count} item(s)\n"));
    Ok(out)
}

/// A remote server's reply text as one printable line: a stray line break in it must
/// not end the control reply early (a line holding only `.`) or fake a listing line.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn render_show(detail: &super::QueueItemDetail) -> String {
    let env = &detail.envelope;
    let mut out = String::new();
    out.push_str(&format!("id: {}\n", env.id));
    out.push_str(&format!("message-id: {}\n", env.message_id));
    out.push_str(&format!(
        "sender: {}\n",
        env.sender.as_ref().map(|s| s.to_string()).unwrap_or_else(|| "<>".to_string())
    ));
    out.push_str(&format!("state: {}{}\n", env.state.name(), if detail.in_flight { " (sending now)" } else { "" }));
    out.push_str(&format!("size: {}\n", detail.size));
    out.push_str(&format!("attempts: {}\n", env.attempts));
    out.push_str(&format!("created: {}\n", format_time(env.created)));
    out.push_str(&format!("next-attempt: {}\n", format_time(env.next_attempt)));
    for r in &env.recipients {
        let status = match r.status {
            super::RecipientStatus::Pending => "pending",
            super::RecipientStatus::Delivered => "delivered",
            super::RecipientStatus::Failed => "failed",
        };
        out.push_str(&format!("recipient: {} {status}", r.address));
        if let Some(reply) = &r.last_reply {
            out.push_str(&format!(" ({})", printable(reply)));
        }
        out.push('\n');
    }
    out
}

/// Connect to the running server's socket and send `request` (its lines as they are).
pub async fn control_connect(data_dir: &Path, request: &str) -> Result<UnixStream, QueueError> {
    let path: PathBuf = data_dir.join(CONTROL_SOCKET);
    let err = |source| QueueError::Control { path: path.display().to_string(), source };
    let mut stream = UnixStream::connect(&path).await.map_err(err)?;
    stream.write_all(request.as_bytes()).await.map_err(err)?;
    Ok(stream)
}

/// Send one command to the running server and return its reply (without the final
/// `.` line). A reply starting with `error:` becomes `Err(QueueError::Refused)`.
pub async fn control_request(data_dir: &Path, command: &str) -> Result<String, QueueError> {
    let path: PathBuf = data_dir.join(CONTROL_SOCKET);
    let err = |source| QueueError::Control { path: path.display().to_string(), source };
    let stream = control_connect(data_dir, &format!("{}\n", command.trim())).await?;
    let mut reply = String::new();
    let mut limited = stream.take(16 * 1024 * 1024);
    match tokio::time::timeout(Duration::from_secs(60), limited.read_to_string(&mut reply)).await {
        Ok(result) => {
            result.map_err(err)?;
        }
        Err(_) => return Err(err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply within 60s"))),
    }
    let body = reply.strip_suffix(".\n").unwrap_or(&reply).to_string();
    if body.starts_with("error:") {
        return Err(QueueError::Refused(body.trim_end().to_string()));
    }
    Ok(body)
}
