//! `odeon-loadgen`: drives one workload against one server and prints a JSON summary.

fn main() -> std::process::ExitCode {
    odeon_loadgen::run::main()
}
