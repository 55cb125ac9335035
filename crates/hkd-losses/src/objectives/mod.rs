//! The objectives hkd trains with, one file each, and the list of them (the `objectives!`
//! line at the end of this file).
//!
//! An objective file holds its settings (a struct: serde for configs, clap for the
//! command line, `Default` the one place its defaults are written), their checks, which
//! of them cannot change the result in a run ([`ObjectiveSettings::inert`]), and the
//! objective itself (an [`Objective`](crate::Objective), feature `candle`).
//!
//! To add an objective: write `objectives/<name>.rs` with a settings struct implementing
//! [`ObjectiveSettings`] (most objectives implement [`crate::SoftTerm`] and let
//! [`crate::Distill`] add the hard-label term and the target), and add `<name>::<Type>` to
//! `objectives!` below. `--objective <name>`, its flags, its config keys, run names, grids
//! and the analysis follow; see docs/losses.md, "Adding an objective".

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::DistillationMode;
use crate::error::{LossError, Result};
use crate::target::InertSetting;

/// What the registry needs of an objective's settings.
pub trait ObjectiveSettings:
    Clone + std::fmt::Debug + PartialEq + Default + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The registry word: `--objective <NAME>`, `objective = "<NAME>"` in configs.
    const NAME: &'static str;
    /// One line for `--help` and the docs.
    const SUMMARY: &'static str;

    /// Checks every setting; the first violation is returned.
    fn validate(&self) -> Result<()>;

    /// Whether the objective can train in `mode` (the run's target), e.g. `kd` needs a
    /// soft target: `Err` says what to do.
    fn check_mode(&self, mode: DistillationMode) -> Result<()>;

    /// The settings that cannot change the result in `mode` with the others as they are
    /// (a grid over one of them would train the same network twice).
    fn inert(&self, mode: DistillationMode) -> Vec<InertSetting>;

    /// The objective of these settings in `mode`.
    #[cfg(feature = "candle")]
    fn build(&self, mode: DistillationMode) -> Result<Box<dyn crate::Objective>>;
}

