//! Key files through `AgentBuilder`: created 0600, reloaded with the same ids, corrupt or
//! foreign files refused and left untouched.

use std::fs;

use x0x_driver_tokio::{Agent, Error};
use x0x_proto::identity::KeyDecodeError;
use x0x_tests::{loopback, within};

async fn build(dir: &std::path::Path) -> Result<Agent, Error> {
    Agent::builder()
        .with_machine_key(dir.join("machine.key"))
        .with_agent_key_path(dir.join("agent.key"))
        .with_user_key_path(dir.join("user.key"))
        .with_network_config(loopback(vec![]))
        .build()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_files_are_created_private_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let a = build(dir.path()).await.unwrap();
    let ids = (a.machine_id(), a.agent_id(), a.user_id());
    assert!(ids.2.is_some());
    for name in ["machine.key", "agent.key", "user.key"] {
        let meta = fs::metadata(dir.path().join(name)).unwrap();
        assert_eq!(meta.len(), 37, "{name}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        }
    }
    within(a.shutdown()).await.unwrap();

    let again = build(dir.path()).await.unwrap();
    assert_eq!((again.machine_id(), again.agent_id(), again.user_id()), ids);
    within(again.shutdown()).await.unwrap();

    // Only the three key files: no temporary files left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_key_file_is_a_typed_error_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("machine.key");
    fs::write(&path, b"not a key at all").unwrap();
    let err = build(dir.path()).await.unwrap_err();
    match err {
        Error::KeyFileInvalid { path: p, source } => {
            assert_eq!(p, path);
            assert_eq!(source, KeyDecodeError::BadMagic);
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(fs::read(&path).unwrap(), b"not a key at all");
    // Nothing else was created either: the machine key is resolved first.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_key_file_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let a = build(dir.path()).await.unwrap();
    within(a.shutdown()).await.unwrap();
    // A machine key where the agent key should be.
    let machine = fs::read(dir.path().join("machine.key")).unwrap();
    fs::write(dir.path().join("agent.key"), &machine).unwrap();
    let err = build(dir.path()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::KeyFileInvalid {
                source: KeyDecodeError::WrongRole { .. },
                ..
            }
        ),
        "unexpected error {err}"
    );
    assert_eq!(fs::read(dir.path().join("agent.key")).unwrap(), machine);

    // A truncated file.
    fs::write(dir.path().join("agent.key"), &machine[..20]).unwrap();
    assert!(matches!(
        build(dir.path()).await.unwrap_err(),
        Error::KeyFileInvalid { .. }
    ));
    assert_eq!(
        fs::read(dir.path().join("agent.key")).unwrap(),
        &machine[..20]
    );
}
