use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before anything opens a file or a socket that could take a closed stdout's place.
    racelab::guard_standard_streams();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    racelab::settle_environment(&args);
    let cli = racelab::Cli::parse_from(args);
    let code = racelab::main(cli);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(2))
}
