"""Queues a workflow on a ComfyUI-compatible server the way ComfyUI's basic example client does: the API
prompt edited in place, then a bare POST /prompt of `{"prompt": ...}` with urllib, fire and forget.

Usage: basic_client.py HOST:PORT API_PROMPT.json
Prints the server's answer.
"""

import json
import sys
import urllib.request

server_address = sys.argv[1]


def queue_prompt(prompt):
    body = json.dumps({"prompt": prompt}).encode("utf-8")
    request = urllib.request.Request("http://{}/prompt".format(server_address), data=body)
    return urllib.request.urlopen(request).read()


with open(sys.argv[2]) as file:
    prompt = json.load(file)
prompt["6"]["inputs"]["text"] = "a lighthouse at dusk, waves breaking"
prompt["72"]["inputs"]["noise_seed"] = 7
print(queue_prompt(prompt).decode("utf-8"))