/// Declares the objective modules and the [`ObjectiveConfig`] enum over their settings.
macro_rules! objectives {
    ($($module:ident :: $ty:ident),+ $(,)?) => {
        $(pub mod $module;)+
        $(pub use $module::$ty;)+

        /// Every registered objective's settings type, re-exported at the crate root.
        pub mod settings {
            $(pub use super::$module::$ty;)+
        }

        /// The objective of a run and its settings: one variant per registered objective.
        /// In configs a table with `objective = "<name>"` and the objective's own keys
        /// (`objective` may be left out for `hkd`, as runs before hkd 0.3 wrote it); on the
        /// command line `--objective <name>` and the objective's flags.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ObjectiveConfig {
            $(
                #[doc = concat!("`", stringify!($module), "`: see [`", stringify!($ty), "`].")]
                $ty($ty),
            )+
        }

        impl ObjectiveConfig {
            /// Every registered name, in registry order.
            pub const NAMES: &'static [&'static str] = &[$(<$ty as ObjectiveSettings>::NAME),+];

            /// Every registered name with its one-line summary.
            pub const SUMMARIES: &'static [(&'static str, &'static str)] =
                &[$((<$ty as ObjectiveSettings>::NAME, <$ty as ObjectiveSettings>::SUMMARY)),+];

            /// The registry name of this objective.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$ty(_) => <$ty as ObjectiveSettings>::NAME,)+
                }
            }

            /// The objective called `name` with its default settings.
            pub fn default_of(name: &str) -> Result<Self> {
                $(if name == <$ty as ObjectiveSettings>::NAME {
                    return Ok(Self::$ty(<$ty>::default()));
                })+
                Err(LossError::UnknownObjective {
                    found: name.to_owned(),
                    expected: names_list(),
                })
            }

            /// See [`ObjectiveSettings::validate`].
            pub fn validate(&self) -> Result<()> {
                match self {
                    $(Self::$ty(s) => s.validate(),)+
                }
            }

            /// See [`ObjectiveSettings::check_mode`].
            pub fn check_mode(&self, mode: DistillationMode) -> Result<()> {
                match self {
                    $(Self::$ty(s) => s.check_mode(mode),)+
                }
            }

            /// See [`ObjectiveSettings::inert`].
            pub fn inert(&self, mode: DistillationMode) -> Vec<InertSetting> {
                match self {
                    $(Self::$ty(s) => s.inert(mode),)+
                }
            }

            /// The objective in `mode`, its settings validated and the mode checked.
            #[cfg(feature = "candle")]
            pub fn build(&self, mode: DistillationMode) -> Result<Box<dyn crate::Objective>> {
                self.validate()?;
                self.check_mode(mode)?;
                match self {
                    $(Self::$ty(s) => s.build(mode),)+
                }
            }

            /// The settings as `(key, value)` in declaration order, without `objective`.
            pub fn settings(&self) -> Vec<(String, serde_json::Value)> {
                let text = match self {
                    $(Self::$ty(s) => serde_json::to_string(s),)+
                };
                text.ok()
                    .and_then(|t| serde_json::from_str::<OrderedEntries>(&t).ok())
                    .map(|e| e.0)
                    .unwrap_or_default()
            }

            /// The settings of the objective `name` from `map` (its own keys only).
            fn from_settings(name: &str, map: serde_json::Map<String, serde_json::Value>) -> std::result::Result<Self, String> {
                $(if name == <$ty as ObjectiveSettings>::NAME {
                    return serde_json::from_value::<$ty>(serde_json::Value::Object(map))
                        .map(Self::$ty)
                        .map_err(|e| e.to_string());
                })+
                Err(format!("objective `{name}` is unknown, expected one of {}", names_list()))
            }

            /// The clap command of each objective's own flags, by name.
            #[cfg(feature = "clap")]
            fn commands() -> Vec<(&'static str, clap::Command)> {
                vec![$((
                    <$ty as ObjectiveSettings>::NAME,
                    <$ty as clap::Args>::augment_args(clap::Command::new(<$ty as ObjectiveSettings>::NAME)),
                )),+]
            }

            /// The settings of objective `name` from its own command's matches.
            #[cfg(feature = "clap")]
            fn from_own_matches(name: &str, matches: &clap::ArgMatches) -> std::result::Result<Self, clap::Error> {
                use clap::FromArgMatches as _;
                $(if name == <$ty as ObjectiveSettings>::NAME {
                    return <$ty>::from_arg_matches(matches).map(Self::$ty);
                })+
                Err(clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("objective `{name}` is unknown, expected one of {}", names_list())))
            }
        }
    };
}

/// `` `hkd`, `kd`, … `` for messages.
fn names_list() -> String {
    ObjectiveConfig::NAMES
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Default for ObjectiveConfig {
    /// `hkd` with its defaults (today's and the original project's objective).
    fn default() -> Self {
        ObjectiveConfig::Hkd(Hkd::default())
    }
}

impl ObjectiveConfig {
    /// The keys of this objective's settings, in declaration order (`objective` not
    /// included).
    pub fn setting_keys(&self) -> Vec<String> {
        self.settings().into_iter().map(|(k, _)| k).collect()
    }

    /// The `hkd` settings, if this is `hkd`.
    pub fn as_hkd(&self) -> Option<&Hkd> {
        match self {
            ObjectiveConfig::Hkd(settings) => Some(settings),
            _ => None,
        }
    }

    /// The `hkd` settings to change, if this is `hkd`.
    pub fn as_hkd_mut(&mut self) -> Option<&mut Hkd> {
        match self {
            ObjectiveConfig::Hkd(settings) => Some(settings),
            _ => None,
        }
    }

    /// The keys of the objective called `name`, or `None` for an unknown name.
    pub fn keys_of(name: &str) -> Option<Vec<String>> {
        Self::default_of(name).ok().map(|o| o.setting_keys())
    }

    /// Which objectives have a setting called `key`.
    pub fn objectives_with(key: &str) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .copied()
            .filter(|name| Self::keys_of(name).is_some_and(|keys| keys.iter().any(|k| k == key)))
            .collect()
    }
}

