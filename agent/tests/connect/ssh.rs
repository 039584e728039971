//! The real OpenSSH client against `GET /ssh`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;

use crate::common::{children, request, wait_for};
use crate::support::{
    Background, BridgeHeaders, Session, TOKEN, echo_server, echo_through, port, random_bytes, run,
    stderr, stdout, wait_listening,
};

#[test]
fn exec_prints_output_and_reports_the_exit_status() {
    let mut session = Session::start(&[]);
    let out = session.exec("echo hello; echo oops >&2");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "hello\n");
    assert_eq!(stderr(&out), "oops\n");

    let out = session.exec("exit 3");
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // stdin reaches the command, and the client's EOF closes it.
    let out = run(session.ssh(&[]).arg("wc -c"), &[b'x'; 100_000], Duration::from_secs(30));
    assert_eq!(stdout(&out).trim(), "100000", "{out:?}");

    // One line per connection open and close, with who, bytes and duration; no secrets.
    let log = session.agent_mut().stderr();
    assert!(log.contains("ssh conn_test: open (user usr_test, 1 authorized keys)"), "{log}");
    assert!(log.contains("ssh conn_test: authenticated as \"tester\""), "{log}");
    let closed = log.lines().find(|line| {
        line.contains("ssh conn_test: closed (user usr_test, ssh user tester) after ")
    });
    assert!(
        closed.is_some_and(|line| line.contains(" bytes in, ") && line.contains(" bytes out")),
        "{log}"
    );
    let key_data = session.keys.client_public.split(' ').nth(1).unwrap();
    assert!(!log.contains(TOKEN) && !log.contains(key_data), "{log}");
}

#[test]
fn dropping_the_connection_hangs_up_its_processes() {
    let session = Session::start(&[]);
    let quiet = |command: &mut Command| {
        command.stdout(Stdio::null()).stderr(Stdio::null());
    };
    let mut plain = session.ssh(&[]);
    plain.arg("sleep 313").stdin(Stdio::null());
    quiet(&mut plain);
    let plain = Background(plain.spawn().unwrap());
    let mut tty = session.ssh(&["-tt"]);
    tty.stdin(Stdio::piped());
    quiet(&mut tty);
    let mut tty = Background(tty.spawn().unwrap());
    // A background job and a foreground command in an interactive shell; stdin stays open.
    let mut stdin = tty.0.stdin.take().unwrap();
    stdin.write_all(b"sleep 317 &\nsleep 319\n").unwrap();

    let running = |seconds: &str| {
        let wanted = format!("sleep\0{seconds}\0");
        std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmdline| cmdline == wanted.as_bytes())
        })
    };
    wait_for("the sleeps to start", Duration::from_secs(10), || {
        ["313", "317", "319"].iter().all(|s| running(s))
    });
    drop((plain, tty));
    wait_for("the sleeps to be hung up", Duration::from_secs(10), || {
        ["313", "317", "319"].iter().all(|s| !running(s))
    });
    drop(stdin);
}

