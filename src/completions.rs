//! `racelab completions SHELL` and `racelab completions --man` (README "Installing"): made from
//! the same clap definition as the options, so they never drift.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Error;

/// Prints the completion script for the shell `args` names, or the man page.
pub fn write(args: &CompletionsArgs) -> Result<(), Error> {
    let mut command = Cli::command();
    let (text, what) = if args.man {
        let page = man_page(command).map_err(|e| Error::Output {
            path: "the man page".to_owned(),
            reason: e.to_string(),
        })?;
        (page, "man page")
    } else if let Some(shell) = args.shell {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut command, "racelab", &mut out);
        (
            String::from_utf8_lossy(&out).into_owned(),
            "completion script",
        )
    } else {
        return Err(Error::Usage(
            "name a shell (bash, zsh, fish, powershell, elvish), or --man for the man page"
                .to_owned(),
        ));
    };
    crate::output::stdout(&text, what)
}

/// racelab(1): the page clap_mangen makes of the command, then a section per subcommand with
/// its synopsis and options, since `run`'s and `prove`'s options are what people look up (one
/// page, so `man racelab` is all there is to install).
fn man_page(command: clap::Command) -> std::io::Result<String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut out)?;
    let mut page = String::from_utf8_lossy(&out).into_owned();
    for sub in command.get_subcommands() {
        let name = format!("racelab {}", sub.get_name());
        let man = clap_mangen::Man::new(sub.clone().bin_name(&name));
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        man.render_options_section(&mut part)?;
        page.push_str(&format!(".SH \"{}\"\n", name.to_uppercase()));
        if let Some(about) = sub.get_about() {
            // Plain text to roff: a backslash is an escape, a leading dot or quote a request.
            let about = about.to_string().replace('\\', "\\e");
            let guard = if about.starts_with(['.', '\'']) {
                "\\&"
            } else {
                ""
            };
            page.push_str(&format!("{guard}{about}\n"));
        }
        // Within the subcommand's section its synopsis and options are subsections, and the
        // apostrophe preamble each rendering starts with is already at the top of the page.
        for line in String::from_utf8_lossy(&part).lines() {
            if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
                continue;
            }
            match line.strip_prefix(".SH ") {
                Some(heading) => page.push_str(&format!(".SS {heading}\n")),
                None => {
                    page.push_str(line);
                    page.push('\n');
                }
            }
        }
    }
    Ok(page)
}
