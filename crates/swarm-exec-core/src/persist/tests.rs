//! The keeper against the fake engine, on paused time: its clients are in-memory streams,
//! and the test plays the standing helper at the relay's far end (see the session's tests).
//! The real keeper, helper and socket are tested end to end on the lab.

use std::sync::Arc;
use std::time::Duration;

use swarm_exec_proto::serve::{Decoder, Frame, RunSpec};
use swarm_exec_proto::session::Msg;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::*;
use crate::engine::fake::Fake;
use crate::session::tests::{nothing_left, resolved, running, FarEnd};

type TestKeeper = Arc<Keeper<Arc<Fake>>>;

fn keeper(fake: &Arc<Fake>) -> TestKeeper {
    let helper = HelperSource::Image("swarm-exec:test".into());
    Keeper::new(fake.clone(), helper, Duration::from_secs(60))
}

fn request(command: &str) -> Vec<u8> {
    let task = resolved();
    let run = KeeperRun {
        run: RunSpec {
            container: task.container_id.clone(),
            command: vec![command.into()],
            env: vec![],
            workdir: None,
            user: None,
            privileged: false,
            timeout_ms: 60_000,
            stdin: false,
            tag: "0123abcd".into(),
        },
        task,
        idle_ms: 20_000,
    };
    let request = serde_json::to_vec(&run).unwrap();
    Frame::Run { id: 0, request }.encode()
}

/// A client process's end of its connection to the keeper.
struct Client {
    rx: FrameReader<ReadHalf<DuplexStream>>,
    tx: WriteHalf<DuplexStream>,
}

impl Client {
    /// Connects to `keeper` and asks for a run of `command`.
    async fn ask(keeper: &TestKeeper, command: &str) -> Client {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        tokio::task::spawn_local(keeper.clone().serve_client(theirs));
        let (rx, mut tx) = tokio::io::split(ours);
        tx.write_all(&request(command)).await.unwrap();
        Client {
            rx: FrameReader::new(rx),
            tx,
        }
    }

    async fn next(&mut self) -> Frame {
        self.rx
            .next()
            .await
            .expect("a frame")
            .expect("frames parse")
    }
}

/// The standing helper, as the test plays it: run frames in the session's input, its
/// answers as the session's stdout.
struct Helper {
    far: FarEnd,
    decoder: Decoder,
}

impl Helper {
    async fn open(fake: &Arc<Fake>) -> Helper {
        Helper {
            far: FarEnd::open(fake).await,
            decoder: Decoder::default(),
        }
    }

