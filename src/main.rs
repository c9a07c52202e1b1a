//! The `director` binary: parse the command line, run, exit with the documented code.

fn main() {
    std::process::exit(director::main_with_args(std::env::args_os()));
}
