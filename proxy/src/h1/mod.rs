//! goproxy's own HTTP/1.1 client side, for upstreams that answer in
//! HTTP/1.1 (HTTP/2 upstreams go through hyper's client, see
//! [`crate::client`]).
//!
//! Why not hyper's client here: it drives each connection from a task of
//! its own and hands body chunks to the relay through a channel, so every
//! relayed SSE event woke two tasks, and its pool spawned one more task per
//! request to take the connection back. Here the relay task reads the
//! upstream socket itself and the pool is a `Vec` behind a mutex. The
//! parts that are easy to get wrong are kept small and tested on their
//! own: heads are parsed by `httparse` (hyper's parser), body framing
//! follows RFC 9112 with a bound on every control byte, and a connection
//! is reused only after a whole body with nothing after it.

mod body;
mod conn;
mod decode;
mod head;
mod pool;

use std::sync::Arc;

use bytes::BytesMut;
use http::{Request, Response};

pub use body::H1Body;
pub use conn::{Conn, H1Error, Io};
pub use decode::{DecodeError, Decoder, Framing, Step};
pub use head::HeadError;
pub use pool::{Key, Pool};

use crate::chunks::Chunks;

/// Send `req` on `conn` and return the response once its head arrived;
/// the body reads from `conn` and returns it to `home` when whole.
pub async fn send(
    mut conn: Box<Conn>,
    req: &Request<Chunks>,
    home: Option<(Arc<Pool>, Key)>,
) -> Result<Response<H1Body>, H1Error> {
    let body = req.body();
    let mut head = BytesMut::with_capacity(512);
    head::write_request(req, body.len(), &mut head);
    let h = conn.exchange(&head, body).await?;
    let (parts, ()) = h.response.into_parts();
    let body = H1Body::new(conn, h.framing, h.keep_alive, home);
    Ok(Response::from_parts(parts, body))
}
