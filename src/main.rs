fn main() -> std::process::ExitCode {
    gradstream::cli::main()
}
