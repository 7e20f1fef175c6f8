//! Progress bars for long operations (`audit verify` of a large log, `crypt rewrap` of a
//! table), drawn on standard error only when it is a terminal: piped or redirected, a
//! command prints exactly what it would without a bar, so scripts never see the bar's
//! control characters.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{BufRead, IsTerminal, Read};

/// A bar counting `total` bytes, labelled `what`; hidden (drawing nothing) unless standard
/// error is a terminal. indicatif also hides a bar whose terminal is not one; the check
/// here makes the rule ours rather than a library default.
pub fn bytes(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{msg} [{bar:32}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
    )
    .map_or_else(
        |_| ProgressStyle::default_bar(),
        |s| s.progress_chars("=> "),
    );
    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(what.to_owned())
}

/// A bar counting `total` rows, labelled `what`; hidden unless standard error is a
/// terminal, like [`bytes`].
pub fn rows(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{msg} [{bar:32}] {pos}/{len} rows ({per_sec}, {eta} left)")
            .map_or_else(
                |_| ProgressStyle::default_bar(),
                |s| s.progress_chars("=> "),
            );
    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(what.to_owned())
}

/// A reader that advances `bar` by the bytes its consumer takes.
#[derive(Debug)]
pub struct Counted<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R> Counted<R> {
    /// Counts what is read from `inner` on `bar`.
    pub fn new(inner: R, bar: ProgressBar) -> Self {
        Self { inner, bar }
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(as_u64(n));
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount);
        self.bar.inc(as_u64(amount));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_reader_passes_bytes_through_and_counts_them() {
        let bar = ProgressBar::hidden();
        bar.set_length(11);
        let mut reader = Counted::new(&b"line 1\nend\n"[..], bar.clone());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        assert_eq!(first, "line 1\n");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"end\n");
        assert_eq!(bar.position(), 11);
    }
}
