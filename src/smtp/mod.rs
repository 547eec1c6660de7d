//! The SMTP server side: MX sessions on port 25, LMTP (RFC 2033) for use behind another
//! MTA, and submission on 587/465 (RFC 6409, RFC 8314) — one session with AUTH.
//!
//! Split by stage so "why was this refused" has one obvious file:
//! - `command`: one command line -> [`Command`] or a syntax reply (pure parser);
//! - `stream`: the TCP-or-TLS byte stream of server and client sessions;
//! - `status`: the one SMTP status (reply code, enhanced code, text) of server, client
//!   and queue; multi-line rendering;
//! - `framing`: finding complete command lines, the 2,048-octet limit;
//! - `data`: DATA and BDAT content decoding (dot-unstuffing, the anti-smuggling rule);
//! - `session`: the state machine deciding every reply, over a [`Policy`];
//! - `refusal`, `outcome`: why a transaction was refused, and its one count by outcome;
//! - `policy`: the server's policy (accounts directory, quota, trusted networks, DNS);
//! - `sender_dns`: the hickory-backed sender domain check;
//! - `deliver`: spooling and trace headers;
//! - `courier`: durable local copies ([`courier::LocalCourier`]), also for the queue's DSNs;
//! - `sasl`: AUTH PLAIN/LOGIN decoding (submission; the login limiter is `net::Limiter`);
//! - `auth`: the AUTH exchange as a state machine, and the password check;
//! - `inbound`: port 25's judgement (SPF/DKIM/DMARC/ARC, scanners);
//! - `submit`: submission's `From:` check and added `Message-ID`/`Date`;
//! - `accept`: the fate of a complete message, stage by stage (load, judge, prepare
//!   submission, enqueue remote, store local);
//! - `deadline`: per-line and per-message deadlines a trickling client cannot extend;
//! - `server`: the connection loop (sockets, timeouts, STARTTLS, pipelining).
//!
//! Entry point: [`serve_connection`] with an [`SmtpContext`].

pub mod accept;
pub mod auth;
pub mod client;
pub mod command;
pub mod courier;
mod courier_sieve;
#[cfg(test)]
mod courier_sieve_tests;
pub mod data;
pub mod deadline;
pub mod deliver;
pub mod framing;
pub mod inbound;
pub mod outcome;
pub mod policy;
pub mod refusal;
pub mod sasl;
pub mod sender_dns;
pub mod server;
pub mod session;
pub mod sieve_outbound;
pub mod status;
pub mod stream;
pub mod submit;

pub use command::{Command, CommandError, parse_command};
pub use policy::{AnyDomainExists, DirectoryPolicy, DomainFuture, DomainStatus, SenderDomainCheck, StaticDomains};
pub use server::{SmtpContext, serve_connection};
pub use session::{Policy, Session, SessionState, SmtpLimits, SmtpMode};
pub use status::{Enhanced, Status};
