"""Fetches a Prometheus /metrics page over HTTP and parses it with prometheus_client's own
(strict) OpenMetrics text parser; prints JSON: {"samples": {"name{label=value,...}":
value}, "types": {family: type}}.

Usage: scrape_metrics.py URL
"""

import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> None:
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=30) as response:
        if response.status != 200:
            raise SystemExit(f"{url}: HTTP {response.status}")
        content_type = response.headers.get("Content-Type", "")
        if not content_type.startswith("application/openmetrics-text"):
            raise SystemExit(f"{url}: Content-Type {content_type!r}, not OpenMetrics")
        text = response.read().decode("utf-8")
    samples = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    json.dump({"samples": samples, "types": types}, sys.stdout)


if __name__ == "__main__":
    main()