/// A JSON object's entries in their order (serde_json's own map sorts its keys).
struct OrderedEntries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for OrderedEntries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = OrderedEntries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<OrderedEntries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    out.push(entry);
                }
                Ok(OrderedEntries(out))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

impl Serialize for ObjectiveConfig {
    /// `objective` first, then the objective's settings in their declaration order.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let settings = self.settings();
        let mut map = serializer.serialize_map(Some(settings.len() + 1))?;
        map.serialize_entry("objective", self.name())?;
        for (key, value) in &settings {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ObjectiveConfig {
    /// A table of `objective` (default `hkd`) and that objective's settings; a key of
    /// another objective or of none is an error that names the objectives it belongs to.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        let serde_json::Value::Object(mut map) = value else {
            return Err(D::Error::custom(
                "the loss settings must be a table (objective = \"...\" and its settings)",
            ));
        };
        let name = match map.remove("objective") {
            None => Hkd::NAME.to_owned(),
            Some(serde_json::Value::String(name)) => name,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`objective` is {other}, expected one of {}",
                    names_list()
                )));
            }
        };
        let known = Self::keys_of(&name).ok_or_else(|| {
            D::Error::custom(format!(
                "objective `{name}` is unknown, expected one of {}",
                names_list()
            ))
        })?;
        let unknown: Vec<String> = map
            .keys()
            .filter(|k| !known.contains(k))
            .map(|k| unknown_key_message(&name, k))
            .collect();
        if !unknown.is_empty() {
            return Err(D::Error::custom(unknown.join("; ")));
        }
        Self::from_settings(&name, map).map_err(D::Error::custom)
    }
}

