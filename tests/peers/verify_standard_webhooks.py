"""Verifies webhook deliveries with the `standardwebhooks` package (the Standard Webhooks
reference library), not with the gateway's own code: one JSON object a line on stdin,
{"secret": "whsec_...", "headers": {...}, "body": "..."}; prints `verified <n>` or the first
failure, and exits 1 on a failure."""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

count = 0
for line in sys.stdin:
    if not line.strip():
        continue
    delivery = json.loads(line)
    try:
        Webhook(delivery["secret"]).verify(delivery["body"], delivery["headers"])
    except WebhookVerificationError as e:
        print(f"not verified: {e} ({delivery['headers'].get('webhook-id')})")
        sys.exit(1)
    count += 1
print(f"verified {count}")
