//! The directory: who exists, their groups, their manager and whether they are active. A
//! certificate alone grants no role; everything a principal may do is decided from here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::error::{At, LoadError, parse_toml, read};
use crate::hash::content_version;
use crate::model::{GroupName, Principal};

/// Whether a principal may act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// May request and decide.
    Active,
    /// Known, but may do nothing (a leaver).
    Suspended,
}

/// One principal of the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// Groups the principal belongs to.
    pub groups: BTreeSet<GroupName>,
    /// Their manager, when they have one.
    pub manager: Option<Principal>,
    /// Active or suspended.
    pub status: Status,
    /// The principal's account on the targets of some provisioners (provisioner name →
    /// account, e.g. a PostgreSQL login); the principal's own name elsewhere.
    pub accounts: BTreeMap<String, String>,
}

impl Person {
    /// Whether the principal is active.
    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    /// Whether the principal belongs to any of `groups`.
    pub fn in_any<'a>(&self, groups: impl IntoIterator<Item = &'a GroupName>) -> bool {
        groups.into_iter().any(|group| self.groups.contains(group))
    }
}

/// The loaded directory.
#[derive(Clone, Debug)]
pub struct Directory {
    version: String,
    people: BTreeMap<Principal, Person>,
    members: BTreeMap<GroupName, BTreeSet<Principal>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    #[serde(default)]
    principals: BTreeMap<String, RawPerson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerson {
    #[serde(default)]
    groups: Vec<String>,
    manager: Option<String>,
    #[serde(default = "default_status")]
    status: String,
    #[serde(default)]
    accounts: BTreeMap<String, String>,
}

/// Two principals sharing an account on a target would share its grants, and one's lease
/// ending could take away the other's access: every provisioner's accounts (mapped, or the
/// principal's name) must be distinct. Names the principal and provisioner of a clash.
fn distinct_accounts(
    people: &BTreeMap<Principal, Person>,
) -> Result<(), (Principal, String, String)> {
    let provisioners: BTreeSet<&String> = people
        .values()
        .flat_map(|person| person.accounts.keys())
        .collect();
    for provisioner in provisioners {
        let mut owners: BTreeMap<&str, &Principal> = BTreeMap::new();
        for (principal, person) in people {
            let account = person
                .accounts
                .get(provisioner)
                .map_or(principal.as_str(), String::as_str);
            if let Some(other) = owners.insert(account, principal) {
                return Err((
                    principal.clone(),
                    provisioner.clone(),
                    format!(
                        "account '{account}' is also {other}'s; each principal needs its own account so that one lease never removes another's access"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The longest account name: PostgreSQL's identifier limit, the tightest of the targets.
const MAX_ACCOUNT_BYTES: usize = 63;

/// Checks an account name: not empty, at most 63 bytes, no control characters. Anything else
/// (quotes, semicolons, spaces, non-ASCII letters) is allowed, because targets quote names.
fn check_account(account: &str) -> Result<(), String> {
    if account.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if account.len() > MAX_ACCOUNT_BYTES {
        return Err(format!(
            "is {} bytes long; at most {MAX_ACCOUNT_BYTES} are allowed",
            account.len()
        ));
    }
    if account.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

fn default_status() -> String {
    "active".to_owned()
}

impl Directory {
    /// Reads and validates a directory file.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        Self::parse(&read(path)?, path)
    }

    /// Parses and validates directory text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, LoadError> {
        let raw: RawDirectory = parse_toml(text, file)?;
        let mut people = BTreeMap::new();
        for (name, raw_person) in &raw.principals {
            let at = At {
                file,
                entry: format!("principals.{name}"),
            };
            let principal =
                Principal::parse(name).map_err(|error| at.invalid("", error.to_string()))?;
            let mut groups = BTreeSet::new();
            for (index, group) in raw_person.groups.iter().enumerate() {
                let group = GroupName::parse(group)
                    .map_err(|error| at.invalid(format!("groups[{index}]"), error.to_string()))?;
                groups.insert(group);
            }
            let manager = match &raw_person.manager {
                None => None,
                Some(manager) => {
                    let manager = Principal::parse(manager)
                        .map_err(|error| at.invalid("manager", error.to_string()))?;
                    if manager == principal {
                        return Err(at
                            .invalid("manager", "a principal cannot manage themselves")
                            .into());
                    }
                    if !raw.principals.contains_key(manager.as_str()) {
                        return Err(at
                            .invalid("manager", format!("'{manager}' is not in the directory"))
                            .into());
                    }
                    Some(manager)
                }
            };
            let status = match raw_person.status.as_str() {
                "active" => Status::Active,
                "suspended" => Status::Suspended,
                other => {
                    return Err(at
                        .invalid(
                            "status",
                            format!("unknown status '{other}': expected active or suspended"),
                        )
                        .into());
                }
            };
            for (provisioner, account) in &raw_person.accounts {
                check_account(account)
                    .map_err(|error| at.invalid(format!("accounts.{provisioner}"), error))?;
            }
            people.insert(
                principal,
                Person {
                    groups,
                    manager,
                    status,
                    accounts: raw_person.accounts.clone(),
                },
            );
        }
        if let Err((principal, provisioner, message)) = distinct_accounts(&people) {
            let at = At {
                file,
                entry: format!("principals.{principal}"),
            };
            return Err(at
                .invalid(format!("accounts.{provisioner}"), message)
                .into());
        }
        Ok(Self::of(content_version(text.as_bytes()), people))
    }

    /// A directory of `people` known under `version`, made elsewhere than from a file (the
    /// directory of record pushed over SCIM). Managers need not be in it (such a manager
    /// counts as none); accounts must be distinct, as in a file.
    pub fn assemble(version: String, people: BTreeMap<Principal, Person>) -> Result<Self, String> {
        for (principal, person) in &people {
            for (provisioner, account) in &person.accounts {
                check_account(account)
                    .map_err(|error| format!("{principal}: account for {provisioner} {error}"))?;
            }
        }
        distinct_accounts(&people).map_err(|(principal, provisioner, message)| {
            format!("{principal}: account for {provisioner}: {message}")
        })?;
        Ok(Self::of(version, people))
    }

    /// A directory with nobody in it, known under `version` (the SCIM directory of record
    /// before the store is read).
    pub fn empty(version: &str) -> Self {
        Self::of(version.to_owned(), BTreeMap::new())
    }

    fn of(version: String, people: BTreeMap<Principal, Person>) -> Self {
        let mut members: BTreeMap<GroupName, BTreeSet<Principal>> = BTreeMap::new();
        for (principal, person) in &people {
            for group in &person.groups {
                members
                    .entry(group.clone())
                    .or_default()
                    .insert(principal.clone());
            }
        }
        Self {
            version,
            people,
            members,
        }
    }

    /// Content hash of the file this directory came from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The directory entry of `principal`.
    pub fn person(&self, principal: &Principal) -> Option<&Person> {
        self.people.get(principal)
    }

    /// Members of `group`, active or not.
    pub fn members(&self, group: &GroupName) -> impl Iterator<Item = &Principal> {
        self.members.get(group).into_iter().flatten()
    }

    /// Whether any principal belongs to `group`.
    pub fn has_group(&self, group: &GroupName) -> bool {
        self.members.contains_key(group)
    }

    /// The account of `principal` on the targets of `provisioner`: the mapped one, or the
    /// principal's name.
    pub fn account(&self, principal: &Principal, provisioner: &str) -> String {
        self.people
            .get(principal)
            .and_then(|person| person.accounts.get(provisioner))
            .cloned()
            .unwrap_or_else(|| principal.default_account())
    }

    /// Every principal, in name order.
    pub fn principals(&self) -> impl Iterator<Item = (&Principal, &Person)> {
        self.people.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Directory, LoadError> {
        Directory::parse(text, Path::new("directory.toml"))
    }

    #[test]
    fn loads_people_and_groups() {
        let directory = parse(
            r#"
            [principals.engineer]
            groups = ["engineering"]
            manager = "manager"
            [principals.manager]
            groups = ["engineering-managers"]
            "#,
        )
        .unwrap();
        let engineer = directory
            .person(&Principal::parse("engineer").unwrap())
            .unwrap();
        assert_eq!(engineer.manager.as_ref().unwrap().as_str(), "manager");
        assert!(engineer.is_active());
        let managers: Vec<_> = directory
            .members(&GroupName::parse("engineering-managers").unwrap())
            .collect();
        assert_eq!(managers.len(), 1);
    }

    #[test]
    fn errors_name_file_entry_and_field() {
        let error = parse("[principals.a]\nmanager = \"ghost\"\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "directory.toml: principals.a.manager: 'ghost' is not in the directory"
        );
        let error = parse("[principals.a]\nstatus = \"gone\"\n").unwrap_err();
        assert!(error.to_string().contains("principals.a.status"), "{error}");
        let error = parse("[principals.a]\ngroups = [\"bad group\"]\n").unwrap_err();
        assert!(
            error.to_string().contains("principals.a.groups[0]"),
            "{error}"
        );
        let error = parse("[principals.a]\naccounts = { pg = \"\" }\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "directory.toml: principals.a.accounts.pg: must not be empty"
        );
        let long = "x".repeat(64);
        let error = parse(&format!(
            "[principals.a]\naccounts = {{ pg = \"{long}\" }}\n"
        ))
        .unwrap_err();
        assert!(error.to_string().contains("64 bytes"), "{error}");
        let error = parse("[principals.a]\naccounts = { pg = \"a\\nb\" }\n").unwrap_err();
        assert!(error.to_string().contains("control"), "{error}");
        let error = parse(
            "[principals.a]\naccounts = { pg = \"dba\" }\n[principals.b]\naccounts = { pg = \"dba\" }\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("also a's"), "{error}");
        let error =
            parse("[principals.a]\naccounts = { pg = \"b\" }\n[principals.b]\n").unwrap_err();
        assert!(error.to_string().contains("account 'b'"), "{error}");
        let error = parse("[principals.a]\ncolour = \"red\"\n").unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
    }
}
