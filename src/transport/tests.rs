//! Transport's error classification and the argv it runs, without a host: `classify` on the
//! errors openssh reports, and the local transport for what a finished command says.

use super::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn connect_err(msg: &str) -> openssh::Error {
    openssh::Error::Connect(std::io::Error::other(msg.to_string()))
}

/// ssh's log as OpenSSH writes it for each refusal (sshconnect.c), `\r\n` ends included.
const CHANGED: &str = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\nIT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r\nSomeone could be eavesdropping on you right now (man-in-the-middle attack)!\r\nIt is also possible that a host key has just been changed.\r\nThe fingerprint for the ED25519 key sent by the remote host is\nSHA256:abc.\r\nPlease contact your system administrator.\r\nAdd correct host key in /k to get rid of this message.\r\nOffending ED25519 key in /k:1\r\nHost key for 10.0.0.1 has changed and you have requested strict checking.\r\nHost key verification failed.\r\n";

#[test]
fn host_key_refusals_are_told_by_ssh_s_own_lines() {
    let of = HostKeyRefusal::of;
    assert_eq!(of(CHANGED), Some(HostKeyRefusal::Changed));
    // Before OpenSSH 8.5 the last line named the key type; the banner alone is enough too.
    assert_eq!(
        of("RSA host key for h has changed and you have requested strict checking.\nHost key verification failed."),
        Some(HostKeyRefusal::Changed)
    );
    assert_eq!(
        of("No ED25519 host key is known for 10.0.0.1 and you have requested strict checking.\r\nHost key verification failed.\r\n"),
        Some(HostKeyRefusal::Unknown)
    );
    assert_eq!(
        of("@       WARNING: REVOKED HOST KEY DETECTED!               @\nThe ED25519 host key for h is marked as revoked.\nED25519 host key for h was revoked and you have requested strict checking.\nHost key verification failed."),
        Some(HostKeyRefusal::Revoked)
    );
    assert_eq!(
        of("Host key verification failed.\n"),
        Some(HostKeyRefusal::Failed)
    );
    // No key algorithm in common is a failed negotiation, not a key to trust.
    assert_eq!(
        of("Unable to negotiate with 10.0.0.1 port 22: no matching host key type found. Their offer: ssh-rsa,ssh-dss"),
        None
    );
    // Words about host keys that are not ssh's refusal.
    assert_eq!(
        of("kex_exchange_identification: read: Connection reset by peer\nthe host key was fine"),
        None
    );
    assert_eq!(of("Host key verification failed. (said a wrapper)"), None);
}

#[test]
fn host_key_problems_are_refusals_with_a_fix() {
    for (msg, fix) in [
        (
            "Host key verification failed.",
            "--accept-new-host-keys for a first contact",
        ),
        (CHANGED, "ssh-keygen -R"),
        (
            "No ED25519 host key is known for 10.0.0.1 and you have requested strict checking.",
            "--accept-new-host-keys for a first contact",
        ),
    ] {
        match classify("root@h", connect_err(msg)) {
            TransportError::HostKey { dest, why, .. } => {
                assert_eq!(dest, "root@h");
                assert!(why.starts_with(msg.trim()), "{why}");
                assert!(why.contains(fix), "{why}");
            }
            other => panic!("{msg}: {other:?}"),
        }
    }
    let changed = classify("root@h", connect_err(CHANGED));
    assert!(
        matches!(
            changed,
            TransportError::HostKey {
                refusal: HostKeyRefusal::Changed,
                ..
            }
        ),
        "{changed:?}"
    );
}

#[test]
fn no_matching_host_key_type_is_unreachable_not_a_host_key_refusal() {
    let msg = "Unable to negotiate with 10.0.0.1 port 22: no matching host key type found. Their offer: ssh-dss";
    let e = classify("root@h", connect_err(msg));
    assert!(matches!(e, TransportError::Unreachable { .. }), "{e:?}");
    assert!(
        e.to_string().contains("no matching host key type found"),
        "{e}"
    );
    assert_eq!(
        crate::plan::HostError::from(e).exit(),
        crate::error::Exit::Unreachable
    );
}

#[test]
fn anything_else_is_unreachable_with_ssh_s_words() {
    let e = classify(
        "root@h",
        connect_err("ssh: connect to host 10.0.0.9 port 22: Connection refused"),
    );
    assert!(matches!(e, TransportError::Unreachable { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "cannot connect to root@h: failed to connect to the remote host: ssh: connect to host 10.0.0.9 port 22: Connection refused"
    );
}

#[test]
fn sudo_asking_for_a_password_is_its_own_error() {
    let out = |status: i32, stderr: &str| Output {
        status,
        stdout: vec![],
        stderr: stderr.as_bytes().to_vec(),
    };
    assert!(sudo_wants_password(&out(
        1,
        "sudo: a password is required\n"
    )));
    // The same words from the command itself (it ran, then failed), or on success: output.
    assert!(!sudo_wants_password(&out(
        1,
        "deploy: checking\nsudo: a password is required\n"
    )));
    assert!(!sudo_wants_password(&out(
        0,
        "sudo: a password is required\n"
    )));
    assert!(!sudo_wants_password(&out(
        2,
        "sudo: a password is required\n"
    )));
    // Without sudo in the argv nothing is taken for sudo's refusal.
    let t = Transport::local(false);
    let r = rt()
        .block_on(t.run(
            "echo 'sudo: a password is required' >&2; exit 1",
            None,
            Duration::from_secs(10),
        ))
        .unwrap();
    assert_eq!(r.status, 1);
}

#[test]
fn a_step_past_its_timeout_is_stopped_on_the_host() {
    let t = Transport::local(false);
    let started = std::time::Instant::now();
    let r = rt().block_on(t.run("sleep 30", None, Duration::from_secs(1)));
    assert!(started.elapsed() < Duration::from_secs(10));
    match r {
        Err(e @ TransportError::Lost { .. }) => assert_eq!(
            e.to_string(),
            "connection to local failed while running a command: the step ran longer than 1s and was stopped (--step-timeout)"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn stdin_reaches_the_script_and_exit_codes_come_back() {
    let t = Transport::local(false);
    let out = rt()
        .block_on(t.run(
            "cat; echo err >&2; exit 3",
            Some(b"from stdin\n"),
            Duration::from_secs(10),
        ))
        .unwrap();
    assert_eq!(out.status, 3);
    assert_eq!(out.stdout_str(), "from stdin\n");
    assert_eq!(out.stderr_tail(), "err");
}

#[test]
fn stderr_tail_keeps_the_last_eight_non_blank_lines() {
    let out = Output {
        status: 1,
        stdout: vec![],
        stderr: (1..=12)
            .map(|i| format!("line {i}\n\n"))
            .collect::<String>()
            .into_bytes(),
    };
    let tail = out.stderr_tail();
    assert_eq!(tail.lines().count(), 8);
    assert!(
        tail.starts_with("line 5\n") && tail.ends_with("line 12"),
        "{tail}"
    );
}

#[test]
fn host_key_policy_from_the_flag() {
    assert_eq!(HostKeyPolicy::from_flag(true), HostKeyPolicy::AcceptNew);
    assert_eq!(HostKeyPolicy::from_flag(false), HostKeyPolicy::Strict);
}
