//! Group commit for SQLite: one writer thread owns a connection and commits the operations of
//! many concurrent callers in one transaction, so that one `fsync` makes all of them durable.
//!
//! Each operation runs inside its own savepoint: one that fails rolls back only itself. A caller
//! gets its answer only after the transaction holding its operation committed, so an answer is
//! never ahead of the disk. Operations must not begin or end transactions themselves.

use std::any::Any;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

/// Operations taken into one transaction at most.
const MAX_BATCH: usize = 512;

type Answer = rusqlite::Result<Box<dyn Any + Send>>;

struct Job {
    run: Box<dyn FnOnce(&Connection) -> Answer + Send>,
    reply: oneshot::Sender<Answer>,
}

/// Why an operation got no answer from the writer.
#[derive(Debug)]
pub(crate) enum WriterError {
    /// SQLite refused the operation or its transaction.
    Sqlite(rusqlite::Error),
    /// The writer thread is gone (it panicked, or the store was dropped).
    Gone,
}

/// The handle of a writer thread (cheap to clone; the thread ends with the last handle).
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Start the writer thread on `conn`; `name` names the thread.
    pub(crate) fn spawn(conn: Connection, name: &str) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("joint-sqlite-{name}"))
            .spawn(move || writer_loop(conn, rx))?;
        Ok(Writer { tx })
    }

    /// Run `f` in the next transaction and wait until that transaction committed.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, WriterError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            run: Box::new(move |c| f(c).map(|v| Box::new(v) as Box<dyn Any + Send>)),
            reply,
        };
        self.tx.send(job).map_err(|_| WriterError::Gone)?;
        match rx.await {
            Ok(Ok(v)) => v.downcast::<T>().map(|b| *b).map_err(|_| WriterError::Gone),
            Ok(Err(e)) => Err(WriterError::Sqlite(e)),
            Err(_) => Err(WriterError::Gone),
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            for j in jobs {
                let _ = j.reply.send(Err(clone_err(&e)));
            }
            continue;
        }
        let mut done: Vec<(oneshot::Sender<Answer>, Answer)> = Vec::with_capacity(jobs.len());
        for j in jobs {
            let answer = match conn.execute_batch("SAVEPOINT op") {
                Err(e) => Err(e),
                Ok(()) => {
                    let r = (j.run)(&conn);
                    let end = if r.is_ok() {
                        conn.execute_batch("RELEASE op")
                    } else {
                        conn.execute_batch("ROLLBACK TO op; RELEASE op")
                    };
                    match (r, end) {
                        (Ok(v), Ok(())) => Ok(v),
                        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                    }
                }
            };
            done.push((j.reply, answer));
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                for (reply, answer) in done {
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                for (reply, answer) in done {
                    let _ = reply.send(answer.and(Err(clone_err(&e))));
                }
            }
        }
    }
}

/// rusqlite errors are not `Clone`; keep the code and the message.
fn clone_err(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(f, m) => rusqlite::Error::SqliteFailure(*f, m.clone()),
        other => other_err(other.to_string()),
    }
}

/// An error of ours in rusqlite's type (SQLITE_ERROR with our message).
pub(crate) fn other_err(msg: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(msg.into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> Writer {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();
        Writer::spawn(conn, "test").unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_callers_one_writer_each_answer_its_own() {
        let w = writer();
        let mut tasks = Vec::new();
        for i in 0..200i64 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                w.call(move |c| {
                    c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [i])?;
                    Ok(i * 2)
                })
                .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap().unwrap(), i as i64 * 2);
        }
        let n: i64 = w
            .call(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(n, 200);
    }

    #[tokio::test]
    async fn a_failing_operation_rolls_back_only_itself() {
        let w = writer();
        let ok = w.clone();
        let a = tokio::spawn(async move {
            ok.call(|c| c.execute("INSERT INTO t (k, v) VALUES (1, 'a')", []))
                .await
        });
        let bad = w.clone();
        let b = tokio::spawn(async move {
            bad.call(|c| {
                c.execute("INSERT INTO t (k, v) VALUES (2, 'b')", [])?;
                c.execute("INSERT INTO t (k, v) VALUES (3, NULL)", [])
            })
            .await
        });
        assert!(a.await.unwrap().is_ok());
        assert!(matches!(b.await.unwrap(), Err(WriterError::Sqlite(_))));
        let keys: Vec<i64> = w
            .call(|c| {
                let mut s = c.prepare("SELECT k FROM t ORDER BY k")?;
                let rows = s.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .await
            .unwrap();
        assert_eq!(
            keys,
            [1],
            "the failed operation's first insert was rolled back"
        );
    }
}
