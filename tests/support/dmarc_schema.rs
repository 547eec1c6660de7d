//! Checking a DMARC aggregate report against RFC 7489 Appendix C's XML Schema with
//! `xmllint --schema`, shared by src/dmarc/tests.rs and tests/it/dmarc_reports.rs. The
//! schema is the one Debian's libmail-dmarc-perl ships, unchanged from the RFC.
//!
//! One change is made to it first: its `targetNamespace` goes. As published, the schema
//! declares `http://dmarc.org/dmarc-xml/0.1` as its target namespace but refers to its
//! own types (`type="DateRangeType"`) without a prefix and without declaring that
//! namespace as the default, so the references point at no namespace and no schema
//! processor compiles it (xmllint: "References from this schema to components in no
//! namespace are not allowed"). And reports as receivers send them, ours included, put
//! `<feedback>` in no namespace. Without the attribute the schema describes exactly those
//! documents; every element, order, occurrence, type, enumeration and the address pattern
//! stay as the RFC wrote them.
#![allow(dead_code)]

/// Where libmail-dmarc-perl puts the schema.
pub const RFC_7489_XSD: &str = "/usr/share/perl5/auto/share/dist/Mail-DMARC/rua-schema.xsd";

/// What the check found.
#[derive(Debug, PartialEq, Eq)]
pub enum SchemaCheck {
    Valid,
    /// xmllint's complaints.
    Invalid(String),
    /// No xmllint or no schema on this machine.
    Unavailable,
}

/// Validate `xml` against RFC 7489's schema.
pub fn check(xml: &str) -> SchemaCheck {
    let xmllint = std::process::Command::new("xmllint").arg("--version").output().is_ok_and(|o| o.status.success());
    let Ok(schema) = std::fs::read_to_string(RFC_7489_XSD) else { return SchemaCheck::Unavailable };
    if !xmllint {
        return SchemaCheck::Unavailable;
    }
    let target = "targetNamespace=\"http://dmarc.org/dmarc-xml/0.1\"";
    assert!(schema.contains(target), "the packaged schema changed: {RFC_7489_XSD}");
    let dir = tempfile::tempdir().unwrap();
    let xsd = dir.path().join("rfc7489.xsd");
    std::fs::write(&xsd, schema.replace(target, "")).unwrap();
    let doc = dir.path().join("report.xml");
    std::fs::write(&doc, xml).unwrap();
    let out =
        std::process::Command::new("xmllint").arg("--noout").arg("--schema").arg(&xsd).arg(&doc).output().unwrap();
    match out.status.success() {
        true => SchemaCheck::Valid,
        false => SchemaCheck::Invalid(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}
