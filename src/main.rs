use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = racelab::cli::Cli::parse();
    let code = racelab::main(cli);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(2))
}
