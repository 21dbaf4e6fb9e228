//! `certsync-gen-docs OUT_DIR`: writes certsync's man pages and shell completions, generated
//! from the clap definition the binary parses (`certsync::cli::Cli`), for the Debian package
//! (`ci/build-deb.sh`):
//!
//! - `OUT_DIR/man/certsync.1`, and `certsync-COMMAND.1` for each command;
//! - `OUT_DIR/completions/certsync.bash`, `_certsync` (zsh) and `certsync.fish`.
//!
//! Whatever commands and options `src/cli.rs` has, and only those the certsync library was
//! built with (`ci/build-deb.sh` builds this tool alone, so without the `demo` feature, like the
//! package's binary), end up in the pages: nothing here lists them.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;

/// The shells the package ships completions for.
const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Sections of `certsync.1` that clap does not know about (SPEC 2, 3 and 9), in roff.
const MAIN_PAGE_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success: a clean stop of \fBrun\fR; every instance synced (\fBonce\fR); a valid config (\fBcheck\fR).
.TP
\fB1\fR
A failure: an instance that did not sync, a file that is not a certificate, a daemon that cannot be reached.
.TP
\fB78\fR
A configuration error (EX_CONFIG); the systemd unit does not restart on it.
.SH SIGNALS
\fBcertsync run\fR stops on SIGTERM or SIGINT (writes in flight finish), reloads its
configuration on SIGHUP and starts a pass at once on SIGUSR1.
.SH ENVIRONMENT
.TP
\fBCERTSYNC_CONFIG\fR
The configuration file, when \fB\-\-config\fR is not given.
.TP
\fBRUST_LOG\fR
A log filter; wins over \fB\-\-log\-level\fR and the config's [log] level.
.TP
\fBHUAWEICLOUD_SDK_AK\fR, \fBHUAWEICLOUD_SDK_SK\fR, \fBHUAWEICLOUD_SDK_SECURITY_TOKEN\fR, \fBHUAWEICLOUD_SDK_PROJECT_ID\fR
AK/SK credentials, for the keys the config leaves out.
.TP
\fBHTTPS_PROXY\fR, \fBNO_PROXY\fR
The proxy for the API, IAM and downloads (not for the ECS metadata service).
.SH FILES
.TP
\fI/etc/certsync/certsync.toml\fR
The configuration (every key is shown, commented, in the example the package installs).
.TP
\fI/var/lib/certsync/trust\fR
The trust folder of the example configuration.
.TP
\fI/usr/lib/systemd/system/certsync.service\fR
The systemd unit (Type=notify, sandboxed, as the certsync user).
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBsystemd.exec\fR(5), \fBopenssl\-rehash\fR(1)
"#;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: certsync-gen-docs OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(&out)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("certsync-gen-docs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the man pages into `out/man` and the completions into `out/completions` (both
/// created, emptied of what an earlier run left), and returns the files written.
fn generate(out: &Path) -> io::Result<Vec<PathBuf>> {
    let man_dir = out.join("man");
    let completions_dir = out.join("completions");
    for dir in [&man_dir, &completions_dir] {
        match fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(with_path(e, dir)),
        }
        fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
    }

    let mut written = Vec::new();
    // As clap_mangen::generate_to: no page for the `help` command; every name resolved.
    let mut cmd = certsync::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    write_man_pages(&cmd, &man_dir, true, &mut written)?;

    for shell in SHELLS {
        let mut cmd = certsync::cli::Cli::command();
        let path = clap_complete::generate_to(shell, &mut cmd, "certsync", &completions_dir)
            .map_err(|e| with_path(e, &completions_dir))?;
        written.push(path);
    }
    Ok(written)
}

/// One page for `cmd` and, recursively, one for each visible command under it.
fn write_man_pages(
    cmd: &clap::Command,
    dir: &Path,
    top: bool,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man_pages(sub, dir, false, written)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    if top {
        // clap's sections, then ours before VERSION (as man-pages(7) orders them).
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        man.render_description_section(&mut page)?;
        man.render_options_section(&mut page)?;
        man.render_subcommands_section(&mut page)?;
        page.write_all(MAIN_PAGE_EXTRA.as_bytes())?;
        man.render_version_section(&mut page)?;
    } else {
        man.render(&mut page)?;
    }
    fs::write(&path, page).map_err(|e| with_path(e, &path))?;
    written.push(path);
    Ok(())
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The visible commands of the definition, as the pages must show them.
    fn commands() -> Vec<String> {
        certsync::cli::Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_owned())
            .collect()
    }

    #[test]
    fn writes_a_page_per_command_and_three_completions() {
        let tmp = tempfile::tempdir().unwrap();
        // Left over from an earlier run: removed.
        fs::create_dir_all(tmp.path().join("man")).unwrap();
        fs::write(tmp.path().join("man/certsync-gone.1"), "old").unwrap();

        let written = generate(tmp.path()).unwrap();

        let mut names: Vec<String> = fs::read_dir(tmp.path().join("man"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut want: Vec<String> = commands()
            .iter()
            .map(|c| format!("certsync-{c}.1"))
            .chain(["certsync.1".to_owned()])
            .collect();
        want.sort();
        assert_eq!(names, want);
        assert!(!commands().is_empty());

        let completions = tmp.path().join("completions");
        for f in ["certsync.bash", "_certsync", "certsync.fish"] {
            assert!(written.contains(&completions.join(f)), "{f} not reported");
        }
        assert_eq!(written.len(), want.len() + 3);
    }

    #[test]
    fn pages_and_completions_name_every_command_and_option() {
        let tmp = tempfile::tempdir().unwrap();
        generate(tmp.path()).unwrap();
        let main = fs::read_to_string(tmp.path().join("man/certsync.1")).unwrap();
        assert!(main.contains("\n.TH certsync 1 "), "{main}");
        for section in [
            "SYNOPSIS",
            "OPTIONS",
            "SUBCOMMANDS",
            "\"EXIT STATUS\"",
            "FILES",
        ] {
            assert!(main.contains(&format!(".SH {section}")), "no {section}");
        }
        // The version section stays last, after ours.
        assert!(main.find(".SH VERSION").unwrap() > main.find(".SH \"SEE ALSO\"").unwrap());
        assert!(main.contains("CERTSYNC_CONFIG"));
        for shell in ["certsync.bash", "_certsync", "certsync.fish"] {
            let text = fs::read_to_string(tmp.path().join("completions").join(shell)).unwrap();
            for c in commands() {
                assert!(text.contains(&c), "{shell} lacks {c}");
            }
            assert!(text.contains("log-format"), "{shell} lacks --log-format");
        }
        for c in commands() {
            assert!(
                main.contains(&format!("certsync\\-{c}(1)")),
                "{c} not listed"
            );
        }
    }
}
