//! Progress on stderr: an indicatif bar on a terminal; elsewhere (CI logs, pipes) a
//! plain line every few seconds, never a carriage return.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
}

impl Progress {
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("[{bar:30}] {percent:>3}%  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("#>.");
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            last_line: None,
        }
    }

    /// `done` of `total` (in any unit), and what to say about it.
    pub fn update(&mut self, done: u64, total: u64, message: impl FnOnce() -> String) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total.max(1));
                bar.set_position(done.min(total));
                bar.set_message(message());
            }
            None => {
                if self.last_line.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                    let share = done as f64 * 100.0 / total.max(1) as f64;
                    eprintln!("{share:>3.0}%  {}", message());
                    self.last_line = Some(Instant::now());
                }
            }
        }
    }

    /// The final state: the bar completes; a plain line is always written.
    pub fn finish(&mut self, done: u64, total: u64, message: impl FnOnce() -> String) {
        self.last_line = None;
        self.update(done, total, message);
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
