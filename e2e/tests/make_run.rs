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
    // The pod side: the Azure sample's pod comes back from admission with
    // its identity.
    assert!(
        stdout.contains("pod webhook: https://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "AZURE_FEDERATED_TOKEN_FILE=/var/run/secrets/azure/tokens/azure-identity-token"
        ),
        "{stdout}"
    );
    // `kubectl get wib` names the bindings alone: no category of the same
    // name pulls the providers in (that also broke `--watch`).
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with("clusteridentityprovider.wib.dev/") && !l.ends_with(" created")),
        "`kubectl get wib` listed providers too:\n{stdout}"
    );
    // Every sample turns Ready against the Azure fake, moto and the GCP fake.
    for (binding, identity) in [
        ("app1 ", ""),
        (
            "app1-aws ",
            "arn:aws:iam::123456789012:role/wib-local-team-a-app1-aws",
        ),
        ("app1-gcp ", "@wib-local.iam.gserviceaccount.com"),
        (
            "app3-aws-pod-identity ",
            "arn:aws:iam::123456789012:role/wib-local-team-a-app3-aws-pod-identity",
        ),
        (
            "app2-gcp-direct ",
            "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/wib-pool/subject/system:serviceaccount:team-a:app2",
        ),
    ] {
        assert!(
            stdout.lines().any(|l| l.contains("team-a")
                && l.contains(binding)
                && l.contains("True")
                && l.contains(identity)),
            "{binding} Ready:\n{stdout}"
        );
    }
}

/// azure-workload-identity >= 1.0 mutates only pods labelled
/// `azure.workload.identity/use: "true"`: the Azure sample shows the pod
/// side a user must add, as the README says.
#[test]
fn the_azure_sample_shows_the_pod_label_the_webhook_selects_on() {
    let root = wib_testenv::binaries::repo_root();
    let sample =
        std::fs::read_to_string(root.join("config/samples/20-azure-binding.yaml")).expect("sample");
    let template = sample
        .split("template:")
        .nth(1)
        .expect("the sample shows a pod template");
    assert!(
        template.contains("azure.workload.identity/use: \"true\""),
        "{sample}"
    );
}

#[test]
fn ctrl_c_tears_the_local_environment_down() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let root = wib_testenv::binaries::repo_root();
    let localenv =
        wib_testenv::operator::workspace_binary("wib-localenv").expect("wib-localenv built");
    let operator = wib_testenv::operator::binary().expect("wib-controller built");
    let mut child = Command::new(localenv)
        .arg("--operator")
        .arg(&operator)
        .arg("--samples")
        .arg(root.join("config/samples"))
        .arg("--kubeconfig-out")
        .arg(std::env::temp_dir().join(format!("wib-ctrl-c-{}.kubeconfig", std::process::id())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("wib-localenv starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut dir = None;
    for line in lines.by_ref() {
        let line = line.expect("line");
        if let Some(rest) = line.strip_prefix("==> starting wib-controller (logs: ") {
            dir = rest
                .strip_suffix("/wib-controller-0.log)")
                .map(std::path::PathBuf::from);
        }
        if line.contains("--watch") {
            break;
        }
    }
    let dir = dir.expect("localenv printed its directory");
    assert!(dir.exists());

    #[allow(unsafe_code)]
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().expect("localenv exits");
    assert!(status.success(), "{status}");
    assert!(!dir.exists(), "{} removed", dir.display());
    let marker = dir.to_string_lossy().to_string();
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&marker))
        .collect();
    assert!(survivors.is_empty(), "processes left behind: {survivors:?}");
}
