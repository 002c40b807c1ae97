//! Output that survives a closed pipe: `plexus plugins info … | head` ends
//! quietly (exit 0, like ripgrep) when the reader goes away, instead of
//! panicking as `println!` does. Every command prints through [`outln!`],
//! [`out!`] and [`errln!`].

use std::fmt;
use std::io::{self, Write};

/// Write `args` to stdout (or stderr); on a broken pipe end the process
/// quietly, on another write error report it and exit 1.
pub fn write(stderr: bool, args: fmt::Arguments<'_>) {
    let result = if stderr { io::stderr().lock().write_fmt(args) } else { io::stdout().lock().write_fmt(args) };
    if let Err(e) = result {
        plexus_host::process::host_exits();
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        if !stderr {
            let _ = writeln!(io::stderr(), "error: cannot write the output: {e}");
        }
        std::process::exit(i32::from(crate::exit::ERROR));
    }
}

/// `println!` that ends quietly on a closed pipe.
macro_rules! outln {
    () => { $crate::output::write(false, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(false, format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that ends quietly on a closed pipe.
#[allow(unused_macros)]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(false, format_args!($($arg)*)) };
}

/// `eprintln!` that ends quietly on a closed pipe.
macro_rules! errln {
    () => { $crate::output::write(true, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(true, format_args!("{}\n", format_args!($($arg)*))) };
}
