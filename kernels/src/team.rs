//! The pool's threads as one team for the length of a forward pass: the
//! threads that are not running the pass poll for work instead of going to
//! sleep, and [`for_each_range`] hands its work out through one atomic
//! counter, in ranges that shrink as the work runs out.
//!
//! Why: a token of generation is some 200 matrix products of a few hundred
//! microseconds each, with short serial steps in between. Rayon's idle
//! workers go to sleep after a few microseconds, and the caller sleeps
//! while it waits for a stolen half; each wake-up is a futex and, in a
//! virtual machine, an interrupt to a halted CPU (tens of microseconds).
//! ggml keeps its threads spinning through a graph for the same reason.
//! Outside [`with_team`], [`for_each_range`] is rayon's parallel loop.

use rayon::prelude::*;
use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// One [`for_each_range`] call, on its caller's stack.
struct Job<'a> {
    task: &'a (dyn Fn(Range<usize>) + Sync),
}

struct Team {
    /// The current job's item count (high 32 bits) and next unclaimed item
    /// (low 32 bits): a claim is one compare-and-swap, which also tells
    /// which job the items belong to.
    state: AtomicU64,
    /// The current job, valid while any of its items is unfinished.
    job: AtomicPtr<Job<'static>>,
    /// Items of the current job finished (or abandoned by a panic).
    finished: AtomicUsize,
    /// The threads in the team.
    threads: usize,
    panicked: AtomicBool,
    /// Set when the pass is over: the pollers go back to rayon.
    stop: AtomicBool,
}

thread_local! {
    /// The team this thread leads, while its pass runs.
    static LEADING: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
    /// Whether this thread is polling for a team (or leads one).
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// The most items one [`for_each_range`] hands out through the team.
const MAX_ITEMS: usize = 1 << 30;

/// Whether teams are formed: `QLLAMA_TEAM=0` turns them off (to measure
/// what they bring, or on a machine shared with other work, where the
/// polling threads would take time from it).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| !std::env::var("QLLAMA_TEAM").is_ok_and(|v| v.trim() == "0"))
}

/// Run `body` with the other threads of the current rayon pool polling for
/// its [`for_each_range`] work and its rayon jobs until it returns (just `body`
/// when teams are off, or inside another team).
pub fn with_team<R: Send>(body: impl FnOnce() -> R + Send) -> R {
    if BUSY.get() || !enabled() {
        return body();
    }
    let team = Team {
        state: AtomicU64::new(0),
        job: AtomicPtr::new(std::ptr::null_mut()),
        finished: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        threads: rayon::current_num_threads(),
    };
    let pollers = team.threads.saturating_sub(1);
    let (r, ()) = rayon::join(
        || {
            // Whatever happens in `body`, the pollers stop and this thread
            // goes back to what it was doing (this join may have been
            // picked up by a thread polling for another team).
            struct Lead<'a>(&'a Team, *const Team, bool);
            impl Drop for Lead<'_> {
                fn drop(&mut self) {
                    LEADING.set(self.1);
                    BUSY.set(self.2);
                    self.0.stop.store(true, Ordering::Release);
                }
            }
            let _lead = Lead(&team, LEADING.replace(&team), BUSY.replace(true));
            body()
        },
        || start_pollers(&team, pollers),
    );
    r
}

/// Whether this thread leads a team.
pub fn leading() -> bool {
    !LEADING.get().is_null()
}

/// `f(i)` for every `i` in `0..n`, across the team this thread leads, or
/// across rayon's pool outside a team.
pub fn for_each(n: usize, f: impl Fn(usize) + Sync) {
    for_each_range(n, |r| r.for_each(&f));
}

