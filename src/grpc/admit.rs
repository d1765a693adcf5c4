//! Every call is admitted again: a [`RefuseLayer`] around the gRPC services checks the
//! connection's client certificate against the revocation sources in force before the call
//! reaches a service, so a certificate revoked while its connection was open gets
//! `UNAUTHENTICATED` from its very next call, health and reflection included. The connection is
//! then closed by the accept loop's sweep within a second (after this answer has been sent).

use tonic::Status;

use super::refuse::RefuseLayer;
use super::transport::{Admission, Peer};

/// The layer that checks the caller's certificate on every call, by `admission`.
pub fn layer(
    admission: Admission,
) -> RefuseLayer<impl Fn(&http::Uri, &http::Extensions) -> Option<Status> + Clone> {
    RefuseLayer::new(move |_: &http::Uri, extensions: &http::Extensions| {
        let refused = match extensions.get::<Peer>() {
            Some(peer) => admission.admits(peer).err(),
            None => Some("no verified client certificate".to_owned()),
        };
        refused.map(Status::unauthenticated)
    })
}
