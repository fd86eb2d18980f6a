"""The HTTP calls ComfyUI's websocket example client makes, with its library (urllib), shared by the test
clients here: POST /prompt with a client id and a client-chosen prompt id, GET /view, GET /history/{id}.
"""

import json
import urllib.parse
import urllib.request


def queue_prompt(server_address, client_id, prompt, prompt_id):
    body = json.dumps({"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}).encode("utf-8")
    request = urllib.request.Request("http://{}/prompt".format(server_address), data=body)
    urllib.request.urlopen(request).read()


def get_file(server_address, filename, subfolder, folder_type):
    query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": folder_type})
    with urllib.request.urlopen("http://{}/view?{}".format(server_address, query)) as response:
        return response.read()


def get_history(server_address, prompt_id):
    with urllib.request.urlopen("http://{}/history/{}".format(server_address, prompt_id)) as response:
        return json.loads(response.read())
