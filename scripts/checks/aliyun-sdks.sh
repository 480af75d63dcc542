#!/usr/bin/env bash
# The official Alibaba Cloud Python SDKs as clients of joint serve's Aliyun endpoints.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 scripts/checks/aliyun_sdks.py
