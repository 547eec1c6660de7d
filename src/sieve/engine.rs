//! One Sieve run for one mailbox: the admin's before-script, the account's active
//! script, the admin's after-script, as Pigeonhole runs them (in that order, sharing one
//! implicit keep; `stop` anywhere ends all of them).
//!
//! The order comes from a tiny wrapper script that `include`s the three by reserved
//! `:global` names (RFC 6609 semantics give exactly that sharing), so `sieve-rs` runs them in one context. Every
//! event it raises is answered here: includes from the [`ScriptSource`], folder checks
//! from the [`FolderCheck`], duplicate and vacation memory through
//! [`ScriptSource::remember`]; actions are gathered into an [`Outcome`]. Any error keeps
//! the message in the default folder and drops the other actions: a broken script must
//! never lose mail nor half-run (a redirect without the keep it meant to pair with).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use ::sieve::compiler::grammar::Capability;
use ::sieve::{Compiler, Event, Input, Mailbox, Recipient, Runtime, Script, Sieve, SpamStatus, VirusStatus};

use super::actions::flags_from_sieve;
use super::cache::{ScriptCache, digest, hex};
use super::sized::{self, Padded};
use super::vacation::may_answer;
use super::vacation_settings::VACATION_SCRIPT;
use super::{EVAL_PREFIX, FolderCheck, MAX_REDIRECTS, Outcome, Reply, ScanVerdict, ScriptSource, SieveEnvelope};
use crate::metrics::metrics;
use crate::store::MailboxOwner;

/// Largest script compiled (a user's or an admin's): the most
/// `MAILROOM_SIEVE_MAX_SCRIPT_SIZE` can allow, so every script ManageSieve accepts runs.
const MAX_SCRIPT: usize = crate::config::SIEVE_SCRIPT_CEILING as usize;
/// Instructions one run may execute over all its scripts (`sieve-rs` counts them).
const CPU_LIMIT: usize = 50_000;
/// Compiled scripts kept.
const CACHE_ENTRIES: usize = 4096;
/// Vacation periods are clamped to this range: a reply per message (period 0) is what
/// RFC 3834 warns against, and a year is longer than anyone is away.
const MIN_VACATION: Duration = Duration::from_secs(60);
const MAX_PERIOD: Duration = Duration::from_secs(365 * 86400);
/// Names of the admin scripts in the `:global` include namespace.
const BEFORE: &str = "mailroom-before";
const AFTER: &str = "mailroom-after";
/// The account's active script, as the wrapper includes it (whatever its own name).
const ACTIVE: &str = "mailroom-active";

/// The operator's scripts, run for every account.
#[derive(Clone, Default)]
pub struct AdminScripts {
    pub before: Option<Arc<Sieve>>,
    pub after: Option<Arc<Sieve>>,
}

/// The one compiler configuration (delivery, admin scripts, ManageSieve's check).
pub(super) fn compiler() -> Compiler {
    Compiler::new().with_max_script_size(MAX_SCRIPT)
}

/// Compile an admin script, or the compiler's message (with line and column) for
/// `check-config` and the start-up error.
pub fn compile_admin_script(text: &[u8]) -> Result<Arc<Sieve>, String> {
    compiler().compile(text).map(Arc::new).map_err(|e| e.to_string())
}

/// The account's own scripts for one run.
#[derive(Clone, Debug, Default)]
pub struct AccountScripts {
    /// The active script (name, bytes).
    pub active: Option<(String, Bytes)>,
    /// The vacation script of the account pages, when enabled
    /// ([`super::vacation_settings::delivery_script`]).
    pub vacation: Option<Bytes>,
}

impl From<Option<(String, Bytes)>> for AccountScripts {
    fn from(active: Option<(String, Bytes)>) -> AccountScripts {
        AccountScripts { active, vacation: None }
    }
}

/// The compiled scripts of [`AccountScripts`], answering their includes.
struct Compiled {
    user: Option<(String, Arc<Sieve>)>,
    vacation: Option<Arc<Sieve>>,
}

