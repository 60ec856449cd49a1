//! Health, reflection and shutdown of the running service.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::harness::{TestServer, backend_tests};

backend_tests! {
    /// Health reports SERVING for the whole server and for each public service,
    /// and NOT_FOUND for a service that does not exist.
    #[tokio::test]
    async fn health_reports_serving_once_the_database_answers(server: TestServer) {
        let mut health = HealthClient::new(server.channel().await);
        for service in [
            "",
            "salesmetrics.v1.IngestService",
            "salesmetrics.v1.KpiService",
            "salesmetrics.v1.AdminService",
        ] {
            let mut status = None;
            // The first probe runs right after start; allow it a moment.
            for _ in 0..50 {
                match health
                    .check(HealthCheckRequest {
                        service: service.to_string(),
                    })
                    .await
                {
                    Ok(resp) => {
                        status = Some(resp.into_inner().status);
                        break;
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                }
            }
            assert_eq!(
                status,
                Some(ServingStatus::Serving as i32),
                "{}: health of {service:?}",
                server.backend
            );
        }
        let unknown = health
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .expect_err("unknown service");
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        server.stop().await;
    }
}

/// Both reflection versions list the public services and health.
#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services() {
    use tonic_reflection::pb::{v1, v1alpha};
    let server = TestServer::sqlite().await;

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("v1 answer")
        .expect("one message");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("v1: expected a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for expected in [
        "grpc.health.v1.Health",
        "salesmetrics.v1.AdminService",
        "salesmetrics.v1.IngestService",
        "salesmetrics.v1.KpiService",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "v1 lists {expected}: {names:?}"
        );
    }

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "salesmetrics.v1.KpiService".into(),
            ),
        ),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("v1alpha answer")
        .expect("one message");
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        response.message_response
    else {
        panic!("v1alpha: expected file descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    server.stop().await;
}

/// Reflection resolves `google.rpc.BadRequest`, so grpcurl and `buf curl`
/// can decode the error details of INVALID_ARGUMENT answers.
#[tokio::test]
async fn reflection_resolves_the_error_details() {
    use prost::Message as _;
    use tonic_reflection::pb::v1;
    let server = TestServer::sqlite().await;
    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "google.rpc.BadRequest".into(),
            ),
        ),
    };
    let response = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection v1")
        .into_inner()
        .message()
        .await
        .expect("v1 answer")
        .expect("one message");
    let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        response.message_response
    else {
        panic!(
            "expected file descriptors, got {:?}",
            response.message_response
        );
    };
    let file = prost_types::FileDescriptorProto::decode(&files.file_descriptor_proto[0][..])
        .expect("a file descriptor");
    assert!(
        file.name().ends_with("error_details.proto"),
        "{}",
        file.name()
    );
    assert_eq!(file.package(), "google.rpc");
    let bad_request = file
        .message_type
        .iter()
        .find(|m| m.name() == "BadRequest")
        .expect("BadRequest in the file");
    assert_eq!(bad_request.field[0].name(), "field_violations");
    server.stop().await;
}
