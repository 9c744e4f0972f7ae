//! Resource types: one file each, registered in `registry!` below.
//!
//! A resource type is pure logic: a typed spec (the YAML under its key), the facts it needs, and
//! a diff from (spec, facts) to an optional `Drift` carrying the steps that fix it. No I/O here:
//! every type is tested with fixtures, no host needed (pyinfra's lesson).
//!
//! To add a type: write `src/resources/NAME.rs` with a unit struct (`pub struct Name;`) implementing
//! `Resource`, then add `NAME::Name` to `registry!`.

pub mod apt;
pub mod authorized_key;
pub mod command;
pub mod directory;
pub mod download;
pub mod fetch;
pub mod file;
pub mod group;
pub mod helm_release;
pub mod helm_repo;
pub mod k8s_manifest;
pub mod k8s_secret;
pub mod line;
pub mod reboot;
pub mod service;
pub mod symlink;
pub mod sysctl;
pub mod ufw;
pub mod user;

pub mod support;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::facts::{FactQuery, Facts};
use crate::plan::{Drift, Step, Touch};
use crate::secret::Secret;
use crate::template::{Ctx, Engine};

/// Everything a diff may know besides spec and facts.
pub struct DiffCx {
    /// The resource's rendered spec touched a secret: show no content, only keyed hashes.
    pub secret: bool,
    /// Key for keyed hashes of secret content in plan output.
    pub hash_key: [u8; 32],
    /// Every known secret string: the host's OLD content may hold one even when the new
    /// content does not (a token rotated out by `-e`), and a diff would print it.
    pub secrets: std::sync::Arc<Vec<String>>,
}

impl DiffCx {
    pub fn keyed_hash(&self, data: &[u8]) -> String {
        crate::digest::keyed_hash(&self.hash_key, data)
    }

    /// True when the resource is secret or `data` contains a known secret.
    pub fn is_secret(&self, data: &[u8]) -> bool {
        self.secret || self.secrets.iter().any(|s| contains(data, s.as_bytes()))
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Controller-side inputs a spec may pull in before diffing (template files, `src` files).
pub struct PrepareCx<'a> {
    pub engine: &'a Engine,
    pub ctx: &'a Ctx,
    /// The role's folder (`roles/NAME`): `templates/` and `files/` live there.
    pub role_dir: &'a Path,
    /// The project root (where site.yml is).
    pub root: &'a Path,
    /// Set when anything prepared is secret.
    pub tainted: std::cell::Cell<bool>,
    /// The first fact placeholder (`<fact:NAME>`) a template rendered: the host's facts are not
    /// known yet, and the item is built as one that awaits them (`site::select`).
    pub awaits: std::cell::OnceCell<String>,
}

impl<'a> PrepareCx<'a> {
    pub fn new(engine: &'a Engine, ctx: &'a Ctx, role_dir: &'a Path, root: &'a Path) -> Self {
        PrepareCx {
            engine,
            ctx,
            role_dir,
            root,
            tainted: std::cell::Cell::new(false),
            awaits: std::cell::OnceCell::new(),
        }
    }

    /// Render `roles/ROLE/templates/NAME` (or a project-relative path starting with `values/`).
    pub fn render_template(&self, name: &str) -> Result<Secret<Vec<u8>>, ResourceError> {
        inside_project("template", name)?;
        let rel = self.template_path(name);
        let r = self
            .engine
            .render_file(&rel, self.ctx)
            .map_err(|e| match &e.file {
                Some(f) => format!("{}:{}:{}: {}", f.display(), e.line, e.col, e.message),
                None => e.message.clone(),
            })
            .map_err(ResourceError::Spec)?;
        if r.tainted {
            self.tainted.set(true);
        }
        if self.awaits.get().is_none() {
            if let Some(fact) = crate::facts::host::placeholder_in(r.text.as_bytes()) {
                let _ = self.awaits.set(fact);
            }
        }
        Ok(Secret::new(r.text.into_bytes()))
    }

    fn template_path(&self, name: &str) -> String {
        if name.starts_with("values/") || name.starts_with("roles/") {
            return name.to_string();
        }
        let rel = self
            .role_dir
            .strip_prefix(self.root)
            .unwrap_or(self.role_dir);
        format!("{}/templates/{name}", rel.display())
    }

