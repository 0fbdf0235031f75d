//! `swarm-exec cp`: a directory tree into a task's container and back out, on a worker
//! (through the relay and the overlay) and on the manager's own engine (directly), exact
//! with its modes; tar streams; clear errors; nothing left behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// Runs the swarm-exec binary under test in directory `dir`.
fn swarm_exec_in(dir: &Path, args: &[&str]) -> Output {
    run(Command::new(SWARM_EXEC).args(args).current_dir(dir))
}

fn scratch(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sx-cp-{what}-{}", unique_hex(8)));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// About `mb` MB of random files in nested directories, with several modes, a symbolic
/// link and an empty directory.
fn make_tree(root: &Path, mb: usize) {
    let script = format!(
        "set -e; cd '{}'; mkdir -p a/b/c empty ro; \
         for i in $(seq {mb}); do head -c 1000000 /dev/urandom > a/b/f$i; done; \
         echo small > a/b/c/small; chmod 600 a/b/c/small; chmod 4755 a/b/f1; \
         echo x > ro/file; chmod 444 ro/file; chmod 555 ro; ln -s b/c/small a/link",
        root.display()
    );
    let out = run(Command::new("sh").args(["-c", &script]));
    assert_exit(&out, 0);
}

/// Every entry's mode, type, size and path (link targets too), sorted: equal for equal trees.
fn listing(root: &Path) -> String {
    let out = run(Command::new("sh").args([
        "-c",
        &format!(
            "cd '{}' && find . -printf '%m %y %s %p %l\\n' | sort",
            root.display()
        ),
    ]));
    assert_exit(&out, 0);
    out.stdout_str()
}

fn same_tree(a: &Path, b: &Path) {
    assert_eq!(listing(a), listing(b), "modes, types or sizes differ");
    let diff = run(Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b));
    assert_exit(&diff, 0);
}

#[test]
fn a_tree_goes_in_and_comes_back_identical() {
    // Services of their own: nothing_left must not see other tests' helpers.
    let svc = &Service::global();
    let d = scratch("tree");
    let src = d.join("tree");
    std::fs::create_dir(&src).unwrap();
    make_tree(&src, 100);
    for node in ["node2", "node1"] {
        let remote = format!("{}:/tmp/cp-{}", svc.at(node), unique_hex(6));
        let out = swarm_exec(&["cp", src.to_str().unwrap(), &remote]);
        assert_exit(&out, 0);
        // It is there, as the container's own tools see it.
        let dir = remote.split_once(':').unwrap().1;
        let inside = task_exec(&[], &svc.at(node), &["cat", &format!("{dir}/a/b/c/small")]);
        assert_exit(&inside, 0);
        assert_eq!(inside.stdout_str(), "small\n");
        // With --archive every mode bit comes back, setuid included.
        let back = d.join(format!("back-{node}"));
        let out = swarm_exec(&["cp", "--archive", &remote, back.to_str().unwrap()]);
        assert_exit(&out, 0);
        same_tree(&src, &back);
        // Into an existing directory: under the source's own name; without --archive the
        // setuid bit stays behind (the file is now the local user's).
        let into = d.join(format!("into-{node}"));
        std::fs::create_dir(&into).unwrap();
        assert_exit(&swarm_exec(&["cp", &remote, into.to_str().unwrap()]), 0);
        let copied = into.join(Path::new(dir).file_name().unwrap());
        let f1 = copied.join("a/b/f1");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&f1).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        std::fs::set_permissions(&f1, std::fs::Permissions::from_mode(0o4755)).unwrap();
        same_tree(&src, &copied);
        let _ = task_exec(&[], &svc.at(node), &["rm", "-rf", dir]);
    }
    let _ = run(Command::new("chmod").args(["-R", "u+w"]).arg(&d));
    std::fs::remove_dir_all(&d).unwrap();
    no_session_left(&svc.name);
}

/// As docker cp copies them: a symbolic link as itself, under its own name, not under its
/// target's; `DIR/.` (or `.`) as what the directory holds, into an existing directory or
/// as a new one.
#[test]
fn a_link_goes_in_as_itself_under_its_own_name() {
    let svc = &Service::global();
    let d = scratch("link");
    std::fs::create_dir(d.join("releases")).unwrap();
    std::fs::write(d.join("releases/v42"), b"v42\n").unwrap();
    std::os::unix::fs::symlink("releases/v42", d.join("current")).unwrap();
    // The manager's own engine (direct) and a worker (a session).
    for node in ["node1", "node2"] {
        let at = svc.at(node);
        let dir = format!("/tmp/cp-link-{}", unique_hex(6));
        assert_exit(&task_exec(&[], &at, &["mkdir", &dir]), 0);
        let out = swarm_exec(&[
            "cp",
            d.join("current").to_str().unwrap(),
            &format!("{at}:{dir}"),
        ]);
        assert_exit(&out, 0);
        let inside = task_exec(&[], &at, &["readlink", &format!("{dir}/current")]);
        assert_exit(&inside, 0);
        assert_eq!(inside.stdout_str(), "releases/v42\n");
        assert_exit(
            &task_exec(&[], &at, &["test", "!", "-e", &format!("{dir}/v42")]),
            0,
        );
        // `.` and `DIR/.`: the contents, into the directory there, or as the new one.
        let out = swarm_exec_in(&d.join("releases"), &["cp", ".", &format!("{at}:{dir}")]);
        assert_exit(&out, 0);
        let src = format!("{}/.", d.join("releases").display());
        let out = swarm_exec(&["cp", &src, &format!("{at}:{dir}/new")]);
        assert_exit(&out, 0);
        let inside = task_exec(&[], &at, &sh(&format!("cd {dir} && cat v42 new/v42 && ls")));
        assert_exit(&inside, 0);
        assert_eq!(inside.stdout_str(), "v42\nv42\ncurrent\nnew\nv42\n");
        let _ = task_exec(&[], &at, &["rm", "-rf", &dir]);
    }
    std::fs::remove_dir_all(&d).unwrap();
    no_session_left(&svc.name);
}

