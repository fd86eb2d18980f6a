"""Queues a workflow on a ComfyUI-compatible server and downloads its outputs, making the calls ComfyUI's
websocket example client makes, in the same order and with the same libraries (websocket-client and
urllib): open /ws with a new client id, POST /prompt with a client-chosen prompt id, read the websocket
until `executing` with `node: null` for that prompt, then GET /history/{prompt_id} and GET /view for every
file in each output node's `images`.

Usage: websocket_client.py HOST:PORT API_PROMPT.json DOWNLOAD_DIR
Prints a JSON summary: the websocket message types in order, and the files downloaded per node.
"""

import json
import os
import sys
import uuid

import websocket  # websocket-client (Debian: python3-websocket)

from comfy_calls import get_file, get_history, queue_prompt

server_address = sys.argv[1]
client_id = str(uuid.uuid4())
message_types = []


def run_and_download(ws, prompt):
    prompt_id = str(uuid.uuid4())
    queue_prompt(server_address, client_id, prompt, prompt_id)
    while True:
        received = ws.recv()
        if not isinstance(received, str):
            message_types.append("binary")
            continue
        message = json.loads(received)
        message_types.append(message["type"])
        if message["type"] == "executing":
            data = message["data"]
            if data["node"] is None and data["prompt_id"] == prompt_id:
                break
    history = get_history(server_address, prompt_id)[prompt_id]
    downloads = {}
    for node_id, node_output in history["outputs"].items():
        downloads[node_id] = [
            (entry["filename"], get_file(server_address, entry["filename"], entry["subfolder"], entry["type"]))
            for entry in node_output.get("images", [])
        ]
    return prompt_id, history["status"]["status_str"], downloads


def main():
    with open(sys.argv[2]) as file:
        prompt = json.load(file)
    download_dir = sys.argv[3]
    # As the example edits its prompt: the positive text and the seed.
    prompt["6"]["inputs"]["text"] = "a red fox running through fresh snow"
    prompt["72"]["inputs"]["noise_seed"] = 5
    ws = websocket.WebSocket()
    ws.connect("ws://{}/ws?clientId={}".format(server_address, client_id))
    prompt_id, status, downloads = run_and_download(ws, prompt)
    ws.close()
    written = {}
    for node_id, files in downloads.items():
        written[node_id] = []
        for filename, data in files:
            path = os.path.join(download_dir, node_id + "_" + filename)
            with open(path, "wb") as file:
                file.write(data)
            written[node_id].append(path)
    print(json.dumps({"prompt_id": prompt_id, "status": status, "messages": message_types, "files": written}))


main()
