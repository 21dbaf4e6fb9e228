//! The listening side: TLS (rustls with ring) over a TCP listener, HTTP/1.1 with keep-alive
//! (hyper), one task per connection, and shutdown through a cancellation token; and the plain-HTTP
//! listener of the metadata service (which the real cloud serves over plain HTTP too).
//!
//! Owns sockets and connection lifetimes only; every request goes to `router::handle` (or
//! `router::handle_metadata`). It must not know about routes or state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::pki::Leaf;
use crate::router;
use crate::state::World;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after an accept error (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The TLS configuration serving `leaf` (HTTP/1.1 only).
pub(crate) fn tls_config(leaf: &Leaf) -> std::io::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = vec![CertificateDer::from(leaf.cert_der.clone())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves connections from `listener` until `cancel` fires; the listener closes then.
pub(crate) fn spawn(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    world: Arc<World>,
    cancel: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    tokio::spawn(connection(
                        tcp,
                        peer,
                        acceptor.clone(),
                        world.clone(),
                        cancel.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
        tracing::debug!("simulator stopped listening");
    });
}

/// One client connection: TLS handshake, then HTTP/1.1 requests until either side closes.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    world: Arc<World>,
    cancel: CancellationToken,
) {
    // Small answers on a keep-alive connection must not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    // Errors include the deliberate aborts of truncated downloads.
    serve_http(tls, peer, world, cancel, Surface::Cloud).await;
}

/// Which router a connection speaks to.
#[derive(Clone, Copy)]
enum Surface {
    Cloud,
    Metadata,
}

/// HTTP/1.1 with keep-alive on one connection until either side closes or `cancel` fires
/// (then in-flight requests finish).
async fn serve_http<IO>(
    io: IO,
    peer: SocketAddr,
    world: Arc<World>,
    cancel: CancellationToken,
    surface: Surface,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let world = world.clone();
        async move {
            match surface {
                Surface::Cloud => router::handle(world, req).await,
                Surface::Metadata => router::handle_metadata(world, req).await,
            }
        }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Serves the metadata service over plain HTTP/1.1 from `listener` until `cancel` fires.
pub(crate) fn spawn_metadata(listener: TcpListener, world: Arc<World>, cancel: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    let world = world.clone();
                    let cancel = cancel.clone();
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        serve_http(tcp, peer, world, cancel, Surface::Metadata).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metadata accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
        tracing::debug!("metadata service stopped listening");
    });
}
