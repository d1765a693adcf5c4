//! The SSH building blocks against OpenSSH's own tools: certificates signed by elevate's user
//! CA read by `ssh-keygen -L` as configured, and elevate's key revocation lists agreeing with
//! `ssh-keygen -Q` (and KRLs `ssh-keygen -k` makes read back by elevate).

use std::path::Path;
use std::process::Command;

use elevate::model::SshPublicKey;
use elevate::provision::ssh::ca::{Issue, UserCa};
use elevate::provision::ssh::krl::Krl;

fn keygen(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new("ssh-keygen")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("ssh-keygen from openssh-client")
}

fn issue(ca: &UserCa, dir: &Path, serial: u64) -> std::path::PathBuf {
    let public = std::fs::read_to_string(dir.join("user.pub")).unwrap();
    let key = SshPublicKey::parse(&public).unwrap();
    let certificate = ca
        .issue(&Issue {
            key: &key,
            serial,
            key_id: format!("req-{serial} alice prod-ssh"),
            principals: vec!["alice".into(), "deploy".into()],
            valid_after: 1_700_000_000,
            valid_before: 1_700_003_600,
            extensions: vec![
                ("permit-pty".into(), String::new()),
                ("elevate-request@elevate".into(), format!("req-{serial}")),
            ],
            critical_options: vec![
                (
                    "force-command".into(),
                    "/usr/local/bin/audited-shell".into(),
                ),
                ("source-address".into(), "10.0.0.0/8".into()),
            ],
        })
        .unwrap();
    let file = dir.join(format!("user-{serial}-cert.pub"));
    std::fs::write(&file, certificate.to_openssh().unwrap()).unwrap();
    file
}

#[test]
fn ssh_keygen_reads_the_certificates_and_agrees_with_the_revocation_list() {
    let dir = tempfile::tempdir().unwrap();
    let ca = UserCa::generate(&dir.path().join("ca")).unwrap();
    std::fs::write(dir.path().join("ca.pub"), ca.public_line()).unwrap();
    let made = keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "user"], dir.path());
    assert!(made.status.success(), "{made:?}");

    let revoked = issue(&ca, dir.path(), 42);
    let kept = issue(&ca, dir.path(), 43);
    let shown = keygen(&["-L", "-f", revoked.to_str().unwrap()], dir.path());
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    for expected in [
        "Type: ssh-ed25519-cert-v01@openssh.com user certificate",
        "Key ID: \"req-42 alice prod-ssh\"",
        "Serial: 42",
        "Valid: from 2023-11-14T",
        "force-command /usr/local/bin/audited-shell",
        "source-address 10.0.0.0/8",
        "permit-pty",
        "elevate-request@elevate",
    ] {
        assert!(shown.contains(expected), "{expected:?} in\n{shown}");
    }
    let principals: Vec<&str> = shown
        .lines()
        .skip_while(|line| !line.contains("Principals:"))
        .skip(1)
        .take(2)
        .map(str::trim)
        .collect();
    assert_eq!(principals, ["alice", "deploy"], "{shown}");

    let mut krl = Krl {
        version: 1,
        generated: 1_700_000_100,
        comment: "elevate".into(),
        ..Krl::default()
    };
    krl.revoked.entry(ca.public_blob()).or_default().insert(42);
    let file = dir.path().join("revoked.krl");
    std::fs::write(&file, krl.encode()).unwrap();
    let query = |certificate: &Path| {
        keygen(
            &[
                "-Q",
                "-f",
                file.to_str().unwrap(),
                certificate.to_str().unwrap(),
            ],
            dir.path(),
        )
    };
    let answer = query(&revoked);
    assert!(!answer.status.success());
    assert!(
        String::from_utf8_lossy(&answer.stdout).contains("REVOKED"),
        "{answer:?}"
    );
    let answer = query(&kept);
    assert!(answer.status.success(), "{answer:?}");
    assert!(
        String::from_utf8_lossy(&answer.stdout).contains("ok"),
        "{answer:?}"
    );

    // A KRL made by ssh-keygen reads back the same.
    std::fs::write(dir.path().join("spec"), "serial: 5-7\nserial: 43\n").unwrap();
    let made = keygen(
        &["-k", "-s", "ca.pub", "-f", "theirs.krl", "spec"],
        dir.path(),
    );
    assert!(made.status.success(), "{made:?}");
    let theirs = Krl::decode(&std::fs::read(dir.path().join("theirs.krl")).unwrap()).unwrap();
    for serial in [5, 6, 7, 43] {
        assert!(theirs.is_revoked(&ca.public_blob(), serial), "{serial}");
    }
    assert!(!theirs.is_revoked(&ca.public_blob(), 42));
    let answer = query(&kept);
    assert!(answer.status.success());
    let answer = keygen(
        &["-Q", "-f", "theirs.krl", kept.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        !answer.status.success(),
        "ssh-keygen agrees: 43 is revoked there"
    );
}

#[tokio::test]
async fn an_ssh_key_is_checked_at_the_edge_and_only_taken_where_a_certificate_is_signed() {
    use elevate::proto::v1 as pb;
    let env = super::harness::Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let dir = tempfile::tempdir().unwrap();
    let made = keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "user"], dir.path());
    assert!(made.status.success());
    let ask = |ssh_key: String| pb::SubmitRequestRequest {
        resource: "staging-db".into(),
        duration: "30m".into(),
        reason: "deploy".into(),
        ticket: String::new(),
        ssh_key,
    };
    let private = std::fs::read_to_string(dir.path().join("user")).unwrap();
    for (bad, why) in [
        (private, "private key"),
        ("garbage".to_owned(), "not an OpenSSH public key"),
        ("A".repeat(9000), "longer than"),
    ] {
        let refused = engineer.access.submit_request(ask(bad)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains(why), "{refused:?}");
    }
    let public = std::fs::read_to_string(dir.path().join("user.pub")).unwrap();
    let refused = engineer
        .access
        .submit_request(ask(public))
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("takes no SSH key"),
        "{refused:?}"
    );
    assert!(
        super::harness::listed(&mut engineer).await.is_empty(),
        "nothing stored"
    );
    daemon.stop().await;
}
