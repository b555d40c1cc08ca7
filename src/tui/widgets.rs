//! Small pieces every view draws with: times in words, text wrapped to a pane, bars.

use std::time::Duration;

use crate::truth::ms;

/// `12 ms`, `1.25 s`: times in the story and on the axis.
pub fn fmt_ms(d: Duration) -> String {
    let ms = ms(d);
    if ms >= 10_000.0 {
        format!("{:.0} s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 || ms == 0.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// Words wrapped to `width` columns.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if needed > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > width {
            let rest: String = line.chars().skip(width).collect();
            lines.push(line.chars().take(width).collect());
            line = rest;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A bar of `fraction` of `width` columns, in eighths.
pub fn bar(fraction: f64, width: usize) -> String {
    const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    if !fraction.is_finite() || fraction <= 0.0 || width == 0 {
        return String::new();
    }
    let eighths = (fraction.min(1.0) * width as f64 * 8.0).round() as usize;
    let eighths = eighths.max(1);
    let mut text = "█".repeat(eighths / 8);
    text.push_str(EIGHTHS[eighths % 8]);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_naturally() {
        assert_eq!(fmt_ms(Duration::from_micros(2500)), "2.5 ms");
        assert_eq!(fmt_ms(Duration::from_millis(24)), "24 ms");
        assert_eq!(fmt_ms(Duration::from_millis(1250)), "1.25 s");
    }
}
