"""A stand-in for the KFP v2 REST API below kfp.Client: it replaces the urllib3 pool that
kfp_server_api's REST client sends through, records each request, and answers like the server."""

import json
import re
import urllib.parse


class _Response:
    def __init__(self, status, payload):
        self.status = status
        self.reason = "OK" if status == 200 else "Error"
        self.data = json.dumps(payload).encode()

    def getheaders(self):
        return {"Content-Type": "application/json"}

    def getheader(self, name, default=None):
        return self.getheaders().get(name, default)


class FakeKfpServer:
    def __init__(self):
        self.requests = []
        self.pipelines = {}  # name -> id
        self.experiments = {}

    def pool_manager(self, *args, **kwargs):
        return self  # used as urllib3.PoolManager(...)

    def request(self, method, url, fields=None, body=None, headers=None, **kwargs):
        parsed = urllib.parse.urlparse(url)
        query = urllib.parse.parse_qs(parsed.query)
        if method == "GET" and fields:  # urllib3 sends a GET's fields as its query string
            for key, value in fields:
                query.setdefault(key, []).append(value)
        payload = json.loads(body) if isinstance(body, (str, bytes)) and body else body
        self.requests.append(
            {
                "method": method,
                "path": parsed.path,
                "query": query,
                "body": payload,
                "multipart_fields": [f[0] for f in (fields or [])] if method != "GET" else [],
            }
        )
        return _Response(200, self._answer(method, parsed.path, query, payload))

    def _answer(self, method, path, query, body):
        if path.endswith("/healthz"):
            return {"multi_user": False}
        if path.endswith("/pipelines") and method == "GET":
            name = _filter_value(query)
            return {
                "pipelines": [{"pipeline_id": self.pipelines[name], "display_name": name}]
                if name in self.pipelines
                else [],
                "total_size": int(name in self.pipelines),
            }
        if path.endswith("/pipelines/upload"):
            name = query["name"][0]
            self.pipelines[name] = f"pipeline-{len(self.pipelines) + 1}"
            return {"pipeline_id": self.pipelines[name], "display_name": name}
        if path.endswith("/pipelines/upload_version"):
            return {
                "pipeline_id": query["pipelineid"][0],
                "pipeline_version_id": f"version-{len(self.requests)}",
                "display_name": query["name"][0],
            }
        if path.endswith("/experiments") and method == "GET":
            name = _filter_value(query)
            found = (
                [{"experiment_id": self.experiments[name], "display_name": name}] if name in self.experiments else []
            )
            return {"experiments": found, "total_size": len(found)}
        if path.endswith("/experiments") and method == "POST":
            self.experiments[body["display_name"]] = f"experiment-{len(self.experiments) + 1}"
            return {"experiment_id": self.experiments[body["display_name"]], "display_name": body["display_name"]}
        if path.endswith("/runs") and method == "POST":
            return {"run_id": "run-1", "display_name": body["display_name"], "state": "PENDING"}
        if path.endswith("/recurringruns") and method == "POST":
            return {"recurring_run_id": "recurring-1", "display_name": body["display_name"], "status": "ENABLED"}
        raise AssertionError(f"unexpected request {method} {path}")


def _filter_value(query):
    raw = query.get("filter", ["{}"])[0]
    match = re.search(r'"string_value":\s*"([^"]*)"', raw) or re.search(r'"stringValue":\s*"([^"]*)"', raw)
    return match.group(1) if match else None
