//! A small persistent thread pool: `run(tasks, f)` calls `f(0..tasks)` spread over the
//! caller and the pool's workers, and returns when every call has returned. Workers sleep on
//! a condition variable between jobs, so an idle model costs nothing.
//!
//! A job of at most as many tasks as threads runs task `t` on thread `t` (the caller is
//! thread 0) unless that thread is late: consecutive steps that split an image the same way
//! then find their part of the input in their own core's cache. A thread that is done claims
//! the tasks not yet started, so a sleeping worker never holds a job up.
//!
//! Panic-safe: a task that panics, on any thread, is caught; `run` waits until every thread
//! has left the job and then resumes that panic on the caller, so a panic never hangs the
//! pool, never outlives the caller's frame in a worker, and the pool serves the next job.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

type Job = dyn Fn(usize) + Sync;

/// Spins before sleeping: a schedule runs many short parallel steps in a row, and waking a
/// sleeping thread costs more than most of them.
const SPINS: u32 = 20_000;

struct State {
    /// The current job (the address of the caller's `&Job`, valid until `run` returns) and
    /// its task count.
    job: Option<(usize, usize)>,
}

struct Inner {
    state: Mutex<State>,
    /// Bumped for every job; workers watch it.
    generation: AtomicU64,
    /// Workers inside the current job. Incremented only under `state`'s lock while the job
    /// is published, so `run` can withdraw the job and then wait for this to reach 0.
    busy: AtomicUsize,
    shutdown: AtomicBool,
    /// Set by [`Pool::park`]: spinning workers stop spinning and sleep until the next job.
    park: AtomicBool,
    /// The first panic of the current job's tasks, resumed on the caller by `run`.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    /// Workers asleep on `wake` (changed under `state`'s lock): a job wakes them with a
    /// system call only when some are.
    sleepers: AtomicUsize,
    /// Whether `run` sleeps on `done` (changed under `state`'s lock).
    waiting: AtomicBool,
    wake: Condvar,
    done: Condvar,
    /// The next task to take (jobs of more tasks than threads).
    next: AtomicUsize,
    /// Tasks taken, one bit each (jobs of at most as many tasks as threads).
    claimed: AtomicU64,
    threads: usize,
}

/// The most threads a pool runs, the caller included: more is refused with an error
/// before any is started.
pub const MAX_THREADS: usize = 1024;

/// The pool. `threads` counts the caller: a pool of 1 runs everything inline.
///
/// It runs one job at a time: a pool may be shared (two runners measured batch for batch
/// share one, so that one's idle worker never spins beside the other's), and a caller that
/// finds a job running — another thread's, or a task's own nested `run` — runs its tasks
/// itself, in order.
pub struct Pool {
    inner: Arc<Inner>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// Held by the caller whose job the workers serve.
    turn: Mutex<()>,
}

/// Runs task `task` of the job at `job`; a panic in it is caught and kept for `Pool::run`
/// to resume on the caller once every thread has left the job (a worker that unwound out of
/// its loop would leave `busy` counted forever, and `run` would wait for it forever).
#[allow(unsafe_code)]
fn call(inner: &Inner, job: usize, task: usize) {
    // SAFETY: `job` is the address of `Pool::run`'s local `&Job`, and only a thread inside
    // the job calls this: the caller, within `run`, or a worker that counted itself in
    // `busy` under `state`'s lock while the job was published (one job at a time: a caller
    // publishes only while it holds the pool's `turn`). `run` withdraws the job under
    // that lock and then waits for `busy` to reach 0 before it returns, and nothing in
    // between can unwind (a task's panic is caught below; poisoned locks are used as they
    // are), so both the local and the closure it borrows outlive this call. The closure is
    // `Sync`: several threads may call it at once.
    let f: &&Job = unsafe { &*(job as *const &Job) };
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(task))) {
        let mut slot = inner.panic.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(payload);
    }
}

/// Whether a job of `tasks` runs task `t` on thread `t` first.
fn pinned(inner: &Inner, tasks: usize) -> bool {
    tasks <= inner.threads && tasks <= 64
}

/// Runs tasks of the job on thread `me` until none is left to take.
fn work(inner: &Inner, job: usize, tasks: usize, me: usize) {
    if pinned(inner, tasks) {
        let claim = |t: usize| inner.claimed.fetch_or(1 << t, Ordering::AcqRel) & (1 << t) == 0;
        if me < tasks && claim(me) {
            call(inner, job, me);
        }
        for t in 0..tasks {
            if inner.claimed.load(Ordering::Acquire) & (1 << t) == 0 && claim(t) {
                call(inner, job, t);
            }
        }
        return;
    }
    loop {
        let t = inner.next.fetch_add(1, Ordering::Relaxed);
        if t >= tasks {
            break;
        }
        call(inner, job, t);
    }
}

