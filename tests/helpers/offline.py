"""A pytest plugin (`-p tests.helpers.offline` in pyproject.toml) for every test, in tests/
and plugins/*/tests, and every process a test starts: cloud client
libraries never look for a metadata server off this machine (google-auth probes
169.254.169.254 when it finds no credentials; botocore probes it too). Subprocesses
inherit these through the environment."""

from __future__ import annotations

import os

OFFLINE = {
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    "AWS_EC2_METADATA_DISABLED": "true",
}
os.environ.update(OFFLINE)
