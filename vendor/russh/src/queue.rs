// director's patch (see PATCHED.md): tokio's queues with each message boxed.
//
// A tokio mpsc queue allocates its first block of 32 slots when it is made and keeps at
// least one block for its life. russh opens several per connection (handle to session,
// priority, inbound channels, session to handle) and one per channel, of messages of 80 to
// 90 bytes: about 2.7 KB each, held for the connection's life whatever flows. With the
// messages boxed a slot is a pointer: a block is 288 bytes, and a message costs one
// allocation while it is queued.
//
// Same names and methods as `tokio::sync::mpsc` (those russh uses), so the rest of the
// crate only changes its imports.

use std::task::{Context, Poll};

use tokio::sync::mpsc;

pub mod error {
    pub use tokio::sync::mpsc::error::{SendError, TryRecvError, TrySendError};
}

use error::{SendError, TryRecvError, TrySendError};

fn unbox<T>(e: SendError<Box<T>>) -> SendError<T> {
    SendError(*e.0)
}

pub fn channel<T>(buffer: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel(buffer);
    (Sender(tx), Receiver(rx))
}

pub fn unbounded_channel<T>() -> (UnboundedSender<T>, UnboundedReceiver<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (UnboundedSender(tx), UnboundedReceiver(rx))
}

#[derive(Debug)]
pub struct Sender<T>(mpsc::Sender<Box<T>>);

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender(self.0.clone())
    }
}

impl<T> Sender<T> {
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.0.send(Box::new(value)).await.map_err(unbox)
    }

    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.0.try_send(Box::new(value)).map_err(|e| match e {
            TrySendError::Full(v) => TrySendError::Full(*v),
            TrySendError::Closed(v) => TrySendError::Closed(*v),
        })
    }

    pub async fn reserve_owned(self) -> Result<OwnedPermit<T>, SendError<()>> {
        self.0.reserve_owned().await.map(OwnedPermit)
    }

    pub async fn closed(&self) {
        self.0.closed().await
    }

    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    pub fn max_capacity(&self) -> usize {
        self.0.max_capacity()
    }
}

#[derive(Debug)]
pub struct OwnedPermit<T>(mpsc::OwnedPermit<Box<T>>);

impl<T> OwnedPermit<T> {
    pub fn send(self, value: T) -> Sender<T> {
        Sender(self.0.send(Box::new(value)))
    }
}

#[derive(Debug)]
pub struct Receiver<T>(mpsc::Receiver<Box<T>>);

impl<T> Receiver<T> {
    pub async fn recv(&mut self) -> Option<T> {
        self.0.recv().await.map(|b| *b)
    }

    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.0.try_recv().map(|b| *b)
    }

    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| *b))
    }

    pub fn close(&mut self) {
        self.0.close()
    }
}

#[derive(Debug)]
pub struct UnboundedSender<T>(mpsc::UnboundedSender<Box<T>>);

impl<T> Clone for UnboundedSender<T> {
    fn clone(&self) -> Self {
        UnboundedSender(self.0.clone())
    }
}

impl<T> UnboundedSender<T> {
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.0.send(Box::new(value)).map_err(unbox)
    }
}

#[derive(Debug)]
pub struct UnboundedReceiver<T>(mpsc::UnboundedReceiver<Box<T>>);

impl<T> UnboundedReceiver<T> {
    pub async fn recv(&mut self) -> Option<T> {
        self.0.recv().await.map(|b| *b)
    }

    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.0.try_recv().map(|b| *b)
    }

    pub fn close(&mut self) {
        self.0.close()
    }
}
