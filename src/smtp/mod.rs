//! SMTP: server sessions (MX and submission, written elsewhere) and the outbound client.

pub mod client;
