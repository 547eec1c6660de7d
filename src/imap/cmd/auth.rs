//! CAPABILITY, LOGIN, AUTHENTICATE PLAIN (with SASL-IR, RFC 4959), ENABLE (RFC 5161), ID
//! (RFC 2971) and NAMESPACE (RFC 2342). Secure by default: no credentials are accepted
//! before TLS (LOGINDISABLED, `[PRIVACYREQUIRED]`), failed logins are slowed down and end
//! the connection after `max_bad_logins`.

use super::Tagged;
use crate::imap::parser::decode_base64;
use crate::imap::session::{Authenticated, Next, Session, State, Step, Waiting};
use crate::net::{AuthMechanism, LoginOutcome, LoginVia, verify_login};
use crate::store::MailboxOwner;

impl Session {
    fn auth_allowed(&self) -> bool {
        self.tls_active || self.ctx.limits.allow_insecure_auth
    }

    /// The CAPABILITY list for the current state (RFC 9051 7.2.2).
    pub(crate) fn capabilities(&self) -> String {
        let mut caps = vec!["IMAP4rev1", "IMAP4rev2"];
        let authed = !matches!(self.state, State::NotAuthenticated);
        if !authed {
            if !self.tls_active && self.ctx.tls.is_some() {
                caps.push("STARTTLS");
            }
            if self.auth_allowed() {
                caps.push("AUTH=PLAIN");
            } else {
                caps.push("LOGINDISABLED");
            }
        }
        caps.extend([
            "SASL-IR",
            "LITERAL+",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "CHILDREN",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "SPECIAL-USE",
        ]);
        let mut s = caps.join(" ");
        if authed {
            s.push_str(
                " UIDPLUS MOVE CREATE-SPECIAL-USE ESEARCH SEARCHRES SORT SORT=DISPLAY \
                 THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC \
                 QUOTA QUOTA=RES-STORAGE BINARY UTF8=ACCEPT STATUS=SIZE",
            );
            s.push_str(&format!(" APPENDLIMIT={}", self.ctx.limits.max_literal));
        }
        s
    }

    pub(crate) fn cmd_capability(&mut self) -> Tagged {
        let caps = self.capabilities();
        self.out.extend_from_slice(format!("* CAPABILITY {caps}\r\n").as_bytes());
        Tagged::ok("CAPABILITY completed")
    }

    pub(crate) fn cmd_id(&mut self) -> Tagged {
        self.out.extend_from_slice(
            format!("* ID (\"name\" \"mailroom\" \"version\" \"{}\")\r\n", env!("CARGO_PKG_VERSION")).as_bytes(),
        );
        Tagged::ok("ID completed")
    }

    pub(crate) fn cmd_namespace(&mut self) -> Tagged {
        self.out.extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
        Tagged::ok("NAMESPACE completed")
    }

    pub(crate) fn cmd_enable(&mut self, caps: &[String]) -> Tagged {
        let mut turned_on = Vec::new();
        for c in caps {
            let flag = match c.as_str() {
                "CONDSTORE" => &mut self.enabled.condstore,
                "QRESYNC" => {
                    // RFC 7162 3.2.3: QRESYNC implies CONDSTORE.
                    self.enabled.condstore = true;
                    &mut self.enabled.qresync
                }
                "UTF8=ACCEPT" => &mut self.enabled.utf8_accept,
                "IMAP4REV2" => &mut self.enabled.imap4rev2,
                _ => continue,
            };
            if !*flag {
                *flag = true;
                turned_on.push(c.as_str());
            }
        }
        let mut line = "* ENABLED".to_string();
        for c in turned_on {
            line.push(' ');
            line.push_str(c);
        }
        line.push_str("\r\n");
        self.out.extend_from_slice(line.as_bytes());
        Tagged::ok("ENABLE completed")
    }

    pub(crate) async fn cmd_login(&mut self, username: &str, password: &str) -> Tagged {
        if !self.auth_allowed() {
            return Tagged::no("Use STARTTLS before LOGIN").code("PRIVACYREQUIRED");
        }
        self.try_credentials(AuthMechanism::Password, username, password).await
    }