/// What a run is about.
pub struct RunInput<'a> {
    pub account: &'a MailboxOwner,
    /// The message as the script sees it: at most [`EVAL_PREFIX`] bytes, our trace
    /// header lines first.
    pub message: &'a [u8],
    /// The whole message's size, trace lines included: what `size` tests.
    pub size: u64,
    pub envelope: &'a SieveEnvelope,
    pub verdict: ScanVerdict,
    /// Where the implicit keep goes ("INBOX", or "Junk" for spam).
    pub default_folder: &'a str,
}

/// The interpreter: runtime settings, admin scripts, compiled-script cache.
pub struct Engine {
    hostname: String,
    runtime: Runtime,
    admin: AdminScripts,
    cache: ScriptCache,
}

impl Engine {
    pub fn new(hostname: &str, admin: AdminScripts) -> Engine {
        let runtime = Runtime::new()
            .with_cpu_limit(CPU_LIMIT)
            .with_max_nested_includes(4)
            .with_max_redirects(MAX_REDIRECTS)
            .with_max_out_messages(MAX_REDIRECTS + 2)
            .with_default_vacation_expiry(7 * 86400)
            .with_local_hostname(hostname.to_string())
            // Actions that rewrite the message would need it whole (we evaluate a
            // prefix) and notifications have no transport here.
            .without_capabilities([
                Capability::EditHeader,
                Capability::Replace,
                Capability::Enclose,
                Capability::Convert,
                Capability::Enotify,
                Capability::ImapSieve,
            ]);
        Engine { hostname: hostname.to_string(), runtime, admin, cache: ScriptCache::new(CACHE_ENTRIES) }
    }

    /// Whether admin scripts exist (then every delivery runs Sieve).
    pub fn has_admin_scripts(&self) -> bool {
        self.admin.before.is_some() || self.admin.after.is_some()
    }

