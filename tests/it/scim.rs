//! The directory of record pushed over SCIM: real HTTPS requests shaped as Okta and Microsoft
//! Entra ID send them, checked against the directory in force, the leases on the target and
//! the audit trail; bad input refused with SCIM errors and no change; a leaver's revocations
//! durable across a restart right after the answer.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::harness::{Env, request, state, until_state};

pub(super) const TOKEN: &str = "3f5e0c1d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// An answer: status, headers, JSON body (null when empty).
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: http::HeaderMap,
    pub(super) body: Value,
}

/// A SCIM client over HTTPS trusting the daemon's CA, as an identity provider is one.
pub(super) struct Idp {
    address: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    token: String,
}

impl Idp {
    pub(super) fn new(address: SocketAddr, certs: &Path, token: &str) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in elevate::tls::load_certs(&certs.join("ca.crt")).unwrap() {
            roots.add(cert).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            address,
            config: Arc::new(config),
            token: token.to_owned(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let tcp = tokio::net::TcpStream::connect(self.address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("/scim/v2{path}"))
            .header("host", format!("localhost:{}", self.address.port()));
        if body.is_some() {
            request = request.header("content-type", "application/scim+json; charset=utf-8");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub(super) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let auth = format!("Bearer {}", self.token);
        self.send(
            method,
            path,
            body.map(|body| body.to_string()),
            &[("authorization", auth.as_str())],
        )
        .await
    }

    /// Okta's and Entra's user creation (with the enterprise manager when given).
    async fn create_user(&self, name: &str, manager: Option<&str>) -> String {
        let mut body = json!({
            "schemas": [USER, ENTERPRISE],
            "userName": name,
            "name": {"givenName": name, "familyName": "Example"},
            "emails": [{"primary": true, "value": format!("{name}@example.com"), "type": "work"}],
            "displayName": format!("{name} Example"),
            "locale": "en-US",
            "externalId": format!("00u{name}"),
            "groups": [],
            "password": "never-stored-1",
            "active": true
        });
        if let Some(manager) = manager {
            body[ENTERPRISE] = json!({"manager": {"value": manager}, "department": "Eng"});
        }
        let answer = self.call("POST", "/Users", Some(body)).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.body["id"].as_str().unwrap().to_owned()
    }

    /// Okta's group push: a group with its members.
    async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
        let answer = self
            .call(
                "POST",
                "/Groups",
                Some(json!({"schemas": [GROUP], "displayName": name, "members": members})),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.body["id"].as_str().unwrap().to_owned()
    }
}

/// A daemon whose directory of record is SCIM's, with a user `engineer` in engineering (and
/// `manager`, `admin` in admins) created the way Okta creates them.
async fn seeded(env: &Env) -> (super::harness::Daemon, Idp, String, String) {
    let daemon = env.start().await;
    let idp = Idp::new(daemon.scim.unwrap(), &daemon.certs, TOKEN);
    // Okta's pre-create lookup: no such user yet.
    let lookup = idp
        .call(
            "GET",
            "/Users?filter=userName%20eq%20%22engineer%22&startIndex=1&count=100",
            None,
        )
        .await;
    assert_eq!(lookup.status, 200, "{}", lookup.body);
    assert_eq!(lookup.body["totalResults"], 0);
    let manager = idp.create_user("manager", None).await;
    let engineer = idp.create_user("engineer", Some(&manager)).await;
    let admin = idp.create_user("admin", None).await;
    let engineering = idp.create_group("engineering", &[&engineer]).await;
    idp.create_group("admins", &[&admin]).await;
    (daemon, idp, engineer, engineering)
}

/// A bad request: method, path, body, the status and `scimType` it must get.
type Case = (
    &'static str,
    String,
    Option<Value>,
    u16,
    Option<&'static str>,
);

/// A lease on staging-db for the client's principal, once it is active.
async fn active_lease(
    client: &mut elevate::cli::client::Clients,
) -> elevate::proto::v1::AccessRequest {
    let lease = request(client, "staging-db", "30m", "deploy", "")
        .await
        .unwrap();
    until_state(client, &lease.id, "active").await;
    lease
}

fn scim_env() -> Env {
    Env::new().scim(TOKEN)
}

#[tokio::test]
async fn okta_creates_people_and_deactivating_one_takes_every_lease_before_the_answer() {
    let env = scim_env();
    let (daemon, idp, engineer, _) = seeded(&env).await;
    // The lookup now finds the user, whatever the case of the name.
    let found = idp
        .call("GET", "/Users?filter=userName+eq+%22ENGINEER%22", None)
        .await;
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.body["Resources"][0]["id"], engineer.as_str());
    assert_eq!(
        found.body["Resources"][0]["groups"][0]["display"],
        "engineering"
    );
    assert!(
        found.body["Resources"][0].get("password").is_none(),
        "never stored"
    );
    let directory = daemon.broker.rules().current();
    let person = directory
        .directory
        .person(&"engineer".parse().unwrap())
        .unwrap();
    assert_eq!(person.manager.as_ref().unwrap().as_str(), "manager");
    assert!(person.groups.contains(&"engineering".parse().unwrap()));

    let mut engineer_client = daemon.client("engineer").await;
    let mut leases = Vec::new();
    for resource in ["staging-db", "staging-db"] {
        let lease = request(&mut engineer_client, resource, "30m", "deploy", "")
            .await
            .unwrap();
        leases.push(lease.id.clone());
        until_state(&engineer_client, &lease.id, "active").await;
        if leases.len() == 1 {
            break;
        }
    }
    assert_eq!(env.holders("staging-db"), ["engineer"]);

    // Okta deactivates: PATCH replace active=false, without a path.
    let answer = idp
        .call(
            "PATCH",
            &format!("/Users/{engineer}"),
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": false}}]})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["active"], false);
    // Committed before the answer: no waiting.
    assert!(env.holders("staging-db").is_empty());
    let stored = daemon
        .store
        .read({
            let id = leases[0].parse().unwrap();
            move |reader| reader.request(id)
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.kind().to_string(), "revoked");
    let actions = daemon.actions(&leases[0]).await;
    assert!(actions.contains(&"lease.revoked".to_owned()), "{actions:?}");
    let events = daemon.all_events().await;
    let deactivated = events
        .iter()
        .find(|e| e.action == "directory.user.deactivated")
        .unwrap();
    assert_eq!(deactivated.actor.to_string(), "scim");
    assert_eq!(deactivated.principal.as_ref().unwrap().as_str(), "engineer");
    // Refused from the next call.
    let refused = request(&mut engineer_client, "staging-db", "30m", "again", "")
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused.code(),
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
        ),
        "{refused:?}"
    );

    // Reactivated (Entra's shape: "Replace", a string boolean): may request again, and no
    // lease came back by itself.
    let answer = idp
        .call(
            "PATCH",
            &format!("/Users/{engineer}"),
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "True"}]})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(env.holders("staging-db").is_empty());
    let again = request(&mut engineer_client, "staging-db", "30m", "back", "")
        .await
        .unwrap();
    until_state(&engineer_client, &again.id, "active").await;
    assert!(events.len() < daemon.all_events().await.len());
    daemon.stop().await;
}

