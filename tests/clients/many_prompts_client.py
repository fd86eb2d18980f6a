"""Queues several workflows on a ComfyUI-compatible server over one websocket and downloads their outputs,
making the calls ComfyUI's websocket example client makes, with the same libraries (websocket-client and
urllib): open /ws with a new client id, POST /prompt for each prompt with a client-chosen prompt id, read
the websocket until every prompt has had its `executing` with `node: null`, then GET /history/{prompt_id}
and GET /view for every file each output node lists (`images`, as the example reads, and the other lists of
`{filename, subfolder, type}` that savers of text, audio and video fill).

Usage: many_prompts_client.py HOST:PORT PROMPTS.json DOWNLOAD_DIR
PROMPTS.json holds a list of API prompts. Prints a JSON summary: per prompt id, its history status, how
many websocket messages of each type it got (`finished` for `executing` with `node: null`) and the files
downloaded; and the delay in milliseconds from each event's `timestamp` to its arrival here.
"""

import json
import os
import sys
import time
import uuid

import websocket  # websocket-client (Debian: python3-websocket)

from comfy_calls import get_file, get_history, queue_prompt

server_address = sys.argv[1]
client_id = str(uuid.uuid4())


def main():
    with open(sys.argv[2]) as file:
        prompts = json.load(file)
    download_dir = sys.argv[3]
    ws = websocket.WebSocket()
    ws.connect("ws://{}/ws?clientId={}".format(server_address, client_id))
    ids = [str(uuid.uuid4()) for _ in prompts]
    for prompt, prompt_id in zip(prompts, ids):
        queue_prompt(server_address, client_id, prompt, prompt_id)
    counts = {prompt_id: {} for prompt_id in ids}
    waiting = set(ids)
    delays_ms = []
    while waiting:
        received = ws.recv()
        if not isinstance(received, str):
            continue
        now_ms = time.time() * 1000.0
        message = json.loads(received)
        data = message.get("data", {})
        if isinstance(data.get("timestamp"), int):
            delays_ms.append(max(0.0, now_ms - data["timestamp"]))
        prompt_id = data.get("prompt_id")
        if prompt_id not in counts:
            continue
        kind = message["type"]
        if kind == "executing" and data.get("node") is None:
            kind = "finished"
            waiting.discard(prompt_id)
        counts[prompt_id][kind] = counts[prompt_id].get(kind, 0) + 1
    # Anything that comes after the last prompt finished (a prompt finishing twice) is counted too.
    ws.settimeout(1.0)
    try:
        while True:
            received = ws.recv()
            if isinstance(received, str):
                message = json.loads(received)
                data = message.get("data", {})
                if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") in counts:
                    counts[data["prompt_id"]]["finished"] += 1
    except websocket.WebSocketTimeoutException:
        pass
    ws.close()

    summary = {}
    for prompt_id in ids:
        history = get_history(server_address, prompt_id)[prompt_id]
        files = []
        for node_id, node_output in history["outputs"].items():
            listed = [item for items in node_output.values() if isinstance(items, list) for item in items]
            for entry in [item for item in listed if isinstance(item, dict) and "filename" in item]:
                data = get_file(server_address, entry["filename"], entry["subfolder"], entry["type"])
                path = os.path.join(download_dir, "{}_{}_{}".format(prompt_id, node_id, entry["filename"]))
                with open(path, "wb") as file:
                    file.write(data)
                files.append({"path": path, "subfolder": entry["subfolder"]})
        summary[prompt_id] = {"status": history["status"]["status_str"], "messages": counts[prompt_id], "files": files}
    print(json.dumps({"prompts": summary, "order": ids, "delays_ms": delays_ms}))


main()