#[test]
fn tar_streams_both_ways_and_clear_errors() {
    let svc = &Service::global();
    let at = svc.at("node3");
    // Out as a tar stream.
    let out = swarm_exec(&["cp", &format!("{at}:/etc/hostname"), "-"]);
    assert_exit(&out, 0);
    assert!(
        out.stdout.len() >= 1024,
        "not a tar archive: {} bytes",
        out.stdout.len()
    );
    assert_eq!(&out.stdout[257..262], b"ustar", "not a tar archive");
    // In as a tar stream, into a directory there.
    let d = scratch("stream");
    std::fs::write(d.join("note"), b"from a stream\n").unwrap();
    let tar = run(Command::new("tar")
        .arg("-C")
        .arg(&d)
        .args(["-cf", "-", "note"]));
    assert_exit(&tar, 0);
    let out = swarm_exec_stdin(&["cp", "-", &format!("{at}:/tmp")], &tar.stdout);
    assert_exit(&out, 0);
    let inside = task_exec(&[], &at, &["cat", "/tmp/note"]);
    assert_eq!(inside.stdout_str(), "from a stream\n");
    let _ = task_exec(&[], &at, &["rm", "-f", "/tmp/note"]);

    // A path that is not there, on a worker and on the manager's engine.
    for node in ["node3", "node1"] {
        let out = swarm_exec(&[
            "cp",
            &format!("{}:/no/such/path", svc.at(node)),
            d.to_str().unwrap(),
        ]);
        assert_exit(&out, 125);
        assert_stderr_has(&out, "Could not find the file /no/such/path");
    }
    // Into a directory that is not there.
    let out = swarm_exec(&[
        "cp",
        d.join("note").to_str().unwrap(),
        &format!("{at}:/no/such/dir/"),
    ]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "no directory /no/such/dir/ in the container");
    // A local source that is not there: refused before anything is made.
    let out = swarm_exec(&["cp", "/no/such/local", &format!("{at}:/tmp")]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "/no/such/local");
    // Two local sides, or two tasks: usage errors, as swarm-exec reports them (125).
    let out = swarm_exec(&["cp", "/tmp", "/tmp/x"]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "one of SRC and DST must be TASK:PATH");
    let out = swarm_exec(&["cp", &format!("{at}:/a"), &format!("{at}:/b")]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "between two tasks is not supported");
    std::fs::remove_dir_all(&d).unwrap();
    no_session_left(&svc.name);
}

/// Issue 25: `cp` out of a task as root, into places a local user may control. A setuid
/// file arrives without the bit (with it under --archive); a sparse file stays sparse; a
/// directory that another user owns is refused unless --force; a name from the container
/// with a terminal escape in it is shown escaped.
#[test]
fn copying_out_as_root_is_safe_on_a_shared_machine() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let svc = &Service::global();
    let at = svc.at("node2");
    let dir = format!("/tmp/cp-safe-{}", unique_hex(6));
    let setup = format!(
        "set -e; mkdir {dir}; cd {dir}; echo x > suid; chmod 4755 suid; \
         dd if=/dev/zero of=sparse bs=1 count=0 seek=256M 2>/dev/null; echo end >> sparse; \
         echo red > \"$(printf '\\033[31mred')\""
    );
    assert_exit(&task_exec(&[], &at, &sh(&setup)), 0);
    let d = scratch("safe");
    let size = (256 << 20) + 4;

    let plain = d.join("plain");
    assert_exit(
        &swarm_exec(&["cp", &format!("{at}:{dir}"), plain.to_str().unwrap()]),
        0,
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&plain.join("suid")), 0o755);
    let sparse = std::fs::metadata(plain.join("sparse")).unwrap();
    assert_eq!(sparse.len(), size);
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "{} blocks",
        sparse.blocks()
    );
    let archived = d.join("archived");
    let out = swarm_exec(&[
        "cp",
        "-a",
        &format!("{at}:{dir}/suid"),
        archived.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    assert_eq!(mode(&archived), 0o4755);

    // Another user's directory: refused, nothing written; --force to copy anyway.
    let theirs = d.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(4321), Some(4321)).unwrap();
    let out = swarm_exec(&["cp", &format!("{at}:{dir}/suid"), theirs.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    assert_stderr_has(&out, "belongs to uid 4321");
    assert_stderr_has(&out, "--force");
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
    let out = swarm_exec(&[
        "cp",
        "--force",
        &format!("{at}:{dir}/suid"),
        theirs.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    assert!(theirs.join("suid").exists());

    // A name with an escape in it, refused here (a directory of that name is in the way):
    // shown escaped, never raw.
    let red = d.join("red");
    std::fs::create_dir_all(red.join("\x1b[31mred")).unwrap();
    let out = swarm_exec(&[
        "cp",
        &format!("{at}:{dir}/\x1b[31mred"),
        red.to_str().unwrap(),
    ]);
    assert_ne!(out.code, 0);
    assert_stderr_has(&out, "\\x1b[31mred");
    assert!(!out.stderr.contains(&0x1b), "{:?}", out.stderr_str());

    let _ = task_exec(&[], &at, &["rm", "-rf", &dir]);
    std::fs::remove_dir_all(&d).unwrap();
    no_session_left(&svc.name);
}
