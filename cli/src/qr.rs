//! QR codes of the otpauth URI, for the terminal and as SVG.
//!
//! Terminal: half-block characters (two modules per character cell, so the
//! code is square on a terminal whose cells are about twice as tall as wide)
//! with the 4-module quiet zone. Both colours are drawn explicitly (black
//! foreground on a bright white background), so the code has the same
//! polarity on dark and light terminal themes; drawing only the dark modules
//! would give an inverted code on a dark theme, which many scanners reject.

use qrcode::render::{svg, unicode::Dense1x2};
use qrcode::{EcLevel, QrCode};

/// Terminal width the QR code must fit in.
pub const MAX_COLUMNS: usize = 80;

/// Modules of quiet zone on each side (the QR standard's minimum).
const QUIET_ZONE: usize = 4;

/// Black on bright white; `\x1b[0m` restores the terminal's own colours at
/// the end of each line so a resized window does not smear the background.
const COLOURS_ON: &str = "\x1b[30;107m";
const COLOURS_OFF: &str = "\x1b[0m";

#[derive(Debug, PartialEq, Eq)]
pub enum QrError {
    /// The URI needs more than `MAX_COLUMNS` columns.
    TooWide { columns: usize },
    /// The URI does not fit in any QR version.
    TooLong,
}

impl std::fmt::Display for QrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QrError::TooWide { columns } => write!(
                f,
                "the QR code would be {columns} columns wide (more than {MAX_COLUMNS})"
            ),
            QrError::TooLong => f.write_str("the URI is too long for a QR code"),
        }
    }
}

/// The smallest code for `data`. Level L: a screen is never smudged, and
/// fewer, larger modules scan more reliably off a terminal.
fn encode(data: &str) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(data.as_bytes(), EcLevel::L).map_err(|_| QrError::TooLong)
}

/// The half-block rendering without colours, one `String` per terminal line.
pub fn terminal_plain(data: &str) -> Result<Vec<String>, QrError> {
    let code = encode(data)?;
    let columns = code.width() + 2 * QUIET_ZONE;
    if columns > MAX_COLUMNS {
        return Err(QrError::TooWide { columns });
    }
    let image = code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Dark)
        .light_color(Dense1x2::Light)
        .quiet_zone(true)
        .module_dimensions(1, 1)
        .build();
    Ok(image.lines().map(str::to_owned).collect())
}

/// The text to print on a terminal: every line (quiet zone included) in
/// explicit colours.
pub fn terminal(data: &str) -> Result<String, QrError> {
    let mut out = String::new();
    for line in terminal_plain(data)? {
        out.push_str(COLOURS_ON);
        out.push_str(&line);
        out.push_str(COLOURS_OFF);
        out.push('\n');
    }
    Ok(out)
}

/// The same code as an SVG document: black on an opaque white background,
/// 8 pixels per module, quiet zone included.
pub fn svg(data: &str) -> Result<String, QrError> {
    let code = encode(data)?;
    Ok(code
        .render::<svg::Color<'_>>()
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .module_dimensions(8, 8)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri_of_len(len: usize) -> String {
        let base = "otpauth://totp/otpgate:alice@host.example.org?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=otpgate&algorithm=SHA1&digits=6&period=30";
        let mut s = base.to_owned();
        while s.len() < len {
            s.push('x');
        }
        s.truncate(len);
        s
    }

    fn width(line: &str) -> usize {
        line.chars().count()
    }

    #[test]
    fn a_160_char_uri_fits_80_columns() {
        let uri = uri_of_len(160);
        let lines = terminal_plain(&uri).unwrap();
        let w = width(&lines[0]);
        assert!(w <= MAX_COLUMNS, "{w} columns");
        assert!(lines.iter().all(|l| width(l) == w), "ragged lines");
        // Square on the terminal: two modules per line.
        assert_eq!(lines.len(), w.div_ceil(2));
    }

    #[test]
    fn quiet_zone_is_there() {
        let lines = terminal_plain(&uri_of_len(101)).unwrap();
        // 4 modules = 2 blank lines top and bottom, 4 blank columns each side.
        for l in [&lines[0], &lines[1], &lines[lines.len() - 1]] {
            assert!(l.chars().all(|c| c == ' '), "{l:?}");
        }
        for l in &lines {
            let cs: Vec<char> = l.chars().collect();
            assert!(cs[..4].iter().all(|&c| c == ' '));
            assert!(cs[cs.len() - 4..].iter().all(|&c| c == ' '));
        }
        // The finder pattern's top edge starts right after the quiet zone.
        assert!(lines[2].chars().nth(4).unwrap() != ' ');
    }

    #[test]
    fn coloured_lines_paint_both_colours_and_reset() {
        let text = terminal(&uri_of_len(101)).unwrap();
        for line in text.lines() {
            assert!(line.starts_with(COLOURS_ON) && line.ends_with(COLOURS_OFF));
        }
    }

    #[test]
    fn too_long_is_refused_not_drawn_wide() {
        match terminal_plain(&uri_of_len(600)) {
            Err(QrError::TooWide { columns }) => assert!(columns > MAX_COLUMNS),
            other => panic!("{other:?}"),
        }
        assert_eq!(terminal_plain(&"x".repeat(10_000)), Err(QrError::TooLong));
    }

    #[test]
    fn svg_is_a_complete_document() {
        let s = svg(&uri_of_len(120)).unwrap();
        assert!(s.starts_with("<?xml"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert!(s.contains("fill=\"#ffffff\""));
    }
}
