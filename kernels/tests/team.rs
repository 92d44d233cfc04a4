//! The polling team (`team.rs`): every task of every job runs exactly once,
//! on more than one thread; rayon work inside a pass still runs; a panic in
//! a task reaches the caller and leaves the pool usable; and matrix
//! products inside a team equal those outside, bit for bit.

mod common;

use common::{Aligned, Rng};
use qllama_kernels::formats::interleaved;
use qllama_kernels::matmul::matmul_many_with;
use qllama_kernels::simd::Isa;
use qllama_kernels::team::{for_each, for_each_range, leading, with_team};
use qllama_kernels::{GgmlDType, MatmulScratch, QMatrix};
use rayon::prelude::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

/// Many jobs of many sizes one after another, as a forward pass has them:
/// each index of each job is visited exactly once, whichever thread runs it.
#[test]
fn every_task_runs_exactly_once() {
    for threads in [1, 2, 4] {
        let counts: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        let sizes = [0, 1, 2, 3, 7, 64, 999, 1000, 5];
        pool(threads).install(|| {
            with_team(|| {
                assert!(leading());
                for round in 0..50 {
                    for &n in &sizes {
                        for_each(n, |i| {
                            counts[i].fetch_add(1, Ordering::Relaxed);
                        });
                        // Everything the job did is visible once it returns.
                        for (i, c) in counts.iter().enumerate() {
                            let want = if i < n { 1 } else { 0 };
                            assert_eq!(
                                c.swap(0, Ordering::Relaxed),
                                want,
                                "{threads} threads, round {round}, n {n}, task {i}"
                            );
                        }
                    }
                }
            })
        });
        assert!(!leading(), "the team ends with its pass");
    }
}

/// `for_each_range` covers `0..n` once with non-empty ranges, in a team and
/// outside one; in a team each claim takes its share of what is left
/// (`ceil(left / 2 threads)`), so the ranges shrink down to single items
/// at the end, where the threads must finish together.
#[test]
fn ranges_cover_every_item_once_and_shrink_in_a_team() {
    for threads in [1, 2, 3, 4] {
        for n in [0, 1, 2, 5, 64, 255, 256, 1000] {
            for in_team in [true, false] {
                let ranges = Mutex::new(Vec::new());
                let run = || {
                    for_each_range(n, |r| {
                        assert!(!r.is_empty() && r.end <= n, "range {r:?} of {n}");
                        ranges.lock().unwrap().push(r);
                    })
                };
                pool(threads).install(|| if in_team { with_team(run) } else { run() });
                let mut ranges = ranges.into_inner().unwrap();
                ranges.sort_by_key(|r| r.start);
                let mut next = 0;
                for r in &ranges {
                    assert_eq!(r.start, next, "{threads} threads, n {n}, team {in_team}: {ranges:?}");
                    next = r.end;
                    if in_team {
                        assert_eq!(
                            r.len(),
                            (n - r.start).div_ceil(2 * threads),
                            "{threads} threads, n {n}: {ranges:?}"
                        );
                    }
                }
                assert_eq!(next, n, "{threads} threads, n {n}, team {in_team}: {ranges:?}");
            }
        }
    }
}

/// Tasks are shared out: with four threads and tasks that take a while,
/// some run on threads other than the leader's.
#[test]
fn tasks_run_on_the_other_threads() {
    let threads = Mutex::new(HashSet::new());
    pool(4).install(|| {
        with_team(|| {
            for _ in 0..20 {
                for_each(16, |_| {
                    threads.lock().unwrap().insert(rayon::current_thread_index());
                    std::thread::sleep(std::time::Duration::from_millis(1));
                });
            }
        })
    });
    assert!(threads.lock().unwrap().len() > 1, "only {:?} ran tasks", threads.lock().unwrap());
}

