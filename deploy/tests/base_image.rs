//! The base image that `make test` builds runs a shell, git and sudo as the `dev` user.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn the_base_image_runs_bash_and_git_as_the_dev_user() {
    let image = deploy::base_image();
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--user", "dev", &image, "bash", "-lc"])
        .arg("git --version && id -un && sudo -n true && echo sudo-ok")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{image} did not run (build it with `make base-image`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("git version"), "{stdout}");
    assert!(stdout.contains("dev\n"), "{stdout}");
    assert!(stdout.contains("sudo-ok"), "{stdout}");
}
