//! `[[hook]]`: what runs after files changed (SPEC 8).
//!
//! Owns: the keys of a hook and their rules (a command or a signal with its pid file, never
//! both; an absolute `command[0]`; unique names, defaulted from the command or the signal;
//! `instances` naming configured instances), building the hooks stage's own type
//! ([`Hook`], with the stage's default timeout). Must not: read the pid file (the hook does
//! at each run; the fs pass only warns about who may write it).

use std::path::Path;

use super::super::keys::{SectionKind, SectionSchema};
use super::super::reader::{Problems, Section, quote};
use super::instance::ReadInstance;
use super::positive_duration;
use crate::hooks::{self, Hook, HookAction, HookSignal};
use crate::names;

/// The keys of each `[[hook]]`.
pub(in crate::config) const SCHEMA: SectionSchema = SectionSchema {
    name: "hook",
    kind: SectionKind::ArrayOfTables,
    keys: &[
        "command",
        "name",
        "timeout",
        "instances",
        "signal",
        "pid_file",
    ],
    variants: &[],
};

/// Reads every `[[hook]]`; `instances` resolves the filters' names to ids.
pub(in crate::config) fn read(
    p: &mut Problems,
    top: &Section<'_>,
    instances: &[ReadInstance],
    base: &Path,
) -> Vec<Hook> {
    let mut out: Vec<(String, Hook)> = Vec::new();
    for (key, table) in top.tables(p, SCHEMA.name) {
        let sec = Section::open(p, key.clone(), table, SCHEMA.keys);
        let signal_style = sec.has("signal") || sec.has("pid_file");
        let mut signal_action = None;
        if signal_style {
            if sec.has("command") {
                p.push(
                    sec.key("command"),
                    "a hook has either command, or signal and pid_file, not both",
                );
            }
            let signal = sec.string(p, "signal").and_then(|raw| {
                let signal = HookSignal::from_name(raw);
                if signal.is_none() {
                    let known: Vec<&str> = HookSignal::ALL.iter().map(|s| s.name()).collect();
                    p.push(
                        sec.key("signal"),
                        format!(
                            "unknown signal {} (one of {})",
                            quote(raw),
                            known.join(", ")
                        ),
                    );
                }
                signal
            });
            if !sec.has("signal") {
                p.push(
                    sec.key("signal"),
                    "missing: a hook with pid_file needs signal (e.g. \"SIGHUP\")",
                );
            }
            if !sec.has("pid_file") {
                p.push(
                    sec.key("pid_file"),
                    "missing: a signal hook needs pid_file (the pid is read from it at each run)",
                );
            }
            let pid_file = sec.string(p, "pid_file").and_then(|raw| {
                if raw.is_empty() {
                    p.push(sec.key("pid_file"), "must not be empty (got \"\")");
                    None
                } else {
                    Some(names::normalize(&base.join(raw)))
                }
            });
            if let (Some(signal), Some(pid_file)) = (signal, pid_file) {
                signal_action = Some(HookAction::Signal { signal, pid_file });
            }
        }

        let mut command = Vec::new();
        if !signal_style
            && sec.require_present(p, "command", "")
            && let Some(items) = sec.strings(p, "command")
        {
            if items.is_empty() {
                p.push(
                    sec.key("command"),
                    "must not be empty (got []): give the argv",
                );
            } else if !Path::new(items[0].1).is_absolute() {
                p.push(
                    items[0].0.clone(),
                    format!(
                        "{} is not an absolute path (commands run without a shell or PATH)",
                        quote(items[0].1)
                    ),
                );
            } else if Path::new(items[0].1).file_name().is_none() {
                p.push(
                    items[0].0.clone(),
                    format!("{} does not name a file", quote(items[0].1)),
                );
            } else {
                command = items.iter().map(|(_, s)| s.to_string()).collect();
            }
        }

        let name = match sec.string(p, "name") {
            Some("") => {
                p.push(sec.key("name"), "must not be empty (got \"\")");
                String::new()
            }
            Some(n) => n.to_string(),
            None => match &signal_action {
                Some(HookAction::Signal { signal, pid_file }) => format!(
                    "{signal}-{}",
                    pid_file
                        .file_name()
                        .map(|f| f.to_string_lossy())
                        .unwrap_or_default()
                ),
                _ => command
                    .first()
                    .and_then(|c| Path::new(c).file_name())
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            },
        };
        if !name.is_empty()
            && let Some((other_key, _)) = out.iter().find(|(_, h)| h.name == name)
        {
            let hint = if sec.has("name") {
                ""
            } else {
                " (the default, from command[0]); set name to tell them apart"
            };
            p.push(
                sec.key("name"),
                format!("{} is also the name of {other_key}{hint}", quote(&name)),
            );
        }

        let timeout = positive_duration(p, &sec, "timeout").unwrap_or(hooks::DEFAULT_TIMEOUT);

        let filter = sec.strings(p, "instances").map(|items| {
            if items.is_empty() {
                p.push(
                    sec.key("instances"),
                    "must not be empty (got []); leave it out to run on any change",
                );
            }
            let mut ids: Vec<String> = Vec::new();
            for (item_key, wanted) in items {
                let found = instances
                    .iter()
                    .find(|r| r.id.as_deref() == Some(wanted) || r.name.as_deref() == Some(wanted));
                match found {
                    Some(r) => {
                        // An instance with its own errors is already reported.
                        if let Some(inst) = &r.valid
                            && !ids.contains(&inst.id)
                        {
                            ids.push(inst.id.clone());
                        }
                    }
                    None => p.push(
                        item_key,
                        format!(
                            "unknown instance {} (not the id or name of any [[instance]])",
                            quote(wanted)
                        ),
                    ),
                }
            }
            ids
        });

        out.push((
            key,
            Hook {
                name,
                action: signal_action.unwrap_or(HookAction::Command(command)),
                timeout,
                instances: filter,
            },
        ));
    }
    out.into_iter().map(|(_, h)| h).collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::super::testing::{keys, table, walk};
    use super::*;

    fn read_hooks(text: &str) -> (Vec<Hook>, Vec<crate::config::Problem>) {
        let t = table(text);
        let known = [ReadInstance {
            key: "instance[0]".into(),
            id: Some("inst-1".into()),
            name: Some("orders".into()),
            valid: Some(crate::config::Instance::discovered(
                "inst-1",
                Some("orders".into()),
            )),
        }];
        let (out, problems, fs) = walk(|p, _| {
            let top = Section::open(p, "", &t, &["hook"]);
            read(p, &top, &known, Path::new("/srv/conf"))
        });
        assert!(fs.0.is_empty(), "hooks defer no file check");
        (out, problems)
    }

    #[test]
    fn commands_get_the_stages_default_timeout_and_a_name_from_argv0() {
        let (hooks, problems) =
            read_hooks("[[hook]]\ncommand = [\"/usr/bin/systemctl\", \"reload\", \"app\"]\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(hooks[0].name, "systemctl");
        assert_eq!(hooks[0].timeout, hooks::DEFAULT_TIMEOUT);
        assert_eq!(hooks::DEFAULT_TIMEOUT, Duration::from_secs(30));
        assert_eq!(hooks[0].instances, None);
    }

    #[test]
    fn signals_are_typed_and_name_their_hook() {
        let (hooks, problems) = read_hooks(
            "[[hook]]\nsignal = \"usr1\"\npid_file = \"run/app.pid\"\ninstances = [\"orders\"]\ntimeout = \"5s\"\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            hooks[0].action,
            HookAction::Signal {
                signal: HookSignal::Usr1,
                pid_file: PathBuf::from("/srv/conf/run/app.pid"),
            }
        );
        assert_eq!(hooks[0].name, "SIGUSR1-app.pid");
        assert_eq!(
            hooks[0].instances.as_deref(),
            Some(&["inst-1".to_string()][..])
        );
        assert_eq!(hooks[0].timeout, Duration::from_secs(5));

        let (_, problems) = read_hooks("[[hook]]\nsignal = \"KILL\"\npid_file = \"p\"\n");
        assert_eq!(keys(&problems), ["hook[0].signal"]);
        assert!(
            problems[0].message.contains("\"KILL\"")
                && problems[0].message.contains("SIGHUP, SIGINT"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_hook_is_a_command_or_a_signal_and_names_are_unique() {
        let (_, problems) = read_hooks(
            "[[hook]]\ncommand = [\"/bin/true\"]\nsignal = \"HUP\"\npid_file = \"p\"\n\
             [[hook]]\ncommand = [\"/bin/x\"]\n[[hook]]\ncommand = [\"/usr/bin/x\"]\n\
             [[hook]]\ncommand = [\"/bin/y\"]\ninstances = [\"nope\"]\n",
        );
        assert_eq!(
            keys(&problems),
            ["hook[0].command", "hook[2].name", "hook[3].instances[0]"]
        );
    }
}