/// Rayon's own parallel loops and joins inside a pass, a team inside a
/// team, and `for_each` outside any team all still work.
#[test]
fn rayon_work_inside_a_pass_and_loops_outside_one() {
    let p = pool(3);
    let sum = p.install(|| {
        with_team(|| {
            let a: u64 = (0..10_000u64).into_par_iter().map(|i| i * i).sum();
            let inner = with_team(|| {
                let hits = AtomicUsize::new(0);
                for_each(100, |_| {
                    hits.fetch_add(1, Ordering::Relaxed);
                });
                hits.into_inner()
            });
            assert_eq!(inner, 100);
            a
        })
    });
    assert_eq!(sum, (0..10_000u64).map(|i| i * i).sum::<u64>());
    let hits = AtomicUsize::new(0);
    p.install(|| {
        for_each(77, |_| {
            hits.fetch_add(1, Ordering::Relaxed);
        })
    });
    assert_eq!(hits.into_inner(), 77);
}

/// A task that panics, on whichever thread, makes the pass panic, and the
/// pool runs the next pass normally.
#[test]
fn a_panicking_task_reaches_the_caller() {
    let p = pool(2);
    for bad in [0, 63] {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.install(|| {
                with_team(|| {
                    for_each(64, |i| {
                        if i == bad {
                            panic!("task {i} fails");
                        }
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    })
                })
            })
        }));
        assert!(result.is_err(), "the panic of task {bad} was lost");
        let hits = AtomicUsize::new(0);
        p.install(|| {
            with_team(|| {
                for_each(64, |_| {
                    hits.fetch_add(1, Ordering::Relaxed);
                })
            })
        });
        assert_eq!(hits.into_inner(), 64);
    }
}

/// Matrix products in a team, one token and a batch, interleaved and
/// row-major, several sharing their input: the same bits as without.
#[test]
fn products_in_a_team_equal_products_outside() {
    let mut rng = Rng::new(29);
    let (rows, cols) = (96, 256);
    let mut weights = vec![];
    for (dtype, interleave) in
        [(GgmlDType::Q8_0, true), (GgmlDType::Q4_0, true), (GgmlDType::Q4_0, false), (GgmlDType::F16, true)]
    {
        let w = Aligned::quantize(dtype, &rng.normals(rows * cols, 0.05));
        let data = if interleave && interleaved::can_interleave(dtype, rows, cols) {
            let mut packed = Aligned::zeroed(w.as_ref().len());
            interleaved::interleave(dtype, rows, w.as_ref(), packed.as_mut());
            (true, packed)
        } else {
            (false, w)
        };
        weights.push((dtype, data));
    }
    fn matrix((dtype, (interleave, data)): &(GgmlDType, (bool, Aligned)), rows: usize, cols: usize) -> QMatrix<'_> {
        if *interleave {
            QMatrix::interleaved(*dtype, rows, cols, data.as_ref()).unwrap()
        } else {
            QMatrix::new(*dtype, rows, cols, data.as_ref()).unwrap()
        }
    }
    let p = pool(3);
    for n in [1, 9] {
        let x = rng.normals(n * cols, 1.0);
        for isa in Isa::available() {
            let run = |team: bool| {
                let mut outs = vec![vec![f32::NAN; n * rows]; weights.len()];
                let mut products: Vec<(QMatrix, &mut [f32])> = weights
                    .iter()
                    .zip(outs.iter_mut())
                    .map(|(w, o)| (matrix(w, rows, cols), o.as_mut_slice()))
                    .collect();
                let mut scratch = MatmulScratch::default();
                p.install(|| {
                    if team {
                        with_team(|| matmul_many_with(isa, &mut products, &x, n, &mut scratch));
                    } else {
                        matmul_many_with(isa, &mut products, &x, n, &mut scratch);
                    }
                });
                outs
            };
            let (outside, inside) = (run(false), run(true));
            for (i, (a, b)) in outside.iter().zip(&inside).enumerate() {
                let same = a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{} n={n} product {i} ({:?}) differs in a team", isa.name(), weights[i].0);
            }
        }
    }
}
