//! The configured daemon the harness runs: people, resources, the policy and directory made
//! from them, certificates from `elevated certs`, and the fault-injecting `exec` hook.
//!
//! ```text
//! ROOT/elevated.toml   config mode; the store and audit key in ROOT/state/
//! ROOT/policy.toml ROOT/directory.toml
//! ROOT/certs/          CA, server and one client certificate per person
//! ROOT/targets/        holders files of the `file` provisioner, one per resource
//! ROOT/fault-hook.sh   the `exec` provisioner's hook
//! ROOT/fault/grants    what the hook's target grants: "RESOURCE ACCOUNT LEASE" a line
//! ROOT/fault/log       one line per hook call: the fault it drew and what it did
//! ROOT/daemon.log      the daemon's stderr, every run appended
//! ```

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One person of the directory.
pub struct Person {
    pub name: &'static str,
    pub groups: &'static [&'static str],
    pub manager: Option<&'static str>,
}

/// Requesters. `sam` is also a security and leads member, so the routes must leave him out of
/// his own stages; `mallory` manages alice and bob and is in security, so she must count once.
pub const PEOPLE: &[Person] = &[
    Person {
        name: "alice",
        groups: &["engineering"],
        manager: Some("mallory"),
    },
    Person {
        name: "bob",
        groups: &["engineering"],
        manager: Some("mallory"),
    },
    Person {
        name: "carol",
        groups: &["engineering"],
        manager: Some("mike"),
    },
    Person {
        name: "sam",
        groups: &["engineering", "security", "leads"],
        manager: Some("mike"),
    },
    Person {
        name: "mallory",
        groups: &["managers", "security"],
        manager: None,
    },
    Person {
        name: "mike",
        groups: &["managers"],
        manager: None,
    },
    Person {
        name: "sue",
        groups: &["security"],
        manager: None,
    },
    Person {
        name: "lena",
        groups: &["leads"],
        manager: None,
    },
    Person {
        name: "leo",
        groups: &["leads"],
        manager: None,
    },
    Person {
        name: "audrey",
        groups: &["auditors", "admins"],
        manager: None,
    },
];

/// Who submits requests.
pub const REQUESTERS: [&str; 4] = ["alice", "bob", "carol", "sam"];

/// Who lists every request for the checks.
pub const AUDITOR: &str = "audrey";

/// Which provisioner a resource uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The `file` provisioner: `ROOT/targets/RESOURCE`, one account a line.
    File,
    /// The fault-injecting `exec` hook: `ROOT/fault/grants`.
    Fault,
}

/// Who approves one stage.
#[derive(Clone, Copy, Debug)]
pub enum Approvers {
    /// The requester's manager.
    Manager,
    /// Members of a group.
    Group(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub struct Stage {
    pub name: &'static str,
    pub approvers: Approvers,
    pub quorum: u32,
}

/// A resource of the policy.
pub struct Resource {
    pub name: &'static str,
    pub target: Target,
    /// Empty: auto-approved.
    pub stages: &'static [Stage],
    /// What the harness asks for; the first is the default.
    pub durations: &'static [&'static str],
    pub request_ttl: Option<&'static str>,
}

const LEAD: Stage = Stage {
    name: "lead",
    approvers: Approvers::Group("leads"),
    quorum: 1,
};
const TWO_LEADS: Stage = Stage {
    name: "leads",
    approvers: Approvers::Group("leads"),
    quorum: 2,
};
const MANAGER: Stage = Stage {
    name: "manager",
    approvers: Approvers::Manager,
    quorum: 1,
};
const SECURITY: Stage = Stage {
    name: "security",
    approvers: Approvers::Group("security"),
    quorum: 1,
};

/// Auto-approved and routed, long and short (seconds, on the real clock), on the file target
/// and on the fault-injecting hook.
pub const RESOURCES: &[Resource] = &[
    Resource {
        name: "auto-db",
        target: Target::File,
        stages: &[],
        durations: &["1h", "30m"],
        request_ttl: None,
    },
    Resource {
        name: "short-db",
        target: Target::File,
        stages: &[],
        durations: &["3s", "2s", "4s"],
        request_ttl: None,
    },
    Resource {
        name: "one-stage",
        target: Target::File,
        stages: &[LEAD],
        durations: &["1h", "3s"],
        // Short, so that some requests time out between kills.
        request_ttl: Some("6s"),
    },
    Resource {
        name: "two-stage",
        target: Target::File,
        stages: &[MANAGER, SECURITY],
        durations: &["1h", "4s"],
        request_ttl: None,
    },
    Resource {
        name: "fault-short",
        target: Target::Fault,
        stages: &[],
        durations: &["3s", "2s", "4s"],
        request_ttl: None,
    },
    Resource {
        name: "fault-routed",
        target: Target::Fault,
        stages: &[TWO_LEADS],
        durations: &["4s", "3s"],
        request_ttl: Some("10s"),
    },
];

pub fn resource(name: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.name == name)
}