    /// Read `roles/ROLE/files/NAME` (or a project-relative path) from the controller.
    pub fn read_file(&self, name: &str) -> Result<Vec<u8>, ResourceError> {
        inside_project("src", name)?;
        let p = self.file_path(name);
        std::fs::read(&p)
            .map_err(|e| ResourceError::Spec(format!("cannot read {}: {e}", p.display())))
    }

    pub fn file_path(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        let in_role = self.role_dir.join("files").join(name);
        if in_role.exists() {
            in_role
        } else {
            self.root.join(name)
        }
    }
}

/// A relative `src`/`template` stays inside the project: a role must not pull in
/// `../../../../etc/shadow` and show it in a plan diff. (An absolute path is the user's explicit
/// choice; `file` then shows it by name only.) Lexical: symlinks inside the project are trusted.
fn inside_project(field: &str, name: &str) -> Result<(), ResourceError> {
    let p = Path::new(name);
    if !p.is_absolute()
        && p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ResourceError::spec(format!(
            "`{field}: {name}` leaves the project: a relative path must stay inside it (roles/ROLE/files/, roles/ROLE/templates/ or the project folder); give an absolute path to use a file elsewhere on this machine"
        )));
    }
    Ok(())
}

/// Why a resource could not be prepared, diffed or used as a handler. The message says what to
/// do; the variant says where the fault is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResourceError {
    /// The spec, or a controller-side input it names (a template, a file), is wrong: fix the role.
    #[error("{0}")]
    Spec(String),
    /// The host holds something this type will not change on its own.
    #[error("{0}")]
    Host(String),
    /// A fact the diff reads is missing or unreadable.
    #[error(transparent)]
    Fact(#[from] crate::facts::FactError),
    /// Not usable as a handler (this type, or this spec).
    #[error("{0}")]
    Handler(String),
    /// The spec renders a fact not gathered for its host: nothing of it is sent.
    #[error(transparent)]
    NotGathered(#[from] crate::facts::host::NotGathered),
}

impl ResourceError {
    /// A spec problem (the role is wrong), from its message.
    pub fn spec(message: impl Into<String>) -> ResourceError {
        ResourceError::Spec(message.into())
    }

    /// The same problem met where the resource runs as a handler: a spec that is wrong cannot
    /// be one either.
    pub fn for_handler(self) -> ResourceError {
        match self {
            ResourceError::Spec(m) => ResourceError::Handler(m),
            e => e,
        }
    }
}

/// A resource type. See the module docs.
pub trait Resource {
    /// The YAML key: `file`, `apt`, …
    const KIND: &'static str;
    /// The spec, deserialized from the rendered YAML. Use `#[serde(deny_unknown_fields)]`.
    type Spec: DeserializeOwned + schemars::JsonSchema + Send + Sync + 'static;
    /// What identifies the instance in plan output and ids (a path, a service name, …).
    fn name(spec: &Self::Spec) -> String;
    /// Validate and pull controller-side inputs. Errors name the field at fault.
    fn prepare(_spec: &mut Self::Spec, _cx: &PrepareCx) -> Result<(), ResourceError> {
        Ok(())
    }
    /// Things `labctl check` should warn about in a valid spec (each completes "ID …").
    fn warnings(_spec: &Self::Spec) -> Vec<String> {
        vec![]
    }
    /// The facts `diff` reads.
    fn facts(spec: &Self::Spec) -> Vec<FactQuery>;
    /// Pure: what differs, and the steps that fix it. `Ok(None)` = in sync.
    fn diff(spec: &Self::Spec, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError>;
    /// What this resource's steps may change on the host (see `plan::touch`). Anything unless
    /// the type says better: changes that touch disjoint things share one remote execution.
    fn touches(_spec: &Self::Spec) -> Vec<Touch> {
        vec![Touch::Anything]
    }
    /// The steps this resource runs when used as a handler (`service` restart, `command`).
    /// `secret`: the rendered spec touched a secret (as `DiffCx::secret` for `diff`).
    fn handler(_spec: &Self::Spec, _secret: bool) -> Result<Vec<Step>, ResourceError> {
        Err(ResourceError::Handler(format!(
            "a `{}` cannot be a handler (use `service` or `command`)",
            Self::KIND
        )))
    }
    /// What this resource would send to a Kubernetes cluster, for `labctl render` and the render
    /// gate (`cluster::gate`). Host-only types send nothing. May hold secrets: callers redact.
    fn sends(_spec: &Self::Spec) -> Option<crate::cluster::Sent> {
        None
    }
}

/// A prepared instance, type-erased so a host's resources can sit in one list.
pub trait Instance: Send + Sync {
    fn kind(&self) -> &'static str;
    fn name(&self) -> String;
    fn warnings(&self) -> Vec<String>;
    fn facts(&self) -> Vec<FactQuery>;
    fn diff(&self, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError>;
    fn handler(&self, secret: bool) -> Result<Vec<Step>, ResourceError>;
    fn touches(&self) -> Vec<Touch>;
    fn sends(&self) -> Option<crate::cluster::Sent>;
    /// The fact this resource awaits: set only on one built before its host's facts were
    /// gathered (`site::select`), whose diff is then this error.
    fn awaits(&self) -> Option<&crate::facts::host::NotGathered> {
        None
    }
}

struct Typed<R: Resource>(R::Spec);

impl<R: Resource + 'static> Instance for Typed<R> {
    fn kind(&self) -> &'static str {
        R::KIND
    }
    fn name(&self) -> String {
        R::name(&self.0)
    }
    fn warnings(&self) -> Vec<String> {
        R::warnings(&self.0)
    }
    fn facts(&self) -> Vec<FactQuery> {
        R::facts(&self.0)
    }
    fn diff(&self, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        R::diff(&self.0, facts, cx)
    }
    fn handler(&self, secret: bool) -> Result<Vec<Step>, ResourceError> {
        R::handler(&self.0, secret)
    }
    fn touches(&self) -> Vec<Touch> {
        R::touches(&self.0)
    }
    fn sends(&self) -> Option<crate::cluster::Sent> {
        R::sends(&self.0)
    }
}

/// Why building an instance failed: a spec error (field path + message) or a prepare error.
#[derive(Debug)]
pub enum BuildError {
    Spec {
        path: serde_path_to_error::Path,
        message: String,
    },
    Prepare(String),
}

fn make<R: Resource + 'static>(
    value: Value,
    cx: &PrepareCx,
) -> Result<Box<dyn Instance>, BuildError> {
    let mut spec: R::Spec =
        serde_path_to_error::deserialize(value).map_err(|e| BuildError::Spec {
            path: e.path().clone(),
            message: e.into_inner().to_string(),
        })?;
    R::prepare(&mut spec, cx).map_err(|e| BuildError::Prepare(e.to_string()))?;
    Ok(Box::new(Typed::<R>(spec)))
}