    /// AUTHENTICATE PLAIN (RFC 4616): `authzid NUL authcid NUL password`, from SASL-IR or
    /// after a `+ ` continuation request, when the command waits for the driver to read
    /// the response line (`auth_response`).
    pub(crate) async fn cmd_authenticate(&mut self, mechanism: &str, initial: Option<Vec<u8>>) -> Step {
        if mechanism != "PLAIN" {
            return Step::Done(Tagged::no("Unsupported mechanism").code("CANNOT"));
        }
        if !self.auth_allowed() {
            return Step::Done(Tagged::no("Use STARTTLS before AUTHENTICATE").code("PRIVACYREQUIRED"));
        }
        match initial {
            Some(response) => Step::Done(self.plain(&response).await),
            None => {
                self.out.extend_from_slice(b"+ \r\n");
                Step::Wait(Waiting::AuthResponse)
            }
        }
    }

    /// The client's line after `+ `: base64 of the PLAIN response, `=` for an empty one,
    /// `*` to cancel (RFC 9051 6.2.2). Completes the suspended AUTHENTICATE.
    pub(crate) async fn auth_response(&mut self, line: &[u8]) -> Next {
        let (tag, name, _) = match self.take_suspended(|w| matches!(w, Waiting::AuthResponse)) {
            Ok(s) => s,
            Err(next) => return next,
        };
        let tagged = if line == b"*" {
            Tagged::bad("Authentication cancelled")
        } else if line == b"=" {
            self.plain(&[]).await
        } else {
            match decode_base64(line) {
                Some(response) => self.plain(&response).await,
                None => Tagged::bad("Invalid base64"),
            }
        };
        self.complete(&tag, name, tagged)
    }

    async fn plain(&mut self, response: &[u8]) -> Tagged {
        let mut fields = response.split(|b| *b == 0);
        let (Some(authz), Some(authc), Some(pass), None) = (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Tagged::bad("Malformed PLAIN response");
        };
        let authc = String::from_utf8_lossy(authc).into_owned();
        let pass = String::from_utf8_lossy(pass).into_owned();
        if !authz.is_empty() && authz != authc.as_bytes() {
            // No proxy authorisation: one may only act as oneself.
            return self.login_failed("Authorization identity refused").await;
        }
        self.try_credentials(AuthMechanism::Plain, &authc, &pass).await
    }

    async fn try_credentials(&mut self, mechanism: AuthMechanism, username: &str, password: &str) -> Tagged {
        let (ip, via) = (self.peer.ip(), LoginVia::new("imap", mechanism));
        let address =
            match verify_login(&self.ctx.limiter, &self.ctx.directory, &self.ctx.store, via, ip, username, password)
                .await
            {
                LoginOutcome::LoggedIn(address) => address,
                LoginOutcome::Failed => return self.login_failed("Authentication failed").await,
                LoginOutcome::Refused(blocked) => return Tagged::no(format!("{blocked}")).code("UNAVAILABLE"),
                LoginOutcome::Unavailable => {
                    return Tagged::no("Temporary authentication failure, try again later").code("UNAVAILABLE");
                }
            };
        let Some(slot) = self.ctx.user_connections.acquire(
            &address.to_string(),
            self.peer.ip(),
            self.ctx.limits.max_connections_per_user_ip,
        ) else {
            tracing::info!(peer = %self.peer, user = %address, "IMAP connection limit reached");
            return Tagged::no("Too many connections for this user from your address").code("LIMIT");
        };
        let owner = MailboxOwner::new(address.local.clone(), address.domain.clone());
        if let Err(e) = self.ctx.store.ensure_account(&owner).await {
            return super::store_error(&e, &self.peer);
        }
        tracing::info!(peer = %self.peer, user = %address, "IMAP login");
        self.state = State::Authenticated(Authenticated { address, owner, _slot: slot });
        let caps = self.capabilities();
        Tagged::ok("Logged in").code(format!("CAPABILITY {caps}"))
    }

    /// A failed attempt: slowed down, and after `max_bad_logins` the BYE goes out just
    /// before the tagged NO and the connection ends.
    async fn login_failed(&mut self, text: &'static str) -> Tagged {
        self.bad_logins += 1;
        tokio::time::sleep(self.ctx.limits.auth_failure_delay).await;
        if self.bad_logins >= self.ctx.limits.max_bad_logins {
            self.out.extend_from_slice(b"* BYE Too many failed logins\r\n");
            self.state = State::Logout;
        }
        Tagged::no(text).code("AUTHENTICATIONFAILED")
    }
}
