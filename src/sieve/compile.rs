//! Whether a Sieve script compiles: the one check ManageSieve PUTSCRIPT and CHECKSCRIPT
//! make before a script is stored (RFC 5804 2.6: a server must refuse a script it could
//! not run), with the compiler's message so the user learns the line to fix.

use sieve::compiler::ErrorType;

/// Compile `script` with the interpreter's compiler (`sieve-rs`); `Err` carries its
/// message, which names the line and column (`Expected token ... at line 3, column 7.`).
pub fn check_script(script: &[u8]) -> Result<(), String> {
    let e = match super::engine::compiler().compile(script) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    // sieve-rs 0.7 reports an unknown command at its enclosing block's position, which
    // is "line 0" at the top level: name the line where the word first stands instead.
    if let ErrorType::UnexpectedToken { expected, found } = e.error_type()
        && expected == "command"
        && e.line_num() == 0
        && let Some(line) = line_of_word(script, found)
    {
        return Err(format!("Unknown command {found:?} at line {line}."));
    }
    Err(e.to_string())
}

/// The 1-based line where `word` first appears as a whole word.
fn line_of_word(script: &[u8], word: &str) -> Option<usize> {
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let w = word.as_bytes();
    // A command name is short; a huge one would make this search quadratic.
    if w.is_empty() || w.len() > 64 {
        return None;
    }
    let at = script.windows(w.len()).enumerate().find_map(|(i, win)| {
        let before_ok = i == 0 || !is_ident(script[i - 1]);
        let after_ok = script.get(i + w.len()).is_none_or(|b| !is_ident(*b));
        (win.eq_ignore_ascii_case(w) && before_ok && after_ok).then_some(i)
    })?;
    Some(script[..at].iter().filter(|b| **b == b'\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_script_compiles_and_a_broken_one_names_its_line() {
        check_script(b"require [\"fileinto\"];\r\nif header :contains \"subject\" \"x\" { fileinto \"Junk\"; }\r\n")
            .unwrap();
        let err = check_script(b"require \"fileinto\";\r\nkeep;\r\nfileinto \"Junk\"\r\n").unwrap_err();
        assert!(err.contains("line 4") || err.contains("line 3"), "{err}");
        let err = check_script(b"keep;\nredirect;\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        let err = check_script(b"keep;\r\n# frobnicate\r\nfrobnicate;\r\n").unwrap_err();
        assert!(err.contains("\"frobnicate\" at line 2"), "the first whole word: {err}");
        let err = check_script(b"keep;\r\nstop;\r\nfrobnicate;\r\n").unwrap_err();
        assert_eq!(err, "Unknown command \"frobnicate\" at line 3.");
    }
}
