"""The exported metric names and labels are a contract with dashboards and alert rules
(deploy/observability): this list changes only on purpose. Labels never name a user, course or
path, so the series count stays bounded."""

from __future__ import annotations

import pytest

from libs import metrics

pytestmark = pytest.mark.unit

EXPECTED = {
    "courseplatform_http_requests": ("route", "method", "status_class"),
    "courseplatform_http_request_duration_seconds": ("route", "method"),
    "courseplatform_http_requests_in_flight": (),
    "grpc_server_handled": ("grpc_service", "grpc_method", "grpc_code"),
    "grpc_server_handling_seconds": ("grpc_service", "grpc_method"),
    "grpc_client_handled": ("grpc_target", "grpc_service", "grpc_method", "grpc_code"),
    "grpc_client_handling_seconds": ("grpc_target", "grpc_service", "grpc_method"),
    "courseplatform_db_statement_duration_seconds": ("service",),
    "courseplatform_db_pool_connections": ("service", "state"),
    "courseplatform_db_pool_size": ("service",),
    "courseplatform_outbox_unpublished": ("schema",),
    "courseplatform_outbox_oldest_unpublished_age_seconds": ("schema",),
    "courseplatform_outbox_published": ("schema",),
    "courseplatform_outbox_publish_failures": ("schema",),
    "courseplatform_stream_length": ("stream",),
    "courseplatform_stream_group_pending": ("stream", "group"),
    "courseplatform_stream_group_lag": ("stream", "group"),
    "courseplatform_mail_sent": ("kind",),
    "courseplatform_mail_retries": ("kind",),
    "courseplatform_mail_failures": ("kind", "reason"),
    "courseplatform_mail_dead_lettered": ("kind", "reason"),
    "courseplatform_mail_completion_to_accepted_seconds": ("kind",),
    "courseplatform_notifier_degraded": ("reason",),
}
UNBOUNDED = {"user_id", "student_id", "course_id", "enrollment_id", "path", "email", "error"}


def test_metric_names_and_labels_are_stable() -> None:
    assert dict(metrics.metric_names()) == EXPECTED


def test_no_label_can_hold_an_id_a_path_or_a_message() -> None:
    for name, labels in metrics.metric_names():
        assert not UNBOUNDED.intersection(labels), name


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("malformed: no event field", "malformed"),
        ("refused: 550 no such user", "refused"),
        ("gave up after 5 attempts: TimeoutError", "gave_up"),
        ("something new", "other"),
    ],
)
def test_dead_letter_reasons_become_a_fixed_set_of_labels(reason: str, label: str) -> None:
    assert metrics.dead_letter_reason(reason) == label


def test_status_classes_and_stream_kinds() -> None:
    assert [metrics.status_class(s) for s in (200, 201, 404, 503, 42)] == [
        "2xx",
        "2xx",
        "4xx",
        "5xx",
        "other",
    ]
    assert metrics.stream_kind("courseplatform.learning.course_completed.v1") == "course_completed"