#[tokio::test]
async fn entra_deletes_a_user_and_group_pushes_move_people() {
    let env = scim_env();
    let (daemon, idp, engineer, engineering) = seeded(&env).await;
    let mut engineer_client = daemon.client("engineer").await;
    let lease = active_lease(&mut engineer_client).await;

    // Okta removes a member by a value filter: the mover loses the lease at once.
    let answer = idp
        .call(
            "PATCH",
            &format!("/Groups/{engineering}"),
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": format!("members[value eq \"{engineer}\"]")}]})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(env.holders("staging-db").is_empty());
    let status = super::harness::status(&mut engineer_client, &lease.id).await;
    assert_eq!(state(&status), "revoked");
    let removed = daemon
        .all_events()
        .await
        .into_iter()
        .find(|e| e.action == "directory.group.updated")
        .unwrap();
    assert_eq!(removed.details["removed"], "engineer");

    // Entra adds them back (PATCH "Add" members), then removes them its way ("Remove" with
    // a value list).
    let add = json!({"schemas": [PATCH], "Operations": [{"op": "Add", "path": "members", "value": [{"$ref": null, "value": engineer}]}]});
    let answer = idp
        .call("PATCH", &format!("/Groups/{engineering}"), Some(add))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    active_lease(&mut engineer_client).await;
    let remove = json!({"schemas": [PATCH], "Operations": [{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": engineer}]}]});
    let answer = idp
        .call("PATCH", &format!("/Groups/{engineering}"), Some(remove))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(env.holders("staging-db").is_empty());

    // Back in the group with a lease; then Entra deletes the user: a leaver.
    let add = json!({"schemas": [PATCH], "Operations": [{"op": "Add", "path": "members", "value": [{"value": engineer}]}]});
    idp.call("PATCH", &format!("/Groups/{engineering}"), Some(add))
        .await;
    active_lease(&mut engineer_client).await;
    let answer = idp
        .call("DELETE", &format!("/Users/{engineer}"), None)
        .await;
    assert_eq!(answer.status, 204);
    assert!(env.holders("staging-db").is_empty());
    let gone = idp.call("GET", &format!("/Users/{engineer}"), None).await;
    assert_eq!(gone.status, 404);
    assert_eq!(
        gone.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    let group = idp
        .call("GET", &format!("/Groups/{engineering}"), None)
        .await;
    assert!(group.body.get("members").is_none(), "{}", group.body);
    assert!(
        daemon
            .broker
            .rules()
            .current()
            .directory
            .person(&"engineer".parse().unwrap())
            .is_none()
    );
    let actions: Vec<String> = daemon
        .all_events()
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"directory.user.deleted".to_owned()));
    daemon.stop().await;
}

#[tokio::test]
async fn bad_scim_input_is_a_scim_error_and_changes_nothing() {
    let env = scim_env();
    let (daemon, idp, engineer, _) = seeded(&env).await;
    let version = daemon
        .broker
        .rules()
        .current()
        .directory
        .version()
        .to_owned();
    let entries = daemon.all_events().await.len();
    let user = idp.call("GET", &format!("/Users/{engineer}"), None).await;
    let etag = user.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(user.body["meta"]["version"], etag.as_str());

    let cases: Vec<Case> = vec![
        (
            "POST",
            "/Users".into(),
            Some(json!({"schemas": [USER], "userName": "x1", "colour": "red"})),
            400,
            Some("invalidSyntax"),
        ),
        (
            "POST",
            "/Users".into(),
            Some(json!({"schemas": [USER], "userName": "x2", "active": "yes"})),
            400,
            Some("invalidValue"),
        ),
        (
            "POST",
            "/Users".into(),
            Some(json!({"schemas": [USER], "userName": "x3", "emails": "a@b"})),
            400,
            Some("invalidValue"),
        ),
        (
            "POST",
            "/Users".into(),
            Some(json!({"schemas": [USER], "userName": "x6", "emails": [
                {"value": "a@x.example", "primary": true},
                {"value": "b@x.example", "primary": true}
            ]})),
            400,
            Some("invalidValue"),
        ),
        (
            "POST",
            "/Users".into(),
            Some(json!({"schemas": [USER], "userName": "not a principal"})),
            400,
            Some("invalidValue"),
        ),
        (
            "POST",
            "/Users".into(),
            Some(json!({"userName": "x4"})),
            400,
            Some("invalidSyntax"),
        ),
        (
            "POST",
            "/Users".into(),
            Some(json!({"schemas": [USER], "userName": "Engineer"})),
            409,
            Some("uniqueness"),
        ),
        (
            "POST",
            "/Groups".into(),
            Some(json!({"schemas": [GROUP], "displayName": "engineering"})),
            409,
            Some("uniqueness"),
        ),
        (
            "POST",
            "/Groups".into(),
            Some(json!({"schemas": [GROUP], "displayName": "g", "members": [{"value": "nobody"}]})),
            400,
            Some("invalidValue"),
        ),
        (
            "GET",
            "/Users?filter=userName%20eq".into(),
            None,
            400,
            Some("invalidFilter"),
        ),
        (
            "GET",
            "/Users?filter=userName%20eq%20%22a%22%20junk".into(),
            None,
            400,
            Some("invalidFilter"),
        ),
        (
            "GET",
            "/Users?filter=colour%20eq%20%22red%22".into(),
            None,
            400,
            Some("invalidFilter"),
        ),
        (
            "PATCH",
            format!("/Users/{engineer}"),
            Some(
                json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "colour", "value": 1}]}),
            ),
            400,
            Some("invalidPath"),
        ),
        (
            "PATCH",
            format!("/Users/{engineer}"),
            Some(
                json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}, {"op": "replace", "path": "userName", "value": 7}]}),
            ),
            400,
            Some("invalidValue"),
        ),
        (
            "PUT",
            "/Users/no-such-id".into(),
            Some(json!({"schemas": [USER], "userName": "x5"})),
            404,
            None,
        ),
        ("POST", "/Users".into(), None, 400, Some("invalidSyntax")),
    ];
    for (method, path, body, status, scim_type) in cases {
        let answer = idp.call(method, &path, body.clone()).await;
        assert_eq!(
            answer.status, status,
            "{method} {path} {body:?}: {}",
            answer.body
        );
        assert_eq!(answer.body["status"], status.to_string());
        assert_eq!(
            answer.body["scimType"].as_str(),
            scim_type,
            "{method} {path}: {}",
            answer.body
        );
    }
    // A body beyond the cap: 413 before it is read.
    let huge =
        json!({"schemas": [USER], "userName": "big", "nickName": "x".repeat(2 * 1024 * 1024)});
    let answer = idp.call("POST", "/Users", Some(huge)).await;
    assert_eq!(answer.status, 413);
    // If-Match naming another version: 412.
    let auth = format!("Bearer {TOKEN}");
    let body = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    let answer = idp
        .send(
            "PATCH",
            &format!("/Users/{engineer}"),
            Some(body.to_string()),
            &[
                ("authorization", &auth),
                ("if-match", "W/\"0000000000000000\""),
            ],
        )
        .await;
    assert_eq!(answer.status, 412, "{}", answer.body);
    // Missing and wrong tokens: a bare 401.
    let none = idp.send("GET", "/Users", None, &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.body["detail"], "authentication required");
    let wrong = idp
        .send(
            "GET",
            "/Users",
            None,
            &[(
                "authorization",
                "Bearer 0000000000000000000000000000000000000000",
            )],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.body.to_string().contains(TOKEN));

    // Nothing changed: the same directory, and only the refusals were audited.
    assert_eq!(daemon.broker.rules().current().directory.version(), version);
    let after = daemon.all_events().await;
    let new: Vec<&str> = after[entries..].iter().map(|e| e.action.as_str()).collect();
    // The first failure of an address in a minute is audited; the rest are logged.
    assert_eq!(new, ["scim.refused"]);
    assert_eq!(after[entries].details["reason"], "no bearer token");
    assert_eq!(after[entries].actor.to_string(), "scim");
    let still = idp.call("GET", &format!("/Users/{engineer}"), None).await;
    assert_eq!(still.body["active"], true);
    assert_eq!(still.headers["etag"].to_str().unwrap(), etag);
    // The right If-Match works.
    let answer = idp
        .send(
            "PATCH",
            &format!("/Users/{engineer}"),
            Some(body.to_string()),
            &[("authorization", &auth), ("if-match", &etag)],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_ne!(answer.headers["etag"].to_str().unwrap(), etag);

    // An address that keeps failing gets 429 for a while; the right token is still served.
    for _ in 0..12 {
        idp.send("GET", "/Users", None, &[("authorization", "Bearer nope")])
            .await;
    }
    let limited = idp
        .send("GET", "/Users", None, &[("authorization", "Bearer nope")])
        .await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.headers["retry-after"], "60");
    let served = idp.call("GET", "/Users", None).await;
    assert_eq!(served.status, 200);
    let reasons: Vec<String> = daemon
        .all_events()
        .await
        .into_iter()
        .filter(|e| e.action == "scim.refused")
        .map(|e| e.details["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        [
            "no bearer token",
            "too many failed authentications: refused for a minute"
        ]
    );
    daemon.stop().await;
}

