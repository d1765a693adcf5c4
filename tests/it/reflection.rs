//! gRPC server reflection: standard tools can list the services and fetch their descriptors,
//! over the same mutual TLS as every other call.

use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use super::harness::*;

async fn ask(
    client: &mut ServerReflectionClient<tonic::transport::Channel>,
    request: MessageRequest,
) -> MessageResponse {
    let outbound = tokio_stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    }]);
    let mut answers = client
        .server_reflection_info(outbound)
        .await
        .unwrap()
        .into_inner();
    answers
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services_and_describes_them() {
    let env = Env::new();
    let daemon = env.start().await;
    let files = daemon.files("engineer");
    let authenticated = channel(
        &daemon.endpoint(),
        &files.ca,
        Some((&files.cert, &files.key)),
    )
    .await
    .unwrap();
    let mut client = ServerReflectionClient::new(authenticated);

    let MessageResponse::ListServicesResponse(listed) =
        ask(&mut client, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let names: Vec<String> = listed.service.into_iter().map(|s| s.name).collect();
    for service in [
        "elevate.v1.AccessService",
        "elevate.v1.ApprovalService",
        "elevate.v1.BreakGlassService",
        "elevate.v1.AuditService",
        "elevate.v1.AdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }

    let MessageResponse::FileDescriptorResponse(described) = ask(
        &mut client,
        MessageRequest::FileContainingSymbol("elevate.v1.AdminService".to_owned()),
    )
    .await
    else {
        panic!("no descriptor");
    };
    let files: Vec<prost_types::FileDescriptorProto> = described
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost::Message::decode(bytes.as_slice()).unwrap())
        .collect();
    let admin = files
        .iter()
        .find(|f| f.name() == "elevate/v1/admin.proto")
        .unwrap();
    let methods: Vec<&str> = admin.service[0].method.iter().map(|m| m.name()).collect();
    assert!(methods.contains(&"Offboard"), "{methods:?}");
    assert!(methods.contains(&"Reload"), "{methods:?}");

    // Without a client certificate there is nothing to reflect on: the handshake is refused,
    // or (TLS 1.3 lets the client finish first) the first call on the connection fails.
    match channel(&daemon.endpoint(), &files_ca(&daemon), None).await {
        Err(refused) => assert!(!refused.is_empty()),
        Ok(anonymous) => {
            let mut client = ServerReflectionClient::new(anonymous);
            let outbound = tokio_stream::iter([ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            }]);
            assert!(client.server_reflection_info(outbound).await.is_err());
        }
    }
    daemon.stop().await;
}

fn files_ca(daemon: &Daemon) -> std::path::PathBuf {
    daemon.files("engineer").ca
}