    /// The next frame from the keeper (within a minute: the heartbeats go on meanwhile).
    async fn next(&mut self) -> Frame {
        let next = async {
            loop {
                if let Some(f) = self.decoder.next_frame() {
                    return f.unwrap();
                }
                match self.far.recv().await {
                    Msg::Stdin(bytes) => self.decoder.feed(&bytes),
                    other => panic!("not input: {other:?}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), next)
            .await
            .expect("a frame from the keeper")
    }

    /// The next run asked for: its id and command.
    async fn run(&mut self) -> (u32, Vec<String>) {
        match self.next().await {
            Frame::Run { id, request } => (id, RunSpec::from_json(&request).unwrap().command),
            other => panic!("not a run: {other:?}"),
        }
    }

    fn send(&mut self, f: Frame) {
        self.far.send(&Msg::Stdout(f.encode()));
    }
}

/// Runs `test` where the keeper can spawn its local tasks.
async fn local<F: std::future::Future<Output = ()>>(test: F) {
    tokio::task::LocalSet::new().run_until(test).await;
}

#[tokio::test(start_paused = true)]
async fn runs_side_by_side_share_one_session_and_each_gets_its_own_output_and_end() {
    local(async {
        let fake = running();
        let k = keeper(&fake);
        let mut a = Client::ask(&k, "a").await;
        let mut helper = Helper::open(&fake).await;
        let (id_a, command) = helper.run().await;
        assert_eq!(command, ["a"]);
        let mut b = Client::ask(&k, "b").await;
        let (id_b, command) = helper.run().await;
        assert_eq!(command, ["b"]);
        assert_ne!(id_a, id_b);
        // Answered out of order, interleaved: each client gets only its own, as id 0.
        helper.send(Frame::Stdout {
            id: id_b,
            bytes: b"bee".to_vec(),
        });
        helper.send(Frame::Stdout {
            id: id_a,
            bytes: b"ay".to_vec(),
        });
        helper.send(Frame::Exit {
            id: id_b,
            code: 3,
            stdout: 3,
            stderr: 0,
        });
        helper.send(Frame::Stderr {
            id: id_a,
            bytes: b"!".to_vec(),
        });
        helper.send(Frame::Exit {
            id: id_a,
            code: 0,
            stdout: 2,
            stderr: 1,
        });
        let out = |bytes: &[u8]| Frame::Stdout {
            id: 0,
            bytes: bytes.to_vec(),
        };
        assert_eq!(b.next().await, out(b"bee"));
        let exit = |code, stdout, stderr| Frame::Exit {
            id: 0,
            code,
            stdout,
            stderr,
        };
        assert_eq!(b.next().await, exit(3, 3, 0));
        assert_eq!(a.next().await, out(b"ay"));
        let err = Frame::Stderr {
            id: 0,
            bytes: b"!".to_vec(),
        };
        assert_eq!(a.next().await, err);
        assert_eq!(a.next().await, exit(0, 2, 1));
        assert_eq!(fake.created(), 1, "one helper for both");
        let s = k.standing();
        assert_eq!((s.runs_served, s.sessions.len()), (2, 1));
        assert_eq!(s.sessions[0].node, "node2");
        assert_eq!(s.sessions[0].runs_now, 0);
        k.close().await;
        nothing_left(&fake);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_client_gone_mid_run_has_its_command_stopped_and_its_input_passed_on() {
    local(async {
        let fake = running();
        let k = keeper(&fake);
        let mut a = Client::ask(&k, "cat").await;
        let mut helper = Helper::open(&fake).await;
        let (id, _) = helper.run().await;
        let input = Frame::Input {
            id: 0,
            bytes: b"typed".to_vec(),
        };
        a.tx.write_all(&input.encode()).await.unwrap();
        let passed = Frame::Input {
            id,
            bytes: b"typed".to_vec(),
        };
        assert_eq!(helper.next().await, passed);
        drop(a);
        assert_eq!(helper.next().await, Frame::Stop { id });
        helper.send(Frame::Stopped { id, gone: true });
        k.close().await;
        nothing_left(&fake);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_stop_is_not_held_behind_input_the_helper_has_not_granted() {
    local(async {
        let fake = running();
        let k = keeper(&fake);
        let mut a = Client::ask(&k, "sleep").await;
        let mut helper = Helper::open(&fake).await;
        let (id, _) = helper.run().await;
        // 320 KiB of input for a command that reads none: more than the window.
        for _ in 0..10 {
            let f = Frame::Input {
                id: 0,
                bytes: vec![b'i'; 32 * 1024],
            };
            a.tx.write_all(&f.encode()).await.unwrap();
        }
        a.tx.write_all(&Frame::Stop { id: 0 }.encode())
            .await
            .unwrap();
        let mut passed = 0;
        loop {
            match helper.next().await {
                Frame::Input { bytes, .. } => passed += bytes.len(),
                Frame::Stop { id: stopped } => {
                    assert_eq!(stopped, id);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(passed <= WINDOW as usize, "{passed} bytes passed ungranted");
        helper.send(Frame::Stopped { id, gone: true });
        assert_eq!(a.next().await, Frame::Stopped { id: 0, gone: true });
        k.close().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn output_is_granted_again_only_as_the_client_takes_it() {
    local(async {
        let fake = running();
        let k = keeper(&fake);
        let mut a = Client::ask(&k, "yes").await;
        let mut helper = Helper::open(&fake).await;
        let (id, _) = helper.run().await;
        let piece = vec![b'y'; 32 * 1024];
        for _ in 0..3 {
            helper.send(Frame::Stdout {
                id,
                bytes: piece.clone(),
            });
        }
        for _ in 0..3 {
            assert!(matches!(a.next().await, Frame::Stdout { .. }));
        }
        // 96 KiB passed on: one grant of what went past the threshold.
        assert_eq!(
            helper.next().await,
            Frame::Grant {
                id,
                bytes: 64 * 1024
            }
        );
        helper.send(Frame::Exit {
            id,
            code: 0,
            stdout: 3 * 32 * 1024,
            stderr: 0,
        });
        assert!(matches!(a.next().await, Frame::Exit { code: 0, .. }));
        k.close().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_broken_session_fails_its_runs_and_the_next_run_opens_another() {
    local(async {
        let fake = running();
        let k = keeper(&fake);
        let mut a = Client::ask(&k, "a").await;
        let mut helper = Helper::open(&fake).await;
        helper.run().await;
        helper.far.send(&Msg::Failed("the engine went away".into()));
        match a.next().await {
            Frame::Failed { id: 0, reason } => {
                assert!(reason.contains("node2"), "{reason}");
                assert!(reason.contains("the engine went away"), "{reason}");
            }
            other => panic!("not a failure: {other:?}"),
        }
        assert!(
            k.standing().sessions.is_empty(),
            "the broken session is dropped"
        );
        let mut b = Client::ask(&k, "b").await;
        let mut helper = Helper::open(&fake).await;
        let (id, command) = helper.run().await;
        assert_eq!(command, ["b"]);
        helper.send(Frame::Exit {
            id,
            code: 5,
            stdout: 0,
            stderr: 0,
        });
        assert!(matches!(b.next().await, Frame::Exit { code: 5, .. }));
        assert_eq!(fake.created(), 2, "a new helper");
        k.close().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_keeper_ends_only_after_its_idle_time_with_no_run() {
    local(async {
        let fake = running();
        let k = keeper(&fake);
        let mut a = Client::ask(&k, "slow").await;
        let mut helper = Helper::open(&fake).await;
        let (id, _) = helper.run().await;
        // A run going on holds it, however long (the request's idle time is 20 s).
        tokio::select! {
            () = k.done() => panic!("ended during a run"),
            () = tokio::time::sleep(Duration::from_secs(120)) => {}
        }
        helper.send(Frame::Exit {
            id,
            code: 0,
            stdout: 0,
            stderr: 0,
        });
        assert!(matches!(a.next().await, Frame::Exit { .. }));
        let ended = tokio::time::Instant::now();
        k.done().await;
        let idle = ended.elapsed();
        assert!(idle >= Duration::from_secs(20), "{idle:?}");
        assert!(idle < Duration::from_secs(22), "{idle:?}");
        k.close().await;
        nothing_left(&fake);
        // Once ending, a run is refused, and says so.
        let mut late = Client::ask(&k, "late").await;
        let refused = Frame::Failed {
            id: 0,
            reason: ENDING.into(),
        };
        assert_eq!(late.next().await, refused);
    })
    .await;
}
