//! Text into XML element content and attribute values: the one escaper the generated
//! documents share (client autoconfig, DMARC reports).

/// Escape `s` for XML: the five special characters become entities, control characters
/// (invalid in XML 1.0 or meaningless there) are dropped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_five_entities_and_no_control_characters() {
        assert_eq!(super::escape("a<b>&\"'\u{0}é"), "a&lt;b&gt;&amp;&quot;&apos;é");
    }
}
