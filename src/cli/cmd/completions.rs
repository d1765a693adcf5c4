//! `elevate completions`: a shell completion script; needs no daemon.

/// Print a shell completion script: `elevate completions bash > /etc/bash_completion.d/elevate`.
#[derive(Debug, clap::Args)]
pub struct Completions {
    /// The shell.
    pub shell: clap_complete::Shell,
}

impl Completions {
    /// Writes the script of `command` to standard output.
    pub fn run(&self, mut command: clap::Command) {
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut command, "elevate", &mut script);
        // A closed pipe (`| head`) is not an error worth a message.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
    }
}
