"""1. Reflection (grpc.reflection.v1alpha, what grpcio-reflection speaks) and health."""

import grpc
import pytest
from google.protobuf import descriptor_pool

import harness

HEALTH = "grpc.health.v1.Health"


def _v1alpha(server):
    channel = grpc.insecure_channel(server.addr)
    db = harness.reflection_db(channel, "v1alpha")
    try:
        return channel, db, db.get_services()
    except grpc.RpcError as error:
        failure = f"{server.name} does not answer grpc.reflection.v1alpha: " \
                  f"{error.code().name} {error.details()!r}"
    channel.close()
    pytest.fail(failure)


def test_reflection_v1alpha_lists_the_services_and_health(fiscus):
    for server, services in fiscus.processes:
        channel, _, listed = _v1alpha(server)
        channel.close()
        missing = sorted(set(services + [HEALTH]) - set(listed))
        assert not missing, f"{server.name} lists {listed}, without {missing}"


def test_reflection_v1alpha_resolves_sign_receipt_request(fiscus):
    server = next(s for s, services in fiscus.processes
                  if "fiscus.v1.ReceiptService" in services)
    channel, db, _ = _v1alpha(server)
    try:
        pool = descriptor_pool.DescriptorPool(db)
        request = pool.FindMessageTypeByName("fiscus.v1.SignReceiptRequest")
        method = pool.FindServiceByName("fiscus.v1.ReceiptService").methods_by_name["SignReceipt"]
        assert method.input_type.full_name == "fiscus.v1.SignReceiptRequest"
        fields = {f.name: f.number for f in request.fields}
        assert fields["operation_id"] == 1 and fields["terminal"] == 2, fields
    finally:
        channel.close()


def test_health_check_of_each_service_is_serving(fiscus):
    for server, services in fiscus.processes:
        client = harness.Client(server.addr)
        try:
            for service in services:
                answer = client.call(f"{HEALTH}/Check", {"service": service}, auth=False)
                status = harness.enum_label(answer, "status")
                assert status == "SERVING", f"{server.name}: {service} is {status}"
        finally:
            client.close()
