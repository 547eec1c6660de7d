//! The `mailroom` command: CLI dispatch only. Each command's work lives in the
//! library (`app`, `config`, `accounts`, …).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mailroom::config::{Config, EnvSource, ListenAddr, Protocol};

/// Exit status for configuration and start-up problems (interface.md).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "mailroom",
    version,
    about = "A complete mail server: SMTP, submission, IMAP, POP3, TLS, DKIM — configured by MAILROOM_* environment variables",
    long_about = "A complete mail server: SMTP, submission, IMAP, POP3, TLS, DKIM — configured only by MAILROOM_* environment variables (see env.example). Every variable may also be given as MAILROOM_X_FILE=/path."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Bootstrap (certificates, keys) and serve every protocol until SIGTERM/SIGINT, then drain and exit 0 (the default command)
    Serve,
    /// Validate the environment and print the effective configuration, secrets redacted; exit 2 listing every problem
    CheckConfig,
    /// Read a password (prompt on a TTY, else one line of stdin) and print an argon2id hash for MAILROOM_ACCOUNTS
    HashPassword,
    /// Give the account generated at first start (postmaster@, in <data dir>/accounts) a new random password, print it once and store only its hash
    ResetPassword {
        /// The generated account's address (a guard against resetting the wrong one); accounts in MAILROOM_ACCOUNTS get a new hash there instead
        address: Option<String>,
    },
    /// Print the DNS records to publish (BIND zone fragment), or check them in live DNS
    Dns {
        /// Print JSON (unsplit TXT values) instead of a zone fragment
        #[arg(long)]
        json: bool,
        /// Look every record up through MAILROOM_DNS_SERVERS and print ok / missing / wrong; exit 1 if a required one fails
        #[arg(long)]
        check: bool,
    },
    /// DKIM key management
    Dkim {
        #[command(subcommand)]
        action: DkimAction,
    },
    /// Inspect and steer the outbound queue of the running server (over its control socket in the data dir)
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// DMARC aggregate (RFC 7489 7.2) and SMTP TLS (RFC 8460) reports of the running server, over its control socket in the data dir
    Reports {
        #[command(subcommand)]
        action: ReportsAction,
    },
    /// The running server's state as JSON: recent deliveries and refusals, certificates, queue, DNS checklist, report counts, accounts (over its control socket in the data dir)
    Status,
    /// The mail store (MAILROOM_STORE)
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Copy a whole IMAP account from another server into a local account through the running server (folders, flags, keywords, dates); re-run it to copy only what is missing
    Import {
        /// `imaps://user@host[:port]` or `imap://user@host[:port]` (STARTTLS); a user holding `@` is written `%40`
        source: String,
        /// The local account (`local@domain`)
        #[arg(long)]
        to: String,
        /// A file holding the remote password alone (otherwise it is asked on the terminal)
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
        /// Only these remote folders, each with its children (comma-separated or repeated)
        #[arg(long, num_args = 1..)]
        folders: Vec<String>,
        /// PEM root certificates trusted for the source besides the web PKI and MAILROOM_FETCH_CA_FILE
        #[arg(long)]
        ca_file: Option<std::path::PathBuf>,
    },
    /// Copy the data dir to DEST while the server runs; the copy is a data dir as it is (docs/operations.md, "Backup and restore")
    Backup {
        /// A new or empty directory outside the data dir; written under a temporary name beside it, renamed to DEST when complete
        dest: std::path::PathBuf,
    },
    /// pflogsumm's daily report from the mail log: reads the server's log lines (JSON or text format, other lines skipped) from FILEs, or stdin when none, e.g. `docker logs mailroom --since 24h 2>&1 | mailroom log-summary`
    LogSummary {
        /// Log files to read, in order (stdin when none)
        files: Vec<std::path::PathBuf>,
        /// Only this day (UTC): today, yesterday or YYYY-MM-DD; every line when absent
        #[arg(long)]
        day: Option<String>,
        /// Rows in each top-N table
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Print one JSON object instead of the text report
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 if the local /readyz answers 200 (the image's HEALTHCHECK; the image has no curl)
    Healthcheck,
    /// Print version and build information
    Version,
}

#[derive(Subcommand)]
enum DkimAction {
    /// Generate the next Ed25519 + RSA key pair for every domain and print their records; signing switches once `mailroom dns --check` sees them published
    Rotate,
}

#[derive(Subcommand)]
enum StoreAction {
    /// Connect to the configured store and print its schema version and sizes; exit 0 when the server can start on it, 1 when it cannot (unreachable, or a newer schema)
    Check,
    /// Copy a Maildir data dir into the PostgreSQL store of MAILROOM_STORE, keeping UIDVALIDITY, UIDs, flags, keywords, dates and POP3 UIDLs (clients do not download again); re-run it to resume or to copy what arrived since
    Import {
        /// `maildir:/path/to/data` (a data dir no server is running on, or a `mailroom backup` copy)
        #[arg(long)]
        from: String,
    },
}

#[derive(Subcommand)]
enum ReportsAction {
    /// Store the counters and send every report due now, today's so far included (the server also does this once a day after 00:05 UTC)
    Send,
}

#[derive(Subcommand)]
enum QueueAction {
    /// List every queued message: id, state, attempts, size, sender, pending recipients
    List,
    /// Show one message's envelope and per-recipient status
    Show { id: String },
    /// Make one message (or every message not on hold) due now
    Retry { id: Option<String> },
    /// Keep a message back until `release`
    Hold { id: String },
    /// Release a held message and try it now
    Release { id: String },
    /// Remove a message without bouncing it
    Delete { id: String },
}

impl QueueAction {
    /// The control socket's command line (queue/control.rs).
    fn command_line(&self) -> String {
        match self {
            QueueAction::List => "list".into(),
            QueueAction::Show { id } => format!("show {id}"),
            QueueAction::Retry { id: None } => "retry".into(),
            QueueAction::Retry { id: Some(id) } => format!("retry {id}"),
            QueueAction::Hold { id } => format!("hold {id}"),
            QueueAction::Release { id } => format!("release {id}"),
            QueueAction::Delete { id } => format!("delete {id}"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::CheckConfig => check_config(),
        Command::HashPassword => hash_password(),
        Command::ResetPassword { address } => reset_password(address.as_deref()),
        Command::Healthcheck => healthcheck(),
        Command::LogSummary { files, day, top, json } => log_summary(&files, day.as_deref(), top, json),
        Command::Dns { json, check } => dns(json, check),
        Command::Dkim { action: DkimAction::Rotate } => dkim_rotate(),
        Command::Queue { action } => queue(&action),
        Command::Reports { action: ReportsAction::Send } => control_socket("reports send"),
        Command::Status => control_socket("status"),
        Command::Backup { dest } => backup(&dest),
        Command::Import { source, to, password_file, folders, ca_file } => {
            import(&mailroom::import::client::Options { source, to, password_file, folders, ca_file })
        }
        Command::Store { action: StoreAction::Check } => store_check(),
        Command::Store { action: StoreAction::Import { from } } => store_import(&from),
        Command::Version => {
            println!("{}", version_line());
            ExitCode::SUCCESS
        }
    }
}

fn version_line() -> String {
    format!(
        "mailroom {} ({}-{}, {})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
        if cfg!(target_feature = "crt-static") { "static" } else { "dynamic" }
    )
}

/// Load the configuration or print every problem and return the exit code.
fn load_config() -> Result<(Config, Vec<String>), ExitCode> {
    let env = EnvSource::from_process();
    match Config::load(&env) {
        Ok(ok) => Ok(ok),
        Err(errors) => {
            let n = errors.0.len();
            eprintln!("mailroom: invalid configuration ({n} {}):", if n == 1 { "problem" } else { "problems" });
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailroom: cannot start the async runtime: {e}");
            std::process::exit(i32::from(EXIT_CONFIG));
        }
    }
}

fn serve() -> ExitCode {
    let (config, warnings) = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    return_big_allocations_to_the_os();
    mailroom::app::init_logging(&config);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    match runtime().block_on(mailroom::app::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Logging is up (stderr, text or JSON): one line, in the configured format.
            tracing::error!(error = %e, "cannot start");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Every password check (argon2id, 19 MiB of working memory) allocates one big block on
/// a blocking-pool thread. glibc raises its mmap threshold after the first such block is
/// freed, so later ones come from per-thread arenas and stay there: 1,000 logins left the
/// server at ~850 MiB PSS. A fixed threshold (which turns the dynamic one off) keeps
/// blocks of 256 KiB and more in their own mappings, returned to the OS when freed.
fn return_big_allocations_to_the_os() {
    // SAFETY: mallopt only changes allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn check_config() -> ExitCode {
    let (config, warnings) = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    for (k, v) in config.effective() {
        println!("{k}={v}");
    }
    ExitCode::SUCCESS
}

fn hash_password() -> ExitCode {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ");
        let second = rpassword::prompt_password("Repeat: ");
        match (first, second) {
            (Ok(a), Ok(b)) if a == b => a,
            (Ok(_), Ok(_)) => {
                eprintln!("mailroom: the passwords do not match");
                return ExitCode::from(1);
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("mailroom: cannot read the password: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
            eprintln!("mailroom: cannot read the password from stdin: {e}");
            return ExitCode::from(1);
        }
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        eprintln!("mailroom: empty password");
        return ExitCode::from(1);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", mailroom::accounts::hash_password(&password));
    ExitCode::SUCCESS
}

/// `mailroom log-summary`: exit 2 for a bad `--day`, 1 when a file cannot be read.
fn log_summary(files: &[std::path::PathBuf], day: Option<&str>, top: usize, json: bool) -> ExitCode {
    use mailroom::logsummary::{Day, Options, Tally, tally, write_report};
    let today = chrono::Utc::now().date_naive();
    let day = match day.map(|d| Day::parse(d, today)).transpose() {
        Ok(d) => d.unwrap_or(Day::All),
        Err(e) => {
            eprintln!("mailroom log-summary: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut counts = Tally::default();
    let read = if files.is_empty() {
        tally(&mut std::io::stdin().lock(), &day, &mut counts).map_err(|e| format!("stdin: {e}"))
    } else {
        files.iter().try_for_each(|path| {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            tally(&mut std::io::BufReader::new(file), &day, &mut counts).map_err(|e| format!("{}: {e}", path.display()))
        })
    };
    if let Err(e) = read {
        eprintln!("mailroom log-summary: {e}");
        return ExitCode::FAILURE;
    }
    let options = Options { day, top, json };
    match write_report(&counts, &options, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailroom log-summary: {e}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck() -> ExitCode {
    let (config, _) = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(addr) = config.listen_addrs(Protocol::Metrics).first().map(|a| match a {
        ListenAddr::AllInterfaces(port) => std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
        ListenAddr::Socket(s) => *s,
    }) else {
        eprintln!("mailroom: MAILROOM_METRICS_LISTEN is off; nothing to check");
        return ExitCode::from(1);
    };
    let rt = runtime();
    let result = rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), mailroom::http::probe_ready(addr)).await
    });
    match result {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => {
            eprintln!("mailroom: {addr}/readyz is not ready");
            ExitCode::from(1)
        }
        Ok(Err(e)) => {
            eprintln!("mailroom: cannot reach {addr}: {e}");
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!("mailroom: {addr} did not answer within 5 s");
            ExitCode::from(1)
        }
    }
}

fn dns(json: bool, check: bool) -> ExitCode {
    let config = match load_config() {
        Ok((c, _)) => c.dns(),
        Err(code) => return code,
    };
    if check {
        let outcome = runtime().block_on(mailroom::dns::run_check(&config));
        return match outcome {
            Ok((results, notes)) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&results).unwrap_or_default());
                } else {
                    print!("{}", mailroom::dns::format_results(&results));
                    for n in notes {
                        println!("note: {n}");
                    }
                }
                if mailroom::dns::required_ok(&results) { ExitCode::SUCCESS } else { ExitCode::from(1) }
            }
            Err(e) => {
                eprintln!("mailroom: DNS check failed: {e}");
                ExitCode::from(1)
            }
        };
    }
    let ring = match mailroom::dns::key_ring(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailroom: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let records = mailroom::dns::expected_records(&config, &ring);
    if json {
        println!("{}", serde_json::to_string_pretty(&records).unwrap_or_default());
    } else {
        print!("{}", mailroom::dns::zone_fragment(&records));
    }
    ExitCode::SUCCESS
}

/// The DNS resolver the commands that reach a database use (never getaddrinfo).
fn resolver(config: &Config) -> Result<hickory_resolver::TokioResolver, ExitCode> {
    mailroom::dns::resolver::build(&config.dns_servers).map_err(|e| {
        eprintln!("mailroom: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn store_check() -> ExitCode {
    let (config, _) = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let url = match config.store() {
        mailroom::config::StoreConfig::Maildir => {
            println!("store: maildir in {}", config.data_dir.join("mail").display());
            return ExitCode::SUCCESS;
        }
        mailroom::config::StoreConfig::Postgres(url) => url,
    };
    let resolver = match resolver(&config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    println!("store: {}", url.redacted());
    let runtime = runtime();
    let database = match runtime.block_on(mailroom::store::open::check(url, &resolver)) {
        Ok(report) => {
            println!("server: PostgreSQL {}", report.server);
            let verdict = match report.version.cmp(&report.known) {
                std::cmp::Ordering::Equal => "current",
                std::cmp::Ordering::Less => "older: `mailroom serve` migrates it at start",
                std::cmp::Ordering::Greater => "newer than this mailroom: upgrade mailroom",
            };
            println!("schema: version {} ({verdict}; this mailroom writes {})", report.version, report.known);
            for (table, n) in &report.counts {
                println!("{table}: {n}");
            }
            report.version <= report.known
        }
        Err(e) => {
            eprintln!("mailroom: store check failed: {e}");
            false
        }
    };
    // The bucket is checked even when the database is not: both problems show at once.
    let bucket = match config.blob_store() {
        None => true,
        Some(s3) => {
            let shown = s3.url.as_str().to_string();
            match runtime.block_on(mailroom::store::open::check_blob_store(s3, &resolver)) {
                Ok(()) => {
                    println!("blob store: {shown}: reachable and writable (probe object written, read back, deleted)");
                    true
                }
                Err(e) => {
                    eprintln!("mailroom: blob store check failed: {shown}: {e}");
                    false
                }
            }
        }
    };
    if database && bucket { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn store_import(from: &str) -> ExitCode {
    let (config, _) = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(source) = from.strip_prefix("maildir:").filter(|p| !p.is_empty()) else {
        eprintln!("mailroom: --from must be maildir:/path/to/data (a mailroom data dir)");
        return ExitCode::from(EXIT_CONFIG);
    };
    let mailroom::config::StoreConfig::Postgres(url) = config.store() else {
        eprintln!("mailroom: MAILROOM_STORE must be the postgres:// URL of the database to import into");
        return ExitCode::from(EXIT_CONFIG);
    };
    let resolver = match resolver(&config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let outcome = runtime().block_on(async {
        let store = mailroom::store::open::open_configured(&config, &config.data_dir, &resolver)
            .await
            .map_err(|e| e.to_string())?;
        let mailroom::store::Store::Pg(pg) = store else { return Err("not a PostgreSQL store".to_string()) };
        pg.import_maildir(std::path::Path::new(source), |r| {
            println!(
                "{}: {} copied ({} bytes), {} already there, {} vanished",
                r.folder, r.copied, r.bytes, r.present, r.vanished
            );
        })
        .await
        .map_err(|e| e.to_string())
    });
    match outcome {
        Ok(reports) => {
            let copied: u64 = reports.iter().map(|r| r.copied).sum();
            println!("imported {copied} messages in {} folders into {}", reports.len(), url.redacted());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailroom: import failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// `mailroom queue …` with the queue in PostgreSQL: straight to the database, so it works
/// from any replica (or any machine with the same variables).
fn queue_in_database(config: &Config, line: &str) -> ExitCode {
    let resolver = match resolver(config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let outcome = runtime().block_on(async {
        let store = mailroom::store::open::open_configured(config, &config.data_dir, &resolver)
            .await
            .map_err(|e| e.to_string())?;
        let mailroom::store::Store::Pg(pg) = store else { return Err("not a PostgreSQL store".to_string()) };
        let settings = mailroom::queue::QueueSettings::new(&config.hostname, &config.queue);
        mailroom::queue::pg_control_request(&pg, settings, line).await.map_err(|e| e.to_string())
    });
    match outcome {
        Ok(reply) => {
            print!("{reply}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailroom: {e}");
            ExitCode::from(1)
        }
    }
}

fn queue(action: &QueueAction) -> ExitCode {
    let (config, _) = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let line = action.command_line();
    if let mailroom::config::StoreConfig::Postgres(_) = config.store() {
        return queue_in_database(&config, &line);
    }
    send_control_line(&config, &line)
}

/// One command over the running server's control socket (even with PostgreSQL: it runs
/// on the replica whose data dir this is).
fn control_socket(line: &str) -> ExitCode {
    let (config, _) = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    send_control_line(&config, line)
}

fn send_control_line(config: &Config, line: &str) -> ExitCode {
    match runtime().block_on(mailroom::queue::control_request(&config.data_dir, line)) {
        Ok(reply) => {
            print!("{reply}");
            ExitCode::SUCCESS
        }
        Err(mailroom::queue::QueueError::Control { path, source }) => {
            eprintln!(
                "mailroom: cannot reach the control socket at {path}: {source} (is `mailroom serve` running with this MAILROOM_DATA_DIR?)"
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("mailroom: {e}");
            ExitCode::from(1)
        }
    }
}

fn import(options: &mailroom::import::client::Options) -> ExitCode {
    use mailroom::import::client::{CommandError, prepare, run};
    let outcome = prepare(options).and_then(|(request, password)| {
        let (config, _) = load_config().map_err(|_| CommandError::BadArguments("invalid configuration".into()))?;
        runtime().block_on(run(&config.data_dir, &request, &password))
    });
    match outcome {
        Ok(summary) if summary.errors == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e @ CommandError::BadArguments(_)) => {
            eprintln!("mailroom: import: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e @ CommandError::Failed(_)) => {
            eprintln!("mailroom: import from {} failed: {e}", options.source);
            ExitCode::from(1)
        }
    }
}

fn backup(dest: &std::path::Path) -> ExitCode {
    let (config, _) = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    match mailroom::backup::run(&config.data_dir, dest) {
        Ok(summary) => {
            eprintln!("mailroom: {summary}");
            ExitCode::SUCCESS
        }
        Err(e) if e.is_refusal() => {
            eprintln!("mailroom: backup refused: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("mailroom: backup failed, {} not written: {e}", dest.display());
            ExitCode::from(1)
        }
    }
}

fn reset_password(address: Option<&str>) -> ExitCode {
    let (config, _) = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(wanted) = address
        && config.accounts.entries.iter().any(|a| a.address.to_string().eq_ignore_ascii_case(wanted))
    {
        eprintln!(
            "mailroom: {wanted} is set in MAILROOM_ACCOUNTS: put a new hash there (mailroom hash-password) and restart"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    match mailroom::accounts::reset_generated_password(&config.data_dir, address) {
        Ok((account, password)) => {
            println!("{account}: new password {password}");
            println!("(only its hash is kept; a running server picks it up within seconds)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailroom: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn dkim_rotate() -> ExitCode {
    let (config, _) = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dkim_dir = config.data_dir.join("dkim");
    for domain in &config.domains {
        match mailroom::mailauth::keys::rotate(&dkim_dir, domain, config.dkim_selector.as_deref()) {
            Ok(keys) => {
                if let Some(pending) = &keys.pending {
                    println!(
                        "; {domain}: new DKIM keys {} — publish these, then run `mailroom dns --check`",
                        pending.base
                    );
                    for key in &pending.keys {
                        println!(
                            "{}.\t3600\tIN\tTXT\t{}",
                            key.dns_name(),
                            mailroom::dns::records::split_txt(&key.dns_value())
                        );
                    }
                }
            }
            Err(e) => {
                eprintln!("mailroom: {domain}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
