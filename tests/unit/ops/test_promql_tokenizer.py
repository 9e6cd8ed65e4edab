"""The PromQL metric-name extractor the alert and dashboard checks rely on."""

from __future__ import annotations

import pytest

from tests.unit.ops.promql import metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('rate(som_x_total{service=~"$service", topic!="a.b"}[5m])', {"som_x_total"}),
        (
            "histogram_quantile(0.99, sum by (service, le) (rate(som_h_bucket[$__rate_interval]))) > 0.2",
            {"som_h_bucket"},
        ),
        ("sum(a_total) / sum(b_total) < 0.995 and sum(a_total) >= 20", {"a_total", "b_total"}),
        (
            'min by (service) (g) == 0 or label_replace(up{job="j"}, "service", "$1", "worker", "(.*)") == 0',
            {"g", "up"},
        ),
        ("sum without (instance) (x) * on (service) group_left (topic) y", {"x", "y"}),
        ("vector(0.995)", set()),
        ("label_values(som_messages_processed_total, service)", {"som_messages_processed_total"}),
        ("max(a:recorded:rate5m) offset 5m", {"a:recorded:rate5m"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