/// `f(r)` for ranges `r` that cover `0..n` once, across the team this
/// thread leads, or across rayon's pool outside a team.
///
/// In a team the ranges shrink as the work runs out (each claim takes a
/// share of what is left, "guided" scheduling): the first are long, so
/// that a thread streams through a long stretch of memory, and the last
/// are single items, so that the threads finish together.
pub fn for_each_range(n: usize, f: impl Fn(Range<usize>) + Sync) {
    let team = LEADING.get();
    if team.is_null() || n > MAX_ITEMS {
        // A few ranges per thread, for balance on a busy machine.
        let len = n.div_ceil(4 * rayon::current_num_threads()).max(1);
        (0..n.div_ceil(len)).into_par_iter().for_each(|i| f(i * len..((i + 1) * len).min(n)));
        return;
    }
    // SAFETY: `LEADING` points at the `Team` on the stack of `with_team`,
    // which clears it before that frame ends; this runs inside its body.
    let team = unsafe { &*team };
    let job = Job { task: &f };
    team.finished.store(0, Ordering::Relaxed);
    team.panicked.store(false, Ordering::Relaxed);
    // Only the lifetime is erased: the pointer is used only while an item of
    // this job is unfinished, and `Close` waits for all of them.
    team.job.store((&job as *const Job<'_>).cast_mut().cast(), Ordering::Relaxed);
    // Release: a poller whose claim reads this state sees the job above.
    team.state.store((n as u64) << 32, Ordering::Release);
    let close = Close(team, n);
    while team.run_one() {}
    drop(close);
    if team.panicked.swap(false, Ordering::Relaxed) {
        panic!("a task of a parallel loop panicked on another thread");
    }
}

/// Ends a job when dropped, even while unwinding: no item can be claimed
/// any more, and the drop returns once every claimed item has finished, so
/// the job (on the caller's stack) outlives its last use.
struct Close<'a>(&'a Team, usize);

impl Drop for Close<'_> {
    fn drop(&mut self) {
        let n = self.1;
        // Claiming all that is left leaves nothing to claim.
        let old = self.0.state.fetch_add(n as u64, Ordering::Relaxed);
        let claimed = ((old & u32::MAX as u64) as usize).min(n);
        let mut spins = 0u32;
        while self.0.finished.load(Ordering::Acquire) < claimed {
            pause(&mut spins);
        }
    }
}

impl Team {
    /// Claim and run one range of the current job; false when none is left.
    fn run_one(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        let range = loop {
            let (n, i) = ((s >> 32) as usize, (s & u32::MAX as u64) as usize);
            if i >= n {
                return false;
            }
            // A share of what is left: a thread that claims it while the
            // others run ranges as long finishes with them, roughly.
            let len = (n - i).div_ceil(2 * self.threads);
            // Acquire: pairs with the Release that published the job.
            match self.state.compare_exchange_weak(s, s + len as u64, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break i..i + len,
                Err(now) => s = now,
            }
        };
        // Counts the items as finished even if they panic, so that `Close`
        // does not wait for them forever.
        struct Finish<'a>(&'a Team, usize);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.panicked.store(true, Ordering::Relaxed);
                }
                self.0.finished.fetch_add(self.1, Ordering::Release);
            }
        }
        let _finish = Finish(self, range.len());
        // SAFETY: the claimed items of the job the claim read are unfinished
        // until `_finish` drops, and `Close` keeps that job alive until then.
        let job = unsafe { &*self.job.load(Ordering::Relaxed) };
        (job.task)(range);
        true
    }
}

/// One poller on each of `k` rayon threads (the ones that steal them).
fn start_pollers(team: &Team, k: usize) {
    match k {
        0 => {}
        1 => poll(team),
        _ => {
            rayon::join(|| poll(team), || start_pollers(team, k - 1));
        }
    }
}

/// Run the team's tasks, and any rayon job, until the pass is over. Does
/// nothing on a thread that already leads or polls (a poller found by a
/// thread waiting inside the pass must not hold that thread).
fn poll(team: &Team) {
    if BUSY.get() {
        return;
    }
    struct Polling;
    impl Drop for Polling {
        fn drop(&mut self) {
            BUSY.set(false);
        }
    }
    BUSY.set(true);
    let _polling = Polling;
    let mut spins = 0;
    while !team.stop.load(Ordering::Acquire) {
        if team.run_one() || rayon::yield_now() == Some(rayon::Yield::Executed) {
            spins = 0;
        } else {
            pause(&mut spins);
        }
    }
}

/// A pause in a spin: a CPU hint, and now and then the rest of the time
/// slice, so that a busy machine's other programs still run.
fn pause(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if spins.is_multiple_of(4096) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}