pub fn person(name: &str) -> Option<&'static Person> {
    PEOPLE.iter().find(|p| p.name == name)
}

impl Resource {
    /// The route the policy must have stored for `requester`: per stage its quorum and its
    /// approvers, the requester left out.
    pub fn route_for(&self, requester: &str) -> Vec<(u32, BTreeSet<String>)> {
        self.stages
            .iter()
            .map(|stage| {
                let approvers = match stage.approvers {
                    Approvers::Manager => person(requester)
                        .and_then(|p| p.manager)
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                    Approvers::Group(group) => PEOPLE
                        .iter()
                        .filter(|p| p.groups.contains(&group) && p.name != requester)
                        .map(|p| p.name.to_owned())
                        .collect(),
                };
                (stage.quorum, approvers)
            })
            .collect()
    }
}

/// Fault odds of the hook, in percent of calls, cumulative: fail before applying, apply and
/// then fail (a lost reply), hang past the timeout applying nothing, succeed slowly; the rest
/// succeed at once.
const FAIL: u32 = 10;
const FAIL_AFTER: u32 = 15;
const HANG: u32 = 23;
const SLOW: u32 = 45;

/// The hook's timeout; a hanging call sleeps far beyond it.
pub const HOOK_TIMEOUT_MS: u64 = 1500;

fn policy() -> String {
    let mut text = String::from("auditor_groups = [\"auditors\"]\nadmin_groups = [\"admins\"]\n");
    for resource in RESOURCES {
        let _ = write!(
            text,
            "\n[resources.{name}]\nprovisioner = \"{provisioner}\"\neligible_groups = [\"engineering\"]\n\
             default_duration = \"{default}\"\nmin_duration = \"1s\"\nmax_duration = \"2h\"\n",
            name = resource.name,
            provisioner = match resource.target {
                Target::File => "files",
                Target::Fault => "faulty",
            },
            default = resource.durations[0],
        );
        if let Some(ttl) = resource.request_ttl {
            let _ = writeln!(text, "request_ttl = \"{ttl}\"");
        }
        if resource.stages.is_empty() {
            text.push_str("auto_approve = true\n");
        }
        for stage in resource.stages {
            let approvers = match stage.approvers {
                Approvers::Manager => "manager".to_owned(),
                Approvers::Group(group) => format!("group:{group}"),
            };
            let _ = write!(
                text,
                "\n[[resources.{}.stages]]\nname = \"{}\"\napprovers = [\"{approvers}\"]\nquorum = {}\n",
                resource.name, stage.name, stage.quorum
            );
        }
    }
    text
}

fn directory() -> String {
    let mut text = String::new();
    for person in PEOPLE {
        let groups: Vec<String> = person.groups.iter().map(|g| format!("\"{g}\"")).collect();
        let _ = writeln!(
            text,
            "[principals.{}]\ngroups = [{}]",
            person.name,
            groups.join(", ")
        );
        if let Some(manager) = person.manager {
            let _ = writeln!(text, "manager = \"{manager}\"");
        }
        text.push('\n');
    }
    text
}

/// Keeps the revoke retries short (a failed revoke is tried again within a second or so),
/// turns periodic drift reconciliation off (it would remove stray grants and hide a daemon
/// that leaves them), and signs checkpoints often so that every kill leaves a mix of signed
/// and not yet signed entries.
fn config(store: &str, hook: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
shutdown_grace = "5s"
allow_root = true

[tls]
ca = "certs/ca.crt"
cert = "certs/server.crt"
key = "certs/server.key"

{store}

[audit]
checkpoint_every = 25
checkpoint_interval = "1s"

[policy]
policy = "policy.toml"
directory = "directory.toml"

# The workload submits far faster than a person: no rate limit gets in its way.
[rate_limits]
submit = "1000000/1s"
extend = "1000000/1s"

[workflow]
grant_attempts = 3
retry_initial = "200ms"
retry_max = "1s"
reconcile_every = "0s"

[provisioners.files]
kind = "file"
dir = "targets"

[provisioners.faulty]
kind = "exec"
program = "{hook}"
timeout = "{HOOK_TIMEOUT_MS}ms"
"#
    )
}