/// Why `key` is not a setting of `objective`: it belongs to other objectives, or to none.
fn unknown_key_message(objective: &str, key: &str) -> String {
    let owners = ObjectiveConfig::objectives_with(key);
    let own = ObjectiveConfig::keys_of(objective)
        .unwrap_or_default()
        .join(", ");
    if owners.is_empty() {
        format!("`{key}` is not a setting of objective `{objective}` (its settings: {own})")
    } else {
        format!(
            "`{key}` is a setting of objective {}, not of `{objective}` (its settings: {own})",
            owners
                .iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

#[cfg(feature = "clap")]
mod cli {
    //! `--objective` and the union of every objective's flags, each flag defined once.

    use std::collections::BTreeMap;

    use super::{ObjectiveConfig, unknown_key_message};
    use clap::parser::ValueSource;
    use clap::{Arg, ArgAction, ArgMatches, Command};

    /// One flag of the union: the first objective's definition, and which objectives
    /// take it with which default.
    struct Shared {
        arg: Arg,
        defaults: Vec<(&'static str, String)>,
    }

    fn union() -> Vec<Shared> {
        let mut out: Vec<Shared> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for (name, command) in ObjectiveConfig::commands() {
            for arg in command.get_arguments() {
                let id = arg.get_id().to_string();
                let default = match arg.get_default_values() {
                    [] if matches!(arg.get_action(), ArgAction::SetTrue) => "off".to_owned(),
                    [] => "none".to_owned(),
                    values => values
                        .iter()
                        .map(|v| v.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(","),
                };
                match index.get(&id) {
                    Some(&i) => out[i].defaults.push((name, default)),
                    None => {
                        index.insert(id, out.len());
                        out.push(Shared {
                            arg: arg.clone(),
                            defaults: vec![(name, default)],
                        });
                    }
                }
            }
        }
        out
    }

    /// The union's flag: no default of its own (each objective's applies), and a help
    /// text that says which objectives take it and their defaults.
    fn union_arg(shared: &Shared) -> Arg {
        let help = shared
            .arg
            .get_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        let first = &shared.defaults[0].1;
        let defaults = if shared.defaults.iter().all(|(_, d)| d == first) {
            let objectives: Vec<&str> = shared.defaults.iter().map(|(n, _)| *n).collect();
            format!("{}; default {first}", objectives.join(", "))
        } else {
            shared
                .defaults
                .iter()
                .map(|(n, d)| format!("{n}: default {d}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        shared
            .arg
            .clone()
            .default_value(None::<&'static str>)
            .help(format!("{help} [{defaults}]"))
    }

    /// The long flag of an argument id, for messages.
    fn flag(command_args: &[Shared], id: &str) -> String {
        command_args
            .iter()
            .find(|s| s.arg.get_id() == id)
            .and_then(|s| s.arg.get_long())
            .map(|l| format!("--{l}"))
            .unwrap_or_else(|| id.to_owned())
    }

    fn given(matches: &ArgMatches, id: &str) -> bool {
        matches.value_source(id) == Some(ValueSource::CommandLine)
    }

    impl clap::Args for ObjectiveConfig {
        fn augment_args(command: Command) -> Command {
            let summaries = ObjectiveConfig::SUMMARIES
                .iter()
                .map(|(n, s)| format!("{n}: {s}"))
                .collect::<Vec<_>>()
                .join("; ");
            let mut command = command.arg(
                Arg::new("objective")
                    .long("objective")
                    .value_name("NAME")
                    .value_parser(clap::builder::PossibleValuesParser::new(
                        ObjectiveConfig::NAMES.iter().copied(),
                    ))
                    .default_value(ObjectiveConfig::NAMES[0])
                    .help(format!(
                        "The distillation objective ({summaries}); each takes the flags below that name it"
                    )),
            );
            // Under the command's current heading, in registry order (the objectives' own
            // commands gave their flags a heading and display order of their own).
            let heading = command.get_next_help_heading().map(str::to_owned);
            for shared in union() {
                let arg = union_arg(&shared).display_order(None);
                command = command.arg(match &heading {
                    Some(h) => arg.help_heading(h.clone()),
                    None => arg.help_heading(None),
                });
            }
            command
        }

        fn augment_args_for_update(command: Command) -> Command {
            Self::augment_args(command)
        }
    }

    impl clap::FromArgMatches for ObjectiveConfig {
        fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
            let name = matches
                .get_one::<String>("objective")
                .cloned()
                .unwrap_or_else(|| ObjectiveConfig::NAMES[0].to_owned());
            let shared = union();
            let own = ObjectiveConfig::commands()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| c)
                .ok_or_else(|| {
                    clap::Error::raw(
                        clap::error::ErrorKind::InvalidValue,
                        format!("objective `{name}` is unknown"),
                    )
                })?;
            let own_ids: Vec<String> = own
                .get_arguments()
                .map(|a| a.get_id().to_string())
                .collect();
            let foreign: Vec<String> = shared
                .iter()
                .map(|s| s.arg.get_id().to_string())
                .filter(|id| !own_ids.contains(id) && given(matches, id))
                .map(|id| {
                    format!(
                        "'{}': {}",
                        flag(&shared, &id),
                        unknown_key_message(&name, &id)
                    )
                })
                .collect();
            if !foreign.is_empty() {
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "{} (choose the objective with --objective)",
                        foreign.join("; ")
                    ),
                ));
            }
            // The given values, re-parsed by the objective's own flags (their defaults).
            let mut argv = vec![name.clone()];
            for arg in own.get_arguments() {
                let id = arg.get_id().as_str();
                if !given(matches, id) {
                    continue;
                }
                let long = arg.get_long().unwrap_or(id);
                if matches!(arg.get_action(), ArgAction::SetTrue) {
                    if matches.get_flag(id) {
                        argv.push(format!("--{long}"));
                    }
                    continue;
                }
                if let Some(raw) = matches.get_raw(id) {
                    for value in raw {
                        argv.push(format!("--{long}={}", value.to_string_lossy()));
                    }
                }
            }
            let own_matches = own.try_get_matches_from(argv)?;
            ObjectiveConfig::from_own_matches(&name, &own_matches)
        }

        fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
            *self = Self::from_arg_matches(matches)?;
            Ok(())
        }
    }
}

objectives![hkd::Hkd, kd::Kd, dkd::Dkd, dist::Dist];
