//! The outbound SMTP client: how the queue's messages reach other servers.
//!
//! It owns the client side of SMTP and nothing of the queue's policy: it is handed one
//! message and the recipients of one domain, and answers one outcome per recipient
//! (delivered / temporary / permanent with the reply). Routing (MX, null MX, MTA-STS,
//! smarthost), TLS choices and connection reuse live here.
//!
//! Files: `reply.rs` (pure reply and EHLO parser), `transaction.rs` (the pure MAIL/RCPT/
//! DATA state machine and dot-stuffing), `connection.rs` (one connection's I/O),
//! `mx.rs` (DNS routing), `family.rs` (IPv4/IPv6 and source addresses), `mta_sts.rs` (RFC 8461), `tls.rs` (client TLS configs),
//! `tls_outcome.rs` (the TLS-report event per session),
//! `transport.rs` ([`SmtpTransport`], the queue's `Transport`).

pub mod connection;
pub mod dane;
pub mod family;
pub mod mta_sts;
pub mod mx;
pub mod reply;
mod require_tls;
pub mod tls;
pub mod tls_outcome;
pub mod transaction;
pub mod transport;

pub use family::OutboundRoute;
pub use reply::{Capabilities, ReplyError, parse_reply};
pub use transport::{ClientError, ClientSettings, SmtpTransport};
