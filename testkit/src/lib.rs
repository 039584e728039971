//! Helpers shared by the tests of every crate: real services started once per test process, and
//! waiting on conditions with a deadline instead of sleeping. Dev-dependency only.

pub mod postgres;
pub mod temporal;
pub mod turnstile;

use std::future::Future;
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago. Another process can still take it before the
/// caller binds it, so prefer binding port 0 directly when the server under test allows it.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Polls `condition` until it is true, or fails once `deadline` has passed. The pause between polls
/// starts at 10 ms and doubles up to 250 ms, so a fast condition is noticed quickly and a slow one
/// is not hammered. Add `.context("what was awaited")` at the call site.
pub async fn wait_until<F, Fut>(deadline: Instant, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if condition().await {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            anyhow::bail!(
                "condition still false after {:.1}s (deadline reached)",
                now.duration_since(started).as_secs_f64()
            );
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn wait_until_returns_as_soon_as_the_condition_holds() {
        let calls = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        wait_until(deadline, || async { calls.fetch_add(1, Ordering::SeqCst) >= 2 }).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn wait_until_fails_once_the_deadline_has_passed() {
        let deadline = Instant::now() + Duration::from_millis(50);
        let err = wait_until(deadline, || async { false }).await.unwrap_err();
        assert!(err.to_string().contains("deadline reached"), "{err}");
        assert!(Instant::now() >= deadline);
    }

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