/// The hook. Each call takes the next number from a counter shared by all calls; the number
/// and the seed decide its fault. It keeps its target in one file, changed under a lock by
/// writing a temporary file and renaming it, and reads it back: grant adds "RESOURCE ACCOUNT
/// LEASE", revoke removes it, both idempotent.
fn hook(dir: &Path, seed: u64) -> String {
    let seed = seed % 2_147_483_648;
    format!(
        r#"#!/bin/sh
# Fault-injecting exec provisioner of the chaos harness:
#   fault-hook.sh grant|revoke PRINCIPAL RESOURCE LEASE_ID EXPIRES_AT
set -u
started=$(date +%T.%N)
action=$1
resource=$3
lease=$4
account=${{ELEVATE_ACCOUNT:-$2}}
dir='{dir}'
seed={seed}
parent=$PPID

exec 8>>"$dir/counter.lock"
flock 8
n=$(cat "$dir/counter" 2>/dev/null)
n=$(( ${{n:-0}} + 1 ))
echo "$n" > "$dir/counter.tmp" && mv "$dir/counter.tmp" "$dir/counter"
exec 8>&-

x=$(( (seed + n * 40503) & 2147483647 ))
x=$(( (x * 1103515245 + 12345) & 2147483647 ))
x=$(( x ^ (x >> 13) ))
x=$(( (x * 1103515245 + 12345) & 2147483647 ))
roll=$(( (x >> 7) % 100 ))
if [ "$roll" -lt {FAIL} ]; then fault=fail
elif [ "$roll" -lt {FAIL_AFTER} ]; then fault=fail-after
elif [ "$roll" -lt {HANG} ]; then fault=hang
elif [ "$roll" -lt {SLOW} ]; then fault=slow
else fault=ok
fi

log() {{
    # An orphan: the daemon that started this call died (kill -9) while it ran.
    now_parent=$(cut -d' ' -f4 /proc/$$/stat 2>/dev/null)
    orphan=""
    [ "$now_parent" = "$parent" ] || orphan=" orphaned"
    echo "$n $action $resource $account $lease $fault: $1 (${{0##*/}}, started $started)$orphan" >> "$dir/log"
}}

line="$resource $account $lease"
apply() {{
    exec 9>>"$dir/grants.lock"
    flock 9
    touch "$dir/grants"
    tmp="$dir/grants.tmp.$$"
    grep -vxF -- "$line" "$dir/grants" > "$tmp"
    [ "$action" = grant ] && echo "$line" >> "$tmp"
    mv "$tmp" "$dir/grants" || return 1
    if [ "$action" = grant ]; then
        grep -qxF -- "$line" "$dir/grants"
    else
        ! grep -qxF -- "$line" "$dir/grants"
    fi
}}

case "$action" in
    grant|revoke) ;;
    *) echo "unknown action '$action'" >&2; exit 2 ;;
esac
case "$fault" in
    fail) log "failed"; echo "injected failure (call $n)" >&2; exit 1 ;;
    hang) log "hanging"; sleep 8; exit 0 ;;
    slow) sleep "0.$(( 1 + x % 5 ))" ;;
esac
if ! apply; then
    log "could not apply"; echo "could not apply (call $n)" >&2; exit 1
fi
if [ "$fault" = fail-after ]; then
    log "applied, then failed"; echo "injected failure after applying (call $n)" >&2; exit 1
fi
log "applied"
exit 0
"#,
        dir = dir.display(),
    )
}

/// The files of one harness run.
pub struct Fixture {
    pub config: PathBuf,
    /// The fault-injecting hook.
    pub hook: PathBuf,
    pub store: PathBuf,
    pub certs: PathBuf,
    pub targets: PathBuf,
    pub fault: PathBuf,
    pub daemon_log: PathBuf,
}