#[test]
fn a_forward_whose_target_does_not_read_does_not_stall_the_connection() {
    let session = Session::start(&[]);
    // A server that accepts and never reads.
    let deaf = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let deaf_port = deaf.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = deaf.incoming().take(1).collect();
        std::thread::sleep(Duration::from_secs(60));
        drop(held);
    });
    let echo = echo_server();
    let (to_deaf, to_echo) = (port(), port());
    let mut command = session.ssh(&[
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-L",
        &format!("127.0.0.1:{to_deaf}:127.0.0.1:{deaf_port}"),
        "-L",
        &format!("127.0.0.1:{to_echo}:127.0.0.1:{echo}"),
    ]);
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let _ssh = Background(command.spawn().unwrap());
    wait_listening(to_deaf);
    wait_listening(to_echo);

    // 12 MB that nobody reads: more than russh's own channel queue would hold.
    let (sent_tx, sent) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", to_deaf)).unwrap();
        stream.write_all(&random_bytes(12 << 20, 7)).unwrap();
        let _ = sent_tx.send(());
        std::thread::sleep(Duration::from_secs(60));
    });
    sent.recv_timeout(Duration::from_secs(20)).expect("the 12 MB were not taken");
    std::thread::sleep(Duration::from_millis(500));
    // Another channel of the same connection still works at once.
    let started = std::time::Instant::now();
    assert_eq!(echo_through(to_echo, b"still flowing"), b"still flowing");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn a_command_killed_by_a_signal_is_reported_with_exit_signal() {
    let session = Session::start(&[]);
    // OpenSSH does not turn exit-signal into an exit code: it exits with 255 (an exit-status
    // would have made it 137); its debug log shows the request.
    let out = run(session.ssh(&["-v"]).arg("kill -9 $$"), b"", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(stderr(&out).contains("rtype exit-signal"), "{}", stderr(&out));
}

#[test]
fn a_pty_session_runs_a_login_shell_on_a_terminal() {
    let session = Session::start(&[]);
    let script = "tty\nstty size\necho term=$TERM\nexit 5\n";
    let out = run(&mut session.ssh(&["-tt"]), script.as_bytes(), Duration::from_secs(30));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(5), "{out:?}\n{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    // Without a terminal of its own ssh sends no size: the agent uses 80x24.
    assert!(text.contains("24 80"), "{text}");
    assert!(text.contains("term="), "{text}");

    // A command with -tt gets a terminal too.
    let out = run(session.ssh(&["-tt"]).arg("tty; exit 4"), b"", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(stdout(&out).contains("/dev/pts/"), "{out:?}");
}

#[test]
fn env_requests_are_passed_on_but_not_loader_or_agent_variables() {
    let session = Session::start(&[]);
    let out = run(
        session
            .ssh(&["-o", "SetEnv=FOO=bar LC_TEST=x LD_PRELOAD=/nope BURSTFLARE_X=1"])
            .arg("echo foo=$FOO lc=$LC_TEST ld=$LD_PRELOAD bf=$BURSTFLARE_X; env"),
        b"",
        Duration::from_secs(30),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("foo=bar lc=x ld= bf=\n"), "{text}");
    // The agent's secrets never reach a session process.
    for secret in ["BURSTFLARE_AGENT_TOKEN", "BURSTFLARE_HOST_KEY", "OPENSSH PRIVATE KEY"] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(!text.contains(TOKEN), "{text}");
    for name in ["HOME=", "USER=", "LOGNAME=", "SHELL=", "PATH="] {
        assert!(text.lines().any(|line| line.starts_with(name)), "{name} missing:\n{text}");
    }
}

#[test]
fn scp_copies_50_mb_up_and_down_in_sftp_mode_and_small_files_in_legacy_mode() {
    let session = Session::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(50 << 20, 42);
    let local = dir.path().join("local.bin");
    std::fs::write(&local, &data).unwrap();

    let uploaded = dir.path().join("uploaded.bin");
    let out = session.scp(&[local.to_str().unwrap(), &Session::remote(&uploaded)]);
    assert!(out.status.success(), "scp up: {out:?}");
    assert!(std::fs::read(&uploaded).unwrap() == data, "uploaded bytes differ");

    let downloaded = dir.path().join("downloaded.bin");
    let out = session.scp(&[&Session::remote(&uploaded), downloaded.to_str().unwrap()]);
    assert!(out.status.success(), "scp down: {out:?}");
    assert!(std::fs::read(&downloaded).unwrap() == data, "downloaded bytes differ");

    // Legacy scp: exec of `scp -t`/`scp -f` in the session; -p keeps the mtime.
    let small = dir.path().join("small.txt");
    std::fs::write(&small, "legacy\n").unwrap();
    let legacy = dir.path().join("legacy.txt");
    let out = session.scp(&["-O", "-p", small.to_str().unwrap(), &Session::remote(&legacy)]);
    assert!(out.status.success(), "scp -O up: {out:?}");
    assert_eq!(std::fs::read_to_string(&legacy).unwrap(), "legacy\n");
    let back = dir.path().join("back.txt");
    let out = session.scp(&["-O", &Session::remote(&legacy), back.to_str().unwrap()]);
    assert!(out.status.success(), "scp -O down: {out:?}");
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "legacy\n");

    // -p in SFTP mode sets the times through setstat; -r walks directories.
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::options().write(true).open(&small).unwrap().set_modified(old).unwrap();
    let kept = dir.path().join("kept.txt");
    let out = session.scp(&["-p", small.to_str().unwrap(), &Session::remote(&kept)]);
    assert!(out.status.success(), "scp -p: {out:?}");
    assert_eq!(std::fs::metadata(&kept).unwrap().modified().unwrap(), old);
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/leaf.txt"), "leaf\n").unwrap();
    let copied = dir.path().join("copied");
    let out = session.scp(&["-r", tree.to_str().unwrap(), &Session::remote(&copied)]);
    assert!(out.status.success(), "scp -r: {out:?}");
    assert_eq!(std::fs::read_to_string(copied.join("sub/leaf.txt")).unwrap(), "leaf\n");
}

#[test]
fn sftp_batch_makes_lists_renames_chmods_links_gets_and_removes() {
    let session = Session::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().display();
    let source = dir.path().join("source.txt");
    std::fs::write(&source, "sftp data\n").unwrap();
    let fetched = dir.path().join("fetched.txt");
    let batch = format!(
        "cd {base}\n\
         mkdir work\n\
         put {source} work/a.txt\n\
         ls -l work\n\
         rename work/a.txt work/b.txt\n\
         chmod 600 work/b.txt\n\
         symlink b.txt work/link\n\
         get work/b.txt {fetched}\n\
         ls -l work\n",
        source = source.display(),
        fetched = fetched.display(),
    );
    let out = session.sftp(&batch);
    let text = stdout(&out);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&fetched).unwrap(), "sftp data\n");
    let moved = dir.path().join("work/b.txt");
    assert_eq!(std::fs::metadata(&moved).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_link(dir.path().join("work/link")).unwrap().to_str(), Some("b.txt"));
    // Long listings show the file type: the symlink as a symlink.
    assert!(
        text.lines().any(|line| line.starts_with("-rw-------") && line.ends_with("b.txt")),
        "{text}"
    );
    assert!(text.lines().any(|line| line.starts_with('l') && line.contains("link")), "{text}");

    let out = session.sftp(&format!("cd {base}\nrm work/link\nrm work/b.txt\nrmdir work\n"));
    assert!(out.status.success(), "{out:?}");
    assert!(!dir.path().join("work").exists());
}

