//! `odeon-bench`: runs the whole benchmark (both servers, several sizes) and writes the report.

fn main() -> std::process::ExitCode {
    odeon_loadgen::bench::main()
}
