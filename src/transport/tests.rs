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

#[test]
fn host_key_problems_are_refusals_with_a_fix() {
    for msg in [
        "Host key verification failed.",
        "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@",
        "No ED25519 host key is known for 10.0.0.1 and you have requested strict checking.",
    ] {
        match classify("root@h", connect_err(msg)) {
            TransportError::HostKey { dest, why } => {
                assert_eq!(dest, "root@h");
                assert!(why.starts_with(msg.trim()), "{why}");
                assert!(why.contains("--accept-new-host-keys"), "{why}");
            }
            other => panic!("{msg}: {other:?}"),
        }
    }
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
    let t = Transport::Local { become_: false };
    let r = rt().block_on(t.run(
        "echo 'sudo: a password is required' >&2; exit 1",
        None,
        Duration::from_secs(10),
    ));
    match r {
        Err(TransportError::SudoPassword(dest)) => assert_eq!(dest, "local"),
        other => panic!("{other:?}"),
    }
    // The same words on a successful run are just output.
    let ok = rt()
        .block_on(t.run(
            "echo 'sudo: a password is required' >&2",
            None,
            Duration::from_secs(10),
        ))
        .unwrap();
    assert_eq!(ok.status, 0);
}

#[test]
fn a_step_past_its_timeout_is_stopped_on_the_host() {
    let t = Transport::Local { become_: false };
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
    let t = Transport::Local { become_: false };
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
