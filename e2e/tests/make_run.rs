//! `make run` as a newcomer sees it: the local environment comes up, the
//! samples are applied, and every binding settles with a Ready condition.

use std::process::Command;

#[test]
fn make_run_brings_up_the_environment_and_the_samples_settle() {
    let root = wib_testenv::binaries::repo_root();
    let localenv =
        wib_testenv::operator::workspace_binary("wib-localenv").expect("wib-localenv built");
    let operator = wib_testenv::operator::binary().expect("wib-controller built");
    let out = Command::new(localenv)
        .args(["--operator"])
        .arg(&operator)
        .args(["--samples"])
        .arg(root.join("config/samples"))
        .arg("--exit-when-settled")
        .arg("--kubeconfig-out")
        .arg(std::env::temp_dir().join(format!("wib-make-run-{}.kubeconfig", std::process::id())))
        .output()
        .expect("wib-localenv runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for binding in ["app1 ", "app1-aws ", "app1-gcp "] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("team-a") && l.contains(binding)),
            "{binding} listed:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("workloadidentitybinding.wib.dev/app1 created"),
        "{stdout}"
    );
}