macro_rules! registry {
    ($($m:ident :: $t:ident),* $(,)?) => {
        /// Every resource type's YAML key.
        pub const KINDS: &[&str] = &[$($m::$t::KIND),*];

        /// Every resource type's spec as a JSON Schema (subschemas inlined), from its Rust type.
        pub fn spec_schemas(g: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
            vec![$(($m::$t::KIND, g.subschema_for::<<$m::$t as Resource>::Spec>())),*]
        }

        /// Build an instance of `kind` from its rendered spec. None when the kind is unknown.
        pub fn build(kind: &str, value: Value, cx: &PrepareCx) -> Option<Result<Box<dyn Instance>, BuildError>> {
            $(if kind == $m::$t::KIND { return Some(make::<$m::$t>(value, cx)); })*
            None
        }
    };
}

registry!(
    file::File,
    directory::Directory,
    symlink::Symlink,
    line::Line,
    user::User,
    group::Group,
    authorized_key::AuthorizedKey,
    download::Download,
    fetch::Fetch,
    command::Command,
    apt::Apt,
    service::Service,
    sysctl::Sysctl,
    ufw::Ufw,
    reboot::Reboot,
    helm_repo::HelmRepo,
    helm_release::HelmRelease,
    k8s_manifest::K8sManifest,
    k8s_secret::K8sSecret,
);

pub use support::{content_diff, deserialize_mode, State};