fn worker(inner: &Inner, me: usize) {
    let mut seen = 0;
    loop {
        // Wait for a new job: spin a while, then sleep.
        let mut spins = 0;
        while inner.generation.load(Ordering::Acquire) == seen {
            if inner.shutdown.load(Ordering::Acquire) {
                return;
            }
            if spins < SPINS && !inner.park.load(Ordering::Relaxed) {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let Ok(mut s) = inner.state.lock() else {
                return;
            };
            inner.sleepers.fetch_add(1, Ordering::AcqRel);
            while inner.generation.load(Ordering::Acquire) == seen
                && !inner.shutdown.load(Ordering::Acquire)
            {
                s = match inner.wake.wait(s) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            inner.sleepers.fetch_sub(1, Ordering::AcqRel);
        }
        if inner.shutdown.load(Ordering::Acquire) {
            return;
        }
        let taken = {
            let Ok(s) = inner.state.lock() else { return };
            seen = inner.generation.load(Ordering::Acquire);
            let j = s.job;
            if j.is_some() {
                inner.busy.fetch_add(1, Ordering::AcqRel);
            }
            j
        };
        if let Some((job, tasks)) = taken {
            work(inner, job, tasks, me);
            if inner.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
                // Wake `run` if it went to sleep waiting for us (it sets `waiting` under the
                // lock before it checks `busy` a last time, so this cannot miss it).
                let _g = inner.state.lock();
                if inner.waiting.load(Ordering::Acquire) {
                    inner.done.notify_all();
                }
            }
        }
    }
}

impl Pool {
    /// A pool of `threads` (≥ 1, the caller included); an error for more than
    /// [`MAX_THREADS`], or when the system cannot start a thread (those started stop again).
    pub fn new(threads: usize) -> Result<Pool, String> {
        if threads > MAX_THREADS {
            return Err(format!(
                "{threads} threads: at most {MAX_THREADS} can run a model"
            ));
        }
        let inner = Arc::new(Inner {
            state: Mutex::new(State { job: None }),
            generation: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            park: AtomicBool::new(false),
            panic: Mutex::new(None),
            sleepers: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            wake: Condvar::new(),
            done: Condvar::new(),
            next: AtomicUsize::new(0),
            claimed: AtomicU64::new(0),
            threads: threads.max(1),
        });
        let mut pool = Pool {
            inner,
            workers: Vec::with_capacity(threads.saturating_sub(1)),
            turn: Mutex::new(()),
        };
        for me in 1..threads.max(1) {
            let inner = Arc::clone(&pool.inner);
            let started = std::thread::Builder::new()
                .name(format!("mcc-worker-{me}"))
                .spawn(move || worker(&inner, me));
            match started {
                Ok(w) => pool.workers.push(w),
                // Dropping the pool stops and joins the workers already started.
                Err(e) => return Err(format!("cannot start thread {me} of {threads}: {e}")),
            }
        }
        Ok(pool)
    }

    /// Threads, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Sends the workers to sleep now instead of spinning for the next job: the caller has
    /// serial work ahead, which a spinning worker would slow (see `split.rs`). The next
    /// [`Pool::run`] of several tasks wakes them.
    pub fn park(&self) {
        if !self.workers.is_empty() {
            self.inner.park.store(true, Ordering::Relaxed);
        }
    }

    /// Calls `f(t)` for every `t < tasks`, in parallel — or, when the pool is serving another
    /// job (another caller's, or this task's own), one after another on the caller; returns
    /// when all have returned.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let inline = || (0..tasks).for_each(f);
        if self.workers.is_empty() || tasks <= 1 {
            return inline();
        }
        // One job at a time (a poisoned turn only means an earlier job's task panicked).
        let _turn = match self.turn.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return inline(),
        };
        let job: &(dyn Fn(usize) + Sync + '_) = f;
        let addr = &job as *const &(dyn Fn(usize) + Sync + '_) as usize;
        self.inner.park.store(false, Ordering::Relaxed);
        self.inner.next.store(0, Ordering::Relaxed);
        self.inner.claimed.store(0, Ordering::Relaxed);
        {
            // The pool's locks are held only by its own code, which does not panic (tasks'
            // panics are caught in `call`); a poisoned lock is still consistent, so it is
            // used, never a reason to return while a worker may hold the job.
            let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            s.job = Some((addr, tasks));
            self.inner.generation.fetch_add(1, Ordering::AcqRel);
            // A worker counts itself asleep under this lock and re-checks the generation
            // before it waits, so one not counted now will see the new job.
            if self.inner.sleepers.load(Ordering::Acquire) > 0 {
                self.inner.wake.notify_all();
            }
        }
        work(&self.inner, addr, tasks, 0);
        // Withdraw the job (no worker can take it after this), then wait for the workers
        // that did: spin a while, then sleep.
        let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        s.job = None;
        drop(s);
        let mut spins = 0;
        while self.inner.busy.load(Ordering::Acquire) > 0 {
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            self.inner.waiting.store(true, Ordering::Release);
            while self.inner.busy.load(Ordering::Acquire) > 0 {
                s = self.inner.done.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            self.inner.waiting.store(false, Ordering::Release);
        }
        // Every thread has left the job: a task's panic now reaches the caller.
        let payload = self
            .inner
            .panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(payload) = payload {
            std::panic::resume_unwind(payload);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let _g = self.inner.state.lock();
            self.inner.shutdown.store(true, Ordering::Release);
        }
        self.inner.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Splits `0..n` into `parts` nearly equal ranges, rounded to multiples of `align`.
pub fn split(n: usize, parts: usize, align: usize, i: usize) -> std::ops::Range<usize> {
    let units = n.div_ceil(align.max(1));
    let per = units.div_ceil(parts.max(1));
    let (a, b) = ((i * per * align).min(n), ((i + 1) * per * align).min(n));
    a..b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_threads_are_refused_before_any_starts() {
        for n in [MAX_THREADS + 1, 100_000, usize::MAX] {
            let e = Pool::new(n).err().unwrap();
            assert!(e.contains("at most 1024"), "{e}");
        }
        assert_eq!(Pool::new(0).unwrap().threads(), 1);
    }

    #[test]
    fn every_task_runs_once_on_any_pool() {
        for threads in 1..4 {
            let pool = Pool::new(threads).unwrap();
            for tasks in [0, 1, 2, 7, 100] {
                let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                pool.run(tasks, &|t| {
                    hits[t].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_pool_goes_on() {
        let pool = Pool::new(2).unwrap();
        for bad in [0, 1, 5] {
            let done = AtomicUsize::new(0);
            let tasks = if bad == 5 { 8 } else { 2 };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.run(tasks, &|t| {
                    if t == bad {
                        panic!("task {t} fails");
                    }
                    // The others take a while: `run` must wait for them before unwinding.
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }));
            let msg = r.expect_err("the panic must reach the caller");
            assert_eq!(
                msg.downcast_ref::<String>().map(String::as_str),
                Some(&*format!("task {bad} fails"))
            );
            // No task of the job was still running (touching `done`, on this frame) when
            // `run` unwound.
            assert_eq!(done.load(Ordering::SeqCst), tasks - 1, "bad task {bad}");
            // The pool still works.
            let hits = AtomicUsize::new(0);
            pool.run(2, &|_| {
                hits.fetch_add(1, Ordering::SeqCst);
            });
            assert_eq!(hits.load(Ordering::SeqCst), 2);
        }
    }

    #[test]
    fn a_shared_pool_runs_every_callers_tasks_once() {
        // Two threads share a pool, and tasks run jobs of their own on it: a caller that
        // finds a job running computes its tasks itself, so every task of every job runs
        // exactly once and nothing waits forever.
        let pool = std::sync::Arc::new(Pool::new(2).unwrap());
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let pool = std::sync::Arc::clone(&pool);
                std::thread::spawn(move || {
                    for round in 0..200 {
                        let tasks = 1 + round % 9;
                        let hits: Vec<AtomicUsize> =
                            (0..tasks * 3).map(|_| AtomicUsize::new(0)).collect();
                        pool.run(tasks, &|t| {
                            hits[t].fetch_add(1, Ordering::Relaxed);
                            pool.run(2, &|u| {
                                hits[tasks + 2 * t + u].fetch_add(1, Ordering::Relaxed);
                            });
                        });
                        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().expect("a caller failed");
        }
    }

    #[test]
    fn split_covers_the_range() {
        for n in [0, 1, 15, 16, 17, 1000] {
            let mut next = 0;
            for i in 0..3 {
                let r = split(n, 3, 16, i);
                assert_eq!(r.start, next.min(n));
                next = r.end;
            }
            assert_eq!(next, n);
        }
    }
}