#[tokio::test]
async fn discovery_endpoints_describe_what_is_served() {
    let env = scim_env();
    let (daemon, idp, _, _) = seeded(&env).await;
    let config = idp.call("GET", "/ServiceProviderConfig", None).await;
    assert_eq!(config.body["patch"]["supported"], true);
    assert_eq!(config.body["etag"]["supported"], true);
    let types = idp.call("GET", "/ResourceTypes", None).await;
    assert_eq!(types.body["totalResults"], 2);
    let schemas = idp.call("GET", "/Schemas", None).await;
    let ids: Vec<&str> = schemas.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&USER) && ids.contains(&GROUP) && ids.contains(&ENTERPRISE));
    let user_schema = idp.call("GET", &format!("/Schemas/{USER}"), None).await;
    let user_name = user_schema.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "userName")
        .unwrap();
    assert_eq!(user_name["uniqueness"], "server");
    // Lists page, sort and project.
    let page = idp
        .call(
            "GET",
            "/Users?startIndex=2&count=1&sortBy=userName&attributes=userName",
            None,
        )
        .await;
    assert_eq!(page.body["totalResults"], 3);
    assert_eq!(page.body["itemsPerPage"], 1);
    assert_eq!(page.body["Resources"][0]["userName"], "engineer");
    assert!(page.body["Resources"][0].get("emails").is_none());
    let groups = idp
        .call("GET", "/Groups?excludedAttributes=members", None)
        .await;
    assert!(groups.body["Resources"][0].get("members").is_none());
    let search = idp
        .call(
            "POST",
            "/Users/.search",
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "emails[type eq \"work\" and value co \"admin\"]"})),
        )
        .await;
    assert_eq!(search.body["totalResults"], 1, "{}", search.body);
    // Users are filtered as they are shown, their groups included.
    let admins = idp
        .call(
            "GET",
            "/Groups?filter=displayName%20eq%20%22admins%22",
            None,
        )
        .await;
    let admins_id = admins.body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let members = idp
        .call(
            "GET",
            &format!("/Users?filter=groups.value%20eq%20%22{admins_id}%22"),
            None,
        )
        .await;
    assert_eq!(members.body["totalResults"], 1, "{}", members.body);
    assert_eq!(members.body["Resources"][0]["userName"], "admin");
    let grouped = idp
        .call("GET", "/Users?filter=groups%20pr%20and%20name%20pr", None)
        .await;
    assert_eq!(grouped.body["totalResults"], 2, "{}", grouped.body);
    // A user's version changes with their groups; the old one no longer matches.
    let admin_id = members.body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = idp.call("GET", &format!("/Users/{admin_id}"), None).await;
    let etag = before.headers["etag"].to_str().unwrap().to_owned();
    let auth = format!("Bearer {TOKEN}");
    let unchanged = idp
        .send(
            "GET",
            &format!("/Users/{admin_id}"),
            None,
            &[("authorization", &auth), ("if-none-match", &etag)],
        )
        .await;
    assert_eq!(unchanged.status, 304);
    let leave = json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": "members"}]});
    let patched = idp
        .call(
            "PATCH",
            &format!("/Groups/{admins_id}?excludedAttributes=members"),
            Some(leave),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert!(patched.body.get("members").is_none());
    let after = idp
        .send(
            "GET",
            &format!("/Users/{admin_id}"),
            None,
            &[("authorization", &auth), ("if-none-match", &etag)],
        )
        .await;
    assert_eq!(after.status, 200);
    assert!(after.body.get("groups").is_none());
    // Refused whatever the data, methods named, discovery not filtered.
    let empty = idp
        .call("GET", "/Groups?filter=colour%20eq%20%22red%22", None)
        .await;
    assert_eq!(empty.status, 400);
    let wrong = idp.call("DELETE", "/Users", None).await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.headers["allow"], "GET, POST");
    let filtered = idp.call("GET", "/Schemas?filter=id%20pr", None).await;
    assert_eq!(filtered.status, 403);
    daemon.stop().await;
}

