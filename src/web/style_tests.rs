//! The stylesheet's colours meet WCAG 2.1 AA: 4.5:1 for text, 3:1 for the focus ring
//! and the input borders, computed from the `:root` variables the rules use.

use super::CSS;

/// `--name: #rrggbb` from the `:root` rule.
fn colour(name: &str) -> [f64; 3] {
    let at = CSS.find(&format!("--{name}: #")).unwrap_or_else(|| panic!("--{name} in :root")) + name.len() + 5;
    let hex = &CSS[at..at + 6];
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap() as f64 / 255.0;
    [byte(0), byte(2), byte(4)]
}

/// Relative luminance (WCAG 2.1).
fn luminance(c: [f64; 3]) -> f64 {
    let lin = |v: f64| if v <= 0.04045 { v / 12.92 } else { ((v + 0.055) / 1.055).powf(2.4) };
    0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])
}

fn contrast(a: [f64; 3], b: [f64; 3]) -> f64 {
    let (a, b) = (luminance(a), luminance(b));
    (a.max(b) + 0.05) / (a.min(b) + 0.05)
}

#[test]
fn text_and_focus_colours_have_enough_contrast() {
    let white = [1.0, 1.0, 1.0];
    let text_pairs = [
        ("fg", colour("fg"), "bg", colour("bg")),
        ("muted", colour("muted"), "bg", colour("bg")),
        ("muted", colour("muted"), "code-bg", colour("code-bg")),
        ("fg", colour("fg"), "code-bg", colour("code-bg")),
        ("accent (links)", colour("accent"), "bg", colour("bg")),
        ("bad (errors)", colour("bad"), "bg", colour("bg")),
        ("good (notices)", colour("good"), "bg", colour("bg")),
        ("white", white, "accent (buttons)", colour("accent")),
        ("white", white, "bad (danger buttons, badges)", colour("bad")),
        ("white", white, "good (badges)", colour("good")),
    ];
    for (fg, f, bg, b) in text_pairs {
        let c = contrast(f, b);
        assert!(c >= 4.5, "{fg} on {bg}: {c:.2}:1, text needs 4.5:1");
    }
    for (what, c) in [("focus", colour("focus")), ("muted (input borders)", colour("muted"))] {
        let ratio = contrast(c, colour("bg"));
        assert!(ratio >= 3.0, "{what} on bg: {ratio:.2}:1, a control's outline needs 3:1");
    }
    assert!(CSS.contains(":focus-visible { outline: 3px solid var(--focus)"), "a visible focus ring");
    assert!(!CSS.contains("outline: none") && !CSS.contains("outline: 0"), "nothing hides the ring");
}