#[test]
fn local_forwarding_reaches_a_tcp_server_and_reports_closed_ports() {
    let session = Session::start(&[]);
    let echo = echo_server();
    let local = port();
    let forward = format!("127.0.0.1:{local}:127.0.0.1:{echo}");
    let child = session
        .ssh(&["-N", "-o", "ExitOnForwardFailure=yes", "-L", &forward])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ssh = Background(child);
    wait_listening(local);
    assert_eq!(echo_through(local, b"ping through -L"), b"ping through -L");
    // Several connections over the same SSH connection.
    let threads: Vec<_> = (0..5)
        .map(|i| {
            std::thread::spawn(move || echo_through(local, format!("parallel {i}").as_bytes()))
        })
        .collect();
    for (i, thread) in threads.into_iter().enumerate() {
        assert_eq!(thread.join().unwrap(), format!("parallel {i}").as_bytes());
    }

    // `ssh -W` is a direct-tcpip channel on stdin/stdout.
    let out = run(
        &mut session.ssh(&["-W", &format!("localhost:{echo}")]),
        b"through -W\n",
        Duration::from_secs(30),
    );
    assert_eq!(stdout(&out), "through -W\n", "{out:?}");
    let closed = port();
    let out = run(
        &mut session.ssh(&["-W", &format!("127.0.0.1:{closed}")]),
        b"",
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("forwarding failed"), "{out:?}");
}

