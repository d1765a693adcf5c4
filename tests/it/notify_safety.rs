//! Notifications cannot be turned against their readers: a requester cannot write lines,
//! mentions or links into an approver's message, and no secret in a webhook's URL reaches the
//! configuration's errors, the audit trail or a log.

use std::sync::Arc;
use std::time::Duration;

use elevate::notify::{Format, Priority, Route, WebhookNotifier};

use super::harness::*;
use super::http::{Answer, Hook};

/// Routes every event to a webhook named `name` posting to `url` in `format`, trusting `ca`.
fn route_to(env: &Env, name: &'static str, url: &str, format: Format, ca: std::path::PathBuf) {
    let url = url.to_owned();
    env.tweak(move |options| {
        let hook = WebhookNotifier::new(
            &url,
            format,
            &Default::default(),
            Some(&ca),
            Duration::from_secs(2),
        )
        .unwrap();
        options.notifiers.insert(name, Arc::new(hook));
        options.settings.routing.routes.push(Route {
            events: vec!["*".into()],
            min_priority: Priority::Normal,
            notifier: name.into(),
        });
    });
}

#[tokio::test]
async fn a_requester_cannot_write_into_approvers_notifications() {
    let certs = tempfile::tempdir().unwrap();
    elevate::tls::issue::init(certs.path(), &[], false).unwrap();
    let slack = Hook::start_tls(Vec::new(), certs.path()).await;
    let json = Hook::start_tls(Vec::new(), certs.path()).await;
    let env = Env::new();
    let ca = certs.path().join("ca.crt");
    route_to(&env, "slack", &slack.url, Format::Slack, ca.clone());
    route_to(&env, "json", &json.url, Format::Json, ca);
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let reason = format!(
        "slow queries\n\n<!channel> urgent: <https://evil.example|elevate approve req-2> & more\n{}",
        "A".repeat(600)
    );
    let pending = request(&mut engineer, "prod-db-read", "30m", &reason, "")
        .await
        .unwrap();

    let waiting = |hook: &Hook| {
        hook.accepted()
            .into_iter()
            .find(|body| body.to_string().contains("waits for stage"))
    };
    let to_slack = until("the Slack message to the approver", || async {
        waiting(&slack)
    })
    .await;
    let text = to_slack["text"].as_str().unwrap();
    assert!(
        !text.contains('\n') && !text.contains('\r'),
        "one line: {text}"
    );
    assert!(
        !text.contains('<') && !text.contains('>'),
        "no mention or link: {text}"
    );
    assert!(text.contains("&lt;!channel&gt;"), "{text}");
    assert!(text.contains("&amp; more"), "{text}");
    assert!(
        text.contains('…') && text.chars().count() < 300,
        "capped: {text}"
    );

    let event = until("the JSON event", || async { waiting(&json) }).await;
    let text = event["text"].as_str().unwrap();
    assert!(!text.contains('\n') && text.chars().count() < 300, "{text}");
    // The structured field still carries the exact value.
    assert_eq!(event["request"]["reason"], reason.as_str());
    assert_eq!(event["request"]["id"], pending.id.as_str());
    daemon.stop().await;
}

/// A configuration from the shipped examples plus `notifier` (TOML), in `dir`.
fn config_with(dir: &std::path::Path, notifier: &str) -> std::path::PathBuf {
    super::config_mode::copy_examples(dir);
    let file = dir.join("elevated.toml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(notifier);
    std::fs::write(&file, text).unwrap();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let certs = dir.join("certs");
    elevate::tls::issue::init(&certs, &[], false).unwrap();
    file
}

#[tokio::test]
async fn a_webhook_url_with_credentials_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_with(
        dir.path(),
        "\n[notifiers.pager]\nkind = \"webhook\"\nurl = \"https://ops:hunter2@127.0.0.1:9/hook\"\n",
    );
    let error = elevate::config::Config::load(&file)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("notifiers.pager.url") && error.contains("headers_file"),
        "{error}"
    );
    assert!(
        !error.contains("hunter2"),
        "the secret is not repeated: {error}"
    );
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_elevated"))
        .args(["check-config", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!checked.status.success());
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(
        said.contains("headers_file") && !said.contains("hunter2"),
        "{said}"
    );
}

#[tokio::test]
async fn credentials_go_in_a_headers_file_and_a_webhook_is_shown_by_host_and_port_only() {
    use std::os::unix::fs::PermissionsExt;
    let hook = Hook::start(vec![Answer::Status(500); 1000]).await;
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("pager.headers");
    std::fs::write(&headers, "Authorization: Bearer s3cret-token\n").unwrap();
    std::fs::set_permissions(&headers, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The URL carries a token in its path and query too, as Slack's do.
    let url = hook.url.replace("team=ops", "team=ops&token=q-s3cret");
    let file = config_with(
        dir.path(),
        &format!(
            "\n[notifiers.pager]\nkind = \"webhook\"\nurl = \"{url}\"\nheaders_file = \"{}\"\n\n[[notifications.routes]]\nevents = [\"*\"]\nnotifier = \"pager\"\n",
            headers.display()
        ),
    );
    let config = elevate::config::Config::load(&file).unwrap();
    let clock = elevate::clock::ManualClock::starting_now();
    let mut options =
        elevate::server::Options::from_config(&config, Arc::new(clock.clone())).unwrap();
    options.settings.delivery.give_up_after = Duration::from_secs(60);
    let server = elevate::server::Server::build(options).await.unwrap();
    let store = server.store().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("https://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(listener, async move {
        let _ = stopped.await;
    }));
    // A request tells its approvers: the webhook fails, is retried, then the event dropped.
    let certs = dir.path().join("certs");
    elevate::tls::issue::issue(&certs, "olga", "elevate.local", 1, false).unwrap();
    let mut olga = elevate::cli::client::connect(
        &endpoint,
        &elevate::cli::client::ClientFiles {
            ca: certs.join("ca.crt"),
            cert: certs.join("olga.crt"),
            key: certs.join("olga.key"),
        },
    )
    .await
    .unwrap();
    request(&mut olga, "ops-shell", "2h", "rotate keys", "")
        .await
        .unwrap();
    let head = until("a delivery attempt", || async {
        hook.heads.lock().unwrap().first().cloned()
    })
    .await;
    assert!(
        head.contains("authorization: bearer s3cret-token"),
        "{head}"
    );
    let dropped = until("the drop to be audited", || async {
        // Each retry needs the clock to move on; after a minute the event is dropped.
        clock.advance(RETRY_MAX);
        store
            .read(|r| r.events(0, 100_000))
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.action == "notification.dropped")
    })
    .await;
    let details = format!("{:?}", dropped.details);
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    assert!(
        details.contains(&format!("http://127.0.0.1:{port}")),
        "{details}"
    );
    for secret in ["s3cret", "hooks/elevate", "token"] {
        assert!(!details.contains(secret), "{secret} in {details}");
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