#[tokio::test]
async fn a_leaver_by_scim_stays_revoked_across_a_restart_right_after_the_answer() {
    let env = scim_env();
    let (daemon, idp, engineer, _) = seeded(&env).await;
    let mut engineer_client = daemon.client("engineer").await;
    let lease = active_lease(&mut engineer_client).await;
    let answer = idp
        .call(
            "PATCH",
            &format!("/Users/{engineer}"),
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]})),
        )
        .await;
    assert_eq!(answer.status, 200);
    drop(engineer_client);
    daemon.stop().await;

    let daemon = env.start().await;
    assert!(env.holders("staging-db").is_empty());
    let person = daemon.broker.rules().current();
    let engineer_person = person
        .directory
        .person(&"engineer".parse().unwrap())
        .unwrap();
    assert!(
        !engineer_person.is_active(),
        "the directory of record outlives the restart"
    );
    let mut admin = daemon.client("admin").await;
    let status = super::harness::status(&mut admin, &lease.id).await;
    assert_eq!(state(&status), "revoked");
    let mut engineer_client = daemon.client("engineer").await;
    assert!(
        request(&mut engineer_client, "staging-db", "30m", "again", "")
            .await
            .is_err()
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_see_the_directory_of_record_and_an_import_seeds_it() {
    use super::cli::{elevate, json};
    let env = scim_env();
    let (daemon, _idp, _, _) = seeded(&env).await;
    let shown = json(
        &elevate(
            &daemon,
            &["--as", "admin", "-o", "json", "admin", "directory"],
        )
        .await,
    );
    assert_eq!(shown["source"], "scim");
    let people = shown["people"].as_array().unwrap();
    assert_eq!(people.len(), 3);
    let one = json(
        &elevate(
            &daemon,
            &[
                "--as",
                "admin",
                "-o",
                "json",
                "admin",
                "directory",
                "--user",
                "engineer",
            ],
        )
        .await,
    );
    assert_eq!(one["people"][0]["manager"], "manager");
    assert_eq!(one["people"][0]["groups"], json!(["engineering"]));
    let missing = elevate(
        &daemon,
        &["--as", "admin", "admin", "directory", "--user", "ghost"],
    )
    .await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("ghost is not in the directory"));
    let refused = elevate(&daemon, &["--as", "engineer", "admin", "directory"]).await;
    assert!(!refused.status.success());
    daemon.stop().await;

    // `elevated directory import` seeds an empty directory of record from a directory file,
    // as the daemon would have stored it; a second import is refused.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("state.redb");
    let token = dir.path().join("scim.token");
    std::fs::write(&token, TOKEN).unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let certs = &env.layout.certs.0;
    let config = dir.path().join("elevated.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:0"
[tls]
ca = "{ca}"
cert = "{cert}"
key = "{key}"
[store]
path = "{store}"
[policy]
policy = "{policy}"
directory = "scim"
[scim]
listen = "127.0.0.1:0"
token_file = "{token}"
[provisioners.files]
kind = "file"
dir = "{targets}"
"#,
            ca = certs.join("ca.crt").display(),
            cert = certs.join("server.crt").display(),
            key = certs.join("server.key").display(),
            store = store.display(),
            policy = env.layout.policy.display(),
            token = token.display(),
            targets = dir.path().display(),
        ),
    )
    .unwrap();
    let import = |from: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_elevated"))
            .args(["directory", "import", "--config"])
            .arg(&config)
            .arg("--from")
            .arg(from)
            .output()
            .unwrap()
    };
    let done = import(&env.layout.directory);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        String::from_utf8_lossy(&done.stdout).contains("6 users"),
        "{}",
        String::from_utf8_lossy(&done.stdout)
    );
    let again = import(&env.layout.directory);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));
    let opened = elevate::store::Store::open(
        &store,
        elevate::store::StoreOptions::default(),
        Arc::new(elevate::store::Unheard),
    )
    .unwrap();
    let records = opened.read(|reader| reader.directory()).await.unwrap();
    let registry = elevate::scim::Registry::load(records).unwrap();
    let imported = registry.directory().unwrap();
    let file = elevate::policy::Directory::load(&env.layout.directory).unwrap();
    let people: Vec<_> = file.principals().collect();
    assert_eq!(people, imported.principals().collect::<Vec<_>>());
    let events = opened.read(|r| r.events(1, usize::MAX)).await.unwrap();
    assert!(events.iter().any(|e| e.action == "directory.user.created"));
    opened.close(std::time::Duration::from_secs(5)).await;
}