#[test]
fn remote_forwarding_binds_loopback_only() {
    let session = Session::start(&[]);
    let echo = echo_server();
    let remote = port();
    let forward = format!("127.0.0.1:{remote}:127.0.0.1:{echo}");
    let child = session
        .ssh(&["-N", "-o", "ExitOnForwardFailure=yes", "-R", &forward])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ssh = Background(child);
    // The agent (here on this host) listens on `remote`; connections come back to the client.
    wait_listening(remote);
    assert_eq!(echo_through(remote, b"ping through -R"), b"ping through -R");

    let other = port();
    let out = run(
        session
            .ssh(&[
                "-o",
                "ExitOnForwardFailure=yes",
                "-R",
                &format!("0.0.0.0:{other}:127.0.0.1:{echo}"),
            ])
            .arg("true"),
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(stderr(&out).contains("remote port forwarding failed"), "{out:?}");
}

#[test]
fn agent_forwarding_gives_remote_commands_the_clients_keys() {
    let session = Session::start(&[]);
    let socket = session.keys.dir.path().join("agent.sock");
    let agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _agent = Background(agent);
    wait_for("ssh-agent's socket", Duration::from_secs(10), || socket.exists());
    let added = Command::new("ssh-add")
        .arg(&session.keys.client)
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");

    let out = run(
        session
            .ssh(&["-A"])
            .env("SSH_AUTH_SOCK", &socket)
            .arg("stat -c %a \"$(dirname \"$SSH_AUTH_SOCK\")\"; ssh-add -l"),
        b"",
        Duration::from_secs(30),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("700\n"), "{text}");
    assert!(text.contains("test key (ED25519)"), "{text}");

    // Without -A there is no agent.
    let out = session.exec("echo sock=$SSH_AUTH_SOCK");
    assert_eq!(stdout(&out), "sock=\n");
}

#[test]
fn a_key_that_is_not_authorized_is_refused() {
    let session = Session::start(&[]);
    let out =
        run(session.ssh_as(&session.keys.stranger, &[]).arg("true"), b"", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(stderr(&out).contains("Permission denied (publickey)"), "{out:?}");
}

#[test]
fn the_upgrade_needs_the_agent_token_and_valid_keys() {
    let session = Session::start(&[]);
    let keys = base64::engine::general_purpose::STANDARD.encode(&session.keys.client_public);
    // (status, body) of the upgrade.
    let upgrade = |headers: BridgeHeaders| {
        session.block_on(async {
            match crate::support::connect(session.agent_port, "/ssh", &headers).await {
                Ok(_) => (101, String::new()),
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    let body = response.body().as_deref().unwrap_or_default();
                    (response.status().as_u16(), String::from_utf8_lossy(body).into_owned())
                }
                Err(err) => panic!("unexpected error {err}"),
            }
        })
    };
    let headers = |token: Option<&str>, keys: &str| BridgeHeaders {
        token: token.map(str::to_string),
        authorized_keys: keys.to_string(),
    };
    assert_eq!(upgrade(headers(Some(TOKEN), &keys)).0, 101);
    assert_eq!(upgrade(headers(None, &keys)).0, 401);
    assert_eq!(upgrade(headers(Some("wrong"), &keys)).0, 401);
    // A 400 that names the header.
    let garbage = base64::engine::general_purpose::STANDARD.encode("ssh-ed25519 AAAAnope");
    for bad in ["not base64!", "", &garbage] {
        let (status, body) = upgrade(headers(Some(TOKEN), bad));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("X-BurstFlare-Authorized-Keys"), "{bad}: {body}");
    }

    // Plain requests: the JSON errors.
    let plain = request(session.agent_port, "GET", "/ssh").unwrap();
    assert_eq!(plain.status, 401);
    assert!(plain.body["error"].as_str().unwrap().contains("bearer"), "{:?}", plain.body);
}

#[test]
fn without_a_token_the_endpoints_answer_503() {
    let agent = crate::common::Agent::start(&[]);
    for path in ["/ssh", "/pty"] {
        let reply = request(agent.port, "GET", path).unwrap();
        assert_eq!(reply.status, 503, "{path}");
        assert!(
            reply.body["error"].as_str().unwrap().contains("BURSTFLARE_AGENT_TOKEN"),
            "{:?}",
            reply.body
        );
    }
    // /ready is unchanged.
    assert_eq!(request(agent.port, "GET", "/ready").unwrap().status, 200);
}

#[test]
fn many_commands_leave_no_zombies() {
    let session = Session::start(&[]);
    for i in 0..12 {
        // Background jobs become orphans of the agent when the shell exits.
        let out = session.exec(&format!("sleep 0.05 & echo {i}"));
        assert_eq!(stdout(&out), format!("{i}\n"));
    }
    let agent = session.agent().pid();
    wait_for("all session processes to be reaped", Duration::from_secs(10), || {
        children(agent).is_empty()
    });
}

#[test]
fn session_processes_run_as_the_session_user() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    // A uid without an account: its own number as group, / as home, /bin/sh.
    let session = Session::start(&[("BURSTFLARE_SESSION_USER", "4242")]);
    let out = session.exec("id -u; id -g; id -G; echo $USER $HOME $SHELL; pwd");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "4242\n4242\n4242\n4242 / /bin/sh\n/\n");

    // SFTP runs as the user too: the file it writes belongs to nobody.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let source = dir.path().join("source.txt");
    std::fs::write(&source, "x").unwrap();
    let target = dir.path().join("target.txt");
    let out = session.sftp(&format!("put {} {}\n", source.display(), target.display()));
    assert!(out.status.success(), "{out:?}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), 4242);
    // And cannot write where the user may not.
    let out = session.exec("touch /root/forbidden");
    assert!(!out.status.success());

    // An account with a login shell that refuses (nobody: nologin) gets what sshd would give.
    let session = Session::start(&[("BURSTFLARE_SESSION_USER", "nobody")]);
    let out = session.exec("id -u");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("not available"), "{out:?}");
}

#[test]
fn an_unknown_session_user_is_refused_with_a_message() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let session = Session::start(&[("BURSTFLARE_SESSION_USER", "no-such-user-here")]);
    let out = session.exec("true");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("no-such-user-here"), "{out:?}");
}