/// Runs `elevated ARGS` to completion; its stdout, or why it failed.
pub fn elevated(args: &[&str]) -> Result<String, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_elevated"))
        .args(args)
        .output()
        .map_err(|e| format!("cannot run elevated: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "elevated {} failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl Fixture {
    /// Writes everything into `root` and issues the certificates.
    pub fn create(root: &Path, seed: u64) -> Self {
        let fixture = Self {
            config: root.join("elevated.toml"),
            hook: root.join("fault-hook.sh"),
            store: root.join("state/elevate.redb"),
            certs: root.join("certs"),
            targets: root.join("targets"),
            fault: root.join("fault"),
            daemon_log: root.join("daemon.log"),
        };
        std::fs::create_dir_all(root.join("state")).unwrap();
        std::fs::create_dir_all(&fixture.fault).unwrap();
        std::fs::write(
            &fixture.config,
            config("[store]\npath = \"state/elevate.redb\"", "fault-hook.sh"),
        )
        .unwrap();
        std::fs::write(root.join("policy.toml"), policy()).unwrap();
        std::fs::write(root.join("directory.toml"), directory()).unwrap();
        std::fs::write(&fixture.hook, hook(&fixture.fault, seed)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fixture.hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let certs = fixture.certs.to_str().unwrap();
        elevated(&["certs", "init", "--dir", certs]).unwrap();
        for person in PEOPLE {
            elevated(&["certs", "issue", "--dir", certs, "--name", person.name]).unwrap();
        }
        elevated(&["check-config", "--config", fixture.config.to_str().unwrap()]).unwrap();
        fixture
    }

    /// A node of a cluster on the PostgreSQL database `database` at `pg` (socket directory and
    /// port): its configuration `ROOT/node-NAME.toml`, listening on `port`, and its own copy of
    /// the hook, so that what a killed node's hook calls left running can be told from the
    /// others'.
    pub fn node(&self, name: &str, port: u16, pg: (&Path, u16), lease: &str) -> Node {
        let root = self.config.parent().unwrap();
        let hook = root.join(format!("fault-hook-{name}.sh"));
        std::fs::copy(&self.hook, &hook).unwrap();
        let path = root.join(format!("node-{name}.toml"));
        let endpoint = format!("https://127.0.0.1:{port}");
        let store = format!(
            "[store]\nkind = \"postgres\"\nhost = \"{}\"\nport = {}\ndatabase = \"elevate\"\n\
             user = \"postgres\"\n\n[cluster]\nnode = \"{name}\"\nadvertise = \"{endpoint}\"\n\
             lease = \"{lease}\"",
            pg.0.display(),
            pg.1
        );
        let program = hook.file_name().unwrap().to_str().unwrap().to_owned();
        std::fs::write(&path, config(&store, &program)).unwrap();
        Node {
            name: name.to_owned(),
            config: path,
            hook,
            listen: format!("127.0.0.1:{port}"),
            endpoint,
        }
    }

    /// Every grant the targets hold now.
    pub fn grants(&self) -> BTreeSet<Grant> {
        let mut grants = BTreeSet::new();
        for resource in RESOURCES.iter().filter(|r| r.target == Target::File) {
            let text =
                std::fs::read_to_string(self.targets.join(resource.name)).unwrap_or_default();
            for account in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                grants.insert(Grant {
                    resource: resource.name.to_owned(),
                    account: account.to_owned(),
                    lease: None,
                });
            }
        }
        let text = std::fs::read_to_string(self.fault.join("grants")).unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            let (Some(resource), Some(account), Some(lease)) =
                (words.next(), words.next(), words.next())
            else {
                continue;
            };
            grants.insert(Grant {
                resource: resource.to_owned(),
                account: account.to_owned(),
                lease: Some(lease.to_owned()),
            });
        }
        grants
    }

    /// The hook's log lines about `lease`, for violation reports.
    pub fn hook_calls(&self, lease: &str) -> Vec<String> {
        std::fs::read_to_string(self.fault.join("log"))
            .unwrap_or_default()
            .lines()
            .filter(|line| line.split_whitespace().nth(4) == Some(lease))
            .map(str::to_owned)
            .collect()
    }

    /// Hook calls that finished after their daemon was killed.
    pub fn orphaned_calls(&self) -> usize {
        std::fs::read_to_string(self.fault.join("log"))
            .unwrap_or_default()
            .lines()
            .filter(|line| line.ends_with(" orphaned"))
            .count()
    }
}

/// One node of a cluster: its configuration, its hook, where it listens.
pub struct Node {
    pub name: String,
    pub config: PathBuf,
    pub hook: PathBuf,
    pub listen: String,
    pub endpoint: String,
}

/// One grant on a target. File targets know the account only; the hook's target also names
/// the lease.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub resource: String,
    pub account: String,
    pub lease: Option<String>,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.lease {
            Some(lease) => write!(f, "{}: {} ({lease})", self.resource, self.account),
            None => write!(f, "{}: {}", self.resource, self.account),
        }
    }
}
