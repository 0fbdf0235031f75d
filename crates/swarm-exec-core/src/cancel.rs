//! One cancellation, many listeners: the caller's single cancel future fans out to every
//! helper run under way, so each removes its own helper before the whole returns.

use std::future::Future;

use tokio::sync::watch;

use crate::model::outcome::Interrupt;

pub struct CancelHub {
    tx: watch::Sender<Option<Interrupt>>,
}

impl Default for CancelHub {
    fn default() -> Self {
        CancelHub {
            tx: watch::channel(None).0,
        }
    }
}

impl CancelHub {
    /// A future that resolves when (or if already) [`CancelHub::fire`] was called.
    pub fn subscribe(&self) -> impl Future<Output = Interrupt> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            loop {
                if let Some(i) = *rx.borrow_and_update() {
                    return i;
                }
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }

    pub fn fire(&self, i: Interrupt) {
        self.tx.send_replace(Some(i));
    }

    /// Runs `work`; when `cancel` resolves first, fires and lets `work` wind down.
    pub async fn run<T>(
        &self,
        work: impl Future<Output = T>,
        cancel: impl Future<Output = Interrupt>,
    ) -> T {
        tokio::pin!(work);
        tokio::select! {
            r = &mut work => r,
            i = cancel => {
                self.fire(i);
                work.await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn late_and_early_subscribers_both_hear_it() {
        let hub = CancelHub::default();
        let early = hub.subscribe();
        hub.fire(Interrupt::Sigterm);
        let late = hub.subscribe();
        assert_eq!(early.await, Interrupt::Sigterm);
        assert_eq!(late.await, Interrupt::Sigterm);
    }
}
