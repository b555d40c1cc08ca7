//! `racelab completions SHELL` and `racelab completions --man` (README "Shell completions and
//! the man page"): made from the same clap definition as the options, so they never drift.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Error;

/// Prints the completion script for the shell `args` names, or the man page.
pub fn write(args: &CompletionsArgs) -> Result<(), Error> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    let what = if args.man {
        clap_mangen::Man::new(command)
            .render(&mut out)
            .map_err(|e| Error::Output {
                path: "the man page".to_owned(),
                reason: e.to_string(),
            })?;
        "man page"
    } else if let Some(shell) = args.shell {
        clap_complete::generate(shell, &mut command, "racelab", &mut out);
        "completion script"
    } else {
        return Err(Error::Usage(
            "name a shell (bash, zsh, fish, powershell, elvish), or --man for the man page"
                .to_owned(),
        ));
    };
    crate::output::stdout(&String::from_utf8_lossy(&out), what)
}