/// Step scripts quote with the ground-floor `sh::q`.
pub use crate::sh::q;

#[cfg(test)]
pub(crate) mod testutil {
    //! Fixture helpers: build facts from literal probe answers, run diffs, inspect steps.
    use super::*;

    /// A `PrepareCx` over an empty temp project, for types whose `prepare` needs no files.
    pub fn with_prepare<T>(f: impl FnOnce(&PrepareCx) -> T) -> T {
        let d = tempfile::tempdir().unwrap();
        with_prepare_in(d.path(), f)
    }

    /// A `PrepareCx` whose project root and role folder are `root` (files a test put there).
    pub fn with_prepare_in<T>(root: &Path, f: impl FnOnce(&PrepareCx) -> T) -> T {
        let engine = crate::template::Engine::new(root);
        let ctx = crate::template::Ctx::new(&Default::default(), Default::default(), vec![]);
        f(&PrepareCx::new(&engine, &ctx, root, root))
    }
    pub fn cx() -> DiffCx {
        DiffCx {
            secret: false,
            hash_key: [7; 32],
            secrets: Default::default(),
        }
    }
    pub fn secret_cx() -> DiffCx {
        DiffCx {
            secret: true,
            hash_key: [7; 32],
            secrets: Default::default(),
        }
    }
    pub fn facts(pairs: &[(&str, &str)]) -> Facts {
        let mut f = Facts::default();
        for (k, v) in pairs {
            f.insert(k, v, 0);
        }
        f
    }
    pub fn spec<R: Resource>(yaml: &str) -> R::Spec {
        let node = crate::yaml::parse_node(Path::new("t.yml"), yaml).unwrap();
        crate::yaml::from_node::<R::Spec>(Path::new("t.yml"), &node, R::KIND).unwrap()
    }
    pub fn spec_err<R: Resource>(yaml: &str) -> String {
        let node = crate::yaml::parse_node(Path::new("t.yml"), yaml).unwrap();
        match crate::yaml::from_node::<R::Spec>(Path::new("t.yml"), &node, R::KIND) {
            Ok(_) => panic!("expected an error for {yaml}"),
            Err(d) => d.to_string(),
        }
    }
    /// One row of a resource fixture table: a spec and the facts it reads (as the probe answers
    /// them, from the families' `fixture` builders) in; the verdict out.
    pub struct Case<'a> {
        pub name: &'a str,
        pub spec: &'a str,
        pub facts: Vec<(String, String)>,
        pub want: Want<'a>,
    }

    pub enum Want<'a> {
        InSync,
        /// Action, reasons, and the steps as `scripts` prints them.
        Change(crate::plan::Action, &'a [&'a str], &'a str),
        /// The diff refuses; the message contains this.
        Error(&'a str),
    }

    /// The one runner for fixture tables: every row's verdict, or a panic naming the row.
    pub fn table<R: Resource>(cases: &[Case]) {
        for c in cases {
            let s = spec::<R>(c.spec);
            let pairs: Vec<(&str, &str)> = c
                .facts
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let got = R::diff(&s, &facts(&pairs), &cx());
            match (&c.want, got) {
                (Want::InSync, Ok(None)) => {}
                (Want::Change(action, reasons, steps), Ok(Some(d))) => {
                    assert_eq!(d.action, *action, "{}: action", c.name);
                    assert_eq!(d.reasons, *reasons, "{}: reasons", c.name);
                    assert_eq!(scripts(&d), *steps, "{}: steps", c.name);
                }
                (Want::Error(part), Err(e)) => {
                    assert!(
                        e.to_string().contains(part),
                        "{}: error `{e}` lacks `{part}`",
                        c.name
                    )
                }
                (_, got) => panic!("{}: unexpected verdict {got:?}", c.name),
            }
        }
    }

    /// All Sh scripts of a drift, joined, for asserting on commands.
    pub fn scripts(d: &Drift) -> String {
        d.steps
            .iter()
            .map(|s| match s {
                Step::Sh { script } => script.clone(),
                Step::Stdin { script, .. } => format!("<stdin> | {script}"),
                Step::Write { path, .. } => format!("<write {path}>"),
                Step::Fetch { path, dest, .. } => format!("<fetch {path} -> {}>", dest.display()),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
