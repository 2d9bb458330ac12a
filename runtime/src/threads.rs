//! A small persistent thread pool: `run(tasks, f)` calls `f(0..tasks)` spread over the
//! caller and the pool's workers, and returns when every call has returned. Workers sleep on
//! a condition variable between jobs, so an idle model costs nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

type Job = dyn Fn(usize) + Sync;

struct State {
    /// The current job (a pointer to the caller's closure, valid until `run` returns) and
    /// its task count.
    job: Option<(usize, usize)>,
    generation: u64,
    /// Workers still inside the current job.
    busy: usize,
    shutdown: bool,
}

struct Inner {
    state: Mutex<State>,
    wake: Condvar,
    done: Condvar,
    next: AtomicUsize,
}

/// The pool. `threads` counts the caller: a pool of 1 runs everything inline.
pub struct Pool {
    inner: Arc<Inner>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

#[allow(unsafe_code)]
fn call(job: usize, task: usize) {
    // SAFETY: `job` is the address of a `&Job` that `Pool::run` keeps alive (it does not
    // return before every worker has left the job).
    let f: &&Job = unsafe { &*(job as *const &Job) };
    f(task);
}

fn work(inner: &Inner, job: usize, tasks: usize) {
    loop {
        let t = inner.next.fetch_add(1, Ordering::Relaxed);
        if t >= tasks {
            break;
        }
        call(job, t);
    }
}

impl Pool {
    /// A pool of `threads` (≥ 1, the caller included).
    pub fn new(threads: usize) -> Pool {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                job: None,
                generation: 0,
                busy: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            next: AtomicUsize::new(0),
        });
        let workers = (1..threads.max(1))
            .map(|_| {
                let inner = Arc::clone(&inner);
                std::thread::spawn(move || {
                    let mut seen = 0;
                    loop {
                        let (job, tasks) = {
                            let Ok(mut s) = inner.state.lock() else {
                                return;
                            };
                            while !s.shutdown && (s.generation == seen || s.job.is_none()) {
                                s = match inner.wake.wait(s) {
                                    Ok(s) => s,
                                    Err(_) => return,
                                };
                            }
                            if s.shutdown {
                                return;
                            }
                            seen = s.generation;
                            let Some(j) = s.job else { continue };
                            s.busy += 1;
                            j
                        };
                        work(&inner, job, tasks);
                        if let Ok(mut s) = inner.state.lock() {
                            s.busy -= 1;
                            if s.busy == 0 {
                                inner.done.notify_all();
                            }
                        }
                    }
                })
            })
            .collect();
        Pool { inner, workers }
    }

    /// Threads, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `f(t)` for every `t < tasks`, in parallel; returns when all have returned.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() || tasks <= 1 {
            for t in 0..tasks {
                f(t);
            }
            return;
        }
        let job: &(dyn Fn(usize) + Sync + '_) = f;
        let addr = &job as *const &(dyn Fn(usize) + Sync + '_) as usize;
        self.inner.next.store(0, Ordering::Relaxed);
        {
            let Ok(mut s) = self.inner.state.lock() else {
                (0..tasks).for_each(f);
                return;
            };
            s.job = Some((addr, tasks));
            s.generation += 1;
        }
        self.inner.wake.notify_all();
        work(&self.inner, addr, tasks);
        // Withdraw the job, then wait for the workers that took it.
        if let Ok(mut s) = self.inner.state.lock() {
            s.job = None;
            while s.busy > 0 {
                s = match self.inner.done.wait(s) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Ok(mut s) = self.inner.state.lock() {
            s.shutdown = true;
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
    fn every_task_runs_once_on_any_pool() {
        for threads in 1..4 {
            let pool = Pool::new(threads);
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