    /// This server's name (vacation Message-IDs, the rejection DSN).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Run the scripts for one mailbox: `scripts` are its active script and its enabled
    /// vacation script as the [`ScriptSource`] gave them (the caller asks first, so a
    /// mailbox without scripts and a server without admin scripts read nothing of the
    /// message). Never fails: an error is an [`Outcome::keep`] with `error` set (logged
    /// and counted here).
    ///
    /// The vacation script runs in the same context, included by the wrapper
    /// `:personal :once` right before the active script: the two share the implicit keep
    /// (without a user script the message is kept), a user script that includes it
    /// `:once` too does not run it twice, and a `stop` or `discard` of the user cannot
    /// silence the reply. Not for mail judged spam (a reply would be backscatter).
    pub async fn run(
        &self,
        source: &dyn ScriptSource,
        folders: &dyn FolderCheck,
        scripts: impl Into<AccountScripts>,
        input: RunInput<'_>,
    ) -> Outcome {
        let AccountScripts { active, vacation } = scripts.into();
        let vacation = vacation.filter(|_| !input.verdict.junk);
        let account = format!("{}@{}", input.account.local, input.account.domain);
        if active.is_none() && vacation.is_none() && !self.has_admin_scripts() {
            return Outcome::keep(input.default_folder);
        }
        metrics().sieve_scripts_run_total.inc();
        let script_name = active.as_ref().map(|(n, _)| n.clone()).unwrap_or_default();
        let user = match &active {
            None => None,
            Some((name, bytes)) => match self.compile(&account, bytes) {
                Ok(s) => Some((name.clone(), s)),
                Err(e) => return self.failed(&account, name, e, &input),
            },
        };
        let vacation = vacation.and_then(|bytes| match self.compile(&account, &bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(account, error = %e, "the vacation script does not compile; it is skipped");
                metrics().sieve_errors_total.inc();
                None
            }
        });
        let first = match (&user, &vacation, self.has_admin_scripts()) {
            (Some((name, script)), None, false) => Input::script(name.clone(), script.clone()),
            _ => match self.wrapper(user.is_some(), vacation.is_some()) {
                Ok(w) => Input::script(Script::Global("mailroom-main".into()), w),
                Err(e) => return self.failed(&account, &script_name, e, &input),
            },
        };
        let compiled = Compiled { user, vacation };
        match self.event_loop(source, folders, &input, &account, &compiled, first).await {
            Ok(outcome) => outcome,
            Err(e) => self.failed(&account, &script_name, e, &input),
        }
    }

    fn compile(&self, account: &str, bytes: &[u8]) -> Result<Arc<Sieve>, String> {
        self.cache.get_or_compile(account, bytes, |b| compiler().compile(b).map(Arc::new).map_err(|e| e.to_string()))
    }

    /// The script that includes before, vacation, user and after in order.
    fn wrapper(&self, user: bool, vacation: bool) -> Result<Arc<Sieve>, String> {
        let mut text = String::from("require \"include\";\r\n");
        if self.admin.before.is_some() {
            text.push_str(&format!("include :global \"{BEFORE}\";\r\n"));
        }
        if vacation {
            text.push_str(&format!("include :personal :once \"{VACATION_SCRIPT}\";\r\n"));
        }
        if user {
            text.push_str(&format!("include :global \"{ACTIVE}\";\r\n"));
        }
        if self.admin.after.is_some() {
            text.push_str(&format!("include :global \"{AFTER}\";\r\n"));
        }
        self.compile("", text.as_bytes())
    }

    pub(crate) fn failed(&self, account: &str, script: &str, error: String, input: &RunInput<'_>) -> Outcome {
        tracing::warn!(account, script, error = %error, "sieve script failed; the message is kept");
        metrics().sieve_errors_total.inc();
        Outcome { error: Some(error), ran: true, ..Outcome::keep(input.default_folder) }
    }

    async fn event_loop(
        &self,
        source: &dyn ScriptSource,
        folders: &dyn FolderCheck,
        input: &RunInput<'_>,
        account: &str,
        compiled: &Compiled,
        first: Input,
    ) -> Result<Outcome, String> {
        let message = &input.message[..input.message.len().min(EVAL_PREFIX)];
        let padded = Padded::new(message, usize::try_from(input.size).unwrap_or(usize::MAX));
        let raw = padded.as_ref().map_or(message, Padded::bytes);
        let mut ctx = self.runtime.filter_parsed(sized::parse(raw, message.len()));
        if !input.envelope.from.is_empty() {
            ctx.set_envelope(::sieve::Envelope::From, input.envelope.from.as_str());
        }
        ctx.set_envelope(::sieve::Envelope::To, input.envelope.to.as_str());
        ctx.set_user_address(account.to_string());
        ctx.set_spam_status(match (input.verdict.checked, input.verdict.junk) {
            (_, true) => SpamStatus::Spam,
            (true, false) => SpamStatus::Ham,
            (false, false) => SpamStatus::Unknown,
        });
        ctx.set_virus_status(if input.verdict.virus_scanned { VirusStatus::Clean } else { VirusStatus::Unknown });
        let own = vec![account.to_string(), input.envelope.to.to_ascii_lowercase()];

        let mut outcome = Outcome { ran: true, ..Outcome::default() };
        let mut created: HashMap<usize, Vec<u8>> = HashMap::new();
        let mut next = first;
        while let Some(result) = ctx.run(next) {
            next = Input::True;
            let event = result.map_err(|e| e.to_string())?;
            match event {
                Event::IncludeScript { name, optional } => {
                    let held = if name == Script::Global(ACTIVE.into()) {
                        compiled.user.as_ref().map(|(_, s)| s.clone())
                    } else if name == Script::Personal(VACATION_SCRIPT.into()) {
                        compiled.vacation.clone()
                    } else {
                        None
                    };
                    let found = match held {
                        Some(s) => Some(s),
                        None => self.include(source, input.account, account, &name).await?,
                    };
                    next = match found {
                        Some(script) => Input::script(name, script),
                        None if optional => Input::False,
                        None => return Err(format!("included script {name} does not exist")),
                    };
                }
                Event::MailboxExists { mailboxes, special_use } => {
                    let mut all = special_use.is_empty();
                    for mb in &mailboxes {
                        all &= match mb {
                            Mailbox::Name(n) => folders.exists(input.account, n).await.unwrap_or(false),
                            Mailbox::Id(_) => false,
                        };
                    }
                    next = all.into();
                }
                Event::ListContains { .. } | Event::Function { .. } => next = Input::False,
                Event::DuplicateId { id, expiry, .. } => {
                    let vacation = id.starts_with("_v");
                    next = if vacation && !may_answer(message, &input.envelope.from, &own) {
                        // Answer "already replied": nothing is recorded for mail that must
                        // never be answered.
                        Input::True
                    } else {
                        let mut period = Duration::from_secs(expiry).min(MAX_PERIOD);
                        if vacation {
                            period = period.max(MIN_VACATION);
                        }
                        let key = hex(&digest(format!("{account}\0{id}").as_bytes()));
                        match source.remember(input.account, &key, SystemTime::now() + period).await {
                            Ok(seen) => seen.into(),
                            // Unsure: no reply rather than one too many.
                            Err(e) => {
                                tracing::warn!(account, error = %e, "sieve: cannot consult the reply memory");
                                vacation.into()
                            }
                        }
                    };
                }
                Event::SetEnvelope { .. } | Event::Notify { .. } | Event::Discard => {}
                Event::Keep { flags, .. } => {
                    add_filing(&mut outcome, input.default_folder, flags_from_sieve(&flags), true);
                }
                Event::FileInto { folder, flags, create, message_id, .. } => {
                    // A copy of a message the script made (vacation `:fcc`): not stored.
                    if message_id != 0 {
                        continue;
                    }
                    let flags = flags_from_sieve(&flags);
                    let valid = crate::store::FolderPath::from_api(&folder).is_ok();
                    let exists = valid && (create || folders.exists(input.account, &folder).await.unwrap_or(false));
                    if exists {
                        add_filing(&mut outcome, &folder, flags, create);
                    } else {
                        tracing::info!(account, folder, "sieve: fileinto a folder that does not exist; kept instead");
                        add_filing(&mut outcome, input.default_folder, flags, true);
                    }
                }
                Event::Reject { reason, .. } => outcome.reject = Some(reason),
                Event::CreatedMessage { message_id, message } => {
                    created.insert(message_id, message);
                }
                Event::SendMessage { recipient, message_id, .. } => {
                    let Recipient::Address(to) = recipient else { continue };
                    if let Some(reply) = created.remove(&message_id) {
                        outcome.replies.push(Reply { to, message: reply });
                    } else if message_id == 0 {
                        outcome.redirects.push(to);
                    }
                }
            }
        }
        if outcome.reject.is_some() {
            outcome.filings.clear();
        }
        Ok(outcome)
    }

    /// The script an `include` names: the account's own, or an admin script.
    async fn include(
        &self,
        source: &dyn ScriptSource,
        owner: &MailboxOwner,
        account: &str,
        name: &Script,
    ) -> Result<Option<Arc<Sieve>>, String> {
        match name {
            Script::Personal(n) => match source.get(owner, n).await {
                Ok(Some(bytes)) => self.compile(account, &bytes).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(format!("cannot read script {n}: {e}")),
            },
            Script::Global(n) if n == BEFORE => Ok(self.admin.before.clone()),
            Script::Global(n) if n == AFTER => Ok(self.admin.after.clone()),
            Script::Global(_) => Ok(None),
        }
    }
}

/// Add a copy, merging flags when the folder already gets one (RFC 5228 section 2.10.3:
/// one copy per folder).
fn add_filing(outcome: &mut Outcome, folder: &str, flags: Vec<crate::store::Flag>, create: bool) {
    if let Some(f) = outcome.filings.iter_mut().find(|f| f.folder.eq_ignore_ascii_case(folder)) {
        for flag in flags {
            if !f.flags.contains(&flag) {
                f.flags.push(flag);
            }
        }
        f.create |= create;
        return;
    }
    outcome.filings.push(super::Filing { folder: folder.to_string(), flags, create });
}
