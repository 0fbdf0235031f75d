//! Property tests of the frames as the manager reads them back from service logs: whatever
//! the log path does to the lines — splits them anywhere, drops, repeats or reorders them,
//! mixes in garbage — the reader hands over a prefix of the true output, never a wrong byte,
//! and says the run is whole only when it is.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use swarm_exec_proto::frame::{Event, Reader, Step, Stream, Writer};
use swarm_exec_proto::lines::Lines;

const KEY: [u8; 32] = [3; 32];
const TAG: &str = "0123456789ab";

/// What one helper did: output pieces per (target, stream), then an exit per target.
#[derive(Debug, Clone)]
enum Act {
    Out(usize, bool, Vec<u8>),
    Flush(usize),
}

fn acts(targets: usize) -> impl Strategy<Value = Vec<Act>> {
    let out = (
        0..targets,
        any::<bool>(),
        prop_oneof![
            vec(any::<u8>(), 0..3000),
            // Compressible runs, so frames carry long stretches.
            (any::<u8>(), 0..40_000usize).prop_map(|(b, n)| vec![b; n]),
        ],
    )
        .prop_map(|(t, e, b)| Act::Out(t, e, b));
    vec(
        prop_oneof![4 => out, 1 => (0..targets).prop_map(Act::Flush)],
        0..12,
    )
}

/// The lines a helper writes for `acts`, and what each target's streams hold.
fn write(targets: usize, acts: &[Act]) -> (Vec<Vec<u8>>, Vec<[Vec<u8>; 2]>) {
    let mut w = Writer::new(&KEY, TAG, targets);
    let mut wire = Vec::new();
    let mut truth = vec![[Vec::new(), Vec::new()]; targets];
    for a in acts {
        match a {
            Act::Out(t, err, b) => {
                let s = if *err { Stream::Stderr } else { Stream::Stdout };
                w.output(*t, s, b, &mut wire).unwrap();
                truth[*t][*err as usize].extend_from_slice(b);
            }
            Act::Flush(t) => w.flush(*t, Stream::Stdout, &mut wire).unwrap(),
        }
    }
    for t in 0..targets {
        w.exit(t, t as i64, &mut wire).unwrap();
    }
    w.done(&mut wire);
    let mut lines = Vec::new();
    Lines::default().feed(&wire, |l| lines.push(l.to_vec()));
    (lines, truth)
}

#[derive(Debug, Default)]
struct Got {
    streams: Vec<[Vec<u8>; 2]>,
    exits: Vec<Option<i64>>,
    done: bool,
}

/// Reads `lines` as the follower does: stops at the first gap.
fn read(r: &mut Reader, lines: &[Vec<u8>], got: &mut Got) -> Result<(), TestCaseError> {
    for line in lines {
        let step = r.line(line, &mut |e| match e {
            Event::Output {
                target,
                stream,
                bytes,
            } => got.streams[target][stream as usize].extend_from_slice(bytes),
            Event::Exit { target, code } => got.exits[target] = Some(code),
            Event::Done => got.done = true,
            Event::Failed { .. } | Event::TimedOut { .. } => {}
        });
        match step {
            Ok(Step::Gap { .. }) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(TestCaseError::fail(format!("reader error {e}"))),
        }
    }
    Ok(())
}

fn got(targets: usize) -> Got {
    Got {
        streams: vec![[Vec::new(), Vec::new()]; targets],
        exits: vec![None; targets],
        done: false,
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn whole_lines_read_back_exactly_however_the_stream_is_split(
        targets in 1..4usize,
        acts in acts(3),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        let acts: Vec<Act> = acts.into_iter().filter(|a| match a {
            Act::Out(t, ..) | Act::Flush(t) => *t < targets,
        }).collect();
        let (lines, truth) = write(targets, &acts);
        prop_assert!(lines.iter().all(|l| l.len() < 16 * 1024));
        // The log as one byte stream, cut anywhere.
        let wire: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect();
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for a in at.into_iter().chain([wire.len()]) {
            pieces.push(&wire[last..a]);
            last = a;
        }
        let mut split = Lines::default();
        let mut rejoined = Vec::new();
        for p in pieces {
            split.feed(p, |l| rejoined.push(l.to_vec()));
        }
        let mut r = Reader::new(&KEY, TAG, targets);
        let mut g = got(targets);
        read(&mut r, &rejoined, &mut g)?;
        prop_assert!(g.done);
        prop_assert_eq!(&g.streams, &truth);
        prop_assert_eq!(g.exits, (0..targets as i64).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn a_damaged_log_never_yields_a_wrong_byte_or_a_false_end(
        acts in acts(2),
        // Each line: kept, dropped, doubled; then some swapped; garbage mixed in.
        fate in vec(0..6u8, 0..200),
        swaps in vec((any::<Index>(), any::<Index>()), 0..3),
        junk in vec(vec(any::<u8>(), 0..40), 0..4),
    ) {
        let (lines, truth) = write(2, &acts);
        let mut damaged = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            match fate.get(i).copied().unwrap_or(0) {
                1 => {}
                2 => { damaged.push(l.clone()); damaged.push(l.clone()); }
                _ => damaged.push(l.clone()),
            }
        }
        for (a, b) in swaps {
            if !damaged.is_empty() {
                let (a, b) = (a.index(damaged.len()), b.index(damaged.len()));
                damaged.swap(a, b);
            }
        }
        for (i, j) in junk.into_iter().enumerate() {
            let at = (i * 7) % (damaged.len() + 1);
            let mut forged = format!("swx2 {TAG} ").into_bytes();
            forged.extend(j);
            damaged.insert(at, forged);
        }
        let mut r = Reader::new(&KEY, TAG, 2);
        let mut g = got(2);
        read(&mut r, &damaged, &mut g)?;
        for (want, have) in truth.iter().flatten().zip(g.streams.iter().flatten()) {
            prop_assert!(want.starts_with(have), "not a prefix");
        }
        if g.done {
            prop_assert_eq!(&g.streams, &truth);
        }
        // Whatever happened, reading the undamaged log again completes it, each byte once.
        read(&mut r, &lines, &mut g)?;
        prop_assert!(g.done);
        prop_assert_eq!(&g.streams, &truth);
    }
}
